//! The gateway's HTTP listener, for running it unattended: `GET /healthz` (the process runs its
//! loops), `GET /readyz` (linked, connected, keeping and sending; otherwise 503 with the state,
//! the reason and the fix `status` gives), `GET /metrics` (Prometheus) and `GET /` (a status
//! page: the account, the state, the last message, recent drops with their fix). Off unless
//! asked for (`--listen`, `HERMES_GATEWAY_LISTEN`, `gateway.listen`). Everything but the two
//! probes needs the listener's token (`?token=` or a bearer), on loopback too: any local
//! process can reach 127.0.0.1, and the pairing page links the gateway to whichever phone asks
//! first, so it gets the bar the control endpoint has (a secret only the owner can read, in
//! `state/gateway.json`). While the link needs a person, `GET /` is the pairing page instead
//! ([`pairing`]).
//!
//! Connections are served by hyper directly, not `axum::serve`, for the limits a listener open
//! to local neighbours needs: a deadline for a request's headers and one for a whole request,
//! and a cap on connections at once, so half-sent requests cannot pile up until the process
//! runs out of descriptors (which the storage guard once read as a full disk).

mod pairing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
        self.set_link_with_fix(state, now, None);
    }

    /// `set_link`, with a fix that knows more than the state's own (`LinkState::fix`): a storage
    /// pause on a volume smaller than the reserve, where freeing space cannot help and only a
    /// lower `WHATSAPP_MIN_FREE_MB` or a bigger volume does (`StorageGuard::shortage` words it).
    pub fn set_link_with_fix(&self, state: &hermes_core::link::LinkState, now: i64, better: Option<String>) {
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
            _ => better.or_else(|| state.fix().map(str::to_owned)),
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
    token: String,
}

impl App {
    /// `?token=...` for links and forms of the page.
    fn token_query(&self) -> String {
        format!("?token={}", self.token)
    }
}

/// How long a client may take to send a request's headers: a browser or a probe sends them at
/// once; a client that trickles them is holding a connection, not asking.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, its body and the answer included: the slowest page waits
/// a few seconds for a first QR code.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once. Beyond it new ones wait in the kernel's backlog until one ends
/// (each ends within the timeouts above): a flood costs this many descriptors, never all.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// A form or a probe is small; nothing this listener takes needs more.
const MAX_BODY: usize = 16 * 1024;

/// The listener, bound: where it listens and the token everything but the probes asks for.
pub struct Bound {
    pub addr: SocketAddr,
    pub token: String,
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
    let token = format!("{:032x}", rand::random::<u128>());
    Ok(Bound { addr, token, listener })
}

/// The listener's routes: the probes answer anyone, the rest asks for the token.
fn router(app: App) -> axum::Router {
    let guarded = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/pairing.json", get(pairing::status))
        .route("/pair", axum::routing::post(pairing::request))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), guard));
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(deadline))
        .with_state(app)
}

pub(crate) async fn serve(bound: Bound, db: Db, messenger: Arc<dyn Messenger>, service: Arc<ServiceState>) {
    let router = router(App { db, messenger, service, token: bound.token });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // Connections live here: dropping `serve` (the pipeline stopping) closes them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reaped as they end, so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            Some(_) = connections.join_next() => continue,
        };
        let stream = match bound.listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: a neighbour's flood, or a
                // leak. Said, then tried again shortly: the probes must come back when it ends.
                tracing::warn!(error = %e, "the HTTP listener cannot accept a connection; trying again shortly");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let _slot = slot;
            // hyper's header deadline also runs while a kept-alive connection waits for its
            // next request, so an idle connection ends too.
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "an HTTP connection ended");
            }
        });
    }
}

/// A request that is not done (its body read, its answer made) by [`REQUEST_TIMEOUT`] is
/// answered 408 and its connection freed: a body trickled a byte at a time holds nothing.
async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "the request took too long\n").into_response(),
    }
}

/// Lets a request through when it carries the token (compared in constant time) as `?token=`
/// or a bearer header.
async fn guard(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use subtle::ConstantTimeEq as _;
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let given = q.get("token").map(String::as_str).or(bearer).unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(app.token.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            "this page needs the gateway's token: `hermes whatsapp status` prints the address to open \
             (or add ?token= with http_token from HERMES_HOME/state/gateway.json)\n",
        )
            .into_response();
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
