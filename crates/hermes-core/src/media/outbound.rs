//! Files the agent sends: Hermes' `MEDIA:<path>` lines in a reply, its `[[audio_as_voice]]`
//! and `[[as_document]]` tags, what kind of message each file becomes, and which files may
//! leave the machine at all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::MediaKind;

/// A file queued to be sent: where it is, what it becomes, and once uploaded, the reference
/// the message carries (kept, so a crash after the upload does not upload it again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutMedia {
    pub path: String,
    pub kind: MediaKind,
    pub mime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Length of audio or video, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// A voice note's waveform: 64 bars, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waveform: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<Uploaded>,
}

/// Where an upload landed and the keys to read it: what a media message carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub url: String,
    pub direct_path: String,
    #[serde(with = "super::hex_bytes")]
    pub media_key: Vec<u8>,
    #[serde(with = "super::hex_bytes")]
    pub file_sha256: Vec<u8>,
    #[serde(with = "super::hex_bytes")]
    pub file_enc_sha256: Vec<u8>,
    pub file_length: u64,
    pub media_key_timestamp: i64,
}

impl OutMedia {
    /// A file to send as the kind its extension says (see [`kind_for`]).
    pub fn for_path(path: &Path, caption: Option<String>, as_voice: bool, as_document: bool) -> OutMedia {
        let kind = kind_for(path, as_voice, as_document);
        OutMedia {
            path: path.display().to_string(),
            kind,
            mime: mime_for(path).to_owned(),
            file_name: (kind == MediaKind::Document)
                .then(|| path.file_name().and_then(|n| n.to_str()).map(str::to_owned))
                .flatten(),
            caption,
            seconds: None,
            waveform: None,
            uploaded: None,
        }
    }
}

/// A reply with its files taken out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// The reply's text, without the `MEDIA:` lines and tags.
    pub text: String,
    /// The files named, in order, as written.
    pub files: Vec<String>,
    /// `[[audio_as_voice]]`: audio goes as voice notes.
    pub as_voice: bool,
    /// `[[as_document]]`: pictures go as documents.
    pub as_document: bool,
    /// Images inlined as Markdown `data:` URLs (Hermes' API server inlines the images its
    /// agent names with `MEDIA:`), in order.
    pub inline: Vec<InlineImage>,
}

/// An image inlined in a reply: `![alt](data:image/png;base64,...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineImage {
    /// `image/png`...
    pub mime: String,
    /// The base64 text, not yet decoded.
    pub base64: String,
}

impl InlineImage {
    /// A file name for it, by its type.
    pub fn file_name(&self, n: usize) -> String {
        let ext = match self.mime.as_str() {
            "image/jpeg" | "image/jpg" => "jpg",
            "image/gif" => "gif",
            "image/webp" => "webp",
            "image/bmp" => "bmp",
            _ => "png",
        };
        format!("image-{n}.{ext}")
    }
}

/// Takes `![alt](data:image/...;base64,...)` out of `text`: the text without them, and them.
fn take_inline_images(text: &str) -> (String, Vec<InlineImage>) {
    let mut out = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("![") {
        let (before, candidate) = rest.split_at(at);
        let parsed = candidate.find("](data:").and_then(|close| {
            let alt = &candidate[2..close];
            if alt.contains(['\n', ']']) {
                return None;
            }
            let url_start = close + 2;
            let end = url_start + candidate[url_start..].find(')')?;
            let url = &candidate[url_start..end];
            let (head, data) = url.strip_prefix("data:")?.split_once(',')?;
            let mime = head.strip_suffix(";base64")?;
            mime.starts_with("image/")
                .then(|| (InlineImage { mime: mime.to_owned(), base64: data.trim().to_owned() }, end + 1))
        });
        out.push_str(before);
        match parsed {
            Some((image, used)) => {
                found.push(image);
                rest = &candidate[used..];
            }
            None => {
                out.push_str("![");
                rest = &candidate[2..];
            }
        }
    }
    out.push_str(rest);
    (out, found)
}

/// Extensions Hermes delivers (`MEDIA_DELIVERY_EXTS`).
const EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "bmp", "tiff", "svg", "mp4", "mov", "avi", "mkv", "webm", "mp3", "wav", "ogg",
    "opus", "m4a", "flac", "pdf", "docx", "doc", "odt", "rtf", "txt", "md", "epub", "xlsx", "xls", "ods", "csv", "tsv",
    "json", "xml", "yaml", "yml", "pptx", "ppt", "odp", "key", "zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar",
    "html", "htm",
];

/// Takes `MEDIA:<path>` out of a reply, as Hermes' `extract_media` does: the path may be
/// wrapped in backticks or quotes (then it may contain spaces), or written bare from `/` or
/// `~/` with a known extension. A `MEDIA:` inside a fenced code block is left alone.
pub fn extract(reply: &str) -> Extracted {
    let mut out = Extracted {
        as_voice: reply.contains("[[audio_as_voice]]"),
        as_document: reply.contains("[[as_document]]"),
        ..Extracted::default()
    };
    let mut kept: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in reply.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            kept.push(line.to_owned());
            continue;
        }
        if fenced {
            kept.push(line.to_owned());
            continue;
        }
        let mut rest = line.replace("[[audio_as_voice]]", "").replace("[[as_document]]", "");
        let mut text = String::new();
        while let Some(at) = rest.find("MEDIA:") {
            let (before, after) = rest.split_at(at);
            let after = &after["MEDIA:".len()..];
            match path_at(after.trim_start()) {
                Some((path, used)) => {
                    // A wrapper quote just before `MEDIA:` goes with it.
                    text.push_str(before.trim_end_matches(['`', '"', '\'']));
                    out.files.push(path);
                    let consumed = after.len() - after.trim_start().len() + used;
                    rest = after[consumed..].trim_start_matches(['`', '"', '\'']).to_owned();
                }
                None => {
                    text.push_str(before);
                    text.push_str("MEDIA:");
                    rest = after.to_owned();
                }
            }
        }
        text.push_str(&rest);
        if !(text.trim().is_empty() && line.trim() != text.trim()) {
            kept.push(text.trim_end().to_owned());
        }
    }
    let (text, inline) = take_inline_images(&kept.join("\n"));
    if inline.is_empty() {
        out.text = text.trim().to_owned();
        return out;
    }
    out.inline = inline;
    // Lines an image took alone leave no blank run behind.
    let lines: Vec<&str> = text.lines().collect();
    let mut tidy: Vec<&str> = Vec::with_capacity(lines.len());
    for line in lines {
        if line.trim().is_empty() && tidy.last().is_some_and(|l| l.trim().is_empty()) {
            continue;
        }
        tidy.push(line);
    }
    out.text = tidy.join("\n").trim().to_owned();
    out
}

/// The path at the start of `s` and how many bytes it took.
fn path_at(s: &str) -> Option<(String, usize)> {
    let first = s.chars().next()?;
    if matches!(first, '`' | '"' | '\'') {
        let end = s[1..].find(first)?;
        let path = &s[1..=end];
        return (!path.is_empty() && !path.contains('\n')).then(|| (path.to_owned(), end + 2));
    }
    if !(s.starts_with('/') || s.starts_with("~/")) {
        return None;
    }
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    let path = s[..end].trim_end_matches([',', ';', ':', ')', ']', '}', '.', '`', '"', '\'']);
    let ext = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    EXTENSIONS.contains(&ext.as_str()).then(|| (path.to_owned(), path.len()))
}

/// What kind of message a file becomes, by its extension (Hermes' standalone sender).
pub fn kind_for(path: &Path, as_voice: bool, as_document: bool) -> MediaKind {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "webp" | "gif" if !as_document => MediaKind::Image,
        "mp4" | "mov" | "avi" | "mkv" | "webm" | "3gp" if !as_document => MediaKind::Video,
        "ogg" | "opus" | "mp3" | "wav" | "m4a" | "flac" if as_voice => MediaKind::Voice,
        "ogg" | "opus" | "mp3" | "wav" | "m4a" | "flac" if !as_document => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

/// The MIME type of a file WhatsApp is told, by extension.
pub fn mime_for(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "3gp" => "video/3gpp",
        "ogg" | "opus" => "audio/ogg; codecs=opus",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "m4a" => "audio/mp4",
        "flac" => "audio/flac",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "zip" => "application/zip",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => "application/octet-stream",
    }
}

/// Where the agent's files may come from: `HERMES_HOME/cache` and the directories in
/// `HERMES_MEDIA_ALLOW_DIRS` (separated by `:` or `,`), never a secret's place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub dirs: Vec<PathBuf>,
    /// Never sent, even inside an allowed directory: HERMES_HOME's secrets and session.
    pub denied: Vec<PathBuf>,
}

impl Allowed {
    pub fn new(home: &Path, allow_dirs: Option<&str>) -> Allowed {
        Allowed::resolved(home, allow_dirs, Path::to_path_buf)
    }

    /// With every directory passed through `resolve` (the caller's `canonicalize`), so that a
    /// file's resolved path is compared with resolved directories: a HERMES_HOME reached
    /// through a symlink neither refuses its own cache nor lets its secrets through.
    pub fn resolved(home: &Path, allow_dirs: Option<&str>, resolve: impl Fn(&Path) -> PathBuf) -> Allowed {
        let mut dirs = vec![resolve(&home.join("cache"))];
        for d in allow_dirs.unwrap_or_default().split([':', ',']).map(str::trim).filter(|d| !d.is_empty()) {
            dirs.push(resolve(Path::new(d)));
        }
        let denied = [".env", "auth.json", "credentials", "config.yaml", "state", "platforms", "whatsapp", "logs"]
            .iter()
            .map(|p| resolve(&home.join(p)))
            .collect();
        Allowed { dirs, denied }
    }

    /// Whether a file (given by its resolved, absolute path) may be sent; the error says why
    /// not and how to allow it.
    pub fn check(&self, resolved: &Path) -> Result<(), String> {
        if !resolved.is_absolute() {
            return Err(format!("'{}' is not an absolute path", resolved.display()));
        }
        if self.denied.iter().any(|d| resolved.starts_with(d)) {
            return Err(format!("'{}' is hermes' own configuration or session and is never sent", resolved.display()));
        }
        if self.dirs.iter().any(|d| resolved.starts_with(d)) {
            return Ok(());
        }
        Err(format!(
            "'{}' is outside the directories files may be sent from ({}); add its directory to HERMES_MEDIA_ALLOW_DIRS",
            resolved.display(),
            self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_lines_are_taken_out_with_their_tags() {
        let e = extract("Here is the chart.\nMEDIA:/home/u/.hermes/cache/images/chart.png\nEnjoy!");
        assert_eq!(e.files, ["/home/u/.hermes/cache/images/chart.png"]);
        assert_eq!(e.text, "Here is the chart.\nEnjoy!");
        let e = extract("[[audio_as_voice]]\nMEDIA:`/tmp/my voice.ogg`");
        assert_eq!(
            (e.files.as_slice(), e.text.as_str(), e.as_voice),
            (&["/tmp/my voice.ogg".to_owned()][..], "", true)
        );
        let e = extract("See \"MEDIA:/srv/a.pdf\", and MEDIA: ~/b.txt.");
        assert_eq!(e.files, ["/srv/a.pdf", "~/b.txt"]);
        assert_eq!(e.text, "See , and .");
        // Not a path, an unknown extension, or in a code block: left as written.
        for kept in ["MEDIA: is a tag", "MEDIA:/x/y.unknown", "```\nMEDIA:/a.png\n```"] {
            let e = extract(kept);
            assert!(e.files.is_empty(), "{kept}");
            assert_eq!(e.text, kept);
        }
    }

    #[test]
    fn kinds_follow_hermes_standalone_sender() {
        assert_eq!(kind_for(Path::new("/a/b.JPG"), false, false), MediaKind::Image);
        assert_eq!(kind_for(Path::new("/a/b.png"), false, true), MediaKind::Document);
        assert_eq!(kind_for(Path::new("/a/b.ogg"), true, false), MediaKind::Voice);
        assert_eq!(kind_for(Path::new("/a/b.mp3"), true, false), MediaKind::Voice);
        assert_eq!(kind_for(Path::new("/a/b.mp3"), false, false), MediaKind::Audio);
        assert_eq!(kind_for(Path::new("/a/b.pdf"), false, false), MediaKind::Document);
        assert_eq!(mime_for(Path::new("x.ogg")), "audio/ogg; codecs=opus");
    }

    #[test]
    fn only_allowed_directories_and_never_secrets() {
        let a = Allowed::new(Path::new("/h"), Some("/srv/out, /data"));
        assert!(a.check(Path::new("/h/cache/images/x.png")).is_ok());
        assert!(a.check(Path::new("/srv/out/r.pdf")).is_ok());
        assert!(a.check(Path::new("/data/d.csv")).is_ok());
        assert!(a.check(Path::new("/etc/passwd")).expect_err("outside").contains("HERMES_MEDIA_ALLOW_DIRS"));
        assert!(a.check(Path::new("/h/.env")).expect_err("secret").contains("never sent"));
        assert!(
            Allowed::new(Path::new("/h"), Some("/h")).check(Path::new("/h/platforms/whatsapp/session/s.db")).is_err()
        );
        assert!(a.check(Path::new("rel/x.png")).is_err());
    }

    #[test]
    fn images_hermes_inlined_are_taken_out_of_the_text() {
        let reply = "Here is the chart:\n\n![chart](data:image/png;base64,iVBORw0KGgo=)\n\nAnything else?";
        let e = extract(reply);
        assert_eq!(e.text, "Here is the chart:\n\nAnything else?");
        assert_eq!(e.inline, vec![InlineImage { mime: "image/png".into(), base64: "iVBORw0KGgo=".into() }]);
        assert_eq!(e.inline[0].file_name(1), "image-1.png");
        // Not an image, or not inline: left as written.
        for kept in ["![logo](https://example.org/a.png)", "![x](data:text/plain;base64,AA==)", "a ![ b"] {
            let e = extract(kept);
            assert!(e.inline.is_empty(), "{kept}");
            assert_eq!(e.text, kept);
        }
    }
}
