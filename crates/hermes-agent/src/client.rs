//! The chat-completions client, its retries and its errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the model is, and which one.
#[derive(Clone)]
pub struct Endpoint {
    /// Up to and including the version, e.g. `https://openrouter.ai/api/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never in a log line.
        f.debug_struct("Endpoint")
            .field("base_url", &crate::redact_url(&self.base_url))
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The base URL a provider name stands for, when no `base_url` is configured.
    pub fn provider_base_url(provider: Option<&str>) -> Option<&'static str> {
        Some(match provider.unwrap_or("openrouter") {
            "openrouter" => "https://openrouter.ai/api/v1",
            "openai" => "https://api.openai.com/v1",
            "ollama" => "http://127.0.0.1:11434/v1",
            _ => return None,
        })
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }
}

/// How hard to try.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// For one attempt, from connecting to the last byte of the answer.
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    System,
    User,
    Assistant,
}

/// One turn of the conversation: its text, and the images that go with it (as `data:` URLs).
///
/// On the wire a message without images is `{"role", "content": "text"}`; one with images
/// carries OpenAI's content parts, `[{"type": "text"}, {"type": "image_url"}...]`, which
/// every vision-capable chat-completions server reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Speaker,
    pub content: String,
    pub images: Vec<String>,
}

impl Message {
    pub fn new(role: Speaker, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), images: Vec::new() }
    }

    /// A message with images, each a `data:` (or `https:`) URL.
    pub fn with_images(role: Speaker, content: impl Into<String>, images: Vec<String>) -> Message {
        Message { role, content: content.into(), images }
    }
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_json::json;
        let content = if self.images.is_empty() {
            json!(self.content)
        } else {
            let mut parts = vec![json!({ "type": "text", "text": self.content })];
            parts.extend(self.images.iter().map(|url| json!({ "type": "image_url", "image_url": { "url": url } })));
            serde_json::Value::Array(parts)
        };
        json!({ "role": self.role, "content": content }).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Message, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Content {
            Text(String),
            Parts(Vec<Part>),
        }
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Part {
            Text { text: String },
            ImageUrl { image_url: ImageUrl },
        }
        #[derive(Deserialize)]
        struct ImageUrl {
            url: String,
        }
        #[derive(Deserialize)]
        struct Wire {
            role: Speaker,
            content: Option<Content>,
        }
        let wire = Wire::deserialize(d)?;
        let (mut content, mut images) = (String::new(), Vec::new());
        match wire.content {
            Some(Content::Text(t)) => content = t,
            Some(Content::Parts(parts)) => {
                for part in parts {
                    match part {
                        Part::Text { text } => content.push_str(&text),
                        Part::ImageUrl { image_url } => images.push(image_url.url),
                    }
                }
            }
            None => {}
        }
        Ok(Message { role: wire.role, content, images })
    }
}

/// Why there is no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The server answered with an error status (after retries, for 429 and 5xx).
    #[error("the model server answered {status}: {body}")]
    Status { status: u16, body: String },
    /// No answer within the timeout (after retries).
    #[error("the model server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server could not be reached (after retries).
    #[error("cannot reach the model server: {0}")]
    Unreachable(String),
    /// The answer was not a chat completion, or had no text.
    #[error("the model server's answer is not a chat completion: {0}")]
    BadResponse(String),
    /// This machine could not make the request at all: out of file descriptors, sockets or
    /// memory. Nothing is wrong with the model; the caller should try again later rather
    /// than tell anyone the model failed.
    #[error("this machine is out of a resource needed to reach the model: {0}")]
    Local(String),
}

impl AgentError {
    fn retryable(&self) -> bool {
        match self {
            AgentError::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            AgentError::Timeout(_) | AgentError::Unreachable(_) => true,
            AgentError::BadResponse(_) => false,
            // The caller backs off longer than a request retry would.
            AgentError::Local(_) => false,
        }
    }

    /// A short stable name for the kind of failure (metrics, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Status { status: 429, .. } => "rate_limited",
            AgentError::Status { status: 401 | 403, .. } => "unauthorized",
            AgentError::Status { status, .. } if *status >= 500 => "server_error",
            AgentError::Status { .. } => "refused",
            AgentError::Timeout(_) => "timeout",
            AgentError::Unreachable(_) => "unreachable",
            AgentError::BadResponse(_) => "bad_response",
            AgentError::Local(_) => "local",
        }
    }

    /// The request never left this machine for want of a local resource (see [`AgentError::Local`]).
    pub fn is_local(&self) -> bool {
        matches!(self, AgentError::Local(_))
    }

    /// The model refused a request because it carried images: a 4xx whose body names them
    /// (text-only models, or a provider that does not take image parts).
    pub fn refuses_images(&self) -> bool {
        match self {
            AgentError::Status { status: 400 | 404 | 413 | 415 | 422, body } => {
                let body = body.to_ascii_lowercase();
                ["image", "vision", "multimodal", "multi-modal"].iter().any(|w| body.contains(w))
            }
            _ => false,
        }
    }

    /// What the sender reads when the model refused even the message without its image.
    pub fn refused_images_reply() -> &'static str {
        "Sorry, I can't look at images with the AI model this gateway uses. Please describe it in words."
    }

    /// One short, honest sentence for the person waiting for an answer.
    pub fn for_user(&self) -> &'static str {
        match self {
            AgentError::Status { status: 401 | 403, .. } => {
                "Sorry, I can't answer right now: the AI model refused this gateway's credentials. The owner has been told in the log."
            }
            AgentError::Status { status: 429, .. } => {
                "Sorry, I can't answer right now: the AI model is rate-limited. Please try again in a few minutes."
            }
            AgentError::Status { .. } | AgentError::BadResponse(_) => {
                "Sorry, I can't answer right now: the AI model returned an error. Please try again later."
            }
            AgentError::Timeout(_) | AgentError::Unreachable(_) | AgentError::Local(_) => {
                "Sorry, I can't answer right now: the AI model is not reachable. Please try again later."
            }
        }
    }
}

/// A chat-completions client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Agent {
    http: reqwest::Client,
    endpoint: Endpoint,
    retry: Retry,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [Message],
}

#[derive(Deserialize)]
struct Response {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: Reply,
}

#[derive(Deserialize)]
struct Reply {
    content: Option<String>,
}

impl Agent {
    pub fn new(endpoint: Endpoint, retry: Retry) -> Agent {
        let http = reqwest::Client::builder()
            .user_agent(concat!("hermes/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10).min(retry.timeout))
            .timeout(retry.timeout)
            .build()
            .unwrap_or_default();
        Agent { http, endpoint, retry }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Asks for the next message of the conversation; retries what is worth retrying.
    pub async fn complete(&self, messages: &[Message]) -> Result<String, AgentError> {
        let mut attempt = 1;
        loop {
            let (result, retry_after) = self.attempt(messages).await;
            match result {
                Ok(text) => return Ok(text),
                Err(e) if e.retryable() && attempt < self.retry.attempts => {
                    let delay = retry_after.unwrap_or_else(|| self.backoff(attempt)).min(self.retry.max_delay);
                    tracing::warn!(attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "model request failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// hermes' one backoff ([`hermes_core::backoff`]), from `first_delay` up to `max_delay`.
    fn backoff(&self, attempt: u32) -> Duration {
        let backoff = hermes_core::backoff::Backoff { base: self.retry.first_delay, cap: self.retry.max_delay };
        backoff.delay(attempt.saturating_sub(1), rand::random::<f64>())
    }

    async fn attempt(&self, messages: &[Message]) -> (Result<String, AgentError>, Option<Duration>) {
        let mut req = self.http.post(self.endpoint.url()).json(&Request { model: &self.endpoint.model, messages });
        if let Some(key) = &self.endpoint.api_key {
            req = req.bearer_auth(key);
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => return (Err(self.transport_error(e)), None),
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return (Err(self.transport_error(e)), None),
        };
        if !status.is_success() {
            let body = String::from_utf8_lossy(&body).chars().take(300).collect();
            return (Err(AgentError::Status { status: status.as_u16(), body }), retry_after);
        }
        let parsed: Response = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => return (Err(AgentError::BadResponse(e.to_string())), None),
        };
        let text = parsed.choices.into_iter().next().and_then(|c| c.message.content).filter(|t| !t.trim().is_empty());
        (text.ok_or_else(|| AgentError::BadResponse("no text in the first choice".to_owned())), None)
    }

    fn transport_error(&self, e: reqwest::Error) -> AgentError {
        transport_error(e, self.retry.timeout, &self.endpoint.base_url)
    }
}

/// How long the server asked to be left alone (`Retry-After`, in seconds), if it said.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A request that got no answer, said without the URL's credentials: a timeout, or the cause
/// (refused, DNS, TLS), told apart from this machine running out of descriptors or memory.
pub(crate) fn transport_error(e: reqwest::Error, timeout: Duration, base_url: &str) -> AgentError {
    // The URL may carry credentials (`user:pass@`, `?api_key=`): never in a message.
    let e = e.without_url();
    if e.is_timeout() {
        AgentError::Timeout(timeout)
    } else {
        // The chain names the cause: refused, DNS, TLS. (The key is in a header, not the URL.)
        let mut why = e.to_string();
        let mut local = false;
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            why = format!("{why}: {s}");
            local |= s.downcast_ref::<std::io::Error>().is_some_and(out_of_local_resources);
            source = s.source();
        }
        let why = format!("{why} (at {})", crate::redact_url(base_url));
        if local { AgentError::Local(why) } else { AgentError::Unreachable(why) }
    }
}

/// Out of descriptors (per process or system-wide), socket buffers or memory.
fn out_of_local_resources(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let errno = Errno::from_io_error(e);
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM].iter().any(|x| Some(*x) == errno)
}

#[cfg(test)]
mod tests {
    use super::out_of_local_resources;

    #[test]
    fn running_out_of_descriptors_or_memory_is_local_not_the_model() {
        for errno in [24, 23, 105, 12] {
            assert!(out_of_local_resources(&std::io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        for errno in [111, 113, 110] {
            assert!(!out_of_local_resources(&std::io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        assert!(!out_of_local_resources(&std::io::Error::other("tls handshake")));
    }
}
