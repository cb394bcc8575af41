//! `hermes pairing list | approve whatsapp CODE | revoke whatsapp SENDER`: the owner's side of
//! approval codes. The running gateway reads approvals for every message, so they take effect
//! at once, without a restart.

use std::io::Write as _;

use anyhow::Context as _;
use hermes_core::identity::Jid;
use hermes_core::pairing;
use serde_json::json;

use crate::{exit, load};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Codes waiting for approval, and approved senders.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Admit the sender a code was sent to: `hermes pairing approve whatsapp CODE`.
    Approve { platform: String, code: String },
    /// Withdraw an approval: `hermes pairing revoke whatsapp SENDER` (a number or a JID).
    Revoke { platform: String, sender: String },
}

/// `state/hermes.db` for a command that writes to it beside the running gateway (which reads
/// approvals and pauses for every message, so they take effect at once); `Err(exit code)` when
/// an older gateway runs, which a migration would leave unable to read it (said).
pub(crate) fn open_for_writing(loaded: &load::Loaded) -> anyhow::Result<Result<hermes_store::Store, u8>> {
    let state = loaded.home.path.join("state");
    hermes_store::files::create_private_dir_all(&state)?;
    let db = state.join("hermes.db");
    // Opening migrates an older file, which an older gateway still running could no longer
    // read: it would journal on and answer nothing. Its restart migrates it instead.
    let current = hermes_store::Store::open_read_only(&db)
        .and_then(|s| s.map(|s| s.schema_version()).transpose())
        .with_context(|| format!("open {}", db.display()))?;
    if current.is_some_and(|v| v < hermes_store::SCHEMA_VERSION)
        && let Some(pid) = hermes_whatsapp::lock::SessionLock::holder(&loaded.session_dir().path)
    {
        eprintln!(
            "hermes: the running gateway (PID {pid}) is an older hermes: restart it (`hermes gateway`), which \
             upgrades the state database, then run this again"
        );
        return Ok(Err(exit::PROBLEM));
    }
    Ok(Ok(hermes_store::Store::open(&db).with_context(|| format!("open {}", db.display()))?))
}

fn check_platform(p: &str) -> Result<(), String> {
    if p.eq_ignore_ascii_case("whatsapp") {
        Ok(())
    } else {
        Err(format!("this gateway serves WhatsApp only, not '{p}': write `whatsapp` as the platform"))
    }
}

pub fn run(profile: Option<&str>, command: &Command) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let mut store = match open_for_writing(&loaded)? {
        Ok(store) => store,
        Err(code) => return Ok(code),
    };
    let now = hermes_store::clock::now();
    let mut out = std::io::stdout().lock();
    match command {
        Command::List { json } => {
            let waiting: Vec<_> = store
                .codes_since(now - pairing::CODE_TTL_SECS)?
                .into_iter()
                .filter(|c| c.approved_at.is_none())
                .collect();
            let approved = store.approvals()?;
            if *json {
                let waiting: Vec<_> = waiting
                    .iter()
                    .map(|c| json!({"code": c.code, "sender": c.sender.to_string(), "expires_at": c.created_at + pairing::CODE_TTL_SECS}))
                    .collect();
                let approved: Vec<_> = approved
                    .iter()
                    .map(|a| json!({"sender": a.sender.to_string(), "approved_at": a.approved_at}))
                    .collect();
                writeln!(out, "{}", json!({"pending": waiting, "approved": approved}))?;
                return Ok(exit::OK);
            }
            if waiting.is_empty() {
                writeln!(out, "No pairing code is waiting.")?;
            } else {
                writeln!(out, "Waiting for approval:")?;
                for c in &waiting {
                    let left = (c.created_at + pairing::CODE_TTL_SECS - now).max(0) / 60;
                    writeln!(out, "  {}  {}  (expires in {left} min)", c.code, c.sender)?;
                }
                writeln!(out, "Approve one with: hermes pairing approve whatsapp CODE")?;
            }
            if !approved.is_empty() {
                writeln!(out, "Approved senders:")?;
                for a in &approved {
                    writeln!(out, "  {}", a.sender)?;
                }
            }
            Ok(exit::OK)
        }
        Command::Approve { platform, code } => {
            if let Err(e) = check_platform(platform).and_then(|()| pairing::parse_code(code).map(|_| ())) {
                eprintln!("hermes: {e}");
                return Ok(exit::USAGE);
            }
            let code = pairing::parse_code(code).expect("checked above");
            match store.approve(&code, now - pairing::CODE_TTL_SECS, now)? {
                Some(sender) => {
                    writeln!(out, "Approved {sender}: their next message reaches the agent.")?;
                    Ok(exit::OK)
                }
                None => {
                    eprintln!(
                        "hermes: no pairing code {code} is waiting (codes expire after one hour and work once); \
                         see `hermes pairing list`"
                    );
                    Ok(exit::PROBLEM)
                }
            }
        }
        Command::Revoke { platform, sender } => {
            let jid = match check_platform(platform).and_then(|()| Jid::parse_chat(sender)) {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("hermes: {e}");
                    return Ok(exit::USAGE);
                }
            };
            // An approval is kept under the form the sender wrote from; accept the other one.
            let mut revoked = store.revoke(&jid)?;
            if let Some(alias) = store.alias_of(&jid)? {
                revoked |= store.revoke(&alias)?;
            }
            if revoked {
                writeln!(out, "Revoked {jid}: their messages no longer reach the agent.")?;
                Ok(exit::OK)
            } else {
                eprintln!("hermes: {jid} has no approval to revoke; see `hermes pairing list`");
                Ok(exit::PROBLEM)
            }
        }
    }
}
