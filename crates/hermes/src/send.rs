//! `hermes send --to whatsapp[:CHAT] TEXT`: a message through the running gateway (its
//! outbox, so it is sent once even if the link is down for a while), to
//! `WHATSAPP_HOME_CHANNEL` when no chat is given.

use std::io::Write as _;

use anyhow::Context as _;

use crate::{exit, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `whatsapp` (the home channel) or `whatsapp:CHAT` (a phone number or a JID).
    #[arg(long, default_value = "whatsapp")]
    to: String,
    /// The message (words are joined with spaces); with --file, its caption.
    #[arg(required_unless_present = "file")]
    text: Vec<String>,
    /// Send this file: images as images, audio and video as such, anything else as a
    /// document with its name.
    #[arg(long, value_name = "PATH")]
    file: Option<std::path::PathBuf>,
    /// The file's caption (the same as giving TEXT).
    #[arg(long, requires = "file")]
    caption: Option<String>,
    /// Send an Ogg Opus file as a voice note.
    #[arg(long, requires = "file")]
    voice: bool,
}

pub async fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let chat = match args.to.split_once(':') {
        Some((p, chat)) if p.eq_ignore_ascii_case("whatsapp") => Some(chat.to_owned()),
        None if args.to.eq_ignore_ascii_case("whatsapp") => None,
        _ => {
            eprintln!(
                "hermes: --to '{}': write whatsapp or whatsapp:CHAT (this gateway serves WhatsApp only)",
                args.to
            );
            return Ok(exit::USAGE);
        }
    };
    let file = hermes_gateway::control_file(&loaded.home.path.join("state"));
    let not_running = || {
        eprintln!(
            "hermes: the gateway is not running for {}: start it with `hermes gateway`",
            loaded.home.path.display()
        );
        Ok(exit::PROBLEM)
    };
    // Opened without following a symlink, and judged by the descriptor that is read: the
    // token is what lets a caller send as the owner, so it is trusted only from a private file.
    let opened = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(&file)
    };
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return not_running(),
        Err(e) => {
            eprintln!(
                "hermes: {}: {e}; it must be a regular file of yours: remove it and restart `hermes gateway`",
                file.display()
            );
            return Ok(exit::PROBLEM);
        }
    };
    if let Err(why) = private_to_this_user(&file, &f.metadata()?) {
        eprintln!("hermes: {why}");
        return Ok(exit::PROBLEM);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes).with_context(|| format!("read {}", file.display()))?;
    let info: Option<hermes_gateway::ControlInfo> = serde_json::from_slice(&bytes).ok();
    let Some(info) = info.filter(|i| hermes_whatsapp::lock::process_alive(i.pid)) else {
        return not_running();
    };
    let file = match &args.file {
        Some(f) => match std::path::absolute(f) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("hermes: --file '{}': {e}", f.display());
                return Ok(exit::USAGE);
            }
        },
        None => None,
    };
    // A gateway run as a service has a /tmp of its own (PrivateTmp): a file there is handed
    // over through HERMES_HOME, and the hand-over copy removed once the gateway has its own.
    let staged = match file.as_deref().filter(|p| p.starts_with("/tmp") || p.starts_with("/var/tmp")) {
        Some(p) => match stage(&loaded.home.path, p) {
            Ok(copy) => Some(copy),
            Err(e) => {
                eprintln!("hermes: --file '{}': {e}", p.display());
                return Ok(exit::USAGE);
            }
        },
        None => None,
    };
    let _cleanup = staged.as_ref().map(|c| Cleanup(c.clone()));
    let file = staged.or(file).map(|p| p.display().to_string());
    let text = args.caption.clone().unwrap_or_else(|| args.text.join(" "));
    let body = serde_json::json!({"to": chat, "text": text, "file": file, "voice": args.voice});
    let answer = async {
        let client = reqwest::Client::builder()
            .unix_socket(info.socket.as_path())
            // The gateway answers within 20 s (sent or queued); more is a gateway in trouble.
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let response = client.post("http://gateway/send").bearer_auth(&info.token).json(&body).send().await?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await?;
        anyhow::Ok((status, answer))
    }
    .await;
    let (status, answer) = match answer {
        Ok(a) => a,
        // A gateway.json whose process is alive but does not answer: stale, or a gateway
        // that is stuck. Either way not a usage error.
        Err(e) => {
            eprintln!(
                "hermes: the gateway for {} does not answer on {} ({e:#}); is it running? restart it with `hermes gateway`",
                loaded.home.path.display(),
                info.socket.display()
            );
            return Ok(exit::PROBLEM);
        }
    };
    let mut out = std::io::stdout().lock();
    match status.as_u16() {
        200 => {
            writeln!(out, "Sent to {}.", answer["chat"].as_str().unwrap_or_default())?;
            Ok(exit::OK)
        }
        202 => {
            writeln!(
                out,
                "Queued for {}: WhatsApp is not connected right now; the gateway sends it when it is.",
                answer["chat"].as_str().unwrap_or_default()
            )?;
            Ok(exit::OK)
        }
        400 => {
            eprintln!("hermes: {}", answer["error"].as_str().unwrap_or("the gateway refused the message"));
            Ok(exit::USAGE)
        }
        _ => {
            eprintln!("hermes: the gateway answered {status}: {}", answer["error"].as_str().unwrap_or_default());
            Ok(exit::PROBLEM)
        }
    }
}

/// Copies a file from a temporary directory into a private directory of its own under
/// `HERMES_HOME/cache/outgoing` (its name kept: it is the name the recipient sees), for a
/// gateway that cannot see this /tmp.
fn stage(home: &std::path::Path, file: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = home.join("cache").join("outgoing").join(format!(
        ".send-{}-{}",
        std::process::id(),
        hermes_store::clock::now_millis()
    ));
    hermes_store::files::create_private_dir_all(&dir)?;
    let copy = dir.join(file.file_name().unwrap_or(std::ffi::OsStr::new("file")));
    let bytes = std::fs::read(file)?;
    hermes_store::files::write_private(&copy, &bytes)?;
    Ok(copy)
}

/// Removes the hand-over copy and its directory, whatever the answer.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Refuses a control file someone else could have written or read.
fn private_to_this_user(path: &std::path::Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = rustix::process::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file; remove it and restart `hermes gateway`", path.display()));
    }
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to you (uid {me}); remove it and restart `hermes gateway` as yourself",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is readable by others (mode {:o}); its token is a secret: remove it and restart `hermes gateway`",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}
