//! The JSON control API of `wa-sim serve`, on loopback: the same operations as the Rust API,
//! for scripts and for processes that are not Rust tests.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, Sim, SimEvent};

type Shared = Arc<Sim>;

/// The routes; see the crate README for the request and response shapes.
pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/phones", post(add_phone))
        .route("/phones/{phone}/devices", get(devices))
        .route("/phones/{phone}/link-qr", post(link_qr))
        .route("/phones/{phone}/link-code", post(link_code))
        .route("/phones/{phone}/unlink", post(unlink))
        .route("/phones/{phone}/send", post(phone_send))
        .route("/groups", post(create_group))
        .route("/contacts", post(add_phone))
        .route("/contacts/{phone}/send", post(send))
        .route("/contacts/{phone}/send-media", post(send_media))
        .route("/contacts/{phone}/send-location", post(send_location))
        .route("/contacts/{phone}/send-contact", post(send_contact))
        .route("/contacts/{phone}/inbox", get(inbox))
        .route("/contacts/{phone}/media/{id}", get(media_bytes))
        .route("/faults", post(inject))
        .route("/faults", delete(clear_faults))
        .route("/events", get(events))
        .route("/events/wait", get(wait_event))
        .with_state(sim)
}

/// A request the simulator could not carry out: 400 with `{"error": "..."}`.
struct ApiError(anyhow::Error);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": format!("{:#}", self.0) }))).into_response()
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

#[derive(Deserialize)]
struct PhoneReq {
    phone: String,
}

async fn add_phone(State(sim): State<Shared>, Json(req): Json<PhoneReq>) -> Result<Json<Value>, ApiError> {
    let digits: String = req.phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 7 {
        return Err(anyhow::anyhow!("'{}' is not a phone number with its country code", req.phone).into());
    }
    let p = sim.add_phone(&digits);
    Ok(Json(json!({ "phone": p.phone, "lid": p.lid })))
}

async fn devices(State(sim): State<Shared>, Path(phone): Path<String>) -> Json<Value> {
    Json(json!(sim.devices(&phone)))
}

#[derive(Deserialize)]
struct SendReq {
    to: String,
    text: String,
    /// `pn` (default) or `lid`: which of its addresses the contact writes from.
    #[serde(default, rename = "as")]
    as_: Option<String>,
    /// The id of a message of the chat the text replies to, quoting it.
    #[serde(default)]
    quote: Option<String>,
    /// Write in this group (`<gid>@g.us`) instead of to `to`.
    #[serde(default)]
    group: Option<String>,
}

/// A contact writes to a phone's linked devices (`"quote": ID` replies to a message of the
/// chat, quoting it): `{"id"}`.
async fn send(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<SendReq>,
) -> Result<Json<Value>, ApiError> {
    let as_lid = match req.as_.as_deref() {
        None | Some("pn") => false,
        Some("lid") => true,
        Some(other) => return Err(anyhow::anyhow!("\"as\": '{other}' is not valid; accepted values: pn, lid").into()),
    };
    if let Some(group) = &req.group {
        if req.quote.is_some() || as_lid {
            return Err(anyhow::anyhow!("a group message takes neither \"quote\" nor \"as\" here").into());
        }
        let id = sim.send_group_text(&phone, group, &req.text).await?;
        return Ok(Json(json!({ "id": id })));
    }
    let to: String = req.to.chars().filter(char::is_ascii_digit).collect();
    let id = match &req.quote {
        Some(quote) if !as_lid => sim.send_reply(&phone, &to, &req.text, quote, None).await?,
        Some(_) => return Err(anyhow::anyhow!("\"quote\" is sent from the phone number (\"as\": \"pn\")").into()),
        None => sim.send_text(&phone, &to, &req.text, as_lid).await?,
    };
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct GroupReq {
    subject: String,
    /// Its creator and admin.
    owner: String,
    #[serde(default)]
    members: Vec<String>,
}

/// Creates a group of existing phones: `{"id": "<gid>@g.us"}`.
async fn create_group(State(sim): State<Shared>, Json(req): Json<GroupReq>) -> Result<Json<Value>, ApiError> {
    let digits = |p: &str| p.chars().filter(char::is_ascii_digit).collect::<String>();
    let owner = digits(&req.owner);
    let mut members = vec![owner.clone()];
    members.extend(req.members.iter().map(|m| digits(m)).filter(|m| *m != owner));
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let id = sim.create_group(&req.subject, &members)?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
struct PhoneSendReq {
    /// A phone number or a group JID.
    to: String,
    text: String,
}

/// The account's own phone writes (the owner typing on the phone): its linked devices get a
/// copy as the account's own message. `{"id"}`.
async fn phone_send(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<PhoneSendReq>,
) -> Result<Json<Value>, ApiError> {
    let chat = if req.to.contains('@') {
        req.to.clone()
    } else {
        format!("{}@s.whatsapp.net", req.to.chars().filter(char::is_ascii_digit).collect::<String>())
    };
    let id = sim.send_from_phone(&phone, &chat, &req.text).await?;
    Ok(Json(json!({ "id": id })))
}

/// What a contact received, in order: texts as `{"from", "id", "text"}`, media as
/// `{"from", "id", "kind", "mime", "caption", "file_name", "size", "sha256", "seconds", "ptt"}`
/// (the bytes at `GET /contacts/{phone}/media/{id}`).
async fn inbox(State(sim): State<Shared>, Path(phone): Path<String>) -> Json<Value> {
    Json(Value::Array(
        sim.events()
            .into_iter()
            .filter_map(|e| match e {
                SimEvent::MessageReceived { contact, from, id, text } if contact == phone => {
                    Some(json!({ "from": from, "id": id, "text": text }))
                }
                SimEvent::MediaReceived { contact, media } if contact == phone => serde_json::to_value(media).ok(),
                _ => None,
            })
            .collect(),
    ))
}

/// The decrypted bytes of media a contact received.
async fn media_bytes(State(sim): State<Shared>, Path((phone, id)): Path<(String, String)>) -> Response {
    match sim.received_media(&phone).into_iter().find(|m| m.id == id) {
        Some(m) => ([(axum::http::header::CONTENT_TYPE, m.mime)], m.data).into_response(),
        None => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": format!("{phone} received no media {id}") }))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct SendMediaReq {
    to: String,
    kind: crate::MediaKind,
    mime: String,
    data_base64: String,
    caption: Option<String>,
    file_name: Option<String>,
    seconds: Option<u32>,
    /// For audio: a voice note (the same as `kind: "voice"`).
    #[serde(default)]
    ptt: bool,
}

/// A contact sends media, uploaded to the CDN first: `{"id"}`.
async fn send_media(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<SendMediaReq>,
) -> Result<Json<Value>, ApiError> {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(req.data_base64.trim())
        .map_err(|e| anyhow::anyhow!("data_base64 is not base64: {e}"))?;
    let kind = if req.ptt && req.kind == crate::MediaKind::Audio { crate::MediaKind::Voice } else { req.kind };
    let media =
        crate::Media { mime: req.mime, data, caption: req.caption, file_name: req.file_name, seconds: req.seconds };
    let to: String = req.to.chars().filter(char::is_ascii_digit).collect();
    Ok(Json(json!({ "id": sim.send_media(&phone, &to, kind, &media).await? })))
}

#[derive(Deserialize)]
struct LocationReq {
    to: String,
    lat: f64,
    lng: f64,
    name: Option<String>,
}

async fn send_location(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<LocationReq>,
) -> Result<Json<Value>, ApiError> {
    use waproto::whatsapp as wa;
    let message = wa::Message {
        location_message: buffa::MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(req.lat),
            degrees_longitude: Some(req.lng),
            name: req.name,
            ..Default::default()
        }),
        ..Default::default()
    };
    let to: String = req.to.chars().filter(char::is_ascii_digit).collect();
    Ok(Json(json!({ "id": sim.send_message(&phone, &to, message).await? })))
}

#[derive(Deserialize)]
struct ContactReq {
    to: String,
    name: String,
    phone: String,
}

async fn send_contact(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<ContactReq>,
) -> Result<Json<Value>, ApiError> {
    use waproto::whatsapp as wa;
    let digits: String = req.phone.chars().filter(char::is_ascii_digit).collect();
    let vcard = format!("BEGIN:VCARD\nVERSION:3.0\nFN:{}\nTEL;type=CELL;waid={digits}:+{digits}\nEND:VCARD", req.name);
    let message = wa::Message {
        contact_message: buffa::MessageField::some(wa::message::ContactMessage {
            display_name: Some(req.name),
            vcard: Some(vcard),
            ..Default::default()
        }),
        ..Default::default()
    };
    let to: String = req.to.chars().filter(char::is_ascii_digit).collect();
    Ok(Json(json!({ "id": sim.send_message(&phone, &to, message).await? })))
}

#[derive(Deserialize)]
struct QrReq {
    qr: String,
}

async fn link_qr(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<QrReq>,
) -> Result<Json<Value>, ApiError> {
    sim.link_qr(&phone, &req.qr)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize)]
struct CodeReq {
    code: String,
}

async fn link_code(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    Json(req): Json<CodeReq>,
) -> Result<Json<Value>, ApiError> {
    sim.link_code(&phone, &req.code)?;
    Ok(Json(json!({ "ok": true })))
}

#[derive(Deserialize, Default)]
struct UnlinkReq {
    device: Option<u16>,
}

/// Unlinks one device (`{"device": N}`), or with no body every device of the phone.
async fn unlink(
    State(sim): State<Shared>,
    Path(phone): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: UnlinkReq =
        if body.iter().all(u8::is_ascii_whitespace) { UnlinkReq::default() } else { serde_json::from_slice(&body)? };
    let targets = match req.device {
        Some(d) => vec![d],
        None => sim.devices(&phone),
    };
    for device in &targets {
        sim.inject(Fault::DeviceRemoved { phone: phone.clone(), device: *device })?;
    }
    Ok(Json(json!({ "unlinked": targets })))
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FaultReq {
    DropConnections,
    RefuseConnections {
        count: u32,
    },
    SlowResponses {
        delay_ms: u64,
    },
    Replaced {
        phone: String,
    },
    DeviceRemoved {
        phone: String,
        device: u16,
    },
    FailLogins {
        reason: u16,
    },
    TemporaryBan {
        code: u16,
        expire_secs: u64,
    },
    StreamError {
        code: u16,
    },
    RedeliveryStorm {
        id: String,
        times: u32,
    },
    PhoneOffline {
        phone: String,
        days: u32,
    },
    ExpireMedia {
        id: Option<String>,
        #[serde(default = "yes")]
        reupload: bool,
    },
    CorruptMedia {
        id: Option<String>,
    },
}

fn yes() -> bool {
    true
}

async fn inject(State(sim): State<Shared>, Json(req): Json<FaultReq>) -> Result<Json<Value>, ApiError> {
    let fault = match req {
        FaultReq::DropConnections => Fault::DropConnections,
        FaultReq::RefuseConnections { count } => Fault::RefuseConnections(count),
        FaultReq::SlowResponses { delay_ms } => Fault::SlowResponses(Duration::from_millis(delay_ms)),
        FaultReq::Replaced { phone } => Fault::Replaced { phone },
        FaultReq::DeviceRemoved { phone, device } => Fault::DeviceRemoved { phone, device },
        FaultReq::FailLogins { reason } => Fault::FailLogins { reason },
        FaultReq::TemporaryBan { code, expire_secs } => {
            Fault::TemporaryBan { code, expire: Duration::from_secs(expire_secs) }
        }
        FaultReq::StreamError { code } => Fault::StreamError { code },
        FaultReq::RedeliveryStorm { id, times } => Fault::RedeliveryStorm { id, times },
        FaultReq::PhoneOffline { phone, days } => Fault::PhoneOffline { phone, days },
        FaultReq::ExpireMedia { id, reupload } => Fault::ExpireMedia { id, reupload },
        FaultReq::CorruptMedia { id } => Fault::CorruptMedia { id },
    };
    sim.inject(fault)?;
    Ok(Json(json!({ "ok": true })))
}

async fn clear_faults(State(sim): State<Shared>) -> Json<Value> {
    sim.clear_faults();
    Json(json!({ "ok": true }))
}

/// Every event but the raw stanzas (ask with `?stanzas=1` for those too).
async fn events(
    State(sim): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let stanzas = q.get("stanzas").is_some_and(|v| v == "1" || v == "true");
    let list: Vec<Value> =
        sim.events().iter().filter(|e| stanzas || !matches!(e, SimEvent::Stanza { .. })).map(event_json).collect();
    Json(Value::Array(list))
}

#[derive(Deserialize)]
struct WaitReq {
    /// The `event` name to wait for, e.g. `device_linked`.
    event: String,
    /// Only events at or after this log position (from an earlier answer's `next`).
    #[serde(default)]
    after: usize,
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
    /// Optionally, the phone the event must concern.
    phone: Option<String>,
}

fn default_wait_ms() -> u64 {
    30_000
}

/// Long-polls for the first event of a kind: `{"event": {...}, "next": N}`, or 408 when it
/// does not happen in time. Scripts wait with this instead of sleeping.
async fn wait_event(State(sim): State<Shared>, axum::extract::Query(q): axum::extract::Query<WaitReq>) -> Response {
    let matches = |e: &SimEvent| {
        let v = event_json(e);
        v["event"] == q.event.as_str() && q.phone.as_deref().is_none_or(|p| v["phone"] == p)
    };
    match sim.wait_for(q.after, Duration::from_millis(q.timeout_ms), matches).await {
        Ok(e) => Json(json!({ "event": event_json(&e), "next": sim.cursor() })).into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(json!({ "error": format!("no '{}' event within {} ms", q.event, q.timeout_ms) })),
        )
            .into_response(),
    }
}

fn event_json(e: &SimEvent) -> Value {
    match e {
        SimEvent::Connected { conn, login, used_ik } => json!({
            "event": "connected", "conn": conn, "used_ik": used_ik,
            "phone": login.as_ref().map(|l| &l.0), "device": login.as_ref().map(|l| l.1),
        }),
        SimEvent::Refused { conn } => json!({ "event": "refused", "conn": conn }),
        SimEvent::PairingStarted { conn } => json!({ "event": "pairing_started", "conn": conn }),
        SimEvent::PairingCodeRequested { conn, phone } => {
            json!({ "event": "pairing_code_requested", "conn": conn, "phone": phone })
        }
        SimEvent::PairingCodeRejected { conn, reason } => {
            json!({ "event": "pairing_code_rejected", "conn": conn, "reason": reason })
        }
        SimEvent::DeviceLinked { phone, device } => {
            json!({ "event": "device_linked", "phone": phone, "device": device })
        }
        SimEvent::DeviceUnlinked { phone, device } => {
            json!({ "event": "device_unlinked", "phone": phone, "device": device })
        }
        SimEvent::LoggedIn { phone, device } => json!({ "event": "logged_in", "phone": phone, "device": device }),
        SimEvent::PhoneOffline { phone, days } => json!({ "event": "phone_offline", "phone": phone, "days": days }),
        SimEvent::LoginRefused { phone, device, reason } => {
            json!({ "event": "login_refused", "phone": phone, "device": device, "reason": reason })
        }
        SimEvent::Active { phone, device } => json!({ "event": "active", "phone": phone, "device": device }),
        SimEvent::MessageReceived { contact, from, id, text } => {
            json!({ "event": "message_received", "contact": contact, "from": from, "id": id, "text": text })
        }
        SimEvent::MessageSent { from, to, id } => json!({ "event": "message_sent", "from": from, "to": to, "id": id }),
        SimEvent::MessageDelivered { phone, device, id } => {
            json!({ "event": "message_delivered", "phone": phone, "device": device, "id": id })
        }
        SimEvent::MediaReceived { contact, media } => {
            let mut v = serde_json::to_value(media).unwrap_or_default();
            v["event"] = json!("media_received");
            v["contact"] = json!(contact);
            v
        }
        SimEvent::MediaRejected { contact, from, id, reason } => {
            json!({ "event": "media_rejected", "contact": contact, "from": from, "id": id, "reason": reason })
        }
        SimEvent::Disconnected { conn } => json!({ "event": "disconnected", "conn": conn }),
        SimEvent::Stanza { conn, inbound, xml } => {
            json!({ "event": "stanza", "conn": conn, "inbound": inbound, "xml": xml })
        }
    }
}
