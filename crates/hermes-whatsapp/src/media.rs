//! Fetching a message's media from WhatsApp's CDN into a file: streamed (memory stays flat
//! whatever the size), capped, checked, and written under a temporary name that becomes the
//! final one only once the MAC and hashes are verified, so a crash mid-download leaves
//! nothing that looks complete and the next attempt starts again.
//!
//! An expired object (404/410 after a fresh `media_conn`) is asked for again from the
//! sender's phone (`mediaretry`), as WhatsApp's own clients do, then fetched from its new path.

use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;

use hermes_core::identity::{Jid as CoreJid, MessageId};
use hermes_core::media::MediaKind;
use whatsapp_rust::download::{DownloadParams, MediaDecryptionError, MediaType};
use whatsapp_rust::http::HttpStatusError;
use whatsapp_rust::prelude::*;
use whatsapp_rust::{MediaRetryResult, MediaReuploadRequest};

use crate::messenger::{Messenger, SendError};
use hermes_core::media::outbound::{OutMedia, Uploaded};
use whatsapp_rust::waproto::whatsapp as wa;

// The fetch is asked for and answered in core's words, which the gateway reads too.
pub use hermes_core::media::fetch::{Fetch, MediaError};

fn media_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Sticker => MediaType::Sticker,
        MediaKind::Video | MediaKind::Gif => MediaType::Video,
        MediaKind::Audio | MediaKind::Voice => MediaType::Audio,
        MediaKind::Document => MediaType::Document,
    }
}

/// A file that refuses to grow past a cap, so a sender that declared less than it sends
/// cannot fill the disk.
struct Capped {
    file: std::fs::File,
    cap: u64,
    over: Arc<std::sync::atomic::AtomicBool>,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let at = self.file.stream_position()?;
        if at + buf.len() as u64 > self.cap {
            self.over.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(std::io::Error::other("the media is larger than the configured limit"));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Capped {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.file.seek(pos)
    }
}

impl whatsapp_rust::download::DownloadWriter for Capped {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }
}

/// A new file only its owner reads (media is personal data), emptied if it was there.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).mode(0o600).open(path)
}

fn http_status(e: &anyhow::Error) -> Option<u16> {
    e.chain().find_map(|c| c.downcast_ref::<HttpStatusError>()).map(|s| s.status)
}

/// The one check of a CDN direct path: the path a message carries ([`crate::body::media`]) and
/// the one a phone names after a `mediaretry` ([`reuploaded`]) both go through it, so the two
/// cannot drift apart. The sender chooses both, and the client appends the path to a CDN host
/// name (`https://{host}{path}?token=…`): only a path (`/...`, no `@`, no `//`, nothing a URL
/// would read as another host or cut short) may be used.
pub(crate) fn is_cdn_path(p: &str) -> bool {
    p.starts_with('/') && !p.starts_with("//") && !p.contains(['@', '\\', ' ', '#']) && !p.chars().any(char::is_control)
}

/// The new direct path from the phone's answer to a `mediaretry`, checked as the message's
/// was. A path that fails the check is never fetched, nor asked for again: the media is gone.
fn reuploaded(answer: MediaRetryResult) -> Result<String, MediaError> {
    match answer {
        MediaRetryResult::Success { direct_path } if is_cdn_path(&direct_path) => Ok(direct_path),
        MediaRetryResult::Success { .. } => {
            tracing::warn!("the sender's phone named an invalid CDN path for expired media; it is not fetched");
            Err(MediaError::Gone("the phone named a CDN path that is not a path on WhatsApp's servers".into()))
        }
        other => Err(MediaError::Gone(format!("the phone answered {other:?}"))),
    }
}

fn is_integrity(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<MediaDecryptionError>().is_some())
        || format!("{e:#}").to_ascii_lowercase().contains("mac")
}

impl Messenger {
    /// Downloads a message's media to `to` (at most `cap` bytes); returns its size.
    pub async fn download(&self, f: &Fetch<'_>, to: &Path, cap: u64) -> Result<u64, MediaError> {
        if f.media.file_length > cap {
            return Err(MediaError::TooLarge { size: f.media.file_length, cap });
        }
        let client = self.live_client().ok_or(MediaError::NotConnected)?;
        let io = |error| MediaError::Io { path: to.display().to_string(), error };
        let part = to.with_extension("part");
        let mut params = DownloadParams::encrypted(
            f.media.direct_path.clone(),
            &f.media.media_key,
            &f.media.file_sha256,
            &f.media.file_enc_sha256,
            f.media.file_length,
            media_type(f.media.kind),
        );
        let mut asked_again = false;
        loop {
            let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let file = private_file(&part).map_err(io)?;
            let sink = Capped { file, cap, over: over.clone() };
            match client.download_from_params_to_writer(&params, sink).await {
                Ok(sink) => {
                    // Downloaded, not yet in place: a crash here must download again.
                    hermes_store::crash::point("media_downloaded");
                    sink.file.sync_all().map_err(io)?;
                    let size = sink.file.metadata().map_err(io)?.len();
                    drop(sink);
                    std::fs::rename(&part, to).map_err(io)?;
                    return Ok(size);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    if over.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(MediaError::TooLarge { size: cap + 1, cap });
                    }
                    if matches!(http_status(&e), Some(404 | 410)) && !asked_again {
                        asked_again = true;
                        let path = self.ask_again(&client, f).await?;
                        tracing::info!("the sender's phone uploaded expired media again; downloading it");
                        params.direct_path = path;
                        continue;
                    }
                    if !client.is_connected() {
                        return Err(MediaError::NotConnected);
                    }
                    return Err(if is_integrity(&e) {
                        MediaError::Corrupt(format!("{e:#}"))
                    } else if matches!(http_status(&e), Some(404 | 410)) {
                        MediaError::Gone(format!("{e:#}"))
                    } else {
                        MediaError::Failed(format!("{e:#}"))
                    });
                }
            }
        }
    }

    /// Asks the sender's phone to upload expired media again; its new direct path.
    async fn ask_again(&self, client: &Client, f: &Fetch<'_>) -> Result<String, MediaError> {
        let wire = |j: &CoreJid| j.to_string().parse::<Jid>().map_err(|e| MediaError::Failed(e.to_string()));
        let chat = wire(f.chat)?;
        let participant = if f.chat.is_group() { Some(wire(f.sender)?) } else { None };
        let request = MediaReuploadRequest {
            msg_id: f.id.as_str(),
            chat_jid: &chat,
            media_key: &f.media.media_key,
            is_from_me: f.from_me,
            participant: participant.as_ref(),
        };
        match client.media_reupload().request(&request).await {
            Ok(answer) => reuploaded(answer),
            // The connection went while asking: asked again once it is back, not given up.
            Err(_) if !client.is_connected() => Err(MediaError::NotConnected),
            Err(e) => Err(MediaError::Gone(e.to_string())),
        }
    }
}

impl Messenger {
    /// Encrypts and uploads a file to WhatsApp's CDN; what its message must carry.
    pub async fn upload(&self, media: &OutMedia) -> Result<Uploaded, SendError> {
        let client = self.live_client().ok_or(SendError::NotConnected)?;
        let data = tokio::fs::read(&media.path)
            .await
            .map_err(|e| SendError::Failed(format!("cannot read {}: {e}", media.path)))?;
        match client.upload(data, media_type(media.kind), Default::default()).await {
            Ok(up) => Ok(Uploaded {
                url: up.url,
                direct_path: up.direct_path,
                media_key: up.media_key.to_vec(),
                file_sha256: up.file_sha256.to_vec(),
                file_enc_sha256: up.file_enc_sha256.to_vec(),
                file_length: up.file_length,
                media_key_timestamp: up.media_key_timestamp,
            }),
            Err(_) if !client.is_connected() => Err(SendError::NotConnected),
            Err(e) => Err(SendError::Failed(format!("upload refused: {e:#}"))),
        }
    }

    /// Sends an uploaded file under `id`, as the message its kind calls for.
    pub async fn send_media(&self, chat: &CoreJid, media: &OutMedia, id: &MessageId) -> Result<(), SendError> {
        let up = media.uploaded.as_ref().ok_or_else(|| SendError::Failed("the file is not uploaded yet".into()))?;
        self.send(chat, media_message(media, up), id).await
    }
}

/// The message that carries an uploaded file.
fn media_message(media: &OutMedia, up: &Uploaded) -> wa::Message {
    // Every media message type has the same CDN fields under the same names.
    macro_rules! uploaded {
        ($ty:ident { $($field:ident : $value:expr),* $(,)? }) => {
            buffa::MessageField::some(wa::message::$ty {
                url: Some(up.url.clone()),
                direct_path: Some(up.direct_path.clone()),
                media_key: Some(up.media_key.clone()),
                file_sha256: Some(up.file_sha256.clone()),
                file_enc_sha256: Some(up.file_enc_sha256.clone()),
                file_length: Some(up.file_length),
                media_key_timestamp: Some(up.media_key_timestamp),
                mimetype: Some(media.mime.clone()),
                $($field: $value,)*
                ..Default::default()
            })
        };
    }
    let caption = media.caption.clone().filter(|c| !c.trim().is_empty());
    let mut m = wa::Message::default();
    match media.kind {
        MediaKind::Image => m.image_message = uploaded!(ImageMessage { caption: caption }),
        MediaKind::Sticker => m.sticker_message = uploaded!(StickerMessage {}),
        MediaKind::Video | MediaKind::Gif => {
            m.video_message = uploaded!(VideoMessage {
                caption: caption,
                seconds: media.seconds,
                gif_playback: Some(media.kind == MediaKind::Gif),
            });
        }
        MediaKind::Audio | MediaKind::Voice => {
            m.audio_message = uploaded!(AudioMessage {
                seconds: media.seconds,
                ptt: Some(media.kind == MediaKind::Voice),
                waveform: media.waveform.clone(),
            });
        }
        MediaKind::Document => {
            m.document_message = uploaded!(DocumentMessage {
                title: media.file_name.clone(),
                file_name: media.file_name.clone(),
                caption: caption,
            });
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message's image at `path`, everything else a fetch needs present.
    fn image_at(path: &str) -> wa::Message {
        wa::Message {
            image_message: buffa::MessageField::some(wa::message::ImageMessage {
                direct_path: Some(path.to_owned()),
                media_key: Some(vec![1; 32]),
                file_sha256: Some(vec![2; 32]),
                file_enc_sha256: Some(vec![3; 32]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Issue 25: the path a phone named after a `mediaretry` was fetched unchecked, where a
    /// message's own path is refused unless it is a path on the CDN host.
    #[test]
    fn issue_25_a_reuploaded_path_is_checked_as_the_original_is() {
        let cdn = "/v/t62.7118-24/12345_67890.enc?ccb=11-4&oh=01_Q5Aa&oe=65F0A1B2&_nc_sid=5e03e0";
        let answer = |p: &str| reuploaded(MediaRetryResult::Success { direct_path: p.to_owned() });
        assert_eq!(crate::body::media(&image_at(cdn)).map(|m| m.direct_path).as_deref(), Some(cdn));
        assert_eq!(answer(cdn).expect("a path on the CDN host"), cdn);
        for hostile in [
            "https://evil.example/x",
            "../../etc/passwd",
            "//evil.example/x",
            ".evil.example/x",
            "/x@evil.example/y",
            "/x\\y",
            "/x y",
            "/x#y",
            "/x\ny",
            "",
        ] {
            assert!(crate::body::media(&image_at(hostile)).is_none(), "the message's path {hostile:?}");
            assert!(matches!(answer(hostile), Err(MediaError::Gone(_))), "the phone's path {hostile:?}");
        }
        assert!(matches!(reuploaded(MediaRetryResult::NotFound), Err(MediaError::Gone(_))));
    }
}
