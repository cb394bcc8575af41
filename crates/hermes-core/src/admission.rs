//! What the gateway does with one journaled message: the whole policy, in one pure function.
//!
//! The gateway reads the facts (what the store and the client know about the sender), calls
//! [`admit`], and carries out the answer: it never decides anything itself. Access
//! ([`crate::access`]), mention gating ([`crate::mention`]), echo detection, parking a LID
//! sender and offering a pairing code all meet here, so each is tested without a gateway and
//! a new rule cannot be invented as a string somewhere else.

use crate::access::{self, Decision, DenyAction, Rule};
use crate::command::{self, Command};
use crate::config::{Mode, WhatsAppConfig};
use crate::identity::{Account, Jid, UserId};
use crate::mention;
use crate::pairing::{self, Offer};

/// Why a message was not answered: the rule the drop ledger records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropRule {
    /// Refused by access (the [`Rule`] says which).
    Access(Rule),
    /// A group message that does not address the agent under `require_mention`.
    NotMentioned,
    /// A LID sender refused only for want of its phone number: the message is parked and
    /// decided again when WhatsApp says the number.
    LidWithoutPhone,
    /// hermes itself failed on this message again and again (a bug): given up, and said.
    Failed,
    /// The chat is paused: a person took it over (`crate::handoff`).
    Paused,
}

impl DropRule {
    pub fn as_str(self) -> &'static str {
        match self {
            DropRule::Access(rule) => rule.as_str(),
            DropRule::NotMentioned => "not_mentioned",
            DropRule::LidWithoutPhone => "lid_without_phone",
            DropRule::Failed => "failed",
            DropRule::Paused => "paused",
        }
    }

    /// The rule [`DropRule::as_str`] named.
    pub fn parse(s: &str) -> Option<DropRule> {
        match s {
            "not_mentioned" => Some(DropRule::NotMentioned),
            "lid_without_phone" => Some(DropRule::LidWithoutPhone),
            "failed" => Some(DropRule::Failed),
            "paused" => Some(DropRule::Paused),
            other => Rule::parse(other).map(DropRule::Access),
        }
    }
}

impl std::fmt::Display for DropRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journaled message, as far as admission is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Inbound<'a> {
    pub chat: &'a Jid,
    pub sender: &'a Jid,
    pub text: Option<&'a str>,
    /// Sent by the linked account itself (typed on the phone, or our own reply coming back).
    pub from_me: bool,
    /// JIDs the message mentions.
    pub mentions: &'a [Jid],
    /// The author of the message it quotes.
    pub quoted: Option<&'a Jid>,
    /// Delivered again after another client of the device read it; its text is gone.
    pub unreadable: bool,
}

/// What is known besides the message, read by the gateway before deciding.
#[derive(Clone, Copy, Debug)]
pub struct Known<'a> {
    pub config: &'a WhatsAppConfig,
    /// The linked account, once known.
    pub own: Option<&'a Account>,
    /// The sender's other forms (its phone number for a LID, or the reverse).
    pub aliases: &'a [UserId],
    /// Senders admitted with `hermes pairing approve`.
    pub approvals: &'a [UserId],
    /// The message's id is one the gateway sent: our own reply, echoed back in self-chat.
    pub ours: bool,
    /// Pairing codes offered within [`pairing::CODE_TTL_SECS`], approved or not.
    pub offers: &'a [pairing::Pending],
    /// The chat's pause, if it has one (in force or not).
    pub pause: Option<&'a crate::handoff::Pause>,
    /// How many times the agent answered in this chat within the loop breaker's window.
    pub recent_answers: u32,
    /// Unix seconds.
    pub now: i64,
    /// Makes a pairing code, when one is offered.
    pub random: u64,
}

/// A refusal, with what the ledger and the log say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: DropRule,
    /// What happened and how to change it, for `hermes whatsapp drops` and the log.
    pub hint: String,
    /// The allowlist entry that looks meant for this sender, if one does.
    pub nearest: Option<String>,
    /// Worth a warning in the log: someone may need to act. Not for the account's own
    /// typing, broadcasts or group chatter that does not address the agent.
    pub warn: bool,
}

/// What the gateway does with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not for anyone (no text, our own reply coming back): marked handled, nothing said.
    Ignore,
    /// Ask the agent about `text` (a group's mention of the agent removed).
    Answer { text: String, mark_read: bool },
    /// A slash command, answered by the gateway itself.
    Command { command: Command, mark_read: bool },
    /// An admitted sender's message whose text could not be read (another client of the
    /// device read it first): the sender is asked to send it again, the agent is not asked.
    Unreadable { mark_read: bool },
    /// Refused: recorded in the ledger and marked handled.
    Drop(Refusal),
    /// Refused for now: recorded, and kept to be decided again when the sender's phone number
    /// is learned.
    Park(Refusal),
    /// Refused, and the sender is sent `message` carrying a pairing `code`.
    OfferCode { code: String, message: String, refusal: Refusal },
    /// The owner wrote in the chat from the phone: the agent stays out of it until `until`
    /// (unix seconds; `None` until resumed). Handled, nothing said.
    Pause { until: Option<i64>, by: crate::handoff::PausedBy },
    /// The owner sent `/resume`: the agent answers in the chat again. Handled, nothing said.
    Resume,
    /// Group chatter that does not address the agent, from a sender the group admits, with
    /// `observe_unmentioned_group_messages` on: kept as context for the agent's next turn in
    /// the group, never answered on its own.
    Observe,
}

/// Decides one message.
pub fn admit(m: &Inbound<'_>, k: &Known<'_>) -> Admission {
    let cfg = k.config;
    if m.unreadable {
        return unreadable(m, k);
    }
    let text = m.text.map(str::trim).filter(|t| !t.is_empty());
    let Some(text) = text else { return Admission::Ignore };
    if m.from_me && (k.ours || m.text.is_some_and(|raw| is_prefixed_reply(cfg, raw))) {
        return Admission::Ignore;
    }
    if let Some(handoff) = owner_writes(m, k, text) {
        return handoff;
    }
    // A chat that is no person, group or broadcast (whatever the wire held): nothing to
    // answer, and nothing anyone could admit.
    if !(m.chat.is_group() || m.chat.is_broadcast_like() || m.chat.user_id().is_some()) {
        return Admission::Drop(Refusal {
            rule: DropRule::Access(Rule::UnrecognizedSender),
            hint: format!("'{}' is not a WhatsApp chat address", m.chat),
            nearest: None,
            warn: false,
        });
    }
    let ctx = access::Context { config: cfg, approvals: k.approvals, own: k.own };
    let req = access::Request { chat: m.chat, sender: m.sender, aliases: k.aliases, from_me: m.from_me };
    let decision = access::decide(&ctx, &req);
    if !decision.is_allowed() {
        return refuse(m, k, &decision);
    }
    let mut text = text.to_owned();
    if m.chat.is_group() {
        let addressing = mention::Addressing { chat: m.chat, text: &text, mentioned: m.mentions, quoted: m.quoted };
        if let Err(hint) = mention::gate(cfg, k.own, &addressing) {
            if cfg.observe_unmentioned.value && !k.pause.is_some_and(|p| p.active(k.now)) {
                return Admission::Observe;
            }
            return Admission::Drop(Refusal { rule: DropRule::NotMentioned, hint, nearest: None, warn: false });
        }
        text = mention::strip_own_mention(&text, k.own);
    }
    if let Some(pause) = k.pause.filter(|p| p.active(k.now)) {
        return Admission::Drop(Refusal { rule: DropRule::Paused, hint: pause.hint(), nearest: None, warn: false });
    }
    let loop_limit = cfg.loop_limit();
    if loop_limit.tripped(k.recent_answers) {
        // Paused, as a person would; the owner resumes it (or it ends after the handoff time).
        let minutes = i64::from(loop_limit.minutes.max(1)).max(i64::try_from(cfg.handoff_minutes.value).unwrap_or(0));
        return Admission::Pause {
            until: Some(k.now.saturating_add(minutes.saturating_mul(60))),
            by: crate::handoff::PausedBy::LoopBreaker,
        };
    }
    let mark_read = cfg.send_read_receipts.value;
    match command::parse(&text) {
        Some(command) => Admission::Command { command, mark_read },
        None => Admission::Answer { text, mark_read },
    }
}

/// In bot mode, the owner writing in a chat (from the phone, not a message of hermes') hands it
/// to a person for `handoff_minutes`; `/pause` and `/resume` do it by hand. Not in the account's
/// own chat, and not in self-chat mode, where the owner's messages are the agent's questions.
fn owner_writes(m: &Inbound<'_>, k: &Known<'_>, text: &str) -> Option<Admission> {
    use crate::handoff::{OwnerSays, PausedBy};
    let cfg = k.config;
    if !m.from_me || cfg.mode.value != crate::config::Mode::Bot || m.chat.is_broadcast_like() {
        return None;
    }
    let own_chat = m.chat.user_id().zip(k.own).is_some_and(|(c, own)| own.is(&c));
    if own_chat {
        return None;
    }
    Some(match crate::handoff::owner_says(text) {
        OwnerSays::Pause => Admission::Pause { until: None, by: PausedBy::OwnerCommand },
        OwnerSays::Resume => Admission::Resume,
        OwnerSays::Talk if cfg.handoff_minutes.value > 0 => {
            let minutes = i64::try_from(cfg.handoff_minutes.value).unwrap_or(i64::MAX / 120);
            Admission::Pause {
                until: Some(k.now.saturating_add(minutes.saturating_mul(60))),
                by: PausedBy::OwnerMessage,
            }
        }
        OwnerSays::Talk => return None,
    })
}

/// Whoever may talk to the agent hears that a message was lost; anyone else is refused as usual.
fn unreadable(m: &Inbound<'_>, k: &Known<'_>) -> Admission {
    if m.from_me {
        return Admission::Ignore;
    }
    let ctx = access::Context { config: k.config, approvals: k.approvals, own: k.own };
    let req = access::Request { chat: m.chat, sender: m.sender, aliases: k.aliases, from_me: m.from_me };
    let decision = access::decide(&ctx, &req);
    if decision.is_allowed() {
        return Admission::Unreadable { mark_read: k.config.send_read_receipts.value };
    }
    match refuse(m, k, &decision) {
        // No pairing code for a message nobody could read: the next one gets the offer.
        Admission::OfferCode { refusal, .. } => Admission::Drop(refusal),
        other => other,
    }
}

/// What the sender of an unreadable message is told.
pub fn unreadable_reply() -> &'static str {
    "Sorry, I could not read your last message: it arrived while this assistant was moving to a new \
     server. Please send it again."
}

/// What the sender of a message hermes gave up on is told: once, honestly, with what to do.
pub fn given_up_reply() -> &'static str {
    "Sorry, I could not handle your last message: trying made this assistant fail several times, so it \
     stopped trying. Its owner can see it in the gateway's log. Please send it again in another form (as \
     text, or a smaller file)."
}

/// In self-chat, the agent's replies carry the reply prefix: one that comes back is ours,
/// even when the outbox no longer knows its id (pruned, or sent by an older install).
fn is_prefixed_reply(cfg: &WhatsAppConfig, text: &str) -> bool {
    let prefix = cfg.reply_prefix.value.trim_end();
    !prefix.is_empty() && text.starts_with(prefix)
}

fn refuse(m: &Inbound<'_>, k: &Known<'_>, d: &Decision) -> Admission {
    let nearest = d.nearest.first().map(|n| n.entry.raw.clone());
    let lid_only =
        m.sender.user_id().is_some_and(|u| u.phone().is_none()) && k.aliases.iter().all(|a| a.phone().is_none());
    // A LID sender may be refused only because its phone number is not known yet.
    if lid_only && matches!(d.rule, Rule::NotAllowlisted | Rule::OpenWithoutAllowAll) {
        let hint = format!(
            "{} wrote from a LID and WhatsApp has not said its phone number yet; the message will be decided \
             again when it does. To admit this sender now, add its LID: {}",
            m.sender,
            d.fix.join(" ")
        );
        return Admission::Park(Refusal { rule: DropRule::LidWithoutPhone, hint, nearest, warn: true });
    }
    let mut hint = d.hint.clone().unwrap_or_default();
    if !d.fix.is_empty() {
        hint = format!("{hint}; to admit: {}", d.fix.join(" "));
    }
    let rule = DropRule::Access(d.rule);
    // The account's own typing and status updates are not senders anyone needs to admit.
    let warn = !matches!(d.rule, Rule::OwnMessage | Rule::Broadcast);
    let offers_code =
        d.on_deny == Some(DenyAction::OfferPairingCode) && !m.chat.is_group() && k.config.mode.value == Mode::Bot;
    if offers_code {
        let mut forms: Vec<String> = k.aliases.iter().map(|a| a.to_jid().to_string()).collect();
        forms.push(m.sender.to_string());
        let forms: Vec<&str> = forms.iter().map(String::as_str).collect();
        let waiting = k.offers.iter().filter(|o| !o.approved).count();
        match pairing::offer(k.offers, waiting, &forms, k.now, k.random) {
            Offer::Send(code) => {
                let hint = format!("sent pairing code {code}; to admit: hermes pairing approve whatsapp {code}");
                let message = pairing::message(&code);
                return Admission::OfferCode { code, message, refusal: Refusal { rule, hint, nearest, warn } };
            }
            Offer::AlreadyOffered => hint = format!("{hint} (a pairing code was sent to this sender within the hour)"),
            Offer::TooManyPending => {
                hint =
                    format!("{hint} (no pairing code sent: {} codes already wait for approval)", pairing::MAX_PENDING);
            }
        }
    }
    Admission::Drop(Refusal { rule, hint, nearest, warn })
}

#[cfg(test)]
mod tests;
