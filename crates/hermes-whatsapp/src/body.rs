//! What the agent reads of a message that is not plain text, in Hermes' own words: a location,
//! a contact card, a reaction, a poll, and the media whose bytes are not read yet. Nothing a
//! person sends is dropped for having no text: an allowed sender is always answered.

use hermes_core::media::{MediaKind, MediaRef};
use whatsapp_rust::prelude::*;
use whatsapp_rust::waproto::whatsapp as wa;

/// The body of a message for the agent: its text, or Hermes' description of what it is.
/// `None` for what is no conversation (protocol messages, receipts, edits of state).
pub fn body(message: &wa::Message) -> Option<String> {
    let m = message.get_base_message();
    if let Some(text) = m.text_content() {
        return Some(text.to_owned());
    }
    let caption = |c: Option<&String>, what: &str| match c.map(|c| c.trim()).filter(|c| !c.is_empty()) {
        Some(c) => format!("[{what} received] {c}"),
        None => format!("[{what} received]"),
    };
    if let Some(i) = m.image_message.as_option() {
        return Some(caption(i.caption.as_ref(), "image"));
    }
    if let Some(v) = m.video_message.as_option().or(m.ptv_message.as_option()) {
        let what = if v.gif_playback == Some(true) { "gif" } else { "video" };
        return Some(caption(v.caption.as_ref(), what));
    }
    if let Some(a) = m.audio_message.as_option() {
        return Some(caption(None, if a.ptt == Some(true) { "ptt" } else { "audio" }));
    }
    let document = m
        .document_message
        .as_option()
        .or_else(|| m.document_with_caption_message.as_option()?.message.as_option()?.document_message.as_option());
    if let Some(d) = document {
        let name = d.file_name.as_deref().unwrap_or("a file");
        return Some(caption(d.caption.as_ref(), &format!("document {name}")));
    }
    if m.sticker_message.is_set() {
        return Some("[Sticker]".to_owned());
    }
    if let Some(l) = m.location_message.as_option() {
        let name = l.name.as_deref().or(l.address.as_deref()).unwrap_or("");
        return Some(location(name, l.degrees_latitude, l.degrees_longitude));
    }
    if let Some(l) = m.live_location_message.as_option() {
        return Some(location("live", l.degrees_latitude, l.degrees_longitude));
    }
    if let Some(c) = m.contact_message.as_option() {
        return Some(contact(c));
    }
    if let Some(cs) = m.contacts_array_message.as_option() {
        return Some(cs.contacts.iter().map(contact).collect::<Vec<_>>().join("\n"));
    }
    if let Some(r) = m.reaction_message.as_option() {
        let emoji = r.text.as_deref().unwrap_or_default();
        // An empty reaction takes one back: nothing to say about it.
        if emoji.is_empty() {
            return None;
        }
        let to = r.key.as_option().and_then(|k| k.id.as_deref()).unwrap_or("a message");
        return Some(format!("[Reaction: {emoji} to {to}]"));
    }
    let poll = [
        &m.poll_creation_message,
        &m.poll_creation_message_v2,
        &m.poll_creation_message_v3,
        &m.poll_creation_message_v5,
        &m.poll_creation_message_v6,
    ]
    .into_iter()
    .find_map(|p| p.as_option());
    if let Some(p) = poll {
        let options: Vec<&str> = p.options.iter().filter_map(|o| o.option_name.as_deref()).collect();
        return Some(format!("[Poll: {} Options: {}]", p.name.as_deref().unwrap_or(""), options.join(", ")));
    }
    None
}

/// The media a message carries, as a reference to fetch it later: `None` for a message
/// without media, or one whose reference is incomplete (nothing could fetch it).
pub fn media(message: &wa::Message) -> Option<MediaRef> {
    let m = message.get_base_message();
    let document = || {
        m.document_message
            .as_option()
            .or_else(|| m.document_with_caption_message.as_option()?.message.as_option()?.document_message.as_option())
    };
    let (kind, mime, path, key, sha, enc, len, name, seconds) = if let Some(i) = m.image_message.as_option() {
        (
            MediaKind::Image,
            &i.mimetype,
            &i.direct_path,
            &i.media_key,
            &i.file_sha256,
            &i.file_enc_sha256,
            i.file_length,
            None,
            None,
        )
    } else if let Some(v) = m.video_message.as_option().or(m.ptv_message.as_option()) {
        let kind = if v.gif_playback == Some(true) { MediaKind::Gif } else { MediaKind::Video };
        (
            kind,
            &v.mimetype,
            &v.direct_path,
            &v.media_key,
            &v.file_sha256,
            &v.file_enc_sha256,
            v.file_length,
            None,
            v.seconds,
        )
    } else if let Some(a) = m.audio_message.as_option() {
        let kind = if a.ptt == Some(true) { MediaKind::Voice } else { MediaKind::Audio };
        (
            kind,
            &a.mimetype,
            &a.direct_path,
            &a.media_key,
            &a.file_sha256,
            &a.file_enc_sha256,
            a.file_length,
            None,
            a.seconds,
        )
    } else if let Some(d) = document() {
        let name = d.file_name.clone().or_else(|| d.title.clone());
        (
            MediaKind::Document,
            &d.mimetype,
            &d.direct_path,
            &d.media_key,
            &d.file_sha256,
            &d.file_enc_sha256,
            d.file_length,
            name,
            None,
        )
    } else if let Some(s) = m.sticker_message.as_option() {
        (
            MediaKind::Sticker,
            &s.mimetype,
            &s.direct_path,
            &s.media_key,
            &s.file_sha256,
            &s.file_enc_sha256,
            s.file_length,
            None,
            None,
        )
    } else {
        return None;
    };
    // The sender chooses the direct path: checked as the path a phone names after a
    // `mediaretry` is, by the one check.
    let direct_path = path.clone().filter(|p| crate::media::is_cdn_path(p));
    if direct_path.is_none() && path.is_some() {
        tracing::warn!("a media message names an invalid CDN path; its media is not fetched");
    }
    Some(MediaRef {
        kind,
        mime: mime.clone().unwrap_or_default(),
        direct_path: direct_path?,
        media_key: key.clone()?,
        file_sha256: sha.clone()?,
        file_enc_sha256: enc.clone()?,
        file_length: len.unwrap_or(0),
        file_name: name,
        seconds,
    })
}

fn location(name: &str, lat: Option<f64>, lng: Option<f64>) -> String {
    let at = match (lat, lng) {
        (Some(lat), Some(lng)) => format!("{lat},{lng}"),
        _ => "unknown place".to_owned(),
    };
    if name.is_empty() { format!("[Location: {at}]") } else { format!("[Location: {name} {at}]") }
}

/// `[Contact: name phone]`, the phone number read from the vCard's `TEL` line.
fn contact(c: &wa::message::ContactMessage) -> String {
    let name = c.display_name.as_deref().unwrap_or("");
    let phone = c
        .vcard
        .as_deref()
        .and_then(|v| v.lines().find(|l| l.to_ascii_uppercase().starts_with("TEL")))
        .and_then(|l| l.rsplit(':').next())
        .map(str::trim)
        .unwrap_or("");
    format!("[Contact: {name} {phone}]").replace("  ", " ").replace(" ]", "]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_text_is_described_as_hermes_does() {
        let location = wa::Message {
            location_message: buffa::MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(48.8584),
                degrees_longitude: Some(2.2945),
                name: Some("Eiffel Tower".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(body(&location).as_deref(), Some("[Location: Eiffel Tower 48.8584,2.2945]"));
        let image = wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                caption: Some("my cat".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(body(&image).as_deref(), Some("[image received] my cat"));
        let voice = wa::Message {
            audio_message: buffa::MessageField::some(wa::message::AudioMessage {
                ptt: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(body(&voice).as_deref(), Some("[ptt received]"));
        let card = wa::Message {
            contact_message: buffa::MessageField::some(wa::message::ContactMessage {
                display_name: Some("Ada".into()),
                vcard: Some("BEGIN:VCARD\nFN:Ada\nTEL;type=CELL:+44 20 7946 0000\nEND:VCARD".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(body(&card).as_deref(), Some("[Contact: Ada +44 20 7946 0000]"));
        assert_eq!(body(&wa::Message::default()), None);
    }
}
