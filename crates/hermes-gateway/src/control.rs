//! The gateway's control endpoint, for `hermes send` and health checks.
//!
//! It listens on a Unix socket in `HERMES_HOME/state/` (0700), never on a TCP port: another
//! local user cannot even connect, so cannot starve the gateway of descriptors by holding
//! connections open. The socket's path and a random token are in `state/gateway.json` (0600);
//! every request is authenticated (constant-time) before its body is read. A message sent
//! this way goes through the outbox like any reply: chunked, under ids chosen first, sent in
//! order, and kept if WhatsApp is down until it is back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hermes_core::format;
use hermes_core::identity::{Jid, MessageId};
use hermes_core::media::outbound::OutMedia;
use hermes_store::clock::now as now_secs;
use hermes_store::{Db, Delivery};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::{Messenger, Options};

/// What `state/gateway.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlInfo {
    pub pid: u32,
    /// The Unix socket the endpoint listens on.
    pub socket: PathBuf,
    pub token: String,
    /// The HTTP listener (health, metrics, status page), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    /// The token its page and `/metrics` ask for (every listener has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_token: Option<String>,
    #[serde(skip)]
    path: PathBuf,
}

/// Where the running gateway's control address is written.
pub fn control_file(state_dir: &Path) -> PathBuf {
    state_dir.join("gateway.json")
}

impl ControlInfo {
    /// What `state/gateway.json` says, for a caller that uses none of its secrets (the
    /// listener's address, the gateway's process). `hermes send`, which uses the token,
    /// reads it with its own checks.
    pub fn read(state_dir: &Path) -> Option<ControlInfo> {
        serde_json::from_slice(&std::fs::read(control_file(state_dir)).ok()?).ok()
    }
}

#[derive(Clone)]
struct App {
    db: Db,
    wake: Arc<Notify>,
    messenger: Arc<dyn Messenger>,
    token: String,
    home: Option<String>,
    hermes_home: std::path::PathBuf,
    /// Files larger than this are not sent.
    max_media_bytes: u64,
    parser: crate::parse::Parser,
    /// Who may be written to first (`WHATSAPP_ALLOWED_USERS`, `WHATSAPP_GROUP_ALLOWED_USERS`).
    allowed: hermes_core::allowlist::Allowlist,
    groups: Vec<Jid>,
}

#[derive(Deserialize)]
struct SendRequest {
    /// A chat as people write it; the home channel when absent.
    to: Option<String>,
    #[serde(default)]
    text: String,
    /// An absolute path to a file to send, with `text` as its caption.
    file: Option<String>,
    /// Audio as a voice note (Ogg Opus), as Hermes' `[[audio_as_voice]]`.
    #[serde(default)]
    voice: bool,
}

/// Longest socket path the kernel takes (`sun_path` is 108 bytes with its NUL), kept short of.
const MAX_SOCKET_PATH: usize = 100;

pub(crate) async fn start(
    opts: &Options,
    wake: Arc<Notify>,
    http: Option<(String, String)>,
) -> std::io::Result<(ControlInfo, impl Future<Output = ()> + Send + 'static)> {
    hermes_store::files::create_private_dir_all(&opts.state_dir)?;
    let mut socket = opts.state_dir.join("gateway.sock");
    // A HERMES_HOME deep enough to overflow sun_path gets a private directory of its own
    // (0700, random name) in the system's temporary directory instead.
    let mut private_tmp = None;
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        let dir = tempfile::Builder::new().prefix("hermes-").tempdir()?;
        socket = dir.path().join("gateway.sock");
        private_tmp = Some(dir);
    }
    // A socket left by a gateway that was killed; the session lock says none runs now.
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let token = format!("{:032x}", rand::random::<u128>());
    let info = ControlInfo {
        pid: std::process::id(),
        socket,
        token: token.clone(),
        http_url: http.as_ref().map(|h| h.0.clone()),
        http_token: http.map(|h| h.1),
        path: control_file(&opts.state_dir),
    };
    hermes_store::files::write_private(&info.path, &serde_json::to_vec(&info).map_err(std::io::Error::other)?)?;
    let app = App {
        db: opts.db.clone(),
        wake,
        messenger: opts.messenger.clone(),
        token,
        home: opts.config.home_channel.value.clone(),
        hermes_home: opts.home.clone(),
        max_media_bytes: opts.media.max_media_mb.value.saturating_mul(1024 * 1024),
        parser: opts.parser.clone(),
        allowed: opts.config.allowed_users.value.clone(),
        groups: opts.config.group_allowed.value.clone(),
    };
    let router = axum::Router::new()
        .route("/send", axum::routing::post(send))
        .route("/health", axum::routing::get(health))
        .with_state(app);
    Ok((info, async move {
        // Owned here so the directory lives as long as the endpoint.
        let _private_tmp = private_tmp;
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the control endpoint stopped");
        }
    }))
}

pub(crate) fn remove(info: &ControlInfo) {
    let _ = std::fs::remove_file(&info.path);
    let _ = std::fs::remove_file(&info.socket);
}

/// The first-contact rule: hermes does not start a conversation with a stranger (WhatsApp takes
/// messages to people who never wrote for spam, and restricts or bans the account). A chat may
/// be written to when it wrote to the account, or an allowlist names it, or it is the home
/// channel.
fn first_contact(app: &App, chat: &Jid) -> Result<(), String> {
    let named = app.home.as_deref().and_then(|h| Jid::parse_chat(h).ok()).is_some_and(|h| h == *chat)
        || chat.user_id().is_some_and(|u| app.allowed.valid_users().any(|a| *a == u))
        || app.groups.contains(&chat.to_non_device());
    if named {
        return Ok(());
    }
    match app.db.read(|s| s.has_written(chat)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!(
            "{chat} never wrote to this account and no allowlist names it: WhatsApp takes messages to people who \
             never wrote for spam, so hermes does not start conversations. Add it to WHATSAPP_ALLOWED_USERS (a \
             group to WHATSAPP_GROUP_ALLOWED_USERS), or wait until it writes first"
        )),
        Err(e) => Err(format!("cannot tell whether {chat} wrote to this account: {e}")),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Compares in constant time, so the token cannot be guessed byte by byte from timings.
fn authorized(app: &App, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq as _;
    let given = headers.get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
    let given = given.strip_prefix(b"Bearer ").unwrap_or_default();
    bool::from(given.ct_eq(app.token.as_bytes()))
}

/// The most a send request may hold: a message, not a file.
const MAX_BODY: usize = 256 * 1024;

/// The body is read, and parsed, only after the caller is known.
async fn send(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "wrong or missing token (it is in HERMES_HOME/state/gateway.json)");
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("a message is at most {} KiB", MAX_BODY / 1024)),
    };
    let req: SendRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a send request: {e}")),
    };
    let Some(target) = req.to.or(app.home.clone()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "no chat given and WHATSAPP_HOME_CHANNEL is not set: use --to whatsapp:CHAT, or set WHATSAPP_HOME_CHANNEL in .env",
        );
    };
    let chat = match Jid::parse_chat(&target) {
        Ok(j) => j,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Err(why) = first_contact(&app, &chat) {
        return error(StatusCode::FORBIDDEN, why);
    }
    let ids = match &req.file {
        None => {
            let messages: Vec<(MessageId, String)> =
                format::chunk(&format::to_whatsapp(&req.text), format::MAX_MESSAGE_CHARS)
                    .into_iter()
                    .map(|part| (app.messenger.new_message_id(), part))
                    .collect();
            if messages.is_empty() {
                return error(StatusCode::BAD_REQUEST, "the message is empty");
            }
            let ids: Vec<MessageId> = messages.iter().map(|(id, _)| id.clone()).collect();
            let c = chat.clone();
            if let Err(e) = app.db.call(move |s| s.enqueue(&c, &messages, now_secs())).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            ids
        }
        Some(file) => {
            let id = app.messenger.new_message_id();
            let media = match outgoing_file(&app, file, &req.text, req.voice).await {
                Ok(m) => m,
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
            };
            let (c, item) = (chat.clone(), [(id.clone(), media)]);
            if let Err(e) = app.db.call(move |s| s.enqueue_files(&c, &item, now_secs())).await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
            }
            vec![id]
        }
    };
    app.wake.notify_one();
    // Wait a little for the sender, so the caller learns whether it went out.
    let outcome = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ids = ids.clone();
            let states = app.db.call(move |s| ids.iter().map(|id| s.delivery(id)).collect::<Result<Vec<_>, _>>()).await;
            if let Ok(states) = states {
                // Given up on is final: the caller must not hear "sent" or "queued".
                if states.contains(&Some(Delivery::Abandoned)) {
                    return Delivery::Abandoned;
                }
                if states.iter().all(|d| matches!(d, Some(Delivery::Sent { .. }))) {
                    return Delivery::Sent { at: now_secs() };
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or(Delivery::Queued);
    match outcome {
        Delivery::Abandoned => error(
            StatusCode::BAD_GATEWAY,
            "WhatsApp refused the message after repeated attempts; the gateway's log says why",
        ),
        Delivery::Sent { .. } => {
            (StatusCode::OK, Json(json!({"chat": chat.to_string(), "ids": ids.iter().map(MessageId::as_str).collect::<Vec<_>>(), "sent": true}))).into_response()
        }
        Delivery::Queued => {
            (StatusCode::ACCEPTED, Json(json!({"chat": chat.to_string(), "ids": ids.iter().map(MessageId::as_str).collect::<Vec<_>>(), "sent": false}))).into_response()
        }
    }
}

/// A file to send, opened once and copied from that descriptor into the gateway's outgoing
/// cache (the copy is what is sent, once, whatever happens to the original); audio made a
/// voice note with `voice`, by a parser child.
async fn outgoing_file(app: &App, file: &str, caption: &str, voice: bool) -> Result<OutMedia, String> {
    let path = std::path::PathBuf::from(file);
    if !path.is_absolute() {
        return Err(format!("--file '{file}' must be an absolute path"));
    }
    let (home, cap) = (app.hermes_home.clone(), app.max_media_bytes);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
    let (home2, name2) = (home.clone(), name.clone());
    let copy = tokio::task::spawn_blocking(move || {
        crate::outgoing::open_owners(&path, cap).and_then(|opened| opened.copy_into_cache(&home2, &name2, cap))
    })
    .await
    .map_err(|e| format!("--file: {e}"))?
    .map_err(|why| format!("--file {why}"))?;
    let caption = Some(caption.trim().to_owned()).filter(|c| !c.is_empty());
    let mut media = OutMedia::for_path(&copy, caption, voice, false);
    media.file_name = media.file_name.map(|_| name);
    if voice {
        if media.kind != hermes_core::media::MediaKind::Voice {
            return Err(format!("--voice needs an audio file (.ogg .opus .mp3 .wav .m4a .flac); '{file}' is not one"));
        }
        crate::media::voice_note_with(&app.parser, &home, &mut media)
            .await
            .map_err(|why| format!("--voice: '{file}': {why}"))?;
    }
    Ok(media)
}

async fn health(State(app): State<App>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "wrong or missing token");
    }
    let counts = app.db.call(|s| Ok((s.pending_count()?, s.unsent_count()?))).await;
    match counts {
        Ok((waiting, unsent)) => {
            let connected = *app.messenger.connected().borrow();
            Json(json!({"connected": connected, "waiting": waiting, "unsent": unsent})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
