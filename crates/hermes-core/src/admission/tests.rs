use proptest::prelude::*;

use super::*;
use crate::allowlist::parse_user;
use crate::testing::{config, own};

const ALICE: &str = "15551234567@s.whatsapp.net";
const ALICE_LID: &str = "98765432109876@lid";
const GROUP: &str = "120363001234567890@g.us";
const OWN: &str = "15550000000@s.whatsapp.net";

/// One message and what is known about it; every field a test may change.
struct Case {
    env: Vec<(&'static str, &'static str)>,
    chat: &'static str,
    sender: &'static str,
    text: Option<&'static str>,
    from_me: bool,
    mentions: Vec<&'static str>,
    aliases: Vec<&'static str>,
    ours: bool,
    offers: Vec<pairing::Pending>,
    unreadable: bool,
    pause: Option<crate::handoff::Pause>,
    recent_answers: u32,
}

impl Case {
    fn dm(text: &'static str) -> Case {
        Case {
            env: vec![("WHATSAPP_ALLOWED_USERS", "15551234567")],
            chat: ALICE,
            sender: ALICE,
            text: Some(text),
            from_me: false,
            mentions: vec![],
            aliases: vec![],
            ours: false,
            offers: vec![],
            unreadable: false,
            pause: None,
            recent_answers: 0,
        }
    }

    fn run(&self) -> Admission {
        let cfg = config(&self.env);
        let own = own();
        let chat = Jid::from_wire(self.chat);
        let sender = Jid::parse(self.sender).expect("sender");
        let mentions: Vec<Jid> = self.mentions.iter().map(|m| Jid::parse(m).expect("mention")).collect();
        let aliases: Vec<UserId> = self.aliases.iter().map(|a| parse_user(a).expect("alias")).collect();
        let m = Inbound {
            chat: &chat,
            sender: &sender,
            text: self.text,
            from_me: self.from_me,
            mentions: &mentions,
            quoted: None,
            unreadable: self.unreadable,
        };
        let k = Known {
            config: &cfg,
            own: Some(&own),
            aliases: &aliases,
            approvals: &[],
            ours: self.ours,
            offers: &self.offers,
            pause: self.pause.as_ref(),
            recent_answers: self.recent_answers,
            now: 100_000,
            random: 42,
        };
        admit(&m, &k)
    }
}

#[track_caller]
fn refusal(a: Admission) -> Refusal {
    match a {
        Admission::Drop(r) => r,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn an_allowed_sender_is_answered_and_commands_are_commands() {
    assert_eq!(Case::dm("  hello ").run(), Admission::Answer { text: "hello".into(), mark_read: false });
    assert_eq!(Case::dm("/reset").run(), Admission::Command { command: Command::Reset, mark_read: false });
    let mut c = Case::dm("hi");
    c.env.push(("WHATSAPP_SEND_READ_RECEIPTS", "true"));
    assert_eq!(c.run(), Admission::Answer { text: "hi".into(), mark_read: true });
}

#[test]
fn nothing_to_say_and_our_own_echo_are_ignored() {
    let mut c = Case::dm("   ");
    assert_eq!(c.run(), Admission::Ignore);
    c.text = None;
    assert_eq!(c.run(), Admission::Ignore);
    // Self-chat: our reply comes back from the account itself.
    let mut c = Case::dm("the answer");
    c.env = vec![("WHATSAPP_MODE", "self-chat")];
    (c.chat, c.sender, c.from_me, c.ours) = (OWN, OWN, true, true);
    assert_eq!(c.run(), Admission::Ignore);
    // Not ours, but carrying the reply prefix: an echo all the same.
    c.ours = false;
    c.text = Some("⚕ *Hermes Agent*\n────────────\nan older reply");
    assert_eq!(c.run(), Admission::Ignore);
    // The owner typing in their own chat is a question.
    c.text = Some("what time is it?");
    assert!(matches!(c.run(), Admission::Answer { .. }), "{:?}", c.run());
}

#[test]
fn a_stranger_is_dropped_with_the_rule_and_the_nearest_entry() {
    let mut c = Case::dm("hello");
    c.env = vec![("WHATSAPP_ALLOWED_USERS", "+15551234568")];
    let r = refusal(c.run());
    assert_eq!(r.rule, DropRule::Access(Rule::NotAllowlisted));
    assert!(r.warn);
    assert_eq!(r.nearest.as_deref(), Some("+15551234568"));
    assert!(r.hint.contains("to admit:"), "{}", r.hint);
}

#[test]
fn a_lid_sender_without_its_number_is_parked_and_with_it_admitted() {
    let mut c = Case::dm("hello");
    c.sender = ALICE_LID;
    c.chat = ALICE_LID;
    match c.run() {
        Admission::Park(r) => {
            assert_eq!(r.rule, DropRule::LidWithoutPhone);
            assert!(r.hint.contains(ALICE_LID), "{}", r.hint);
        }
        other => panic!("expected parked, got {other:?}"),
    }
    c.aliases = vec!["15551234567"];
    assert!(matches!(c.run(), Admission::Answer { .. }));
}

#[test]
fn pairing_codes_are_offered_once_per_hour_and_never_in_groups() {
    let mut c = Case::dm("hello");
    // No allowlist written: a stranger is offered a code.
    c.env = vec![];
    let Admission::OfferCode { code, message, refusal } = c.run() else { panic!("expected a code: {:?}", c.run()) };
    assert!(message.contains(&code));
    assert!(refusal.hint.contains(&code));
    c.offers = vec![pairing::Pending { code, sender: ALICE.into(), created_at: 99_000, approved: false }];
    assert!(refusal_hint(c.run()).contains("within the hour"));
    c.offers = (0..3)
        .map(|i| pairing::Pending {
            code: format!("C{i}"),
            sender: format!("1555000000{i}@s.whatsapp.net"),
            created_at: 99_000,
            approved: false,
        })
        .collect();
    assert!(refusal_hint(c.run()).contains("codes already wait"));
    // Approved codes no longer wait.
    for o in &mut c.offers {
        o.approved = true;
    }
    assert!(matches!(c.run(), Admission::OfferCode { .. }));
    // Never in a group, even an open one.
    c.env = vec![("WHATSAPP_GROUP_POLICY", "open")];
    c.chat = GROUP;
    assert!(matches!(c.run(), Admission::Drop(_)), "{:?}", c.run());
}

fn refusal_hint(a: Admission) -> String {
    refusal(a).hint
}

#[test]
fn group_chatter_not_addressed_to_the_agent_is_a_quiet_drop() {
    let mut c = Case::dm("lunch?");
    c.env.extend([("WHATSAPP_GROUP_POLICY", "open"), ("WHATSAPP_REQUIRE_MENTION", "true")]);
    c.chat = GROUP;
    let r = refusal(c.run());
    assert_eq!((r.rule, r.warn), (DropRule::NotMentioned, false));
    c.text = Some("@15550000000 lunch?");
    c.mentions = vec![OWN];
    assert_eq!(c.run(), Admission::Answer { text: "lunch?".into(), mark_read: false });
}

#[test]
fn a_chat_that_names_no_one_is_never_answered() {
    let mut c = Case::dm("hi");
    c.chat = "s.whatsapp.net";
    let r = refusal(c.run());
    assert_eq!((r.rule, r.warn), (DropRule::Access(Rule::UnrecognizedSender), false));
}

#[test]
fn an_echo_is_recognised_by_the_prefix_as_it_was_sent() {
    // A prefix that starts with a blank: compared with the text as it came, not trimmed.
    let mut c = Case::dm("  [bot] an old reply");
    c.env = vec![("WHATSAPP_MODE", "self-chat"), ("WHATSAPP_REPLY_PREFIX", "  [bot] ")];
    (c.chat, c.sender, c.from_me) = (OWN, OWN, true);
    assert_eq!(c.run(), Admission::Ignore);
}

#[test]
fn the_accounts_own_typing_is_dropped_without_a_warning() {
    // In its own chat (in a contact's chat it is a handoff, see below).
    let mut c = Case::dm("note to self");
    (c.chat, c.sender, c.from_me) = (OWN, OWN, true);
    let r = refusal(c.run());
    assert_eq!((r.rule, r.warn), (DropRule::Access(Rule::OwnMessage), false));
}

#[test]
fn an_unreadable_message_is_owned_up_to_for_an_allowed_sender_only() {
    let mut c = Case::dm("");
    c.text = None;
    c.unreadable = true;
    assert_eq!(c.run(), Admission::Unreadable { mark_read: false });
    c.sender = "33612345678@s.whatsapp.net";
    c.chat = "33612345678@s.whatsapp.net";
    assert_eq!(refusal(c.run()).rule, DropRule::Access(Rule::NotAllowlisted));
    // No pairing code for it, even where one would be offered.
    c.env = vec![];
    assert!(matches!(c.run(), Admission::Drop(_)), "{:?}", c.run());
}

#[test]
fn every_rule_reads_back() {
    let rules = Rule::ALL.into_iter().map(DropRule::Access).chain([
        DropRule::NotMentioned,
        DropRule::LidWithoutPhone,
        DropRule::Failed,
    ]);
    let mut seen = std::collections::HashSet::new();
    for r in rules {
        assert_eq!(DropRule::parse(r.as_str()), Some(r));
        assert!(seen.insert(r.as_str()), "two rules named {}", r.as_str());
    }
    assert_eq!(DropRule::parse("no_such_rule"), None);
}

proptest! {
    /// Whatever arrives, admission decides without panicking, and a refusal always says why.
    #[test]
    fn every_message_gets_a_decision(
        user in "[0-9]{1,16}",
        server in prop::sample::select(vec!["s.whatsapp.net", "lid", "g.us", "broadcast", "x"]),
        text in proptest::option::of(".{0,40}"),
        from_me: bool,
        ours: bool,
        policy in prop::sample::select(vec!["allowlist", "pairing", "open", "disabled"]),
    ) {
        let jid = format!("{user}@{server}");
        let cfg = config(&[("WHATSAPP_DM_POLICY", policy), ("WHATSAPP_ALLOWED_USERS", "15551234567")]);
        let sender = Jid::from_wire(&jid);
        let m = Inbound {
            chat: &sender,
            sender: &sender,
            text: text.as_deref(),
            from_me,
            mentions: &[],
            quoted: None,
            unreadable: false,
        };
        let k = Known { config: &cfg, own: None, aliases: &[], approvals: &[], ours, offers: &[], pause: None, recent_answers: 0, now: 0, random: 1 };
        match admit(&m, &k) {
            Admission::Drop(r) | Admission::Park(r) | Admission::OfferCode { refusal: r, .. } => prop_assert!(!r.hint.is_empty()),
            Admission::Ignore => prop_assert!(text.as_deref().is_none_or(|t| t.trim().is_empty()) || from_me),
            Admission::Answer { text, .. } => prop_assert!(!text.is_empty()),
            Admission::Command { .. } | Admission::Unreadable { .. } => {}
            // Only the account's own messages hand a chat over.
            Admission::Pause { .. } | Admission::Resume => prop_assert!(from_me),
            Admission::Observe => {}
        }
    }
}

/// Issue 27: the owner writing in a chat from the phone hands it to a person (bot mode); the
/// agent's own messages coming back do not; `/pause` and `/resume` do it by hand; what a
/// contact writes meanwhile is a `paused` drop, and answered again once the pause ends.
#[test]
fn the_owner_writing_pauses_the_chat_and_a_paused_chat_is_not_answered() {
    use crate::handoff::{Pause, PausedBy};
    let owner = |text: &'static str| Case {
        from_me: true,
        sender: OWN,
        env: vec![("WHATSAPP_ALLOWED_USERS", "15551234567"), ("WHATSAPP_MODE", "bot")],
        ..Case::dm(text)
    };
    assert_eq!(
        owner("I'll take it from here").run(),
        Admission::Pause { until: Some(100_000 + 30 * 60), by: PausedBy::OwnerMessage }
    );
    assert_eq!(owner("/pause").run(), Admission::Pause { until: None, by: PausedBy::OwnerCommand });
    assert_eq!(owner("/resume").run(), Admission::Resume);
    assert_eq!(Case { ours: true, ..owner("an answer of the agent's") }.run(), Admission::Ignore);
    let off = Case {
        env: vec![
            ("WHATSAPP_ALLOWED_USERS", "15551234567"),
            ("WHATSAPP_MODE", "bot"),
            ("WHATSAPP_HANDOFF_MINUTES", "0"),
        ],
        ..owner("hi")
    };
    assert!(!matches!(off.run(), Admission::Pause { .. }));
    // In the account's own chat, or in self-chat mode, the owner's words are not a handoff.
    assert!(!matches!(Case { chat: OWN, ..owner("note to self") }.run(), Admission::Pause { .. }));
    let self_chat = Case { env: vec![("WHATSAPP_MODE", "self-chat")], ..owner("hello") };
    assert!(!matches!(self_chat.run(), Admission::Pause { .. }));
    // A contact in a paused chat: kept and traced, not answered; once it ends, answered.
    let paused = Pause { since: 90_000, until: Some(100_500), by: PausedBy::OwnerMessage };
    let r = refusal(Case { pause: Some(paused.clone()), ..Case::dm("are you there?") }.run());
    assert_eq!(r.rule, DropRule::Paused);
    assert!(r.hint.contains("/resume") && !r.warn, "{}", r.hint);
    let ended = Pause { until: Some(99_000), ..paused };
    assert!(matches!(Case { pause: Some(ended), ..Case::dm("still?") }.run(), Admission::Answer { .. }));
}

/// Issue 27: the reply-loop breaker: a chat where the agent answered `loop_turns` times within
/// the window is paused (another bot answering it), not answered again.
#[test]
fn a_reply_loop_pauses_the_chat() {
    use crate::handoff::PausedBy;
    let busy = Case { recent_answers: 20, ..Case::dm("and another thing") };
    assert!(matches!(busy.run(), Admission::Pause { by: PausedBy::LoopBreaker, until: Some(_) }), "{:?}", busy.run());
    assert!(matches!(Case { recent_answers: 19, ..Case::dm("hi") }.run(), Admission::Answer { .. }));
}
