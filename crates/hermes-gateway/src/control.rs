//! The gateway's control endpoint on 127.0.0.1, for `hermes send` and health checks.
//!
//! Its address and a random token are written to `HERMES_HOME/state/gateway.json` (0600):
//! only someone who can read the user's files can send through the gateway. A message sent
//! this way goes through the outbox like any reply: chunked, under ids chosen first, sent in
//! order, and kept if WhatsApp is down until it is back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hermes_core::format;
use hermes_core::identity::Jid;
use hermes_whatsapp::messenger::{Messenger, new_message_id};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::db::Db;
use crate::{Options, now_secs};

/// What `state/gateway.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlInfo {
    pub pid: u32,
    pub url: String,
    pub token: String,
    #[serde(skip)]
    path: PathBuf,
}

/// Where the running gateway's control address is written.
pub fn control_file(state_dir: &Path) -> PathBuf {
    state_dir.join("gateway.json")
}

#[derive(Clone)]
struct App {
    db: Db,
    wake: Arc<Notify>,
    messenger: Messenger,
    token: String,
    home: Option<String>,
}

#[derive(Deserialize)]
struct SendRequest {
    /// A chat as people write it; the home channel when absent.
    to: Option<String>,
    text: String,
}

pub(crate) async fn start(
    opts: &Options,
    db: Db,
    wake: Arc<Notify>,
) -> std::io::Result<(ControlInfo, impl Future<Output = ()> + Send + 'static)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let token = format!("{:032x}", rand::random::<u128>());
    let info = ControlInfo {
        pid: std::process::id(),
        url: format!("http://{}", listener.local_addr()?),
        token: token.clone(),
        path: control_file(&opts.state_dir),
    };
    write_private(&info.path, &serde_json::to_vec(&info).map_err(std::io::Error::other)?)?;
    let app = App { db, wake, messenger: opts.messenger.clone(), token, home: opts.config.home_channel.value.clone() };
    let router = axum::Router::new()
        .route("/send", axum::routing::post(send))
        .route("/health", axum::routing::get(health))
        .with_state(app);
    Ok((info, async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the control endpoint stopped");
        }
    }))
}

pub(crate) fn remove(info: &ControlInfo) {
    let _ = std::fs::remove_file(&info.path);
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    let expected = format!("Bearer {}", app.token);
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

async fn send(State(app): State<App>, headers: HeaderMap, Json(req): Json<SendRequest>) -> Response {
    if !authorized(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "wrong or missing token (it is in HERMES_HOME/state/gateway.json)");
    }
    let Some(target) = req.to.or(app.home.clone()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "no chat given and WHATSAPP_HOME_CHANNEL is not set: use --to whatsapp:CHAT, or set WHATSAPP_HOME_CHANNEL in .env",
        );
    };
    let chat = match Jid::parse_chat(&target) {
        Ok(j) => j.to_string(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let messages: Vec<(String, String)> = format::chunk(&format::to_whatsapp(&req.text), format::MAX_MESSAGE_CHARS)
        .into_iter()
        .map(|part| (new_message_id(), part))
        .collect();
    if messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the message is empty");
    }
    let ids: Vec<String> = messages.iter().map(|(id, _)| id.clone()).collect();
    let c = chat.clone();
    if let Err(e) = app.db.call(move |s| s.enqueue(&c, &messages, now_secs())).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    app.wake.notify_one();
    // Wait a little for the sender, so the caller learns whether it went out.
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let ids = ids.clone();
            let all = app
                .db
                .call(move |s| {
                    let mut all = true;
                    for id in &ids {
                        all &= matches!(s.sent_at(id)?, Some(Some(_)));
                    }
                    Ok(all)
                })
                .await;
            if matches!(all, Ok(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok();
    let status = if sent { StatusCode::OK } else { StatusCode::ACCEPTED };
    (status, Json(json!({"chat": chat, "ids": ids, "sent": sent}))).into_response()
}

async fn health(State(app): State<App>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return error(StatusCode::UNAUTHORIZED, "wrong or missing token");
    }
    let counts = app.db.call(|s| Ok((s.pending_count()?, s.unsent_count()?))).await;
    match counts {
        Ok((waiting, unsent)) => {
            Json(json!({"connected": app.messenger.is_connected(), "waiting": waiting, "unsent": unsent}))
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
