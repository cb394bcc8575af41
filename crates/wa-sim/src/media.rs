//! WhatsApp's media CDN, on loopback: end-to-end encrypted blobs uploaded and downloaded over
//! HTTP, as the `mmg` hosts serve them.
//!
//! The media crypto is written here from the protocol's description, not borrowed from the
//! client's code, so a mistake on either side shows up as a MAC or hash failure instead of
//! cancelling out: a 32-byte media key is HKDF-expanded (SHA-256, no salt, a per-type info
//! string) into 112 bytes, an IV, an AES-256-CBC key and an HMAC key; the file is the PKCS#7
//! ciphertext followed by the first 10 bytes of HMAC-SHA256(IV || ciphertext). The server
//! checks an upload against its `fileEncSha256` token, as WhatsApp does, and a download's token
//! against the object.
//!
//! Objects can be expired (the phone may then re-upload on a `mediaretry` request) or
//! corrupted (a MAC failure on the client) with [`crate::Fault`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{anyhow, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use waproto::whatsapp as wa;

/// The kinds of media a contact sends, with their place in the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
    /// Music or a recording sent as a file.
    Audio,
    /// A voice note (push-to-talk audio).
    Voice,
    Document,
    Sticker,
}

impl MediaKind {
    /// The HKDF info string its keys are expanded with.
    fn key_info(self) -> &'static [u8] {
        match self {
            MediaKind::Image | MediaKind::Sticker => b"WhatsApp Image Keys",
            MediaKind::Video => b"WhatsApp Video Keys",
            MediaKind::Audio | MediaKind::Voice => b"WhatsApp Audio Keys",
            MediaKind::Document => b"WhatsApp Document Keys",
        }
    }

    /// The path segment of its uploads (`/mms/{segment}/...`).
    fn mms(self) -> &'static str {
        match self {
            MediaKind::Image | MediaKind::Sticker => "image",
            MediaKind::Video => "video",
            MediaKind::Audio | MediaKind::Voice => "audio",
            MediaKind::Document => "document",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Voice => "voice",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }
}

/// IV, cipher key and MAC key from a media key.
fn expand(media_key: &[u8], kind: MediaKind) -> anyhow::Result<([u8; 16], [u8; 32], [u8; 32])> {
    let mut out = [0u8; 112];
    wacore::crypto::hkdf_sha256_into(media_key, None, kind.key_info(), &mut out)
        .map_err(|e| anyhow!("media key expansion: {e:?}"))?;
    let (mut iv, mut cipher, mut mac) = ([0u8; 16], [0u8; 32], [0u8; 32]);
    iv.copy_from_slice(&out[..16]);
    cipher.copy_from_slice(&out[16..48]);
    mac.copy_from_slice(&out[48..80]);
    Ok((iv, cipher, mac))
}

/// The encrypted file: ciphertext, then the truncated MAC.
pub(crate) fn encrypt(plain: &[u8], media_key: &[u8], kind: MediaKind) -> anyhow::Result<Vec<u8>> {
    let (iv, cipher, mac_key) = expand(media_key, kind)?;
    let mut out = Vec::with_capacity(plain.len() + 32);
    wacore_libsignal::crypto::aes_256_cbc_encrypt_into(plain, &cipher, &iv, &mut out)
        .map_err(|e| anyhow!("media encryption: {e}"))?;
    let mac = wacore_libsignal::crypto::hmac_sha256_two_part(&mac_key, &iv, &out);
    out.extend_from_slice(&mac[..10]);
    Ok(out)
}

/// The plaintext of an encrypted file, after its MAC is checked.
pub(crate) fn decrypt(file: &[u8], media_key: &[u8], kind: MediaKind) -> anyhow::Result<Vec<u8>> {
    if file.len() < 10 + 16 {
        bail!("the media file is {} bytes, too short to be encrypted media", file.len());
    }
    let (iv, cipher, mac_key) = expand(media_key, kind)?;
    let (ciphertext, mac) = file.split_at(file.len() - 10);
    let expected = wacore_libsignal::crypto::hmac_sha256_two_part(&mac_key, &iv, ciphertext);
    if expected[..10] != *mac {
        bail!("the media file's MAC does not match its key");
    }
    let mut out = Vec::with_capacity(ciphertext.len());
    wacore_libsignal::crypto::aes_256_cbc_decrypt_into(ciphertext, &cipher, &iv, &mut out)
        .map_err(|e| anyhow!("media decryption: {e}"))?;
    Ok(out)
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// One stored blob.
#[derive(Clone)]
struct Object {
    file: Bytes,
    enc_sha256: [u8; 32],
    /// Gone from the CDN: downloads get 410 until it is uploaded again.
    expired: bool,
    /// Served with a flipped byte: the client's MAC check fails.
    corrupt: bool,
}

/// What a phone uploaded for a message it sent, to upload again on a `mediaretry` request.
#[derive(Clone)]
pub(crate) struct Sent {
    pub direct_path: String,
    pub media_key: Vec<u8>,
}

/// The CDN: objects by direct path, the auth token it hands out, and where it listens.
#[derive(Default)]
pub(crate) struct Cdn {
    objects: Mutex<HashMap<String, Object>>,
    /// Media a phone sent, by message id.
    sent: Mutex<HashMap<String, Sent>>,
    /// `host:port` on 127.0.0.1, set once the listener is up.
    host: OnceLock<String>,
    auth: OnceLock<String>,
    /// Whether phones answer `mediaretry` requests by uploading again (on unless a fault says).
    no_reupload: std::sync::atomic::AtomicBool,
    /// Uploads clients made (not counting the phones' own).
    uploads: std::sync::atomic::AtomicUsize,
}

impl Cdn {
    /// The host name `media_conn` gives clients: `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.host.get().cloned().unwrap_or_default()
    }

    pub fn auth(&self) -> String {
        self.auth.get_or_init(|| hex::encode(rand::random::<[u8; 16]>())).clone()
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Object>> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store(&self, kind: MediaKind, file: Vec<u8>) -> String {
        let direct_path = format!("/v/t62.{}-24/{}.enc", kind.mms(), hex::encode(rand::random::<[u8; 12]>()));
        let enc_sha256 = sha256(&file);
        self.objects().insert(
            direct_path.clone(),
            Object { file: Bytes::from(file), enc_sha256, expired: false, corrupt: false },
        );
        direct_path
    }

    /// The encrypted file at a direct path, if it is there and not expired.
    pub fn fetch(&self, direct_path: &str) -> Option<Vec<u8>> {
        self.objects().get(direct_path).filter(|o| !o.expired).map(|o| o.file.to_vec())
    }

    /// A phone encrypts and uploads media for a message: (media key, file, direct path).
    pub fn upload(&self, kind: MediaKind, plain: &[u8]) -> anyhow::Result<Uploaded> {
        let media_key: [u8; 32] = rand::random();
        let file = encrypt(plain, &media_key, kind)?;
        let file_enc_sha256 = sha256(&file);
        let direct_path = self.store(kind, file);
        Ok(Uploaded { media_key: media_key.to_vec(), file_enc_sha256, direct_path, file_sha256: sha256(plain) })
    }

    /// How many uploads clients made.
    pub fn uploads(&self) -> usize {
        self.uploads.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn remember(&self, id: &str, sent: Sent) {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned(), sent);
    }

    pub fn sent(&self, id: &str) -> Option<Sent> {
        self.sent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    /// Expires the media of a message a phone sent (or every object): downloads get 410.
    pub fn expire(&self, id: Option<&str>, reupload: bool) -> anyhow::Result<()> {
        self.no_reupload.store(!reupload, std::sync::atomic::Ordering::Relaxed);
        self.mark(id, |o| o.expired = true)
    }

    /// Serves the media of a message (or every object) with a flipped byte.
    pub fn corrupt(&self, id: Option<&str>) -> anyhow::Result<()> {
        self.mark(id, |o| o.corrupt = true)
    }

    fn mark(&self, id: Option<&str>, f: impl Fn(&mut Object)) -> anyhow::Result<()> {
        let path = match id {
            Some(id) => Some(self.sent(id).ok_or_else(|| anyhow!("no media was sent as message {id}"))?.direct_path),
            None => None,
        };
        let mut objects = self.objects();
        for (p, o) in objects.iter_mut() {
            if path.as_deref().is_none_or(|want| want == p) {
                f(o);
            }
        }
        Ok(())
    }

    /// The phone uploads the media of message `id` again, under a new direct path; `None` when
    /// it cannot (a fault says so, or it never sent that message).
    pub fn reupload(&self, id: &str) -> Option<String> {
        if self.no_reupload.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let sent = self.sent(id)?;
        let mut objects = self.objects();
        let object = objects.get(&sent.direct_path)?.clone();
        let direct_path = format!("/v/t62.reupload-24/{}.enc", hex::encode(rand::random::<[u8; 12]>()));
        objects.insert(direct_path.clone(), Object { expired: false, corrupt: false, ..object });
        drop(objects);
        self.remember(id, Sent { direct_path: direct_path.clone(), ..sent });
        Some(direct_path)
    }
}

/// What an upload gives the message that carries it.
pub(crate) struct Uploaded {
    pub media_key: Vec<u8>,
    pub file_sha256: [u8; 32],
    pub file_enc_sha256: [u8; 32],
    pub direct_path: String,
}

/// Starts the CDN's HTTP listener on 127.0.0.1.
pub(crate) async fn serve(cdn: Arc<Cdn>) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let _ = cdn.host.set(addr.to_string());
    let app = Router::new()
        .route("/mms/{kind}/{token}", axum::routing::post(upload))
        .route("/v/{*path}", axum::routing::get(download))
        .with_state(cdn);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

#[derive(Deserialize)]
struct Params {
    auth: Option<String>,
    token: Option<String>,
    resume: Option<String>,
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": why }))).into_response()
}

fn mms_kind(segment: &str) -> Option<MediaKind> {
    Some(match segment {
        "image" => MediaKind::Image,
        "video" => MediaKind::Video,
        "audio" => MediaKind::Audio,
        "document" => MediaKind::Document,
        _ => return None,
    })
}

async fn upload(
    State(cdn): State<Arc<Cdn>>,
    Path((kind, token)): Path<(String, String)>,
    Query(q): Query<Params>,
    body: Bytes,
) -> Response {
    if q.auth.as_deref() != Some(cdn.auth().as_str()) {
        return refuse(StatusCode::UNAUTHORIZED, "bad media auth");
    }
    let Some(kind) = mms_kind(&kind) else { return refuse(StatusCode::NOT_FOUND, "unknown media type") };
    // Nothing is kept half-uploaded, so there is never anything to resume.
    if q.resume.is_some() {
        return refuse(StatusCode::NOT_FOUND, "no partial upload");
    }
    let Ok(expected) = URL_SAFE_NO_PAD.decode(&token) else { return refuse(StatusCode::BAD_REQUEST, "bad token") };
    if sha256(&body) != expected.as_slice() {
        return refuse(StatusCode::BAD_REQUEST, "the body's SHA-256 is not the token (fileEncSha256)");
    }
    let direct_path = cdn.store(kind, body.to_vec());
    cdn.uploads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let url = format!("https://{}{direct_path}", cdn.host());
    axum::Json(serde_json::json!({ "url": url, "direct_path": direct_path })).into_response()
}

async fn download(State(cdn): State<Arc<Cdn>>, Path(path): Path<String>, Query(q): Query<Params>) -> Response {
    if q.auth.as_deref().is_some_and(|a| a != cdn.auth()) {
        return refuse(StatusCode::UNAUTHORIZED, "bad media auth");
    }
    let direct_path = format!("/v/{path}");
    let Some(object) = cdn.objects().get(&direct_path).cloned() else {
        return refuse(StatusCode::NOT_FOUND, "no such media");
    };
    if q.token.as_deref().and_then(|t| URL_SAFE_NO_PAD.decode(t).ok()).as_deref() != Some(&object.enc_sha256[..]) {
        return refuse(StatusCode::NOT_FOUND, "the token does not name this media");
    }
    if object.expired {
        return refuse(StatusCode::GONE, "the media expired");
    }
    if object.corrupt {
        let mut file = object.file.to_vec();
        if let Some(b) = file.first_mut() {
            *b ^= 0x55;
        }
        return (StatusCode::OK, file).into_response();
    }
    (StatusCode::OK, object.file).into_response()
}

/// What a contact sends as media.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Media {
    pub mime: String,
    pub data: Vec<u8>,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    /// Length of audio or video, in seconds.
    pub seconds: Option<u32>,
}

/// The message carrying uploaded media, as a phone builds it.
pub(crate) fn message(kind: MediaKind, media: &Media, up: &Uploaded, cdn: &Cdn) -> wa::Message {
    // Every media message type has the same CDN fields under the same names.
    macro_rules! uploaded {
        ($ty:ident { $($field:ident : $value:expr),* $(,)? }) => {
            buffa::MessageField::some(wa::message::$ty {
                url: Some(format!("https://{}{}", cdn.host(), up.direct_path)),
                direct_path: Some(up.direct_path.clone()),
                media_key: Some(up.media_key.clone()),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                file_length: Some(media.data.len() as u64),
                media_key_timestamp: Some(crate::clock::now() as i64),
                mimetype: Some(media.mime.clone()),
                $($field: $value,)*
                ..Default::default()
            })
        };
    }
    let mut m = wa::Message::default();
    match kind {
        MediaKind::Image => m.image_message = uploaded!(ImageMessage { caption: media.caption.clone() }),
        MediaKind::Sticker => m.sticker_message = uploaded!(StickerMessage {}),
        MediaKind::Video => {
            m.video_message = uploaded!(VideoMessage { caption: media.caption.clone(), seconds: media.seconds })
        }
        MediaKind::Audio | MediaKind::Voice => {
            m.audio_message = uploaded!(AudioMessage { seconds: media.seconds, ptt: Some(kind == MediaKind::Voice) })
        }
        MediaKind::Document => {
            m.document_message = uploaded!(DocumentMessage {
                caption: media.caption.clone(),
                file_name: media.file_name.clone(),
                title: media.file_name.clone(),
            })
        }
    }
    m
}

/// Media a contact received from a linked device, downloaded and checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReceivedMedia {
    pub from: String,
    pub id: String,
    pub kind: MediaKind,
    pub mime: String,
    pub caption: Option<String>,
    pub file_name: Option<String>,
    pub size: u64,
    /// Hex SHA-256 of the decrypted bytes.
    pub sha256: String,
    pub seconds: Option<u32>,
    pub ptt: Option<bool>,
    /// Bars of a voice note's waveform, as sent (0-100 each).
    pub waveform: Option<Vec<u8>>,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The media fields of a message, whatever its kind.
struct Fields<'a> {
    kind: MediaKind,
    mime: Option<&'a str>,
    caption: Option<&'a str>,
    file_name: Option<&'a str>,
    direct_path: Option<&'a str>,
    media_key: Option<&'a [u8]>,
    file_sha256: Option<&'a [u8]>,
    file_enc_sha256: Option<&'a [u8]>,
    seconds: Option<u32>,
    ptt: Option<bool>,
    waveform: Option<&'a [u8]>,
}

fn fields(m: &wa::Message) -> Option<Fields<'_>> {
    // The CDN fields have the same names in every media message type.
    macro_rules! fields {
        ($x:expr, $kind:expr, caption: $caption:expr, file_name: $name:expr, seconds: $secs:expr, ptt: $ptt:expr, waveform: $wave:expr) => {
            Fields {
                kind: $kind,
                mime: $x.mimetype.as_deref(),
                caption: $caption,
                file_name: $name,
                direct_path: $x.direct_path.as_deref(),
                media_key: $x.media_key.as_deref(),
                file_sha256: $x.file_sha256.as_deref(),
                file_enc_sha256: $x.file_enc_sha256.as_deref(),
                seconds: $secs,
                ptt: $ptt,
                waveform: $wave,
            }
        };
    }
    if let Some(i) = m.image_message.as_option() {
        return Some(
            fields!(i, MediaKind::Image, caption: i.caption.as_deref(), file_name: None, seconds: None, ptt: None, waveform: None),
        );
    }
    if let Some(s) = m.sticker_message.as_option() {
        return Some(
            fields!(s, MediaKind::Sticker, caption: None, file_name: None, seconds: None, ptt: None, waveform: None),
        );
    }
    if let Some(v) = m.video_message.as_option() {
        return Some(
            fields!(v, MediaKind::Video, caption: v.caption.as_deref(), file_name: None, seconds: v.seconds, ptt: None, waveform: None),
        );
    }
    if let Some(a) = m.audio_message.as_option() {
        let kind = if a.ptt == Some(true) { MediaKind::Voice } else { MediaKind::Audio };
        return Some(
            fields!(a, kind, caption: None, file_name: None, seconds: a.seconds, ptt: a.ptt, waveform: a.waveform.as_deref()),
        );
    }
    let d = m
        .document_message
        .as_option()
        .or_else(|| m.document_with_caption_message.as_option()?.message.as_option()?.document_message.as_option())?;
    Some(
        fields!(d, MediaKind::Document, caption: d.caption.as_deref(), file_name: d.file_name.as_deref(), seconds: None, ptt: None, waveform: None),
    )
}

/// A contact's phone fetches and checks the media of a message a device sent: `None` when the
/// message carries no media, an error when what it carries does not check out.
pub(crate) fn receive(cdn: &Cdn, from: &str, id: &str, m: &wa::Message) -> Option<anyhow::Result<ReceivedMedia>> {
    let f = fields(m)?;
    Some((|| {
        let path = f.direct_path.ok_or_else(|| anyhow!("the media message has no direct path"))?;
        let key = f.media_key.ok_or_else(|| anyhow!("the media message has no media key"))?;
        let file = cdn.fetch(path).ok_or_else(|| anyhow!("nothing was uploaded at {path}"))?;
        if Some(&sha256(&file)[..]) != f.file_enc_sha256 {
            bail!("the uploaded file's SHA-256 is not the message's fileEncSha256");
        }
        let data = decrypt(&file, key, f.kind)?;
        let digest = sha256(&data);
        if Some(&digest[..]) != f.file_sha256 {
            bail!("the decrypted media's SHA-256 is not the message's fileSha256");
        }
        Ok(ReceivedMedia {
            from: from.to_owned(),
            id: id.to_owned(),
            kind: f.kind,
            mime: f.mime.unwrap_or_default().to_owned(),
            caption: f.caption.map(str::to_owned),
            file_name: f.file_name.map(str::to_owned),
            size: data.len() as u64,
            sha256: hex::encode(digest),
            seconds: f.seconds,
            ptt: f.ptt,
            waveform: f.waveform.map(<[u8]>::to_vec),
            data,
        })
    })())
}

/// The `mediaretry` notification answering a device's re-upload request for message `id`:
/// the new direct path encrypted under the media key, or error 2 when the phone cannot.
pub(crate) fn retry_notification(cdn: &Cdn, id: &str, to: &str, receipt: &wacore_binary::Node) -> wacore_binary::Node {
    let rmr = receipt.get_optional_child("rmr");
    use wacore_binary::builder::NodeBuilder;
    let base = NodeBuilder::new("notification")
        .attr("type", "mediaretry")
        .attr("id", id.to_owned())
        .attr("from", to.to_owned())
        .attr("t", crate::clock::now().to_string());
    // The phone reads the request first: a receipt it cannot decrypt with the media's key, or
    // one about another message, gets error 3 (a decryption error), as WhatsApp answers.
    let readable = cdn.sent(id).is_some_and(|sent| request_names(receipt, &sent.media_key, id));
    if cdn.sent(id).is_some() && !readable {
        let error = NodeBuilder::new("error").attr("code", "3").build();
        return base.children(std::iter::once(error).chain(rmr.cloned())).build();
    }
    let answer = cdn.sent(id).zip(cdn.reupload(id)).and_then(|(sent, path)| {
        let key = retry_key(&sent.media_key)?;
        let note = wa::MediaRetryNotification {
            stanza_id: Some(id.to_owned()),
            direct_path: Some(path),
            result: Some(wa::media_retry_notification::ResultType::SUCCESS),
            ..Default::default()
        };
        let iv: [u8; 12] = rand::random();
        let mut ct = Vec::new();
        wacore_libsignal::crypto::aes_256_gcm_encrypt(
            &key,
            &iv,
            id.as_bytes(),
            &buffa::Message::encode_to_vec(&note),
            &mut ct,
        )
        .ok()?;
        Some(
            NodeBuilder::new("encrypt")
                .children([
                    NodeBuilder::new("enc_p").bytes(ct).build(),
                    NodeBuilder::new("enc_iv").bytes(iv.to_vec()).build(),
                ])
                .build(),
        )
    });
    let mut children = vec![answer.unwrap_or_else(|| NodeBuilder::new("error").attr("code", "2").build())];
    children.extend(rmr.cloned());
    base.children(children).build()
}

fn retry_key(media_key: &[u8]) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    wacore::crypto::hkdf_sha256_into(media_key, None, b"WhatsApp Media Retry Notification", &mut key).ok()?;
    Some(key)
}

/// Whether a `server-error` receipt's `<encrypt>` opens with the media key and names `id`.
fn request_names(receipt: &wacore_binary::Node, media_key: &[u8], id: &str) -> bool {
    let bytes = |tag: &str| match &receipt.get_optional_child("encrypt")?.get_optional_child(tag)?.content {
        Some(wacore_binary::NodeContent::Bytes(b)) => Some(b.clone()),
        _ => None,
    };
    let (Some(ct), Some(iv), Some(key)) = (bytes("enc_p"), bytes("enc_iv"), retry_key(media_key)) else { return false };
    let Ok(iv) = <[u8; 12]>::try_from(iv.as_slice()) else { return false };
    let mut plain = Vec::new();
    if wacore_libsignal::crypto::aes_256_gcm_decrypt(&key, &iv, id.as_bytes(), &ct, &mut plain).is_err() {
        return false;
    }
    <wa::ServerErrorReceipt as buffa::Message>::decode_from_slice(&plain)
        .is_ok_and(|r| r.stanza_id.as_deref() == Some(id))
}
