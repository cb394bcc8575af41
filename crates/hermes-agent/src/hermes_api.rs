//! Hermes Agent's API server (`hermes gateway` with `API_SERVER_ENABLED`): the real agent, with
//! its tools, memory, skills and scheduled jobs, over its OpenAI-compatible HTTP API.
//!
//! One request is one *turn*: `POST /v1/chat/completions` with the chat's transcript id
//! (`X-Hermes-Session-Id`: Hermes loads the history itself, so only the new turn is sent), its
//! memory scope (`X-Hermes-Session-Key`) and an `Idempotency-Key` (a turn sent again after a
//! timeout or a crash, with the same body, is answered once). Non-streaming: Hermes' streaming
//! path has no idempotency, interrupts the agent when the client goes away and does not report
//! a rotated session id. The caller keeps the body and decides when to send it again.

use std::time::Duration;

use hermes_core::hermes_api::TranscriptRow;
use serde::Deserialize;
use serde_json::json;

use crate::{AgentError, Message};

/// How long one turn may take: the agent may run tools for a long time, and Hermes has no
/// turn timeout of its own (its proxy mode reads for 30 minutes).
pub const TURN_TIMEOUT: Duration = Duration::from_secs(45 * 60);
/// For everything that is not a turn.
const SHORT_TIMEOUT: Duration = Duration::from_secs(20);

/// The client of one API server. Cheap to clone.
#[derive(Clone)]
pub struct HermesApi {
    turns: reqwest::Client,
    short: reqwest::Client,
    base_url: String,
    key: String,
}

impl std::fmt::Debug for HermesApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HermesApi").field("base_url", &crate::redact_url(&self.base_url)).finish_non_exhaustive()
    }
}

/// One turn to send: its headers, and the body exactly as kept.
#[derive(Clone, Copy, Debug)]
pub struct TurnRequest<'a> {
    pub session_id: &'a str,
    pub memory_key: &'a str,
    pub idempotency_key: &'a str,
    pub body: &'a str,
}

/// The agent's answer to a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnAnswer {
    pub content: String,
    /// The transcript id Hermes answered under (`X-Hermes-Session-Id`): a new one after it
    /// compressed the conversation.
    pub session_id: Option<String>,
}

/// Why a call failed, and when the server said to come back (429, 503).
#[derive(Debug)]
pub struct CallError {
    pub error: AgentError,
    pub retry_after: Option<Duration>,
}

impl From<AgentError> for CallError {
    fn from(error: AgentError) -> CallError {
        CallError { error, retry_after: None }
    }
}

/// What the API server says about itself (`GET /health`, `/v1/capabilities`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// It answered at all.
    pub reachable: bool,
    /// Hermes' version, when it says.
    pub version: Option<String>,
    /// The key was accepted (`None` when that could not be asked).
    pub key_accepted: Option<bool>,
    /// What went wrong, for the user.
    pub problem: Option<String>,
}

/// One of the agent's scheduled jobs (`GET /api/jobs`), as far as delivering its output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub name: Option<String>,
    /// `origin.platform`.
    pub platform: Option<String>,
    /// `origin.chat_id`: for a job made in an API turn, the transcript id it was made under.
    pub chat_id: Option<String>,
    /// When it last ran (as Hermes writes it), if it has.
    pub last_run_at: Option<String>,
    pub last_status: Option<String>,
}

impl HermesApi {
    /// `base_url` up to `/v1`, e.g. `http://127.0.0.1:8642/v1`.
    pub fn new(base_url: &str, key: &str) -> HermesApi {
        let build = |timeout: Duration| {
            reqwest::Client::builder()
                .user_agent(concat!("hermes-whatsapp/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .timeout(timeout)
                .build()
                .unwrap_or_default()
        };
        HermesApi {
            turns: build(TURN_TIMEOUT),
            short: build(SHORT_TIMEOUT),
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The server's root (`base_url` without `/v1`), where `/health` and `/api` are.
    fn root(&self) -> &str {
        self.base_url.strip_suffix("/v1").unwrap_or(&self.base_url)
    }

    /// The body of a turn: the chat's context as the system message and the new user message
    /// (text, with images as content parts). Made once and kept: sent again byte for byte.
    pub fn turn_body(system: &str, user: &Message) -> String {
        json!({
            "model": "hermes-agent",
            "stream": false,
            "messages": [Message::new(crate::Speaker::System, system), user],
        })
        .to_string()
    }

    /// Sends a turn once.
    pub async fn turn(&self, t: &TurnRequest<'_>) -> Result<TurnAnswer, CallError> {
        let response = self
            .turns
            .post(format!("{}/chat/completions", self.base_url))
            .bearer_auth(&self.key)
            .header("Content-Type", "application/json")
            .header("X-Hermes-Session-Id", t.session_id)
            .header("X-Hermes-Session-Key", t.memory_key)
            .header("Idempotency-Key", t.idempotency_key)
            .body(t.body.to_owned())
            .send()
            .await
            .map_err(|e| self.transport_error(e, TURN_TIMEOUT))?;
        let session_id = response.headers().get("X-Hermes-Session-Id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = self.body(response, TURN_TIMEOUT).await?;
        #[derive(Deserialize)]
        struct Completion {
            choices: Vec<Choice>,
        }
        #[derive(Deserialize)]
        struct Choice {
            message: Said,
        }
        #[derive(Deserialize)]
        struct Said {
            content: Option<String>,
        }
        let parsed: Completion = serde_json::from_slice(&body)
            .map_err(|e| AgentError::BadResponse(format!("{e} (from Hermes' API server)")))?;
        let content = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| AgentError::BadResponse("Hermes' answer has no text".to_owned()))?;
        Ok(TurnAnswer { content, session_id })
    }

    /// A session's transcript, oldest first; empty when Hermes has no such session.
    pub async fn transcript(&self, session_id: &str) -> Result<Vec<TranscriptRow>, CallError> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Row>,
        }
        #[derive(Deserialize)]
        struct Row {
            role: Option<String>,
            content: Option<serde_json::Value>,
            timestamp: Option<f64>,
        }
        let path = format!("/api/sessions/{session_id}/messages");
        let list: List = match self.get_json(&path, "a session's messages").await {
            Err(CallError { error: AgentError::Status { status: 404, .. }, .. }) => return Ok(Vec::new()),
            other => other?,
        };
        Ok(list
            .data
            .into_iter()
            .map(|r| TranscriptRow {
                role: r.role.unwrap_or_default(),
                content: match r.content {
                    Some(serde_json::Value::String(s)) => s,
                    // Content parts: their text.
                    Some(serde_json::Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                },
                timestamp: r.timestamp,
            })
            .collect())
    }

    /// Marks a session ended (`/new`), as Hermes' own `/new` does; the transcript stays.
    pub async fn end_session(&self, session_id: &str) -> Result<(), CallError> {
        let response = self
            .short
            .patch(format!("{}/api/sessions/{session_id}", self.root()))
            .bearer_auth(&self.key)
            .json(&json!({ "end_reason": "new_session" }))
            .send()
            .await
            .map_err(|e| self.transport_error(e, SHORT_TIMEOUT))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.body(response, SHORT_TIMEOUT).await.map(|_| ())
    }

    /// An authorized GET under the server's root, as JSON (`what` names it in an error).
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, CallError> {
        let response = self
            .short
            .get(format!("{}{path}", self.root()))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| self.transport_error(e, SHORT_TIMEOUT))?;
        let body = self.body(response, SHORT_TIMEOUT).await?;
        Ok(serde_json::from_slice(&body).map_err(|e| AgentError::BadResponse(format!("{e} ({what})")))?)
    }

    /// The agent's scheduled jobs.
    pub async fn jobs(&self) -> Result<Vec<Job>, CallError> {
        let value: serde_json::Value = self.get_json("/api/jobs", "the job list").await?;
        let list = value.get("jobs").or_else(|| value.get("data")).unwrap_or(&value);
        let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        Ok(list
            .as_array()
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|j| {
                        let origin = j.get("origin").cloned().unwrap_or_default();
                        Some(Job {
                            id: text(j, "id")?,
                            name: text(j, "name"),
                            platform: text(&origin, "platform"),
                            chat_id: text(&origin, "chat_id"),
                            last_run_at: text(j, "last_run_at"),
                            last_status: text(j, "last_status"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The sessions of scheduled runs that ended, newest first (`GET /api/sessions?source=cron`).
    pub async fn cron_runs(&self) -> Result<Vec<String>, CallError> {
        let value: serde_json::Value = self.get_json("/api/sessions?source=cron&limit=50", "the session list").await?;
        Ok(value
            .get("data")
            .and_then(|d| d.as_array())
            .map(|sessions| {
                sessions
                    .iter()
                    .filter(|s| s.get("ended_at").is_some_and(|e| !e.is_null()))
                    .filter_map(|s| s.get("id").and_then(|i| i.as_str()).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Whether the server is there, which Hermes it is, and whether it takes the key.
    pub async fn probe(&self) -> Probe {
        let mut probe = Probe::default();
        let health = self.short.get(format!("{}/health", self.root())).send().await;
        match health {
            Ok(r) if r.status().is_success() => {
                probe.reachable = true;
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                probe.version = v.get("version").and_then(|x| x.as_str()).map(str::to_owned);
            }
            Ok(r) => {
                probe.problem = Some(format!("its /health answered {}", r.status().as_u16()));
                return probe;
            }
            Err(e) => {
                probe.problem = Some(self.transport_error(e, SHORT_TIMEOUT).error.to_string());
                return probe;
            }
        }
        match self.short.get(format!("{}/capabilities", self.base_url)).bearer_auth(&self.key).send().await {
            Ok(r) if r.status().is_success() => {
                probe.key_accepted = Some(true);
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if probe.version.is_none() {
                    probe.version = ["version", "hermes_version"]
                        .iter()
                        .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
                        .map(str::to_owned);
                }
            }
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
                probe.key_accepted = Some(false);
                probe.problem = Some(
                    "it refused the key: API_SERVER_KEY must be the key Hermes' API server was started with".to_owned(),
                );
            }
            Ok(r) => probe.problem = Some(format!("its /v1/capabilities answered {}", r.status().as_u16())),
            Err(e) => probe.problem = Some(self.transport_error(e, SHORT_TIMEOUT).error.to_string()),
        }
        probe
    }

    /// The body of a successful answer, or the error its status says.
    async fn body(&self, response: reqwest::Response, timeout: Duration) -> Result<Vec<u8>, CallError> {
        let status = response.status();
        let retry_after = crate::client::retry_after(&response);
        let body = response.bytes().await.map_err(|e| self.transport_error(e, timeout))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let body = String::from_utf8_lossy(&body).chars().take(300).collect();
        Err(CallError { error: AgentError::Status { status: status.as_u16(), body }, retry_after })
    }

    fn transport_error(&self, e: reqwest::Error, timeout: Duration) -> CallError {
        crate::client::transport_error(e, timeout, &self.base_url).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Speaker;

    #[test]
    fn a_turn_body_is_the_context_and_the_new_message_only() {
        let body = HermesApi::turn_body(
            "You are on WhatsApp.",
            &Message::with_images(Speaker::User, "what is this?", vec!["data:image/png;base64,AAAA".into()]),
        );
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["stream"], false);
        assert_eq!(v["messages"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"][1]["image_url"]["url"], "data:image/png;base64,AAAA");
        // The same turn makes the same bytes (Hermes' idempotency fingerprint is over them).
        assert_eq!(
            body,
            HermesApi::turn_body(
                "You are on WhatsApp.",
                &serde_json::from_value(v["messages"][1].clone()).expect("a message")
            )
        );
    }
}
