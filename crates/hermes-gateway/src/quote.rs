//! A reply's quoted message, found where hermes kept it (the chat's journal and its replies,
//! for the whole retention), else in the copy WhatsApp embeds, else said to be gone.

use hermes_core::quote::{self, Quoted};
use hermes_store::Inbound;

use crate::worker::Shared;

/// The line the agent reads before `row`'s text, when `row` quotes a message.
pub(crate) fn prefix(shared: &Shared, row: &Inbound) -> Option<String> {
    let q = row.quote.as_ref()?;
    let kept = match shared.db.read(|s| s.quoted(&row.chat, &q.id)) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up a quoted message; the copy in the reply is used");
            None
        }
    };
    let own_prefix = shared.live().config.reply_prefix.value.clone();
    let found = match kept {
        Some(k) if k.text.as_deref().is_some_and(|t| !t.trim().is_empty()) => {
            let text = k.text.unwrap_or_default();
            if k.ours {
                // A reply of ours carries the self-chat prefix; the agent wrote what follows it.
                let text = text.strip_prefix(own_prefix.as_str()).filter(|_| !own_prefix.is_empty()).unwrap_or(&text);
                Quoted::Ours(text.to_owned())
            } else {
                Quoted::Theirs(text)
            }
        }
        _ => match q.text.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(embedded) => Quoted::Theirs(embedded.to_owned()),
            None => Quoted::Gone,
        },
    };
    Some(quote::prefix(&found))
}
