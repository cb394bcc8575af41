//! The system prompt: `HERMES_HOME/SOUL.md` when the user wrote one, as Hermes does.

/// Used when there is no `SOUL.md`.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are Hermes, a helpful assistant that people talk to over WhatsApp. \
     Answer briefly and plainly; WhatsApp shows *bold*, _italic_ and ``` code blocks, not tables.";

/// The system prompt from the contents of `SOUL.md`, if it has any.
pub fn system_prompt(soul: Option<&str>) -> String {
    match soul.map(str::trim) {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => DEFAULT_SYSTEM_PROMPT.to_owned(),
    }
}
