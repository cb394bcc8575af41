//! Who may talk to the agent, and why: one pure function, [`decide`].
//!
//! The answer is data, not a boolean: which rule decided, which allowlist entry matched, and
//! for a refusal the entries that nearly matched, a hint in plain words and the exact `.env`
//! lines that would admit the sender. The gateway writes that into its drop ledger and
//! `hermes whatsapp explain` prints it, so "nothing arrives" always has a findable reason.
//!
//! Semantics follow Hermes, with one deliberate difference: under the `pairing` policy a
//! stranger is offered an approval code only when no allowlist is set or
//! `unauthorized_dm_behavior: pair` says so explicitly (Hermes sends codes to strangers even
//! when the user wrote an allowlist).

mod near;

use crate::allowlist::{Allowlist, EntryReport};
use crate::config::{Mode, Origin, Policy, Setting, UnauthorizedDm, WhatsAppConfig};
use crate::identity::{Account, Jid, UserId};

pub use near::{NearMiss, NearReason};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// The rule that decided. [`Rule::as_str`] is the stable name used in JSON and the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Status updates, broadcast lists and channels are never conversations.
    Broadcast,
    /// The sender's address names no person (an unknown server).
    UnrecognizedSender,
    /// Self-chat mode, and this is the account's own "Message yourself" chat.
    SelfChat,
    /// Self-chat mode admits nothing but the account's own chat.
    SelfChatOnly,
    /// Bot mode: the account's own messages (typed on the phone) are not for the agent.
    OwnMessage,
    DmDisabled,
    GroupDisabled,
    /// Groups are closed under `group_policy: pairing`.
    GroupPairing,
    /// `group_policy: allowlist` and this group is not listed.
    GroupNotAllowlisted,
    /// `WHATSAPP_ALLOW_ALL_USERS` or `GATEWAY_ALLOW_ALL_USERS`.
    AllowAll,
    /// `*` in an allowlist.
    Wildcard,
    /// An allowlist entry names the sender.
    Allowlisted,
    /// `hermes pairing approve` admitted the sender.
    PairingApproved,
    /// The allowlists are empty: empty admits no one.
    AllowlistEmpty,
    /// The allowlists name others, not this sender.
    NotAllowlisted,
    /// `dm_policy: open` without an allow-all flag, and not allowlisted.
    OpenWithoutAllowAll,
}

impl Rule {
    /// Every rule, for parsing back what [`Rule::as_str`] wrote.
    pub const ALL: [Rule; 16] = [
        Rule::Broadcast,
        Rule::UnrecognizedSender,
        Rule::SelfChat,
        Rule::SelfChatOnly,
        Rule::OwnMessage,
        Rule::DmDisabled,
        Rule::GroupDisabled,
        Rule::GroupPairing,
        Rule::GroupNotAllowlisted,
        Rule::AllowAll,
        Rule::Wildcard,
        Rule::Allowlisted,
        Rule::PairingApproved,
        Rule::AllowlistEmpty,
        Rule::NotAllowlisted,
        Rule::OpenWithoutAllowAll,
    ];

    /// The rule [`Rule::as_str`] named.
    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Broadcast => "broadcast",
            Rule::UnrecognizedSender => "unrecognized_sender",
            Rule::SelfChat => "self_chat",
            Rule::SelfChatOnly => "self_chat_only",
            Rule::OwnMessage => "own_message",
            Rule::DmDisabled => "dm_disabled",
            Rule::GroupDisabled => "group_disabled",
            Rule::GroupPairing => "group_pairing",
            Rule::GroupNotAllowlisted => "group_not_allowlisted",
            Rule::AllowAll => "allow_all",
            Rule::Wildcard => "allowlist_wildcard",
            Rule::Allowlisted => "allowlist",
            Rule::PairingApproved => "pairing_approved",
            Rule::AllowlistEmpty => "allowlist_empty",
            Rule::NotAllowlisted => "not_allowlisted",
            Rule::OpenWithoutAllowAll => "open_without_allow_all",
        }
    }
}

/// What the gateway does with a refused message, besides recording it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyAction {
    /// Nothing is sent back.
    Ignore,
    /// The sender gets one message with an approval code (DMs under `pairing` only).
    OfferPairingCode,
}

/// An allowlist entry, named so a user can find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRef {
    /// `WHATSAPP_ALLOWED_USERS` or `GATEWAY_ALLOWED_USERS`.
    pub list: &'static str,
    pub origin: Origin,
    pub position: usize,
    pub raw: String,
}

impl EntryRef {
    fn new(list: &'static str, setting: &Setting<Allowlist>, entry: &EntryReport) -> EntryRef {
        EntryRef { list, origin: setting.origin.clone(), position: entry.position, raw: entry.raw.clone() }
    }
}

/// The answer, with its reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Rule,
    /// The allowlist entry that admitted the sender.
    pub matched: Option<EntryRef>,
    /// Which of the sender's forms matched (phone or LID).
    pub matched_via: Option<UserId>,
    /// For a refusal: entries that look like they were meant for this sender, closest first.
    pub nearest: Vec<NearMiss>,
    /// One sentence on why, and what would change it.
    pub hint: Option<String>,
    /// Lines for `HERMES_HOME/.env` that would admit this sender in this chat.
    pub fix: Vec<String>,
    /// `None` when allowed.
    pub on_deny: Option<DenyAction>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    fn allow(rule: Rule) -> Decision {
        Decision {
            verdict: Verdict::Allow,
            rule,
            matched: None,
            matched_via: None,
            nearest: Vec::new(),
            hint: None,
            fix: Vec::new(),
            on_deny: None,
        }
    }

    fn deny(rule: Rule, hint: impl Into<String>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            on_deny: Some(DenyAction::Ignore),
            hint: Some(hint.into()),
            ..Decision::allow(rule)
        }
    }
}

/// One inbound message, as far as access is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub chat: &'a Jid,
    pub sender: &'a Jid,
    /// Other known forms of the sender (its LID for a phone JID, or the reverse).
    pub aliases: &'a [UserId],
    /// Sent by the linked account itself.
    pub from_me: bool,
}

/// What the decision depends on besides the message.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub config: &'a WhatsAppConfig,
    /// Senders admitted with `hermes pairing approve`.
    pub approvals: &'a [UserId],
    /// The linked account, when known.
    pub own: Option<&'a Account>,
}

/// Decides whether a message reaches the agent.
pub fn decide(ctx: &Context<'_>, req: &Request<'_>) -> Decision {
    let cfg = ctx.config;
    if req.chat.is_broadcast_like() || req.sender.is_broadcast_like() {
        return Decision::deny(Rule::Broadcast, "status updates, broadcast lists and channels are never answered");
    }
    let forms = sender_forms(req);
    if forms.is_empty() {
        return Decision::deny(
            Rule::UnrecognizedSender,
            format!("'{}' is not a phone number or LID address, so no allowlist can name it", req.sender),
        );
    }
    if cfg.mode.value == Mode::SelfChat {
        return self_chat(ctx, req, &forms);
    }
    if req.from_me || ctx.own.is_some_and(|own| forms.iter().any(|f| own.is(f))) {
        return Decision::deny(
            Rule::OwnMessage,
            "in bot mode, messages typed on the linked phone itself are not sent to the agent",
        );
    }
    if req.chat.is_group() { group(ctx, req, &forms) } else { direct(ctx, &forms) }
}

/// Every form of the sender, device stripped, without repeats.
fn sender_forms(req: &Request<'_>) -> Vec<UserId> {
    let mut forms: Vec<UserId> = req.sender.user_id().into_iter().chain(req.aliases.iter().cloned()).collect();
    forms.sort();
    forms.dedup();
    // Phone first: it is the form people write into allowlists.
    forms.sort_by_key(|f| f.phone().is_none());
    forms
}

fn self_chat(ctx: &Context<'_>, req: &Request<'_>, forms: &[UserId]) -> Decision {
    let chat = req.chat.user_id();
    let is_own_chat = match ctx.own {
        Some(own) => chat.as_ref().is_some_and(|c| own.is(c)) && forms.iter().any(|f| own.is(f)),
        // Before linking, the account is unknown; a message to oneself is the best evidence.
        None => req.from_me && chat.as_ref().is_some_and(|c| forms.contains(c)),
    };
    if is_own_chat {
        return Decision::allow(Rule::SelfChat);
    }
    let mut d = Decision::deny(
        Rule::SelfChatOnly,
        "WHATSAPP_MODE=self-chat answers only your own \"Message yourself\" chat; \
         to let other people talk to the agent, link a separate number and use bot mode",
    );
    d.fix.push("WHATSAPP_MODE=bot".to_owned());
    if check_sender(ctx, forms).is_none() {
        d.fix.extend(admit_fix(ctx.config, forms, &[]));
    }
    d
}

fn group(ctx: &Context<'_>, req: &Request<'_>, forms: &[UserId]) -> Decision {
    let cfg = ctx.config;
    let group = req.chat.to_non_device();
    let group_fix = || {
        let mut listed: Vec<String> = cfg.group_allowed.value.iter().map(Jid::to_string).collect();
        listed.push(group.to_string());
        vec!["WHATSAPP_GROUP_POLICY=allowlist".to_owned(), format!("WHATSAPP_GROUP_ALLOWED_USERS={}", listed.join(","))]
    };
    let closed = match cfg.group_policy.value {
        Policy::Disabled => Some((Rule::GroupDisabled, "group_policy is disabled: no group is answered")),
        Policy::Pairing => Some((Rule::GroupPairing, "group_policy is pairing, which keeps every group closed")),
        Policy::Allowlist if !cfg.group_allowed.value.contains(&group) => {
            Some((Rule::GroupNotAllowlisted, "this group is not in WHATSAPP_GROUP_ALLOWED_USERS"))
        }
        Policy::Allowlist | Policy::Open => None,
    };
    if let Some((rule, why)) = closed {
        let mut d = Decision::deny(rule, format!("{why} (group_policy from {})", cfg.group_policy.origin));
        d.fix = group_fix();
        if check_sender(ctx, forms).is_none() {
            d.fix.extend(admit_fix(cfg, forms, &[]));
        }
        return d;
    }
    // In an admitted group the sender is checked like a DM sender, but never offered a code.
    sender_decision(ctx, forms, DenyAction::Ignore, Rule::NotAllowlisted)
}

fn direct(ctx: &Context<'_>, forms: &[UserId]) -> Decision {
    let cfg = ctx.config;
    match cfg.dm_policy.value {
        Policy::Disabled => {
            let mut d = Decision::deny(
                Rule::DmDisabled,
                format!("dm_policy is disabled (from {}): no direct message is answered", cfg.dm_policy.origin),
            );
            d.fix.push("WHATSAPP_DM_POLICY=allowlist".to_owned());
            if check_sender(ctx, forms).is_none() {
                d.fix.extend(admit_fix(cfg, forms, &[]));
            }
            d
        }
        Policy::Open => {
            let mut d = sender_decision(ctx, forms, DenyAction::Ignore, Rule::OpenWithoutAllowAll);
            if !d.is_allowed() {
                d.hint = Some(format!(
                    "dm_policy is open (from {}) but neither WHATSAPP_ALLOW_ALL_USERS nor GATEWAY_ALLOW_ALL_USERS \
                     is true, so only allowlisted senders get through; {}",
                    cfg.dm_policy.origin,
                    d.hint.as_deref().unwrap_or_default()
                ));
                d.fix.insert(0, "WHATSAPP_ALLOW_ALL_USERS=true".to_owned());
            }
            d
        }
        Policy::Allowlist => sender_decision(ctx, forms, DenyAction::Ignore, Rule::NotAllowlisted),
        Policy::Pairing => {
            let lists_set = !cfg.allowed_users.value.is_unset() || !cfg.gateway_allowed_users.value.is_unset();
            let action = match cfg.unauthorized_dm_behavior.value {
                Some(UnauthorizedDm::Pair) => DenyAction::OfferPairingCode,
                Some(UnauthorizedDm::Ignore) => DenyAction::Ignore,
                None if lists_set => DenyAction::Ignore,
                None => DenyAction::OfferPairingCode,
            };
            sender_decision(ctx, forms, action, Rule::NotAllowlisted)
        }
    }
}

/// Whether the sender is admitted by an allow-all flag, an allowlist or an approval.
fn check_sender(ctx: &Context<'_>, forms: &[UserId]) -> Option<Decision> {
    let cfg = ctx.config;
    if cfg.allow_all_users.value || cfg.gateway_allow_all_users.value {
        return Some(Decision::allow(Rule::AllowAll));
    }
    let lists = [("WHATSAPP_ALLOWED_USERS", &cfg.allowed_users), ("GATEWAY_ALLOWED_USERS", &cfg.gateway_allowed_users)];
    let mut wildcard = None;
    for (name, setting) in lists {
        match setting.value.find_match(forms) {
            Some((entry, Some(via))) => {
                let mut d = Decision::allow(Rule::Allowlisted);
                d.matched = Some(EntryRef::new(name, setting, entry));
                d.matched_via = Some(via.clone());
                return Some(d);
            }
            Some((entry, None)) if wildcard.is_none() => wildcard = Some(EntryRef::new(name, setting, entry)),
            _ => {}
        }
    }
    if let Some(entry) = wildcard {
        let mut d = Decision::allow(Rule::Wildcard);
        d.matched = Some(entry);
        return Some(d);
    }
    let approved = forms.iter().find(|f| ctx.approvals.contains(f))?;
    let mut d = Decision::allow(Rule::PairingApproved);
    d.matched_via = Some(approved.clone());
    Some(d)
}

fn sender_decision(ctx: &Context<'_>, forms: &[UserId], action: DenyAction, deny_rule: Rule) -> Decision {
    if let Some(d) = check_sender(ctx, forms) {
        return d;
    }
    let cfg = ctx.config;
    let empty = cfg.allowed_users.value.is_unset() && cfg.gateway_allowed_users.value.is_unset();
    let rule = if empty && deny_rule == Rule::NotAllowlisted { Rule::AllowlistEmpty } else { deny_rule };
    let nearest = near::nearest(cfg, forms);
    let hint = near::hint(cfg, forms, &nearest);
    let mut d = Decision::deny(rule, hint);
    d.fix = admit_fix(cfg, forms, &nearest);
    d.nearest = nearest;
    d.on_deny = Some(action);
    d
}

/// The `WHATSAPP_ALLOWED_USERS=...` line that admits the sender: every current entry kept, an
/// entry that admits no one but was clearly meant for this sender (a national `0`) corrected
/// in place, and otherwise the sender appended. An entry that may be someone's number is
/// never replaced by a guess.
fn admit_fix(cfg: &WhatsAppConfig, forms: &[UserId], nearest: &[NearMiss]) -> Vec<String> {
    let Some(sender) = forms.first() else { return Vec::new() };
    let sender = sender.to_string();
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut corrected = false;
    for entry in cfg.allowed_users.value.entries() {
        let meant_for_sender = nearest.iter().any(|n| {
            n.entry.list == "WHATSAPP_ALLOWED_USERS" && n.entry.position == entry.position && n.reason.is_correction()
        });
        let written = if meant_for_sender {
            corrected = true;
            sender.clone()
        } else {
            entry.normalized().unwrap_or_else(|| entry.raw.clone())
        };
        // A set, not a scan of `out`: a 100,000-entry allowlist must not cost a quadratic pass.
        if seen.insert(written.clone()) {
            out.push(written);
        }
    }
    if !corrected && !seen.contains(&sender) {
        out.push(sender);
    }
    vec![format!("WHATSAPP_ALLOWED_USERS={}", out.join(","))]
}

#[cfg(test)]
mod tests;
