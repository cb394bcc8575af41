use super::*;
use crate::allowlist::parse_user;
use crate::config::{Inputs, resolve};
use crate::testing::{config, own};

const ALICE: &str = "15551234567@s.whatsapp.net";
const ALICE_LID: &str = "98765432109876@lid";
const BOB: &str = "4915112345678@s.whatsapp.net";
const GROUP: &str = "120363001234567890@g.us";
const OTHER_GROUP: &str = "120363009999999999@g.us";

struct Case<'a> {
    env: &'a [(&'a str, &'a str)],
    chat: &'a str,
    sender: &'a str,
    aliases: &'a [&'a str],
    from_me: bool,
    approvals: &'a [&'a str],
}

const DM: Case<'static> = Case { env: &[], chat: ALICE, sender: ALICE, aliases: &[], from_me: false, approvals: &[] };

fn run(case: &Case<'_>) -> Decision {
    let cfg = config(case.env);
    let aliases: Vec<UserId> = case.aliases.iter().map(|a| parse_user(a).expect("alias")).collect();
    let approvals: Vec<UserId> = case.approvals.iter().map(|a| parse_user(a).expect("approval")).collect();
    let own = own();
    let ctx = Context { config: &cfg, approvals: &approvals, own: Some(&own) };
    let chat = Jid::parse(case.chat).expect("chat");
    let sender = Jid::parse(case.sender).expect("sender");
    decide(&ctx, &Request { chat: &chat, sender: &sender, aliases: &aliases, from_me: case.from_me })
}

#[track_caller]
fn check(case: Case<'_>, rule: Rule, action: Option<DenyAction>) -> Decision {
    let d = run(&case);
    assert_eq!((d.rule, d.on_deny), (rule, action), "decision: {d:#?}");
    assert_eq!(d.is_allowed(), action.is_none());
    d
}

const IGNORE: Option<DenyAction> = Some(DenyAction::Ignore);
const PAIR: Option<DenyAction> = Some(DenyAction::OfferPairingCode);
const ALLOW: Option<DenyAction> = None;

#[test]
fn direct_messages_under_each_policy() {
    let al = ("WHATSAPP_ALLOWED_USERS", "15551234567");
    // pairing (the default)
    check(Case { env: &[al], ..DM }, Rule::Allowlisted, ALLOW);
    check(Case { env: &[], ..DM }, Rule::AllowlistEmpty, PAIR);
    check(Case { env: &[al], sender: BOB, chat: BOB, ..DM }, Rule::NotAllowlisted, IGNORE);
    check(Case { env: &[al], sender: BOB, chat: BOB, ..DM }, Rule::NotAllowlisted, IGNORE);
    // allowlist
    let p = ("WHATSAPP_DM_POLICY", "allowlist");
    check(Case { env: &[p, al], ..DM }, Rule::Allowlisted, ALLOW);
    check(Case { env: &[p], ..DM }, Rule::AllowlistEmpty, IGNORE);
    check(Case { env: &[p, al], sender: BOB, chat: BOB, ..DM }, Rule::NotAllowlisted, IGNORE);
    check(Case { env: &[p, ("WHATSAPP_ALLOWED_USERS", "*")], sender: BOB, chat: BOB, ..DM }, Rule::Wildcard, ALLOW);
    check(Case { env: &[p, ("GATEWAY_ALLOWED_USERS", "15551234567")], ..DM }, Rule::Allowlisted, ALLOW);
    check(Case { env: &[p, ("GATEWAY_ALLOWED_USERS", "*")], ..DM }, Rule::Wildcard, ALLOW);
    check(Case { env: &[p, ("WHATSAPP_ALLOW_ALL_USERS", "true")], ..DM }, Rule::AllowAll, ALLOW);
    check(Case { env: &[p, ("GATEWAY_ALLOW_ALL_USERS", "yes")], ..DM }, Rule::AllowAll, ALLOW);
    // open needs an allow-all flag for strangers, as in Hermes
    let o = ("WHATSAPP_DM_POLICY", "open");
    check(Case { env: &[o], ..DM }, Rule::OpenWithoutAllowAll, IGNORE);
    check(Case { env: &[o, al], ..DM }, Rule::Allowlisted, ALLOW);
    check(Case { env: &[o, ("WHATSAPP_ALLOW_ALL_USERS", "1")], sender: BOB, chat: BOB, ..DM }, Rule::AllowAll, ALLOW);
    // disabled beats everything
    let x = ("WHATSAPP_DM_POLICY", "disabled");
    check(Case { env: &[x, al], ..DM }, Rule::DmDisabled, IGNORE);
    check(Case { env: &[x, ("WHATSAPP_ALLOWED_USERS", "*")], ..DM }, Rule::DmDisabled, IGNORE);
    check(Case { env: &[x, ("WHATSAPP_ALLOW_ALL_USERS", "true")], ..DM }, Rule::DmDisabled, IGNORE);
    check(Case { env: &[x], approvals: &["15551234567"], ..DM }, Rule::DmDisabled, IGNORE);
}

#[test]
fn pairing_codes_only_where_safe() {
    // No allowlist written: a stranger is offered a code.
    check(Case { sender: BOB, chat: BOB, ..DM }, Rule::AllowlistEmpty, PAIR);
    // An allowlist is written: strangers are ignored unless the user explicitly wants codes.
    let al = ("WHATSAPP_ALLOWED_USERS", "15551234567");
    check(Case { env: &[al], sender: BOB, chat: BOB, ..DM }, Rule::NotAllowlisted, IGNORE);
    // Approvals admit, under pairing and allowlist policies alike.
    check(
        Case { env: &[al], sender: BOB, chat: BOB, approvals: &["4915112345678"], ..DM },
        Rule::PairingApproved,
        ALLOW,
    );
    check(
        Case { env: &[("WHATSAPP_DM_POLICY", "allowlist")], approvals: &["15551234567"], ..DM },
        Rule::PairingApproved,
        ALLOW,
    );
    // An approval of the LID admits the phone JID when the alias is known.
    check(Case { aliases: &[ALICE_LID], approvals: &[ALICE_LID], ..DM }, Rule::PairingApproved, ALLOW);
}

#[test]
fn explicit_unauthorized_dm_behavior_wins() {
    fn with_yaml(behavior: &str, allow: &str) -> Decision {
        let mut inputs = Inputs::default();
        inputs.env.insert("WHATSAPP_MODE".into(), "bot".into());
        inputs.env.insert("WHATSAPP_ALLOWED_USERS".into(), allow.into());
        let yaml = format!("whatsapp:\n  unauthorized_dm_behavior: {behavior}\n");
        inputs.yaml = Some(&yaml);
        let cfg = resolve(&inputs).config.whatsapp;
        let (chat, sender) = (Jid::parse(BOB).expect("jid"), Jid::parse(BOB).expect("jid"));
        decide(
            &Context { config: &cfg, approvals: &[], own: None },
            &Request { chat: &chat, sender: &sender, aliases: &[], from_me: false },
        )
    }
    assert_eq!(with_yaml("pair", "15551234567").on_deny, PAIR);
    assert_eq!(with_yaml("ignore", "").on_deny, IGNORE);
    assert_eq!(with_yaml("ignore", "15551234567").on_deny, IGNORE);
}

#[test]
fn groups() {
    let al = ("WHATSAPP_ALLOWED_USERS", "15551234567");
    let g = Case { chat: GROUP, ..DM };
    // pairing (default) and disabled keep every group closed, allowlisted sender or not
    check(Case { env: &[al], ..g }, Rule::GroupPairing, IGNORE);
    check(Case { env: &[al, ("WHATSAPP_GROUP_POLICY", "disabled")], ..g }, Rule::GroupDisabled, IGNORE);
    check(Case { env: &[("WHATSAPP_ALLOW_ALL_USERS", "true")], ..g }, Rule::GroupPairing, IGNORE);
    // open: every group, then the sender as in a DM
    let open = ("WHATSAPP_GROUP_POLICY", "open");
    check(Case { env: &[open, al], ..g }, Rule::Allowlisted, ALLOW);
    check(Case { env: &[open, al], sender: BOB, ..g }, Rule::NotAllowlisted, IGNORE);
    check(Case { env: &[open], ..g }, Rule::AllowlistEmpty, IGNORE);
    check(Case { env: &[open, ("WHATSAPP_ALLOWED_USERS", "*")], sender: BOB, ..g }, Rule::Wildcard, ALLOW);
    // allowlist: listed groups only
    let gl = ("WHATSAPP_GROUP_POLICY", "allowlist");
    let listed = ("WHATSAPP_GROUP_ALLOWED_USERS", GROUP);
    check(Case { env: &[gl, listed, al], ..g }, Rule::Allowlisted, ALLOW);
    check(Case { env: &[gl, listed, al], chat: OTHER_GROUP, ..g }, Rule::GroupNotAllowlisted, IGNORE);
    check(Case { env: &[gl, listed, al], sender: BOB, ..g }, Rule::NotAllowlisted, IGNORE);
    check(Case { env: &[gl, al], ..g }, Rule::GroupNotAllowlisted, IGNORE);
    // group senders are never offered codes, even when DMs would be
    check(Case { env: &[open, ("WHATSAPP_DM_POLICY", "pairing")], sender: BOB, ..g }, Rule::AllowlistEmpty, IGNORE);
    // a device JID of an allowed sender in an allowed group
    check(Case { env: &[open, al], sender: "15551234567:7@s.whatsapp.net", ..g }, Rule::Allowlisted, ALLOW);
}

#[test]
fn broadcasts_never_pass() {
    let all = &[("WHATSAPP_ALLOWED_USERS", "*"), ("WHATSAPP_ALLOW_ALL_USERS", "true"), ("WHATSAPP_DM_POLICY", "open")];
    check(Case { env: all, chat: "status@broadcast", ..DM }, Rule::Broadcast, IGNORE);
    check(Case { env: all, chat: "1234567@broadcast", ..DM }, Rule::Broadcast, IGNORE);
    check(Case { env: all, chat: "120363000000000001@newsletter", ..DM }, Rule::Broadcast, IGNORE);
    check(Case { env: all, sender: "120363000000000001@newsletter", ..DM }, Rule::Broadcast, IGNORE);
}

#[test]
fn lid_senders_match_through_their_aliases() {
    let al = ("WHATSAPP_ALLOWED_USERS", "15551234567");
    let lid = Case { chat: ALICE_LID, sender: ALICE_LID, ..DM };
    check(Case { env: &[al], aliases: &["15551234567"], ..lid }, Rule::Allowlisted, ALLOW);
    let d = check(Case { env: &[al], ..lid }, Rule::NotAllowlisted, IGNORE);
    assert!(d.hint.as_deref().is_some_and(|h| h.contains("known only by its LID")), "{d:?}");
    check(Case { env: &[("WHATSAPP_ALLOWED_USERS", ALICE_LID)], ..lid }, Rule::Allowlisted, ALLOW);
    check(
        Case { env: &[("WHATSAPP_ALLOWED_USERS", ALICE_LID)], aliases: &[ALICE_LID], ..DM },
        Rule::Allowlisted,
        ALLOW,
    );
    check(
        Case { env: &[al], sender: "98765432109876:3@lid", aliases: &["15551234567"], ..lid },
        Rule::Allowlisted,
        ALLOW,
    );
    let d = run(&Case { env: &[al], aliases: &[ALICE_LID], ..DM });
    assert_eq!(d.matched_via.map(|u| u.to_string()).as_deref(), Some("15551234567"));
}

#[test]
fn self_chat_mode_admits_only_the_own_chat() {
    let sc = ("WHATSAPP_MODE", "self-chat");
    let me = "15550000000@s.whatsapp.net";
    let me_lid = "11111111111111@lid";
    check(Case { env: &[sc], chat: me, sender: me, from_me: true, ..DM }, Rule::SelfChat, ALLOW);
    check(Case { env: &[sc], chat: me_lid, sender: me_lid, from_me: true, ..DM }, Rule::SelfChat, ALLOW);
    // Hermes #35223: own messages under LID sometimes arrive with from_me unset.
    check(Case { env: &[sc], chat: me_lid, sender: "11111111111111:2@lid", ..DM }, Rule::SelfChat, ALLOW);
    // Others never, whatever the allowlist or policy says, and never a pairing code.
    let d = check(Case { env: &[sc, ("WHATSAPP_ALLOWED_USERS", "*")], ..DM }, Rule::SelfChatOnly, IGNORE);
    // `*` already admits everyone in bot mode: switching the mode is the whole fix.
    assert_eq!(d.fix, vec!["WHATSAPP_MODE=bot"]);
    check(Case { env: &[sc, ("WHATSAPP_ALLOW_ALL_USERS", "true")], ..DM }, Rule::SelfChatOnly, IGNORE);
    check(Case { env: &[sc], chat: ALICE, sender: me, from_me: true, ..DM }, Rule::SelfChatOnly, IGNORE);
    check(Case { env: &[sc], chat: GROUP, sender: me, from_me: true, ..DM }, Rule::SelfChatOnly, IGNORE);
}

#[test]
fn bot_mode_ignores_the_accounts_own_messages() {
    check(Case { env: &[("WHATSAPP_ALLOWED_USERS", "*")], from_me: true, ..DM }, Rule::OwnMessage, IGNORE);
    check(
        Case { env: &[("WHATSAPP_ALLOWED_USERS", "*")], sender: "15550000000:5@s.whatsapp.net", ..DM },
        Rule::OwnMessage,
        IGNORE,
    );
}

#[test]
fn near_misses_explain_and_fix() {
    #[track_caller]
    fn hint_and_fix(allow: &str, sender: &str) -> (String, Vec<String>) {
        let env = [("WHATSAPP_ALLOWED_USERS", allow), ("WHATSAPP_DM_POLICY", "allowlist")];
        let d = run(&Case { env: &env, chat: sender, sender, ..DM });
        assert!(!d.is_allowed());
        (d.hint.unwrap_or_default(), d.fix)
    }
    assert_eq!(
        hint_and_fix("4915112345678,5551234567", ALICE),
        (
            "entry '5551234567' (#2 in WHATSAPP_ALLOWED_USERS) has no country code; write 15551234567".into(),
            vec!["WHATSAPP_ALLOWED_USERS=4915112345678,5551234567,15551234567".into()]
        )
    );
    assert_eq!(
        hint_and_fix("0151 12345678", BOB),
        (
            "entry '0151 12345678' (#1 in WHATSAPP_ALLOWED_USERS) starts with a national 0 instead of the country code; write 4915112345678".into(),
            vec!["WHATSAPP_ALLOWED_USERS=4915112345678".into()]
        )
    );
    assert_eq!(
        hint_and_fix("15551234568", ALICE).0,
        "entry '15551234568' (#1 in WHATSAPP_ALLOWED_USERS) differs from the sender 15551234567 by 1 digit; check it for a typo"
    );
    assert_eq!(
        hint_and_fix("+1 555 123 4567 ext 2", ALICE).0,
        "entry '+1 555 123 4567 ext 2' (#1 in WHATSAPP_ALLOWED_USERS) admits no one: it contains 'e', which is not part of a phone number"
    );
    let (hint, fix) = hint_and_fix("447911123456", ALICE);
    assert_eq!(hint, "no entry in WHATSAPP_ALLOWED_USERS or GATEWAY_ALLOWED_USERS names 15551234567");
    assert_eq!(fix, vec!["WHATSAPP_ALLOWED_USERS=447911123456,15551234567"]);
    let (hint, _) = hint_and_fix("", ALICE);
    assert_eq!(hint, "WHATSAPP_ALLOWED_USERS is empty, and an empty allowlist admits no one");
}

/// Issue 11: a stranger whose number ends in an allowed number is not that number "missing its
/// country code", and admitting the stranger never evicts the real contact.
#[test]
fn issue_11_a_near_miss_never_evicts_a_real_entry() {
    let env = [("WHATSAPP_ALLOWED_USERS", "15551234567"), ("WHATSAPP_DM_POLICY", "allowlist")];
    let stranger = "4915551234567@s.whatsapp.net";
    let d = run(&Case { env: &env, chat: stranger, sender: stranger, ..DM });
    assert!(!d.is_allowed());
    assert_eq!(
        d.hint.as_deref(),
        Some("no entry in WHATSAPP_ALLOWED_USERS or GATEWAY_ALLOWED_USERS names 4915551234567")
    );
    assert_eq!(d.fix, vec!["WHATSAPP_ALLOWED_USERS=15551234567,4915551234567"]);
}

#[test]
fn group_fixes_name_the_group_and_the_sender() {
    let d = run(&Case { chat: GROUP, ..DM });
    assert_eq!(
        d.fix,
        vec![
            "WHATSAPP_GROUP_POLICY=allowlist".to_owned(),
            format!("WHATSAPP_GROUP_ALLOWED_USERS={GROUP}"),
            "WHATSAPP_ALLOWED_USERS=15551234567".to_owned(),
        ]
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn phone() -> impl Strategy<Value = String> {
        ("[1-9]", "[0-9]{6,14}").prop_map(|(a, b)| format!("{a}{b}"))
    }

    fn any_sender() -> impl Strategy<Value = String> {
        prop_oneof![
            phone().prop_map(|p| format!("{p}@s.whatsapp.net")),
            (phone(), 0u16..100).prop_map(|(p, d)| format!("{p}:{d}@s.whatsapp.net")),
            "[1-9][0-9]{9,15}".prop_map(|l| format!("{l}@lid")),
        ]
    }

    fn decide_dm(env: &[(&str, &str)], sender: &str) -> Decision {
        let cfg = config(env);
        let jid = Jid::parse(sender).expect("valid sender");
        decide(
            &Context { config: &cfg, approvals: &[], own: None },
            &Request { chat: &jid, sender: &jid, aliases: &[], from_me: false },
        )
    }

    proptest! {
        #[test]
        fn wildcard_admits_every_person_under_allowlist(sender in any_sender(), group in any::<bool>()) {
            let cfg = config(&[("WHATSAPP_ALLOWED_USERS", "*"), ("WHATSAPP_DM_POLICY", "allowlist"), ("WHATSAPP_GROUP_POLICY", "open")]);
            let s = Jid::parse(&sender).expect("valid");
            let chat = if group { Jid::parse(GROUP).expect("valid") } else { s.clone() };
            let d = decide(&Context { config: &cfg, approvals: &[], own: None }, &Request { chat: &chat, sender: &s, aliases: &[], from_me: false });
            prop_assert!(d.is_allowed(), "{:?}", d);
        }

        #[test]
        fn empty_allowlist_admits_no_one(sender in any_sender(), policy in prop::sample::select(vec!["allowlist", "pairing", "open", "disabled"])) {
            let d = decide_dm(&[("WHATSAPP_DM_POLICY", policy)], &sender);
            prop_assert!(!d.is_allowed(), "{:?}", d);
        }

        #[test]
        fn any_formatting_of_an_admitted_number_admits_it(
            number in phone(),
            seps in prop::collection::vec(prop::sample::select(vec![" ", "-", ".", "", "\u{00A0}"]), 15),
            plus in any::<bool>(),
        ) {
            let mut written = String::from(if plus { "+" } else { "" });
            for (i, c) in number.chars().enumerate() {
                written.push(c);
                written.push_str(seps[i]);
            }
            let d = decide_dm(&[("WHATSAPP_ALLOWED_USERS", &written), ("WHATSAPP_DM_POLICY", "allowlist")], &format!("{number}@s.whatsapp.net"));
            prop_assert_eq!(d.rule, Rule::Allowlisted);
        }

        #[test]
        fn broadcasts_never_pass_whatever_the_config(
            user in "[a-z0-9]{1,12}",
            server in prop::sample::select(vec!["broadcast", "newsletter"]),
        ) {
            let d = decide_dm(&[("WHATSAPP_ALLOWED_USERS", "*"), ("WHATSAPP_ALLOW_ALL_USERS", "true"), ("WHATSAPP_DM_POLICY", "open")], &format!("{user}@{server}"));
            prop_assert_eq!(d.rule, Rule::Broadcast);
        }

        #[test]
        fn a_refusal_always_says_why(sender in any_sender(), allow in "[0-9+ ,]{0,30}") {
            let d = decide_dm(&[("WHATSAPP_ALLOWED_USERS", &allow), ("WHATSAPP_DM_POLICY", "allowlist")], &sender);
            if !d.is_allowed() {
                prop_assert!(d.hint.as_deref().is_some_and(|h| !h.is_empty()));
                prop_assert!(!d.fix.is_empty());
            }
        }
    }
}
