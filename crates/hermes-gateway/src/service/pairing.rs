//! The pairing page: linking a headless gateway from a browser. While the link needs a person
//! (no session, logged out, device removed), `GET /` shows the current QR code as WhatsApp
//! rotates it, with its countdown, and a form that asks for a pairing code for a phone number
//! instead. The linking itself is done by whoever holds the requests (the gateway binary);
//! this side only shows what it reports and passes on what the person asked for.

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{App, esc};

/// How long a page load waits for a first code before showing "asking WhatsApp".
const FIRST_CODE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where linking through the page stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Pairing {
    /// Nobody asked yet (no attempt runs: no connection to WhatsApp is held for nothing).
    #[default]
    Idle,
    /// Connecting to WhatsApp for a code.
    Starting,
    /// Show this QR code until `expires_at` (unix milliseconds); WhatsApp rotates it.
    Qr { code: String, expires_at: i64 },
    /// Type this code on the phone of `phone` before `expires_at` (unix milliseconds).
    Code { code: String, phone: String, expires_at: i64 },
    /// The phone accepted: logging in.
    Paired,
    /// The last attempt ended without a link; a new one starts when asked.
    Failed { why: String },
}

/// What the person asked for on the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PairRequest {
    /// Link by QR code.
    Qr,
    /// Link by a code typed on the phone of this number (digits, with country code).
    Code { phone: String },
}

/// The page's side of linking: what it shows, and where the requests go.
#[derive(Debug)]
pub(super) struct PairingState {
    view: watch::Sender<(u64, Pairing)>,
    requests: mpsc::UnboundedSender<PairRequest>,
    receiver: std::sync::Mutex<Option<mpsc::UnboundedReceiver<PairRequest>>>,
    /// The last request passed on.
    asked: std::sync::Mutex<Option<PairRequest>>,
}

impl PairingState {
    pub(super) fn new() -> PairingState {
        let (requests, receiver) = mpsc::unbounded_channel();
        PairingState {
            view: watch::channel((0, Pairing::Idle)).0,
            requests,
            receiver: std::sync::Mutex::new(Some(receiver)),
            asked: std::sync::Mutex::new(None),
        }
    }

    /// Sets what the page shows; every change gets a new version, so an open page reloads.
    pub(super) fn set(&self, pairing: Pairing) {
        self.view.send_modify(|(version, view)| {
            *version += 1;
            *view = pairing;
        });
    }

    pub(super) fn get(&self) -> (u64, Pairing) {
        self.view.borrow().clone()
    }

    /// The requests, for the one that links; `None` once taken.
    pub(super) fn take_requests(&self) -> Option<mpsc::UnboundedReceiver<PairRequest>> {
        self.receiver.lock().expect("not poisoned").take()
    }

    /// Passes `request` on, unless the same one is already starting or the phone already
    /// accepted: a double click starts one attempt, and nothing throws an accepted link away.
    fn ask(&self, request: PairRequest) {
        let mut asked = self.asked.lock().expect("not poisoned");
        let (_, view) = self.get();
        if view == Pairing::Paired || (view == Pairing::Starting && asked.as_ref() == Some(&request)) {
            return;
        }
        *asked = Some(request.clone());
        self.set(Pairing::Starting);
        if self.requests.send(request).is_err() {
            self.set(Pairing::Failed { why: "this gateway cannot link from the page".to_owned() });
        }
    }

    /// Asks for a QR code when nothing runs yet (a page load), and waits a little for it, so
    /// the first page shown already has the code.
    async fn want_qr(&self) {
        let mut changes = self.view.subscribe();
        if !matches!(changes.borrow_and_update().1, Pairing::Idle) {
            return;
        }
        self.ask(PairRequest::Qr);
        let _ = tokio::time::timeout(
            FIRST_CODE_WAIT,
            changes.wait_for(|(_, p)| !matches!(p, Pairing::Idle | Pairing::Starting)),
        )
        .await;
    }
}

/// The pairing part of `GET /`, while the link needs a person.
pub(super) async fn section(app: &App, link_version: u64) -> String {
    let pairing = &app.service.pairing;
    pairing.want_qr().await;
    let (version, view) = pairing.get();
    let token = app.token_query();
    let hidden = format!("<input type=\"hidden\" name=\"token\" value=\"{}\">", esc(&app.token));
    let mut html = String::from("<h2>Link this gateway to WhatsApp</h2><div id=\"pairing\">");
    match &view {
        Pairing::Idle | Pairing::Starting => html.push_str("<p id=\"step\">Asking WhatsApp for a code&hellip;</p>"),
        Pairing::Qr { code, expires_at } => {
            html.push_str(
                "<p id=\"step\">On the phone: WhatsApp &gt; Settings &gt; Linked Devices &gt; Link a Device, and scan \
                 this code.</p>",
            );
            html.push_str(&format!("<div id=\"qr\">{}</div>", qr_svg(code)));
            html.push_str(&countdown(*expires_at, "A new code replaces it by itself."));
        }
        Pairing::Code { code, phone, expires_at } => {
            let shown = if code.len() == 8 { format!("{}-{}", &code[..4], &code[4..]) } else { code.clone() };
            html.push_str(&format!(
                "<p id=\"step\">On the phone of +{}: WhatsApp &gt; Settings &gt; Linked Devices &gt; Link a Device &gt; \
                 Link with phone number instead, and enter:</p><p id=\"code\" class=\"code\">{}</p>",
                esc(phone),
                esc(&shown)
            ));
            html.push_str(&countdown(*expires_at, ""));
        }
        Pairing::Paired => {
            // Nothing to click: a new request now would throw away a link the phone accepted.
            html.push_str("<p id=\"step\">The phone accepted this device; logging in&hellip;</p></div>");
            html.push_str(&reload_script(&token, version, link_version));
            return html;
        }
        Pairing::Failed { why } => {
            html.push_str(&format!(
                "<p id=\"step\" class=\"bad\">No link: {}</p><form method=\"post\" action=\"/pair{token}\">{}\
                 <button name=\"kind\" value=\"qr\">Show a new QR code</button></form>",
                esc(why),
                hidden
            ));
        }
    }
    html.push_str(&format!(
        "</div><h3>Or link with a phone number</h3><form method=\"post\" action=\"/pair{token}\">{}\
         <label>Phone number with country code <input name=\"phone\" id=\"phone\" inputmode=\"tel\" \
         placeholder=\"15551234567\" required></label> <button name=\"kind\" value=\"code\">Get a pairing code</button>\
         </form>",
        hidden
    ));
    html.push_str(
        "<script>setInterval(()=>{const e=document.getElementById('left');if(e){const s=Math.max(0,\
         Math.round((e.dataset.expires-Date.now())/1000));e.textContent=s;}},250);</script>",
    );
    html.push_str(&reload_script(&token, version, link_version));
    html
}

/// Reloads the page when the code rotates or the link changes (polling `/pairing.json`).
pub(super) fn reload_script(token_query: &str, version: u64, link_version: u64) -> String {
    format!(
        "<script>setInterval(()=>fetch('/pairing.json{token_query}').then(r=>r.json()).then(j=>{{\
         if(j.version!=={version}||j.link_version!=={link_version})location.reload();}}).catch(()=>{{}}),1000);</script>"
    )
}

fn countdown(expires_at: i64, then: &str) -> String {
    let left = ((expires_at - hermes_store::clock::now_millis()) / 1000).max(0);
    format!("<p>Expires in <span id=\"left\" data-expires=\"{expires_at}\">{left}</span> s. {then}</p>")
}

/// The code as an inline SVG: black on white with its quiet zone, big enough for a phone's
/// camera from across a desk.
fn qr_svg(code: &str) -> String {
    match qrcode::QrCode::new(code.as_bytes()) {
        Ok(q) => q
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(320, 320)
            .quiet_zone(true)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
        Err(e) => format!("<p class=\"bad\">the QR code cannot be drawn ({e})</p>"),
    }
}

/// `GET /pairing.json`: what the open page compares to know when to reload.
pub(super) async fn status(State(app): State<App>) -> Response {
    let (version, view) = app.service.pairing.get();
    let step = match view {
        Pairing::Idle => "idle",
        Pairing::Starting => "starting",
        Pairing::Qr { .. } => "qr",
        Pairing::Code { .. } => "code",
        Pairing::Paired => "paired",
        Pairing::Failed { .. } => "failed",
    };
    let link = app.service.link();
    axum::Json(json!({ "version": version, "link_version": link.version, "step": step, "state": link.state }))
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct PairForm {
    kind: String,
    #[serde(default)]
    phone: String,
}

/// `POST /pair`: a new QR code, or a pairing code for a phone number. Only the page's own
/// forms reach here: the token (checked before, in the form or the address) is the owner's,
/// so a request may replace the owner's running attempt only because it is the owner's.
pub(super) async fn request(State(app): State<App>, Form(form): Form<PairForm>) -> Response {
    if !app.service.link().needs_link {
        return (StatusCode::CONFLICT, "this gateway is linked; nothing to do\n").into_response();
    }
    let request = match form.kind.as_str() {
        "qr" => PairRequest::Qr,
        "code" => match hermes_core::allowlist::parse_user(&form.phone).ok().and_then(|u| u.phone().cloned()) {
            Some(phone) => PairRequest::Code { phone: phone.as_str().to_owned() },
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    Html(format!(
                        "<p>'{}' is not a phone number with its country code (e.g. 15551234567 for +1 555 123 4567). \
                         Go back and try again.</p>",
                        esc(&form.phone)
                    )),
                )
                    .into_response();
            }
        },
        other => return (StatusCode::BAD_REQUEST, format!("unknown request '{}'\n", esc(other))).into_response(),
    };
    app.service.pairing.ask(request);
    let back = format!("/{}", app.token_query());
    Redirect::to(&back).into_response()
}
