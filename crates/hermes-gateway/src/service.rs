//! The gateway's HTTP listener, for running it unattended: `GET /healthz` (the process runs its
//! loops), `GET /readyz` (linked, connected, keeping and sending; otherwise 503 with the state,
//! the reason and the fix `status` gives), `GET /metrics` (Prometheus) and `GET /` (a status
//! page: the account, the state, the last message, recent drops with their fix). Off unless
//! asked for (`--listen`, `HERMES_GATEWAY_LISTEN`, `gateway.listen`); bound beyond loopback,
//! everything but the two probes needs the token printed at start (`?token=` or a bearer).
//! While the link needs a person, `GET /` is the pairing page instead ([`pairing`]).

mod pairing;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hermes_core::health;
use hermes_store::Db;
use serde_json::json;
use tokio::sync::watch;

use crate::Messenger;
use crate::metrics::Metrics;
pub use pairing::{PairRequest, Pairing};

/// The link as the listener shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkView {
    /// The state's name (`connected`, `reconnecting`, ...).
    pub state: String,
    /// Unix seconds.
    pub since: i64,
    pub fix: Option<String>,
    /// Only a new link gets it going again: the page offers one.
    pub needs_link: bool,
    /// Changes with every state, so an open page knows to reload.
    pub version: u64,
}

/// What the gateway tells the listener, and the counters its parts share.
#[derive(Debug)]
pub struct ServiceState {
    link: watch::Sender<LinkView>,
    pairing: pairing::PairingState,
    /// The listener's page, once bound: where a link that needs a person is made again.
    page: std::sync::OnceLock<String>,
    pub metrics: Metrics,
}

impl Default for ServiceState {
    fn default() -> ServiceState {
        ServiceState::new()
    }
}

impl ServiceState {
    pub fn new() -> ServiceState {
        let start = LinkView { state: "connecting".to_owned(), ..LinkView::default() };
        ServiceState {
            link: watch::channel(start).0,
            pairing: pairing::PairingState::new(),
            page: std::sync::OnceLock::new(),
            metrics: Metrics::new(),
        }
    }

    /// The link entered a state (what the supervisor reports).
    pub fn set_link(&self, state: &hermes_core::link::LinkState, now: i64) {
        let name = state.name();
        self.metrics.set_link_state(name);
        if let hermes_core::link::LinkState::Reconnecting { cause, attempt: 1, .. } = state {
            use hermes_core::link::Transient;
            let cause = match cause {
                Transient::Network => "network",
                Transient::Timeout => "timeout",
                Transient::StreamError(_) => "stream_error",
                Transient::ServerError(_) => "server_error",
                Transient::Restart => "restart",
            };
            self.metrics.reconnects.get_or_create(&crate::metrics::Cause { cause: cause.to_owned() }).inc();
        }
        let needs_link = state.kind().needs_link();
        let fix = match self.page.get() {
            Some(url) if needs_link => Some(hermes_core::link::relink_on_page(url)),
            _ => state.fix().map(str::to_owned),
        };
        self.link.send_modify(|view| {
            *view = LinkView { state: name.to_owned(), since: now, fix, needs_link, version: view.version + 1 };
        });
    }

    pub fn link(&self) -> LinkView {
        self.link.borrow().clone()
    }

    /// Linking met WhatsApp's request for the account's passkey: not ready, and why, until a
    /// link is made.
    pub fn set_passkey_required(&self, fix: &str, now: i64) {
        self.metrics.set_link_state("passkey_required");
        self.link.send_modify(|view| {
            *view = LinkView {
                state: "passkey_required".to_owned(),
                since: now,
                fix: Some(fix.to_owned()),
                needs_link: true,
                version: view.version + 1,
            };
        });
    }

    /// The listener's page is at `url`: the fix of a link that needs a person points there.
    pub fn set_page_url(&self, url: String) {
        let _ = self.page.set(url);
    }

    /// What the pairing page shows now.
    pub fn set_pairing(&self, pairing: Pairing) {
        self.pairing.set(pairing);
    }

    /// The pairing page's requests, for the one that links (once; `None` after).
    pub fn take_pair_requests(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<PairRequest>> {
        self.pairing.take_requests()
    }
}

#[derive(Clone)]
struct App {
    db: Db,
    messenger: Arc<dyn Messenger>,
    service: Arc<ServiceState>,
    token: Option<String>,
}

impl App {
    /// `?token=...` for links and forms of the page, when the listener asks for one.
    fn token_query(&self) -> String {
        self.token.as_deref().map(|t| format!("?token={t}")).unwrap_or_default()
    }
}

/// The listener, bound: where it listens and the token it asks for (none on loopback).
pub struct Bound {
    pub addr: SocketAddr,
    pub token: Option<String>,
    listener: tokio::net::TcpListener,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Binds `addr` (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<Bound> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let token = health::needs_token(&addr).then(|| format!("{:032x}", rand::random::<u128>()));
    Ok(Bound { addr, token, listener })
}

pub(crate) async fn serve(bound: Bound, db: Db, messenger: Arc<dyn Messenger>, service: Arc<ServiceState>) {
    let app = App { db, messenger, service, token: bound.token };
    // The probes answer anyone; the rest asks for the token beyond loopback.
    let guarded = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/pairing.json", get(pairing::status))
        .route("/pair", axum::routing::post(pairing::request))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), guard));
    let router = axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(app);
    if let Err(e) = axum::serve(bound.listener, router).await {
        tracing::error!(error = %e, "the HTTP listener stopped");
    }
}

/// Lets a request through when there is no token, or it carries the token (compared in
/// constant time) as `?token=` or a bearer header.
async fn guard(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use subtle::ConstantTimeEq as _;
    if app.token.is_none() && !headers.get("host").and_then(|h| h.to_str().ok()).is_some_and(health::loopback_host) {
        return (
            StatusCode::FORBIDDEN,
            "this gateway's listener answers its own machine only: open it as http://127.0.0.1:PORT/\n",
        )
            .into_response();
    }
    if let Some(token) = &app.token {
        let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let given = q.get("token").map(String::as_str).or(bearer).unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                "this gateway's listener is not on loopback: add ?token= (in state/gateway.json, http_token)\n",
            )
                .into_response();
        }
    }
    let mut response = next.run(request).await;
    // The page may show a QR code or a token-bearing link: never cached, framed, or referred
    // to another site. (`same-origin`, not `no-referrer`: with that, a browser posts the
    // page's own forms with `Origin: null`, and `pairing::request` would refuse them.)
    let headers = response.headers_mut();
    for (name, value) in
        [("cache-control", "no-store"), ("x-frame-options", "DENY"), ("referrer-policy", "same-origin")]
    {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// The counts the probes and the page read.
struct Counts {
    waiting: i64,
    unsent: i64,
    oldest_unsent: Option<i64>,
    oldest_waiting: Option<i64>,
    last_received: Option<i64>,
}

async fn counts(db: &Db) -> Option<Counts> {
    db.call(|s| {
        Ok(Counts {
            waiting: s.pending_count()?,
            unsent: s.unsent_count()?,
            oldest_unsent: s.oldest_unsent()?,
            oldest_waiting: s.oldest_waiting()?,
            last_received: s.last_received()?,
        })
    })
    .await
    .inspect_err(|e| tracing::warn!(error = %e, "the journal cannot be read for a health check"))
    .ok()
}

async fn readyz(State(app): State<App>) -> Response {
    let link = app.service.link();
    let counts = counts(&app.db).await;
    let now = hermes_store::clock::now();
    let facts = health::Facts {
        state: &link.state,
        fix: link.fix.as_deref(),
        connected: *app.messenger.connected().borrow(),
        // The storage guard turns a full disk into `storage_paused`; a journal that cannot even
        // be read is not writable either.
        journal_writable: counts.is_some(),
        oldest_unsent_secs: counts.as_ref().and_then(|c| c.oldest_unsent).map(|at| now - at),
    };
    match health::readiness(&facts) {
        Ok(()) => (StatusCode::OK, axum::Json(json!({ "ready": true, "state": link.state, "since": link.since })))
            .into_response(),
        Err(n) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "ready": false, "state": n.state, "reason": n.reason, "fix": n.fix, "since": link.since }),
            ),
        )
            .into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    if let Some(c) = counts(&app.db).await {
        let m = &app.service.metrics;
        m.journal_waiting.set(c.waiting);
        m.outbox_unsent.set(c.unsent);
        m.oldest_waiting_seconds.set(c.oldest_waiting.map_or(0, |t| (hermes_store::clock::now() - t).max(0)));
    }
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.service.metrics.encode(),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn when(t: i64) -> String {
    let ago = hermes_store::clock::now() - t;
    match ago {
        i64::MIN..60 => format!("{ago} s ago"),
        60..3600 => format!("{} min ago", ago / 60),
        3600..86_400 => format!("{} h ago", ago / 3600),
        _ => format!("{} days ago", ago / 86_400),
    }
}

/// The status page: plain HTML, nothing fetched from anywhere.
async fn page(State(app): State<App>) -> Response {
    let link = app.service.link();
    let unknown = if link.needs_link { "(not linked)" } else { "(not known yet)" };
    let account = app.messenger.account().and_then(|a| a.phone).map_or_else(|| unknown.to_owned(), |p| format!("+{p}"));
    let counts = counts(&app.db).await;
    let since = hermes_store::clock::now() - 86_400;
    let drops = app.db.call(move |s| s.drops_since(since)).await.unwrap_or_default();
    // The status page refreshes its counts; the pairing page reloads only when the code changes.
    let refresh = if link.needs_link { "" } else { "<meta http-equiv=\"refresh\" content=\"10\">" };
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">{refresh}\
         <title>hermes</title><style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:50em}}\
         td,th{{padding:.2em .8em;text-align:left;vertical-align:top}}.bad{{color:#a00}}\
         .code{{font:bold 2em monospace;letter-spacing:.1em}}</style></head><body>",
    );
    html.push_str("<h1>hermes WhatsApp gateway</h1><table>");
    let state_class = if link.state == "connected" { "" } else { " class=\"bad\"" };
    html.push_str(&format!("<tr><th>Account</th><td>{}</td></tr>", esc(&account)));
    html.push_str(&format!(
        "<tr><th>State</th><td{state_class} id=\"state\">{}</td></tr><tr><th>Since</th><td>{}</td></tr>",
        esc(&link.state),
        if link.since > 0 { when(link.since) } else { "-".to_owned() }
    ));
    if let Some(fix) = &link.fix {
        html.push_str(&format!("<tr><th>Fix</th><td>{}</td></tr>", esc(fix)));
    }
    if let Some(c) = &counts {
        html.push_str(&format!(
            "<tr><th>Last message</th><td>{}</td></tr><tr><th>Waiting</th><td>{} message(s)</td></tr>\
             <tr><th>To send</th><td>{} message(s)</td></tr>",
            c.last_received.map_or("none yet".to_owned(), when),
            c.waiting,
            c.unsent
        ));
    }
    html.push_str("</table>");
    if link.needs_link {
        html.push_str(&pairing::section(&app, link.version).await);
    } else {
        html.push_str(&pairing::reload_script(&app.token_query(), app.service.pairing.get().0, link.version));
    }
    html.push_str("<h2>Dropped in the last 24 hours</h2>");
    if drops.is_empty() {
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<table><tr><th>When</th><th>Sender</th><th>Why</th><th>Fix</th></tr>");
        for d in drops.iter().rev().take(50) {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                when(d.at),
                esc(&d.sender.to_string()),
                esc(d.rule.as_str()),
                esc(d.hint.as_deref().unwrap_or(""))
            ));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    Html(html).into_response()
}
