//! The LLM side of hermes: one OpenAI-compatible chat-completions client.
//!
//! Any server that speaks `POST {base_url}/chat/completions` works: OpenAI, OpenRouter, Ollama,
//! vLLM, llama.cpp's server. Network trouble, timeouts, 429 and 5xx are retried with
//! exponential backoff and jitter (honouring `Retry-After`); anything else fails at once. An
//! [`AgentError`] says what went wrong for the log, and [`AgentError::for_user`] gives the
//! short honest sentence the person in the chat gets instead of an answer.

mod client;
pub mod hermes_api;
#[cfg(feature = "loopback")]
pub mod loopback;
mod prompt;
pub mod speech;

pub use client::{Agent, AgentError, Endpoint, Message, Retry, Speaker};
pub use hermes_api::HermesApi;
pub use hermes_core::redact::redact_url;
pub use prompt::{DEFAULT_SYSTEM_PROMPT, system_prompt};
