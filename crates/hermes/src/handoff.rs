//! `hermes pause CHAT [--minutes N]` and `hermes resume CHAT`: a person takes a chat over, or
//! hands it back (`hermes_core::handoff`). The running gateway reads the pause for every
//! message, so it takes effect at once.

use hermes_core::handoff::{Pause, PausedBy};
use hermes_core::identity::Jid;

use crate::{exit, load};

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The chat: a phone number with its country code, or a JID (a group's `...@g.us`).
    pub chat: String,
    /// For this many minutes (without it: until `hermes resume`).
    #[arg(long)]
    pub minutes: Option<u64>,
}

/// The chat named, and the state database to change it in; `Err(exit code)` when it cannot be
/// changed now (said).
fn open(profile: Option<&str>, chat: &str) -> anyhow::Result<Result<(Jid, hermes_store::Store), u8>> {
    let chat = Jid::parse_chat(chat).map_err(exit::usage)?;
    let loaded = load::load(profile)?;
    Ok(crate::pairing::open_for_writing(&loaded)?.map(|store| (chat, store)))
}

pub fn pause(profile: Option<&str>, args: &PauseArgs) -> anyhow::Result<u8> {
    let (chat, mut store) = match open(profile, &args.chat)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    let now = hermes_store::clock::now();
    let until = args.minutes.map(|m| now.saturating_add(i64::try_from(m.saturating_mul(60)).unwrap_or(i64::MAX)));
    store.pause(&chat, &Pause { since: now, until, by: PausedBy::Cli })?;
    match args.minutes {
        Some(m) => println!(
            "Paused {chat} for {m} minute(s): the agent does not answer there until then (`hermes resume {}` ends it sooner).",
            args.chat
        ),
        None => println!("Paused {chat}: the agent does not answer there until `hermes resume {}`.", args.chat),
    }
    Ok(exit::OK)
}

pub fn resume(profile: Option<&str>, chat: &str) -> anyhow::Result<u8> {
    let (jid, mut store) = match open(profile, chat)? {
        Ok(opened) => opened,
        Err(code) => return Ok(code),
    };
    if store.resume(&jid)? {
        println!("Resumed {jid}: the agent answers there again.");
    } else {
        println!("{jid} was not paused; nothing was changed.");
    }
    Ok(exit::OK)
}
