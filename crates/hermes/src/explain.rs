//! `hermes whatsapp explain`: dry-runs what the gateway would do with a message from one sender.
//!
//! It decides as the gateway does, through `hermes_core::admission::admit`, on the facts the
//! gateway would read (`Store::facts`: approvals, learned LID<->phone aliases, recent pairing
//! codes), read from `state/hermes.db` without changing it. An answer that left approvals out
//! once called approved senders refused (#25).

use std::io::Write;

use anyhow::Context as _;
use hermes_core::access::{self, Decision, DenyAction, NearReason};
use hermes_core::admission::{self, Admission, DropRule};
use hermes_core::allowlist::{self, ChatProblem, parse_user};
use hermes_core::config::Origin;
use hermes_core::identity::{Account, Jid, Lid, MessageId, PhoneNumber, UserId};
use hermes_core::pairing;
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
    /// The message's text (default: an ordinary message that neither mentions the agent nor
    /// is a command), for a group's mention rule: e.g. --text '@15551234567 hi' or '/status'.
    #[arg(long)]
    text: Option<String>,
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
    let text = args.text.as_deref().unwrap_or(ORDINARY_TEXT);
    if text.trim().is_empty() {
        return Err(exit::usage("--text is empty; give the text of the message to judge, e.g. --text 'hello'"));
    }
    let cfg = &loaded.resolved.config.whatsapp;
    // The linked account decides self-chat, the account's own messages and mentions.
    let own = linked_account(&loaded).await;
    let now = hermes_store::clock::now();
    // An imagined message has no id, so it is none of the gateway's own replies.
    let message = hermes_store::Inbound {
        from_me: args.from_me,
        ..hermes_store::Inbound::text(chat.clone(), sender_jid.clone(), MessageId::new(""), now, text)
    };
    let facts = gateway_facts(&loaded, &message, now)?;
    // As the gateway does: the forms the message carries (here, --alias), then the one the
    // store learned. The gateway may also ask the live client for an unknown LID's number,
    // which explain cannot.
    let learned = facts.alias.as_ref().and_then(Jid::user_id).filter(|l| *l != sender && !aliases.contains(l));
    let forms: Vec<UserId> = aliases.iter().cloned().chain(learned.clone()).collect();
    let approvals: Vec<UserId> = facts.approved();
    let offers: Vec<pairing::Pending> = facts.pending_offers();
    let known = admission::Known {
        config: cfg,
        own: own.as_ref(),
        aliases: &forms,
        approvals: &approvals,
        ours: facts.ours,
        offers: &offers,
        pause: facts.pause.as_ref(),
        // A loop the breaker caught is a pause, which the facts carry.
        recent_answers: 0,
        now,
        // Makes the code of an offer, which explain never shows.
        random: 0,
    };
    let inbound = admission::Inbound {
        chat: &message.chat,
        sender: &message.sender,
        text: message.text.as_deref(),
        from_me: message.from_me,
        mentions: &message.mentions,
        quoted: message.quoted.as_ref(),
        unreadable: message.unreadable,
    };
    let admitted = admission::admit(&inbound, &known);
    // The verdict is admission's; the details (the entry that matched, near misses, the
    // `.env` fix) are access's, decided on the same facts admission decided on.
    let ctx = access::Context { config: cfg, approvals: &approvals, own: own.as_ref() };
    let req = access::Request { chat: &chat, sender: &sender_jid, aliases: &forms, from_me: args.from_me };
    let decision = access::decide(&ctx, &req);
    let explained = Explained {
        sender: &sender,
        aliases: &aliases,
        learned: learned.as_ref(),
        chat: &chat,
        decision: &decision,
        admission: &admitted,
        text_given: args.text.is_some(),
    };

    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let report = JsonReport::new(&loaded, &explained);
        let text = serde_json::to_string_pretty(&report).map_err(std::io::Error::from)?;
        writeln!(out, "{text}")
    } else {
        out.write_all(crate::program::fix(&render(&loaded, &explained)).as_bytes())
    };
    if let Err(e) = written
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    Ok(if is_admitted(&admitted) { exit::OK } else { exit::PROBLEM })
}

/// What explain judges without `--text`: a message that addresses no one in particular.
const ORDINARY_TEXT: &str = "hello";

/// One explained message: what admission decided, and access's reasons.
struct Explained<'a> {
    sender: &'a UserId,
    /// The forms given with `--alias`.
    aliases: &'a [UserId],
    /// The sender's other form the gateway learned, when it is not among `aliases`.
    learned: Option<&'a UserId>,
    chat: &'a Jid,
    decision: &'a Decision,
    admission: &'a Admission,
    text_given: bool,
}

/// What the gateway's store knows about the sender, read as the gateway reads it; nothing
/// when the gateway never ran in this home.
fn gateway_facts(loaded: &Loaded, message: &hermes_store::Inbound, now: i64) -> anyhow::Result<hermes_store::Facts> {
    let db = loaded.home.path.join("state").join("hermes.db");
    // Reading never creates or migrates the database: explain only looks.
    let store = hermes_store::Store::open_read_only(&db).with_context(|| format!("open {}", db.display()))?;
    let Some(store) = store else { return Ok(hermes_store::Facts::default()) };
    store
        .facts(message, now - pairing::CODE_TTL_SECS)
        .with_context(|| format!("read approvals and aliases in {}", db.display()))
}

/// The agent (or a command) answers the message.
fn is_admitted(a: &Admission) -> bool {
    matches!(a, Admission::Answer { .. } | Admission::Command { .. } | Admission::Unreadable { .. })
}

/// Why the gateway ignores a message explain imagined: with text, only the account's own
/// message that starts with the reply prefix is ignored before access decides.
const IGNORED: &str =
    "it starts with the reply prefix (WHATSAPP_REPLY_PREFIX), so the gateway takes it for its own reply coming back";

const OBSERVED: &str = "it does not address the agent, so it is not answered; it is kept as context for the agent's \
                        next turn in this group (WHATSAPP_OBSERVE_UNMENTIONED_GROUP_MESSAGES)";

const HANDOFF: &str = "the account's owner wrote it in this chat: a person takes the chat over (WHATSAPP_HANDOFF_MINUTES; \
                       /pause and /resume by hand), and the agent stays out of it meanwhile";

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

/// What the gateway does with a message it does not answer: `None` when it answers.
fn action_name(a: &Admission) -> Option<&'static str> {
    match a {
        Admission::Answer { .. } | Admission::Command { .. } | Admission::Unreadable { .. } => None,
        Admission::Ignore | Admission::Drop(_) => Some("ignore"),
        Admission::Park(_) => Some("park"),
        Admission::OfferCode { .. } => Some("pairing_code"),
        Admission::Pause { .. } => Some("pause_chat"),
        Admission::Resume => Some("resume_chat"),
        Admission::Observe => Some("keep_as_context"),
    }
}

/// The rule that decided: access's, or what admission adds to it (`not_mentioned`,
/// `lid_without_phone`, `echo` for the account's own reply coming back).
fn rule_name(e: &Explained<'_>) -> &'static str {
    match e.admission {
        Admission::Answer { .. } | Admission::Command { .. } | Admission::Unreadable { .. } => e.decision.rule.as_str(),
        Admission::Ignore => "echo",
        Admission::Pause { .. } | Admission::Resume => "handoff",
        Admission::Observe => "group_context",
        Admission::Drop(r) | Admission::Park(r) | Admission::OfferCode { refusal: r, .. } => r.rule.as_str(),
    }
}

/// `rule allowlist: entry #3 ...`: the rule that admits the sender, and by what.
fn admitted_by(d: &Decision) -> String {
    let mut s = format!("rule {}", d.rule.as_str());
    if let Some(e) = &d.matched {
        s += &format!(": entry #{} '{}' in {} (from {})", e.position, e.raw, e.list, e.origin);
        if let Some(via) = &d.matched_via {
            s += &format!(" matches {via}");
        }
    } else if let Some(via) = &d.matched_via {
        s += &format!(": {via} was approved with `hermes pairing approve`");
    }
    s
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

fn render(loaded: &Loaded, e: &Explained<'_>) -> String {
    let w = &loaded.resolved.config.whatsapp;
    let (sender, chat, d) = (e.sender, e.chat, e.decision);
    let mut s = String::new();
    let kind = if sender.phone().is_some() { "phone number" } else { "LID" };
    s += &format!("sender  {sender} ({kind})\n");
    for a in e.aliases {
        s += &format!("        also {a}\n");
    }
    if let Some(l) = e.learned {
        s += &format!("        also {l} (learned by the gateway)\n");
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

    let refusal = match e.admission {
        Admission::Answer { .. } | Admission::Unreadable { .. } => {
            s += &format!("ADMITTED by {}\n", admitted_by(d));
            return s;
        }
        Admission::Command { .. } => {
            s += &format!("ADMITTED by {}\n", admitted_by(d));
            s += "  a slash command: the gateway answers it itself, without the agent\n";
            return s;
        }
        Admission::Ignore => {
            s += &format!("IGNORED: {IGNORED}\n");
            return s;
        }
        Admission::Pause { .. } | Admission::Resume => {
            s += &format!("HANDOFF: {HANDOFF}\n");
            return s;
        }
        Admission::Observe => {
            s += &format!("CONTEXT: {OBSERVED}\n");
            return s;
        }
        Admission::Drop(r) | Admission::Park(r) | Admission::OfferCode { refusal: r, .. } => r,
    };
    s += &format!("REFUSED by rule {}\n", refusal.rule.as_str());
    // Access's hint where access refused; admission's own where it did (the mention rule).
    s += &format!("  {}\n", d.hint.as_deref().unwrap_or(refusal.hint.as_str()));
    if refusal.rule == DropRule::NotMentioned {
        s += &format!("  the sender itself is admitted by {}\n", admitted_by(d));
        if !e.text_given {
            s += "  (explain judged an ordinary message; give the message's text with --text to judge it)\n";
        }
    }
    if !d.nearest.is_empty() {
        s += "  nearest entries:\n";
        for n in &d.nearest {
            let entry = &n.entry;
            s += &format!("    #{} '{}' in {}: {}\n", entry.position, entry.raw, entry.list, near_reason(&n.reason));
        }
    }
    match e.admission {
        Admission::Park(_) => {
            s += "  the gateway keeps this sender's messages (parked; `hermes whatsapp drops` shows them as \
                  lid_without_phone) and decides them again once WhatsApp says the phone number\n";
        }
        Admission::OfferCode { .. } => {
            s += "  the gateway answers this sender once with a pairing code; approve it with `hermes pairing approve whatsapp CODE`\n";
        }
        _ if d.on_deny == Some(DenyAction::OfferPairingCode) => {
            s += &format!(
                "  the gateway does not answer and sends no pairing code now: one was sent to this sender \
                 within the hour, or {} codes already wait (see `hermes pairing list`)\n",
                pairing::MAX_PENDING
            );
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
    /// Access's own rule: differs from `rule` when the sender passes access but the message is
    /// still not answered (`not_mentioned`, `echo`), or is parked (`lid_without_phone`).
    access_rule: &'static str,
    /// The sender's other form the gateway learned (state/hermes.db), beside `aliases`.
    learned_alias: Option<String>,
}

impl JsonReport {
    fn new(loaded: &Loaded, e: &Explained<'_>) -> JsonReport {
        let d = e.decision;
        let hint = match e.admission {
            Admission::Answer { .. } | Admission::Command { .. } | Admission::Unreadable { .. } => d.hint.clone(),
            Admission::Ignore => Some(IGNORED.to_owned()),
            Admission::Pause { .. } | Admission::Resume => Some(HANDOFF.to_owned()),
            Admission::Observe => Some(OBSERVED.to_owned()),
            Admission::Drop(r) | Admission::Park(r) | Admission::OfferCode { refusal: r, .. } => {
                Some(d.hint.clone().unwrap_or_else(|| r.hint.clone()))
            }
        };
        JsonReport {
            decision: if is_admitted(e.admission) { "allow" } else { "deny" },
            rule: rule_name(e),
            matched_entry: d.matched.as_ref().map(|m| m.raw.clone()),
            matched_list: d.matched.as_ref().map(|m| m.list),
            matched_via: d.matched_via.as_ref().map(ToString::to_string),
            hint,
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
            action: action_name(e.admission),
            fix: d.fix.clone(),
            env_file: loaded.env_file().display().to_string(),
            sender: e.sender.to_jid().to_string(),
            aliases: e.aliases.iter().map(ToString::to_string).collect(),
            chat: e.chat.to_string(),
            access_rule: d.rule.as_str(),
            learned_alias: e.learned.map(ToString::to_string),
        }
    }
}
