//! A chat-completions server on 127.0.0.1 that answers without a model.
//!
//! It is the demo's offline responder (its answers say so), and the LLM that tests and
//! benchmarks talk to over real HTTP: it records every request and can fail, hang or hold
//! its answers on demand. It never listens anywhere but loopback.

pub mod real;

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

/// One request to the transcription endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcription {
    pub model: String,
    pub file_name: String,
    pub mime: String,
    pub audio: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Vec<Message>>>,
    failures: Mutex<VecDeque<Failure>>,
    arrived: Notify,
    /// The next answers, in order, instead of the offline responder's.
    scripted: Mutex<VecDeque<String>>,
    /// Answer chat requests that carry images with 400, as a text-only model does.
    refuse_images: std::sync::atomic::AtomicBool,
    transcriptions: Mutex<Vec<Transcription>>,
    /// The texts asked to be spoken.
    spoken: Mutex<Vec<String>>,
    /// What the next transcriptions say, in order; then `transcript of N bytes`.
    transcripts: Mutex<VecDeque<Result<String, u16>>>,
    /// Every request body as it came (tools, tool results, `stream`).
    bodies: Mutex<Vec<Value>>,
    /// What a request whose new user message contains a needle is answered: (needle, answer).
    rules: Mutex<Vec<(String, Rule)>>,
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
            .route("/v1/audio/transcriptions", axum::routing::post(transcribe))
            .route("/v1/audio/speech", axum::routing::post(speak))
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

    /// The next chat request is answered with `text`.
    pub fn answer_next(&self, text: &str) {
        self.shared.scripted.lock().expect("not poisoned").push_back(text.to_owned());
    }

    /// From now on, chat requests with images get a 400 naming them, as a text-only model's do.
    pub fn refuse_images(&self, on: bool) {
        self.shared.refuse_images.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The next transcription says `text` (`Err(status)`: fails with that HTTP status).
    pub fn next_transcript(&self, text: Result<&str, u16>) {
        self.shared.transcripts.lock().expect("not poisoned").push_back(text.map(str::to_owned));
    }

    /// Every text asked to be spoken so far.
    pub fn spoken(&self) -> Vec<String> {
        self.shared.spoken.lock().expect("not poisoned").clone()
    }

    /// Every transcription request so far.
    pub fn transcriptions(&self) -> Vec<Transcription> {
        self.shared.transcriptions.lock().expect("not poisoned").clone()
    }

    /// While held, requests are recorded but not answered until released.
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// Every request so far: its messages.
    /// Answers a request whose last message is the user's and contains `needle` with a call of
    /// the tool `name` with `arguments` (as an agent's model would); the tool's result is then
    /// answered with `Done: <result>`. For the tests that drive Hermes Agent's tools.
    pub fn call_tool_when(&self, needle: &str, name: &str, arguments: Value) {
        let rule = Rule::Tool { name: name.to_owned(), arguments: arguments.to_string() };
        self.shared.rules.lock().expect("not poisoned").push((needle.to_owned(), rule));
    }

    /// Answers every request whose new user message contains `needle` with `text` (unlike
    /// [`LoopbackLlm::answer_next`], side requests an agent makes meanwhile do not take it).
    pub fn answer_when(&self, needle: &str, text: &str) {
        self.shared.rules.lock().expect("not poisoned").push((needle.to_owned(), Rule::Text(text.to_owned())));
    }

    /// Every request body as it came.
    pub fn bodies(&self) -> Vec<Value> {
        self.shared.bodies.lock().expect("not poisoned").clone()
    }

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
    let Some(raw) = body.get("messages").and_then(Value::as_array) else {
        let error = json!({"error": {"message": "'messages' is required"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    // An agent's requests also carry tool calls and results: read what is a message of ours,
    // keep the rest in the raw body.
    let messages: Vec<Message> = raw.iter().filter_map(|m| serde_json::from_value(m.clone()).ok()).collect();
    let last_is_tool = raw.last().and_then(|m| m.get("role")).and_then(Value::as_str) == Some("tool");
    let model = body.get("model").and_then(Value::as_str).unwrap_or("offline").to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    shared.bodies.lock().expect("not poisoned").push(body.clone());
    shared.requests.lock().expect("not poisoned").push(messages.clone());
    shared.arrived.notify_waiters();
    if shared.refuse_images.load(std::sync::atomic::Ordering::Relaxed) && messages.iter().any(|m| !m.images.is_empty())
    {
        let error =
            json!({"error": {"message": "Invalid content type. image_url is only supported by certain models."}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
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
    let answer = if last_is_tool {
        let result = raw.last().and_then(|m| m.get("content")).map(text_of).unwrap_or_default();
        Answer::Text(format!("Done: {}", result.chars().take(300).collect::<String>()))
    } else {
        let last_user = messages.last().filter(|m| m.role == Speaker::User).map(|m| m.content.clone());
        let rule = last_user.and_then(|text| {
            let rules = shared.rules.lock().expect("not poisoned");
            rules.iter().find(|(needle, _)| text.contains(needle.as_str())).map(|(_, r)| r.clone())
        });
        match rule {
            Some(Rule::Tool { name, arguments }) => Answer::Tool { name, arguments },
            Some(Rule::Text(text)) => Answer::Text(text),
            None => Answer::Text(
                shared.scripted.lock().expect("not poisoned").pop_front().unwrap_or_else(|| offline_answer(&messages)),
            ),
        }
    };
    if stream { sse(&model, &answer) } else { whole(&model, &answer) }
}

/// A scripted answer to requests that contain a needle.
#[derive(Clone)]
enum Rule {
    Text(String),
    Tool { name: String, arguments: String },
}

/// What the loopback model answers: text, or a call of a tool.
enum Answer {
    Text(String),
    Tool { name: String, arguments: String },
}

fn tool_call(name: &str, arguments: &str) -> Value {
    json!([{"index": 0, "id": "call_loopback_1", "type": "function", "function": {"name": name, "arguments": arguments}}])
}

fn whole(model: &str, answer: &Answer) -> Response {
    let (message, finish) = match answer {
        Answer::Text(content) => (json!({"role": "assistant", "content": content}), "stop"),
        Answer::Tool { name, arguments } => {
            (json!({"role": "assistant", "content": null, "tool_calls": tool_call(name, arguments)}), "tool_calls")
        }
    };
    Json(json!({
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }))
    .into_response()
}

/// The same answer as server-sent events, as OpenAI streams it (`"stream": true`, which agents
/// such as Hermes ask for): a role chunk, the content (or the tool call), a last chunk with the
/// finish reason and usage, then `[DONE]`.
fn sse(model: &str, answer: &Answer) -> Response {
    let chunk = |delta: Value, finish: Option<&str>| {
        let mut c = json!({
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if finish.is_some() {
            c["usage"] = json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15});
        }
        format!("data: {c}\n\n")
    };
    let mut body = chunk(json!({"role": "assistant", "content": ""}), None);
    let finish = match answer {
        Answer::Text(content) => {
            body.push_str(&chunk(json!({"content": content}), None));
            "stop"
        }
        Answer::Tool { name, arguments } => {
            body.push_str(&chunk(json!({"tool_calls": tool_call(name, arguments)}), None));
            "tool_calls"
        }
    };
    body.push_str(&chunk(json!({}), Some(finish)));
    body.push_str("data: [DONE]\n\n");
    ([(axum::http::header::CONTENT_TYPE, "text/event-stream"), (axum::http::header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

/// A message's text, whether a string or content parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

async fn transcribe(State((shared, _)): State<AppState>, mut form: axum::extract::Multipart) -> Response {
    let mut t =
        Transcription { model: String::new(), file_name: String::new(), mime: String::new(), audio: Vec::new() };
    let mut format = String::from("json");
    while let Ok(Some(field)) = form.next_field().await {
        match field.name().unwrap_or_default() {
            "file" => {
                t.file_name = field.file_name().unwrap_or_default().to_owned();
                t.mime = field.content_type().unwrap_or_default().to_owned();
                t.audio = field.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            }
            "model" => t.model = field.text().await.unwrap_or_default(),
            "response_format" => format = field.text().await.unwrap_or_default(),
            _ => {}
        }
    }
    if t.audio.is_empty() || t.model.is_empty() {
        let error = json!({"error": {"message": "'file' and 'model' are required"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let size = t.audio.len();
    shared.transcriptions.lock().expect("not poisoned").push(t);
    shared.arrived.notify_waiters();
    let next = shared.transcripts.lock().expect("not poisoned").pop_front();
    let text = match next {
        Some(Ok(text)) => text,
        Some(Err(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, Json(json!({"error": {"message": "injected failure"}}))).into_response();
        }
        None => format!("transcript of {size} bytes"),
    };
    if format == "text" { text.into_response() } else { Json(json!({ "text": text })).into_response() }
}

/// OpenAI's `POST /audio/speech`, answered with an Ogg Opus container: real Ogg framing and
/// Opus headers, one packet per character whose size follows the character (a space is a
/// pause), so a client can read its length and shape. The packets are not decodable speech:
/// nothing here synthesises a voice.
async fn speak(State((shared, _)): State<AppState>, Json(body): Json<Value>) -> Response {
    let Some(input) = body.get("input").and_then(Value::as_str) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": "'input' is required"}}))).into_response();
    };
    if body.get("response_format").and_then(Value::as_str) != Some("opus") {
        let error = json!({"error": {"message": "this loopback server speaks response_format \"opus\" only"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    shared.spoken.lock().expect("not poisoned").push(input.to_owned());
    shared.arrived.notify_waiters();
    let packets: Vec<Vec<u8>> =
        input.chars().map(|c| vec![0xfc; if c.is_whitespace() { 3 } else { 40 + (c as usize % 60) }]).collect();
    let file = hermes_core::media::ogg::write_opus(&packets, 312, "hermes loopback");
    ([(axum::http::header::CONTENT_TYPE, "audio/ogg")], file).into_response()
}
