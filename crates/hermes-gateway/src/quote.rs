//! A reply's quoted message, found where hermes kept it (the chat's journal and its replies,
//! for the whole retention), else in the copy WhatsApp embeds, else said to be gone.

use hermes_core::quote::{self, Quoted};
use hermes_store::{Inbound, Quote, Quoted as Kept};

use crate::worker::Shared;

/// The line the agent reads before `row`'s text, when `row` quotes a message.
pub(crate) fn prefix(shared: &Shared, row: &Inbound) -> Option<String> {
    let (q, kept) = lookup(shared, row)?;
    Some(prefix_of(shared, q, kept.as_ref()))
}

/// The line before `row`'s text and the picture it quotes (as a `data:` URL for the model),
/// from one lookup of the quoted message.
pub(crate) async fn prefix_and_image(shared: &Shared, row: &Inbound) -> Option<(String, Option<String>)> {
    let (q, kept) = lookup(shared, row)?;
    let image = image_of(shared, q, kept.as_ref()).await;
    Some((prefix_of(shared, q, kept.as_ref()), image))
}

/// The quote `row` carries, and the quoted message as hermes kept it (if it did).
fn lookup<'r>(shared: &Shared, row: &'r Inbound) -> Option<(&'r Quote, Option<Kept>)> {
    let q = row.quote.as_ref()?;
    let kept = match shared.db.read(|s| s.quoted(&row.chat, &q.id)) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up a quoted message; the copy in the reply is used");
            None
        }
    };
    Some((q, kept))
}

fn prefix_of(shared: &Shared, q: &Quote, kept: Option<&Kept>) -> String {
    let own_prefix = shared.live().config.reply_prefix.value.clone();
    let found = match kept.filter(|k| k.text.as_deref().is_some_and(|t| !t.trim().is_empty())) {
        Some(k) => {
            let text = k.text.clone().unwrap_or_default();
            if k.ours {
                // A reply of ours carries the self-chat prefix; the agent wrote what follows it.
                let text = text.strip_prefix(own_prefix.as_str()).filter(|_| !own_prefix.is_empty()).unwrap_or(&text);
                Quoted::Ours(text.to_owned())
            } else {
                Quoted::Theirs(text)
            }
        }
        None => match q.text.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(embedded) => Quoted::Theirs(embedded.to_owned()),
            None => Quoted::Gone,
        },
    };
    quote::prefix(&found)
}

/// The quoted picture, when the quoted message is an image or sticker hermes still has in its
/// cache (and images go to the model at all).
async fn image_of(shared: &Shared, q: &Quote, kept: Option<&Kept>) -> Option<String> {
    use hermes_core::media::MediaKind;
    if shared.media.image_input_mode.value == hermes_core::config::ImageInputMode::Text {
        return None;
    }
    let media = kept?.media.as_ref()?;
    if !matches!(media.kind, MediaKind::Image | MediaKind::Sticker) {
        return None;
    }
    let path = crate::media::cache_path(shared, media, &q.id);
    if !path.is_file() {
        return None;
    }
    match shared.parser.picture(&path).await {
        Ok(url) => Some(url),
        Err(e) => {
            tracing::warn!(error = %e, "a quoted image could not be read; the agent gets its description only");
            None
        }
    }
}

/// What was said in the group since the agent's last turn there, not addressed to it, for a
/// batch that starts with `seq` (`observe_unmentioned_group_messages`).
pub(crate) fn group_context(shared: &Shared, chat: &hermes_core::identity::Jid, seq: i64) -> Option<String> {
    let live = shared.live();
    if !chat.is_group() || !live.config.observe_unmentioned.value {
        return None;
    }
    let limit = usize::try_from(live.config.group_context_messages.value).unwrap_or(usize::MAX);
    let rows = match shared.db.read(|s| s.group_context(chat, seq, limit)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a group's context; the turn goes without it");
            return None;
        }
    };
    let lines: Vec<(String, String)> = rows
        .into_iter()
        .map(|(sender, alt, text)| {
            // The phone number when known: what the people in the group call each other by.
            let phone = [Some(&sender), alt.as_ref()]
                .into_iter()
                .flatten()
                .find(|j| *j.server() == hermes_core::identity::Server::Phone)
                .map(|j| format!("+{}", j.user()));
            (phone.unwrap_or_else(|| sender.user().to_owned()), text)
        })
        .collect();
    quote::group_context(&lines)
}
