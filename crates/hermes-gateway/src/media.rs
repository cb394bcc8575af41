//! Turning a message's media into what the agent reads: downloaded into Hermes' cache
//! directories, then transcribed (voice), shown (images), inlined (text and PDF documents) or
//! described (the rest). A failure is never silent: the agent reads what could not be done,
//! in Hermes' words, and the log says why.

use std::path::{Path, PathBuf};

use hermes_core::config::ImageInputMode;
use hermes_core::media::outbound::{self, OutMedia};
use hermes_core::media::{self as m, DocumentKind, MediaKind, MediaRef};
use hermes_store::Inbound;

use crate::parse::Parser;
use crate::port::{Fetch, MediaError, Speech};
use crate::worker::Shared;

/// Images are shrunk to fit this many pixels on their longer side: what vision models use
/// anyway, and a fraction of a phone photo's size.
const MAX_IMAGE_SIDE: u32 = 1568;
/// PDFs larger than this are described, not read: their text would be cut to 100 KB anyway,
/// and reading them costs memory and time a shared gateway has not got.
const MAX_PDF_BYTES: u64 = 20 * 1024 * 1024;
/// Images up to this size in a format every model reads are sent as they are.
const MAX_IMAGE_BYTES: usize = 3 * 1024 * 1024;

/// What a media message becomes for the agent.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The message as the agent reads it: notes about the media, then its body.
    pub(crate) text: String,
    /// `data:` URLs of pictures for the model.
    pub(crate) images: Vec<String>,
    /// What the agent reads instead of the pictures if the model refuses them.
    pub(crate) without_images: String,
    /// Sent to the chat before the answer (a transcript's echo, a sentence about STT).
    pub(crate) notices: Vec<String>,
}

/// Why a message cannot be prepared now.
pub(crate) enum Later {
    /// Not connected to WhatsApp: the download waits for the connection.
    NotConnected,
    /// A failure that may pass (the CDN, the disk): tried again after a pause, a few times.
    Transient,
}

/// Downloads that failed for a reason that may pass are tried this many times in all.
const DOWNLOAD_ATTEMPTS: u32 = 3;

pub(crate) async fn prepare(
    shared: &Shared,
    seq: i64,
    row: &Inbound,
    media: &MediaRef,
    body: &str,
) -> Result<Prepared, Later> {
    // Downloads, decoding and transcription are heavy: a few at a time, across chats.
    let _permit = shared.media_permits.acquire().await.expect("never closed");
    let cap = shared.media.max_media_mb.value.saturating_mul(1024 * 1024);
    let downloaded = cached(shared, row, media, cap).await;
    let transient = matches!(&downloaded, Err(MediaError::Failed(_) | MediaError::Io { .. }));
    if transient && shared.attempt(seq) < DOWNLOAD_ATTEMPTS {
        if let Err(e) = &downloaded {
            tracing::warn!(kind = media.kind.word(), error = %e, "media could not be downloaded; trying again");
        }
        return Err(Later::Transient);
    }
    shared.forget_attempts(seq);
    let outcome = match &downloaded {
        Ok(_) => "downloaded",
        Err(MediaError::NotConnected) => "waiting",
        Err(MediaError::TooLarge { .. }) => "too_large",
        Err(MediaError::Corrupt(_)) => "corrupt",
        Err(MediaError::Gone(_)) => "expired",
        Err(_) => "failed",
    };
    shared.service.metrics.media(media.kind.word(), outcome);
    let path = match downloaded {
        Ok(path) => path,
        Err(MediaError::NotConnected) => return Err(Later::NotConnected),
        Err(MediaError::TooLarge { size, cap }) => {
            tracing::warn!(kind = media.kind.word(), size, cap, "media over the size limit was not downloaded");
            let note = m::too_large(media.kind, size.max(media.file_length), shared.media.max_media_mb.value);
            return Ok(plain(m::compose(&[note], body)));
        }
        Err(e) => {
            tracing::warn!(kind = media.kind.word(), error = %e, "media could not be downloaded; the agent is told");
            return Ok(plain(m::compose(&[], &format!("{body}\n{}", m::not_downloaded(media.kind)))));
        }
    };
    let mut out = Prepared::default();
    let mut notes = Vec::new();
    match media.kind {
        MediaKind::Voice | MediaKind::Audio => notes.push(listen(shared, &path, media, &mut out.notices).await),
        MediaKind::Image | MediaKind::Sticker => {
            let unseen = m::image_not_shown(&path);
            if shared.media.image_input_mode.value == ImageInputMode::Text {
                notes.push(unseen);
            } else {
                match shared.parser.picture(&path).await {
                    Ok(url) => {
                        out.images.push(url);
                        out.without_images = m::compose(&[unseen], body);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "an image could not be read; the agent is told it was not shown");
                        notes.push(unseen);
                    }
                }
            }
        }
        MediaKind::Document => notes.extend(read_document(&shared.parser, &path, media).await),
        MediaKind::Video | MediaKind::Gif => notes.push(m::video_note(&display_name(&path, media), &path)),
    }
    out.text = m::compose(&notes, body);
    Ok(out)
}

/// The files a reply attaches (`MEDIA:` lines), each opened once beneath the folders files may
/// be sent from and copied from that descriptor into the outgoing cache (the copy is what is
/// uploaded, whatever happens to the original meanwhile: see `outgoing`); the reply's text
/// without them, and a sentence for each file that cannot go.
pub(crate) async fn attachments(shared: &Shared, reply: &str) -> (String, Vec<OutMedia>) {
    let found = outbound::extract(reply);
    if found.files.is_empty() && found.inline.is_empty() {
        return (reply.to_owned(), Vec::new());
    }
    let (home, allow) = (shared.home.clone(), shared.media.media_allow_dirs.value.clone());
    let user_home = shared.user_home.clone();
    let cap = shared.media.max_media_mb.value.saturating_mul(1024 * 1024);
    let written = found.files.clone();
    let work = tokio::task::spawn_blocking(move || {
        written
            .iter()
            .map(|w| {
                let expanded = match (w.strip_prefix("~/"), &user_home) {
                    (Some(rest), Some(h)) => h.join(rest),
                    _ => PathBuf::from(w),
                };
                let name = expanded.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
                let copied = crate::outgoing::open_allowed(&home, allow.as_deref(), &expanded, cap)
                    .and_then(|opened| opened.copy_into_cache(&home, &name, cap));
                (name, copied)
            })
            .collect::<Vec<_>>()
    });
    let copies = work.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "attaching files failed; the reply goes without them");
        found.files.iter().map(|_| ("file".to_owned(), Err("attaching failed".to_owned()))).collect()
    });
    let mut text = found.text.clone();
    let mut files = inline_images(shared, &found.inline, cap, &mut text).await;
    for (written, (name, copied)) in found.files.iter().zip(copies) {
        match copied {
            Ok(copy) => {
                let mut media = OutMedia::for_path(&copy, None, found.as_voice, found.as_document);
                media.file_name = media.file_name.map(|_| name.clone());
                if media.kind == MediaKind::Voice
                    && let Err(why) = make_voice_note(shared, &mut media).await
                {
                    tracing::warn!("an attached file goes as an audio file, not a voice note: {why}");
                    media.kind = MediaKind::Audio;
                }
                files.push(media);
            }
            Err(why) => {
                tracing::warn!("the agent attached a file that is not sent: {why}");
                let name = Path::new(written).file_name().and_then(|n| n.to_str()).unwrap_or(written);
                text.push_str(&format!("\n\n(The file {name} could not be attached.)"));
            }
        }
    }
    (text.trim().to_owned(), files)
}

/// Images the agent's answer carried inline (`data:` URLs, as Hermes' API server inlines
/// them), kept in the outgoing cache until sent: content, not a path, so no folder rule applies;
/// the size cap does.
async fn inline_images(
    shared: &Shared,
    inline: &[outbound::InlineImage],
    cap: u64,
    text: &mut String,
) -> Vec<OutMedia> {
    use base64::Engine as _;
    let mut files = Vec::new();
    for (n, image) in inline.iter().enumerate() {
        let name = image.file_name(n + 1);
        let kept = base64::engine::general_purpose::STANDARD
            .decode(image.base64.as_bytes())
            .map_err(|e| format!("its data is not base64: {e}"))
            .and_then(|bytes| {
                if bytes.len() as u64 > cap {
                    return Err(format!("it is over the {} limit", hermes_core::media::human_size(cap)));
                }
                crate::outgoing::keep_in_cache(&shared.home, &name, &bytes)
            });
        match kept {
            Ok(path) => files.push(OutMedia::for_path(&path, None, false, false)),
            Err(why) => {
                tracing::warn!("an image in the agent's answer is not sent: {why}");
                text.push_str("\n\n(An image could not be attached.)");
            }
        }
    }
    files
}

/// The reply spoken, kept in the audio cache until sent: `None` when spoken replies are off
/// or the speech server failed (the text goes alone; the log says why).
pub(crate) async fn spoken_reply(shared: &Shared, text: &str) -> Option<OutMedia> {
    let voice = shared.voice.as_ref()?;
    let audio = match voice.speak(&hermes_core::format::to_whatsapp(text).replace(['*', '_', '~', '`'], "")).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "the reply could not be spoken; it is sent as text only");
            return None;
        }
    };
    let dir = shared.home.join(m::cache_dirs(MediaKind::Voice).0);
    let path = dir.join(format!("tts_reply_{:012x}.ogg", rand::random::<u64>() & 0xffff_ffff_ffff));
    if let Err(e) = private_dir(&dir).and_then(|()| hermes_store::files::write_private(&path, &audio)) {
        tracing::warn!(error = %e, "the spoken reply could not be kept; it is sent as text only");
        return None;
    }
    let mut media = OutMedia::for_path(&path, None, true, false);
    match make_voice_note(shared, &mut media).await {
        Ok(()) => Some(media),
        Err(why) => {
            tracing::warn!("the spoken reply goes as an audio file, not a voice note: {why}");
            Some(OutMedia::for_path(&path, None, false, false))
        }
    }
}

/// Makes a file a voice note: Ogg Opus as it is, other audio encoded into the audio cache;
/// its length and waveform filled in. The audio is read by a parser child.
pub(crate) async fn make_voice_note(shared: &Shared, media: &mut OutMedia) -> Result<(), String> {
    voice_note_with(&shared.parser, &shared.home, media).await
}

pub(crate) async fn voice_note_with(parser: &Parser, home: &Path, media: &mut OutMedia) -> Result<(), String> {
    let note = parser.voice_note(Path::new(&media.path)).await.map_err(|e| e.to_string())?;
    if note.transcoded {
        let dir = home.join(m::cache_dirs(MediaKind::Voice).0);
        let path = dir.join(format!("voice_{:012x}.ogg", rand::random::<u64>() & 0xffff_ffff_ffff));
        private_dir(&dir)
            .and_then(|()| hermes_store::files::write_private(&path, &note.ogg))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        media.path = path.display().to_string();
    }
    media.mime = "audio/ogg; codecs=opus".to_owned();
    (media.seconds, media.waveform) = (Some(note.seconds), Some(note.waveform));
    Ok(())
}

fn plain(text: String) -> Prepared {
    Prepared { text, ..Prepared::default() }
}

/// The cached copy of the media, downloaded unless a complete one is there already (a crash
/// after the download, before the answer): Hermes' directories and file names.
async fn cached(shared: &Shared, row: &Inbound, media: &MediaRef, cap: u64) -> Result<PathBuf, MediaError> {
    let path = cache_path(shared, media, &row.id);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let io = |error| MediaError::Io { path: dir.display().to_string(), error };
    private_dir(&dir).map_err(io)?;
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.is_file()
        && (media.file_length == 0 || meta.len() == media.file_length)
    {
        return Ok(path);
    }
    let fetch = Fetch { media, chat: &row.chat, sender: &row.sender, id: &row.id, from_me: row.from_me };
    let size = shared.messenger.download(&fetch, &path, cap).await?;
    tracing::debug!(kind = media.kind.word(), size, "media downloaded");
    Ok(path)
}

/// Where a message's media is cached: Hermes' directories (its older names when they exist)
/// and file names.
pub(crate) fn cache_path(shared: &Shared, media: &MediaRef, id: &hermes_core::identity::MessageId) -> PathBuf {
    let (new, old) = m::cache_dirs(media.kind);
    let dir = if shared.home.join(old).is_dir() { shared.home.join(old) } else { shared.home.join(new) };
    dir.join(m::cache_file_name(media, &m::cache_tag(id.as_str())))
}

/// A directory only its owner reads: media is personal data. One left wider (by Hermes, or an
/// older copy) is narrowed.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    hermes_store::files::create_private_dir_all(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The note about a voice note or audio: its transcript, or what stood in the way.
async fn listen(shared: &Shared, path: &Path, media: &MediaRef, notices: &mut Vec<String>) -> String {
    match &shared.speech {
        Speech::Off => m::voice_stt_off(path, media.seconds),
        Speech::Unavailable(why) => {
            shared.service.metrics.transcription("unavailable");
            tracing::warn!("a voice message arrived but cannot be transcribed: {why}");
            notices.push(m::no_stt_reply().to_owned());
            m::voice_without_stt().to_owned()
        }
        Speech::Ready(stt) => match stt.transcribe(path, &media.mime).await {
            Ok(t) if t.trim().is_empty() => {
                shared.service.metrics.transcription("empty");
                m::voice_empty().to_owned()
            }
            Ok(t) => {
                shared.service.metrics.transcription("ok");
                if shared.media.stt_echo_transcripts.value {
                    notices.push(m::echo(&t));
                }
                m::voice_transcript(&t)
            }
            Err(e) => {
                shared.service.metrics.transcription("failed");
                tracing::warn!(error = %e, "a voice message could not be transcribed; the agent is told");
                m::voice_failed(path)
            }
        },
    }
}

/// The name a person gave the file, or its cached name.
fn display_name(path: &Path, media: &MediaRef) -> String {
    media
        .file_name
        .as_deref()
        .map(m::sanitize_file_name)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned())
}

/// Text inlined, a PDF's text extracted (by a parser child) and inlined, anything else
/// described.
async fn read_document(parser: &Parser, path: &Path, media: &MediaRef) -> Vec<String> {
    let name = display_name(path, media);
    let size = std::fs::metadata(path).map(|md| md.len()).unwrap_or(media.file_length);
    let described = || vec![m::document_not_inlined(&name, path, &media.mime, size)];
    match m::document_kind(media.file_name.as_deref(), &media.mime) {
        DocumentKind::Text if size <= m::MAX_INLINE_BYTES => {
            match hermes_store::files::read_regular_capped(path, m::MAX_INLINE_BYTES) {
                Ok(bytes) => {
                    vec![m::text_document_note(&name, path), m::content_of(&name, &String::from_utf8_lossy(&bytes))]
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a cached document cannot be read");
                    described()
                }
            }
        }
        DocumentKind::Pdf if size > MAX_PDF_BYTES => {
            tracing::info!(size, "a PDF too large to read here; the agent gets its description");
            described()
        }
        DocumentKind::Pdf => match parser.pdf_text(path).await {
            Ok(text) if !text.trim().is_empty() => {
                vec![m::pdf_note(&name, path), m::content_of(&name, &cap_text(text.trim(), m::MAX_INLINE_BYTES))]
            }
            Ok(_) => {
                tracing::info!("a PDF has no text layer (scanned?); the agent gets its description");
                described()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the text of a PDF could not be extracted; the agent gets its description");
                described()
            }
        },
        DocumentKind::Text | DocumentKind::Other => described(),
    }
}

/// At most `max` bytes of text, cut at a character boundary, saying so.
fn cap_text(text: &str, max: u64) -> String {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[… the rest of the document is cut: it is longer than {} KB]", &text[..end], max / 1024)
}

/// Pictures wider or taller than this are not decoded: no phone sends one (a 200-megapixel
/// camera's photo is 16,320 pixels wide, and WhatsApp shrinks photos far below that).
const MAX_DECODED_SIDE: u32 = 16_384;
/// What a decoder may allocate for one picture: a 12-megapixel photo needs 48 MB. A PNG of
/// 514 KB once inflated to 838 MB before this bound.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// A picture as a `data:` URL a vision model reads: JPEG or PNG as it is when small enough,
/// otherwise (or for WebP stickers and GIFs) decoded, shrunk to fit and re-encoded. Run in a
/// parser child (`crate::parse`): the file is a stranger's.
pub(crate) fn data_url(path: &Path) -> Result<String, String> {
    use base64::Engine as _;
    let bytes = hermes_store::files::read_regular_capped(path, MAX_DECODE_BYTES).map_err(|e| e.to_string())?;
    let format = image::guess_format(&bytes).map_err(|e| format!("not an image: {e}"))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| format!("cannot decode: {e}"))?;
    let fits = img.width().max(img.height()) <= MAX_IMAGE_SIDE && bytes.len() <= MAX_IMAGE_BYTES;
    match format {
        image::ImageFormat::Jpeg if fits => return Ok(format!("data:image/jpeg;base64,{}", b64(&bytes))),
        image::ImageFormat::Png if fits => return Ok(format!("data:image/png;base64,{}", b64(&bytes))),
        _ => {}
    }
    // `thumbnail` averages into the small picture directly; `resize` keeps float copies of
    // the whole picture, several times its size.
    let img = if img.width().max(img.height()) > MAX_IMAGE_SIDE {
        img.thumbnail(MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
    } else {
        img
    };
    let mut out = std::io::Cursor::new(Vec::new());
    // Transparency (stickers) survives as PNG; photos are smaller as JPEG.
    let (format, mime) = if img.color().has_alpha() {
        (image::ImageFormat::Png, "image/png")
    } else {
        (image::ImageFormat::Jpeg, "image/jpeg")
    };
    let img = if format == image::ImageFormat::Jpeg { image::DynamicImage::ImageRgb8(img.to_rgb8()) } else { img };
    img.write_to(&mut out, format).map_err(|e| format!("cannot encode: {e}"))?;
    Ok(format!("data:{mime};base64,{}", b64(out.get_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_photo_is_shrunk_and_a_transparent_sticker_stays_png() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.png");
        image::RgbImage::from_fn(3000, 1000, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]))
            .save(&big)
            .expect("save");
        let url = data_url(&big).expect("url");
        assert!(url.starts_with("data:image/jpeg;base64,"), "{}", &url[..40]);
        use base64::Engine as _;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(&url["data:image/jpeg;base64,".len()..]).expect("b64");
        let small = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!((small.width(), small.height()), (MAX_IMAGE_SIDE, 523));

        let sticker = dir.path().join("s.webp");
        image::RgbaImage::from_fn(64, 64, |x, _| image::Rgba([0, 0, 0, (x * 4) as u8]))
            .save(&sticker)
            .expect("save webp");
        assert!(data_url(&sticker).expect("url").starts_with("data:image/png;base64,"));

        let junk = dir.path().join("junk.jpg");
        std::fs::write(&junk, b"not an image").expect("write");
        assert!(data_url(&junk).is_err());
    }

    #[test]
    fn long_text_is_cut_at_a_character_and_says_so() {
        let text = "é".repeat(100);
        let cut = cap_text(&text, 51);
        assert!(cut.starts_with(&"é".repeat(25)) && cut.contains("is cut"), "{cut}");
        assert_eq!(cap_text("short", 51), "short");
    }
}
