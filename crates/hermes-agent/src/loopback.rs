//! A chat-completions server on 127.0.0.1 that answers without a model.
//!
//! It is the demo's offline responder (its answers say so), and the LLM that tests and
//! benchmarks talk to over real HTTP: it records every request and can fail, hang or hold
//! its answers on demand. It never listens anywhere but loopback.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::{Message, Speaker};

/// What the next request gets instead of an answer.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    /// This HTTP status, with an error body.
    Status(u16),
    /// No answer at all (the client's timeout fires).
    Hang,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Vec<Message>>>,
    failures: Mutex<VecDeque<Failure>>,
    arrived: Notify,
}

/// The running server; stops when dropped.
pub struct LoopbackLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    held: watch::Sender<bool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for LoopbackLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackLlm").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// The offline responder's answer: labelled, and built from what it was told.
pub fn offline_answer(messages: &[Message]) -> String {
    let last = messages.iter().rev().find(|m| m.role == Speaker::User).map_or("", |m| m.content.as_str());
    let turn = messages.iter().filter(|m| m.role == Speaker::User).count();
    format!(
        "[offline demo responder, no AI model configured] You wrote: \"{}\" (message {turn} of this conversation). \
         Set `model:` in config.yaml and an API key in .env for real answers.",
        last.trim()
    )
}

impl LoopbackLlm {
    /// Starts on 127.0.0.1 (`port` 0 picks one).
    pub async fn start(port: u16) -> std::io::Result<LoopbackLlm> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (held, held_rx) = watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .route("/v1/models", axum::routing::get(|| async { Json(json!({"data": [{"id": "offline"}]})) }))
            .with_state((shared.clone(), held_rx));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(LoopbackLlm { addr, shared, held, _stop: stop })
    }

    /// The base URL to configure (`.../v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The next request(s) fail this way, in order.
    pub fn fail_next(&self, failure: Failure) {
        self.shared.failures.lock().expect("not poisoned").push_back(failure);
    }

    /// While held, requests are recorded but not answered until released.
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// Every request so far: its messages.
    pub fn requests(&self) -> Vec<Vec<Message>> {
        self.shared.requests.lock().expect("not poisoned").clone()
    }

    /// Waits until at least `n` requests arrived; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.shared.arrived.notified();
                if self.shared.requests.lock().expect("not poisoned").len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

type AppState = (Arc<Shared>, watch::Receiver<bool>);

async fn complete(State((shared, mut held)): State<AppState>, Json(body): Json<Value>) -> Response {
    let messages: Vec<Message> = match serde_json::from_value(body.get("messages").cloned().unwrap_or(Value::Null)) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": e.to_string()}}))).into_response(),
    };
    let model = body.get("model").and_then(Value::as_str).unwrap_or("offline").to_owned();
    shared.requests.lock().expect("not poisoned").push(messages.clone());
    shared.arrived.notify_waiters();
    let failure = shared.failures.lock().expect("not poisoned").pop_front();
    match failure {
        Some(Failure::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, Json(json!({"error": {"message": "injected failure"}}))).into_response();
        }
        Some(Failure::Hang) => std::future::pending::<()>().await,
        None => {}
    }
    let _ = held.wait_for(|h| !*h).await;
    Json(json!({
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": offline_answer(&messages)}}],
    }))
    .into_response()
}
