//! `hermes history export`: a chat's record from the journal, as hermes kept it (what arrived,
//! what was sent, what was not answered and why; media by reference), as JSON lines or text.
//! Read-only, like `drops`: nothing is created or changed.

use std::io::Write as _;

use anyhow::Context as _;
use hermes_core::identity::Jid;
use serde_json::json;

use crate::{exit, load};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a chat's record (or every chat's), oldest first.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Only this chat: a phone number with its country code, or a JID.
    #[arg(long)]
    chat: Option<String>,
    /// How far back: 30m, 1h, 2d... (default: everything kept, see WHATSAPP_RETENTION_DAYS).
    #[arg(long, value_parser = crate::drops::parse_age)]
    since: Option<u64>,
    /// `jsonl` (one JSON object a line: at, chat, kind, from, id, text, media, state) or `txt`.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "txt"])]
    format: String,
}

pub fn run(profile: Option<&str>, command: &Command) -> anyhow::Result<u8> {
    let Command::Export(args) = command;
    let chat = match args.chat.as_deref().map(Jid::parse_chat).transpose() {
        Ok(c) => c,
        Err(e) => return Err(exit::usage(e)),
    };
    let loaded = load::load(profile)?;
    let now = hermes_store::clock::now();
    let since = args.since.map_or(0, |s| now.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX)).max(0));
    let db = loaded.home.path.join("state").join("hermes.db");
    let entries = match hermes_store::Store::open_read_only(&db).with_context(|| format!("open {}", db.display()))? {
        Some(store) => store.export(chat.as_ref(), since).with_context(|| format!("read {}", db.display()))?,
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    for e in &entries {
        let written = if args.format == "txt" {
            let who = match (&e.kind, &e.from) {
                (hermes_store::EntryKind::Sent, _) => "hermes".to_owned(),
                (_, Some(f)) => f.to_string(),
                (_, None) => String::new(),
            };
            let media = e.media.as_ref().map(|_| " [media]").unwrap_or_default();
            let text = e.text.as_deref().unwrap_or_default().replace('\n', "\n    ");
            writeln!(out, "{} {} {} {who} ({}){media}: {text}", e.at, e.chat, e.kind.as_str(), e.state)
        } else {
            let media: Option<serde_json::Value> = e.media.as_deref().and_then(|m| serde_json::from_str(m).ok());
            let line = json!({
                "at": e.at,
                "chat": e.chat.to_string(),
                "kind": e.kind.as_str(),
                "from": e.from.as_ref().map(ToString::to_string),
                "id": e.id,
                "text": e.text,
                "media": media,
                "state": e.state,
            });
            writeln!(out, "{line}")
        };
        if let Err(err) = written {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(err.into());
        }
    }
    Ok(exit::OK)
}
