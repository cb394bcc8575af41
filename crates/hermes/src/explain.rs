//! `hermes whatsapp explain`: dry-runs the access decision for one sender.

use std::io::Write;

use hermes_core::access::{self, Decision, DenyAction, NearReason, Verdict};
use hermes_core::allowlist::{self, ChatProblem, parse_user};
use hermes_core::config::Origin;
use hermes_core::identity::{Account, Jid, Lid, PhoneNumber, UserId};
use serde::Serialize;

use crate::exit;
use crate::load::{self, Loaded};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sender: a phone number in any format, a JID or a LID (123456789012345@lid).
    sender: String,
    /// The chat the message arrives in (a group JID, or a person); default: a direct message.
    #[arg(long)]
    chat: Option<String>,
    /// Another known form of the same sender, e.g. its LID for a phone number (repeatable).
    #[arg(long = "alias", value_name = "FORM")]
    aliases: Vec<String>,
    /// The message was sent by the linked account itself.
    #[arg(long)]
    from_me: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    if loaded.resolved.has_errors() {
        for d in loaded.resolved.errors() {
            eprintln!("hermes: configuration error: {d}");
        }
        return Ok(exit::USAGE);
    }
    let sender = match parse_user(&args.sender) {
        Ok(id) => id,
        Err(problem) => {
            return Err(exit::usage(format!(
                "SENDER '{}' {}; give a phone number with its country code, a JID or a LID",
                args.sender,
                problem.describe()
            )));
        }
    };
    let aliases = args
        .aliases
        .iter()
        .map(|a| parse_user(a).map_err(|p| exit::usage(format!("--alias '{a}' {}", p.describe()))))
        .collect::<anyhow::Result<Vec<UserId>>>()?;
    let sender_jid = sender.to_jid();
    let chat = match &args.chat {
        None => sender_jid.clone(),
        Some(c) => parse_chat(c)?,
    };
    let cfg = &loaded.resolved.config.whatsapp;
    // The linked account decides self-chat and the account's own messages. Pairing approvals
    // join when the gateway's store exists (#5); until then they are not counted.
    let own = linked_account(&loaded).await;
    let ctx = access::Context { config: cfg, approvals: &[], own: own.as_ref() };
    let req = access::Request { chat: &chat, sender: &sender_jid, aliases: &aliases, from_me: args.from_me };
    let decision = access::decide(&ctx, &req);

    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let report = JsonReport::new(&loaded, &sender_jid, &aliases, &chat, &decision);
        serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::from).and_then(|()| writeln!(out))
    } else {
        out.write_all(render(&loaded, &sender, &aliases, &chat, &decision).as_bytes())
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok(if decision.is_allowed() { exit::OK } else { exit::PROBLEM })
}

/// The account the session is linked to, if it is.
async fn linked_account(loaded: &Loaded) -> Option<Account> {
    // Read from a snapshot: nothing in the session changes.
    let state = hermes_whatsapp::store::inspect_read_only(&loaded.session_dir().path).await;
    let hermes_whatsapp::store::StoreState::Linked(a) = state else { return None };
    Some(Account { phone: PhoneNumber::from_digits(&a.phone).ok(), lid: a.lid.as_deref().and_then(Lid::from_digits) })
}

/// `--chat`, read by core's parser; a chat it refuses is a usage error.
fn parse_chat(s: &str) -> anyhow::Result<Jid> {
    allowlist::parse_chat(s).map_err(|problem| match problem {
        ChatProblem::Jid(e) => exit::usage(e.to_string()),
        ChatProblem::Person(p) => {
            exit::usage(format!("--chat '{s}' {}; give a group JID (120363...@g.us) or a person", p.describe()))
        }
    })
}

fn action_name(d: &Decision) -> Option<&'static str> {
    d.on_deny.map(|a| match a {
        DenyAction::Ignore => "ignore",
        DenyAction::OfferPairingCode => "pairing_code",
    })
}

fn near_reason(r: &NearReason) -> String {
    match r {
        NearReason::MissingCountryCode { write } => format!("no country code (write {write})"),
        NearReason::NationalZero { write } => format!("national 0 instead of the country code (write {write})"),
        NearReason::Typo { distance } => format!("{distance} digit(s) off"),
        NearReason::Invalid { problem } => format!("invalid: {problem}"),
    }
}

/// Where the fix must go for it to take effect, when `.env` alone is not enough.
fn fix_caveat(decision: &Decision, loaded: &Loaded) -> Option<String> {
    let w = &loaded.resolved.config.whatsapp;
    let settings = [
        ("WHATSAPP_ALLOWED_USERS", &w.allowed_users.origin),
        ("WHATSAPP_MODE", &w.mode.origin),
        ("WHATSAPP_DM_POLICY", &w.dm_policy.origin),
        ("WHATSAPP_GROUP_POLICY", &w.group_policy.origin),
        ("WHATSAPP_GROUP_ALLOWED_USERS", &w.group_allowed.origin),
    ];
    let overridden: Vec<&str> = settings
        .iter()
        .filter(|(key, origin)| {
            matches!(origin, Origin::Env(_)) && decision.fix.iter().any(|l| l.starts_with(&format!("{key}=")))
        })
        .map(|(key, _)| *key)
        .collect();
    (!overridden.is_empty()).then(|| {
        format!(
            "{} set in this shell's environment, which overrides .env: change it there too",
            overridden.join(", ") + if overridden.len() == 1 { " is" } else { " are" }
        )
    })
}

fn render(loaded: &Loaded, sender: &UserId, aliases: &[UserId], chat: &Jid, d: &Decision) -> String {
    let w = &loaded.resolved.config.whatsapp;
    let mut s = String::new();
    let kind = if sender.phone().is_some() { "phone number" } else { "LID" };
    s += &format!("sender  {sender} ({kind})\n");
    for a in aliases {
        s += &format!("        also {a}\n");
    }
    if chat.is_group() {
        s += &format!("chat    group {chat}\n");
    } else if chat.user_id().as_ref() == Some(sender) {
        s += "chat    direct message\n";
    } else {
        s += &format!("chat    {chat}\n");
    }
    s += &format!("mode    {} (from {})\n", w.mode.value.as_str(), w.mode.origin);
    let policy = if chat.is_group() { &w.group_policy } else { &w.dm_policy };
    let which = if chat.is_group() { "group_policy" } else { "dm_policy" };
    s += &format!("policy  {which}={} (from {})\n\n", policy.value.as_str(), policy.origin);

    match d.verdict {
        Verdict::Allow => {
            s += &format!("ADMITTED by rule {}", d.rule.as_str());
            if let Some(e) = &d.matched {
                s += &format!(": entry #{} '{}' in {} (from {})", e.position, e.raw, e.list, e.origin);
                if let Some(via) = &d.matched_via {
                    s += &format!(" matches {via}");
                }
            } else if let Some(via) = &d.matched_via {
                s += &format!(": {via} was approved with `hermes pairing approve`");
            }
            s += "\n";
        }
        Verdict::Deny => {
            s += &format!("REFUSED by rule {}\n", d.rule.as_str());
            if let Some(h) = &d.hint {
                s += &format!("  {h}\n");
            }
            if !d.nearest.is_empty() {
                s += "  nearest entries:\n";
                for n in &d.nearest {
                    let e = &n.entry;
                    s += &format!("    #{} '{}' in {}: {}\n", e.position, e.raw, e.list, near_reason(&n.reason));
                }
            }
            match d.on_deny {
                Some(DenyAction::OfferPairingCode) => {
                    s += "  the gateway answers this sender once with a pairing code; approve it with `hermes pairing approve whatsapp CODE`\n";
                }
                _ if d.rule == access::Rule::NotAllowlisted && !chat.is_group() => {
                    s += "  the gateway ignores this sender (an allowlist is set, so strangers are not sent pairing codes)\n";
                }
                _ => s += "  the gateway does not answer, and records the drop\n",
            }
            if !d.fix.is_empty() {
                s += &format!("\nto admit this sender here, put in {}:\n", loaded.env_file().display());
                for line in &d.fix {
                    s += &format!("  {line}\n");
                }
                if let Some(c) = fix_caveat(d, loaded) {
                    s += &format!("note: {c}\n");
                }
            }
        }
    }
    s
}

#[derive(Serialize)]
struct JsonNear {
    list: &'static str,
    position: usize,
    entry: String,
    reason: String,
}

/// The JSON shape of `explain --json`; `decision`, `rule`, `matched_entry` and `hint` are the
/// documented contract, the rest is additive.
#[derive(Serialize)]
struct JsonReport {
    decision: &'static str,
    rule: &'static str,
    matched_entry: Option<String>,
    matched_list: Option<&'static str>,
    matched_via: Option<String>,
    hint: Option<String>,
    nearest: Vec<JsonNear>,
    action: Option<&'static str>,
    fix: Vec<String>,
    env_file: String,
    sender: String,
    aliases: Vec<String>,
    chat: String,
}

impl JsonReport {
    fn new(loaded: &Loaded, sender: &Jid, aliases: &[UserId], chat: &Jid, d: &Decision) -> JsonReport {
        JsonReport {
            decision: if d.is_allowed() { "allow" } else { "deny" },
            rule: d.rule.as_str(),
            matched_entry: d.matched.as_ref().map(|e| e.raw.clone()),
            matched_list: d.matched.as_ref().map(|e| e.list),
            matched_via: d.matched_via.as_ref().map(ToString::to_string),
            hint: d.hint.clone(),
            nearest: d
                .nearest
                .iter()
                .map(|n| JsonNear {
                    list: n.entry.list,
                    position: n.entry.position,
                    entry: n.entry.raw.clone(),
                    reason: near_reason(&n.reason),
                })
                .collect(),
            action: action_name(d),
            fix: d.fix.clone(),
            env_file: loaded.env_file().display().to_string(),
            sender: sender.to_string(),
            aliases: aliases.iter().map(ToString::to_string).collect(),
            chat: chat.to_string(),
        }
    }
}
