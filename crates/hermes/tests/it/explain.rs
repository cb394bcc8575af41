//! `hermes whatsapp explain`: the decision, its reason and its fix, as a user sees them.

use crate::snapshot;
use crate::support::Home;

const BOT_ENV: &str = "WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=4915112345678, 555 123 4567, +44 7911 123456\n";

#[test]
fn admitted_sender_names_the_matching_entry() {
    let home = Home::new().with_env(BOT_ENV);
    let run = home.run(&["whatsapp", "explain", "+44 (0)7911 123456"]);
    assert_eq!(run.code, 0, "{run:?}");
    snapshot!(home, "explain_admitted", run.stdout);
}

#[test]
fn missing_country_code_is_pointed_out_with_the_line_to_write() {
    let home = Home::new().with_env(BOT_ENV);
    let run = home.run(&["whatsapp", "explain", "1 (555) 123-4567"]);
    assert_eq!(run.code, 1, "{run:?}");
    snapshot!(home, "explain_missing_country_code", run.stdout);
}

#[test]
fn json_has_the_documented_fields() {
    let home = Home::new().with_env(BOT_ENV);
    let run = home.run(&["whatsapp", "explain", "15551234567@s.whatsapp.net", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "not_allowlisted");
    assert!(v["matched_entry"].is_null());
    assert_eq!(v["hint"], "entry '555 123 4567' (#2 in WHATSAPP_ALLOWED_USERS) has no country code; write 15551234567");
    snapshot!(home, "explain_json_denied", run.stdout);

    let run = home.run(&["whatsapp", "explain", "4915112345678", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!((v["decision"].as_str(), v["matched_entry"].as_str()), (Some("allow"), Some("4915112345678")));
    assert!(v["hint"].is_null());
}

#[test]
fn lid_sender_is_admitted_through_its_phone_alias() {
    let home = Home::new().with_env(BOT_ENV);
    let lid = "98765432109876@lid";
    let refused = home.run(&["whatsapp", "explain", lid]);
    assert_eq!(refused.code, 1, "{refused:?}");
    snapshot!(home, "explain_lid_unmapped", refused.stdout);
    let admitted = home.run(&["whatsapp", "explain", lid, "--alias", "+49 151 12345678"]);
    assert_eq!(admitted.code, 0, "{admitted:?}");
}

#[test]
fn groups_closed_under_pairing_say_what_to_open() {
    let home = Home::new().with_env(BOT_ENV);
    let run = home.run(&["whatsapp", "explain", "4915112345678", "--chat", "120363001234567890@g.us"]);
    assert_eq!(run.code, 1, "{run:?}");
    snapshot!(home, "explain_group_closed", run.stdout);
}

#[test]
fn self_chat_mode_refuses_others_and_says_why() {
    let home = Home::new().with_env("WHATSAPP_ALLOWED_USERS=*\n");
    let run = home.run(&["whatsapp", "explain", "4915112345678"]);
    assert_eq!(run.code, 1, "{run:?}");
    snapshot!(home, "explain_self_chat", run.stdout);
}

#[test]
fn environment_overrides_are_called_out() {
    let home = Home::new().with_env(BOT_ENV);
    let run = home.run_with(&[("WHATSAPP_ALLOWED_USERS", "4915112345678")], &["whatsapp", "explain", "15551234567"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("note: WHATSAPP_ALLOWED_USERS is set in this shell's environment, which overrides .env"),
        "{}",
        run.stdout
    );
}

#[test]
fn configuration_errors_exit_2_and_name_the_key() {
    let home = Home::new().with_env("WHATSAPP_MODE=bot\nWHATSAPP_DM_POLICY=allowlsit\n");
    let run = home.run(&["whatsapp", "explain", "15551234567"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        run.stderr,
        "hermes: configuration error: WHATSAPP_DM_POLICY (.env WHATSAPP_DM_POLICY): 'allowlsit' is not valid; accepted values: open, allowlist, pairing, disabled\n"
    );
}

#[test]
fn a_sender_that_is_no_number_is_a_usage_error() {
    let home = Home::new().with_env(BOT_ENV);
    let run = home.run(&["whatsapp", "explain", "alice"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("SENDER 'alice' contains 'a', which is not part of a phone number"), "{}", run.stderr);
}

#[test]
fn profiles_read_their_own_home() {
    let home = Home::new().with_env("WHATSAPP_MODE=bot\n");
    let profile = home.path.join("profiles/work");
    std::fs::create_dir_all(&profile).expect("profile dir");
    std::fs::write(profile.join(".env"), "WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=15551234567\n").expect("write");
    assert_eq!(home.run(&["whatsapp", "explain", "15551234567"]).code, 1);
    assert_eq!(home.run(&["-p", "work", "whatsapp", "explain", "15551234567"]).code, 0);
    assert_eq!(home.run(&["whatsapp", "explain", "--profile", "work", "15551234567"]).code, 0);
}

/// The gateway's database in this home, created and migrated as the gateway creates it.
fn state_db(home: &Home) -> hermes_store::Store {
    let state = home.path.join("state");
    hermes_store::files::create_private_dir_all(&state).expect("create state/");
    hermes_store::Store::open(&state.join("hermes.db")).expect("open state/hermes.db")
}

fn json(run: &crate::support::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).expect("one JSON object")
}

/// Issue 25: explain decided without the gateway's approvals, so a sender the owner approved
/// with `hermes pairing approve` (and the gateway answers) was reported refused.
#[test]
fn issue_25_a_sender_approved_with_pairing_approve_is_admitted_by_approval_until_revoked() {
    // No allowlist: strangers are offered pairing codes.
    let home = Home::new().with_env("WHATSAPP_MODE=bot\n");
    let stranger = "15550001111";
    let before = home.run(&["whatsapp", "explain", stranger, "--json"]);
    assert_eq!(before.code, 1, "{before:?}");
    let v = json(&before);
    assert_eq!((v["rule"].as_str(), v["action"].as_str()), (Some("allowlist_empty"), Some("pairing_code")), "{v}");

    // The code the gateway sent the stranger, as the gateway keeps it.
    let sender = hermes_core::identity::Jid::parse("15550001111@s.whatsapp.net").expect("a JID");
    let code = hermes_store::Code {
        code: "ABCDEFGH".to_owned(),
        sender: sender.clone(),
        chat: sender,
        created_at: hermes_store::clock::now(),
        approved_at: None,
    };
    state_db(&home).add_code(&code).expect("keep the code");
    let approve = home.run(&["pairing", "approve", "whatsapp", "ABCDEFGH"]);
    assert_eq!(approve.code, 0, "{approve:?}");

    let approved = home.run(&["whatsapp", "explain", stranger]);
    assert_eq!(approved.code, 0, "{approved:?}");
    assert!(
        approved
            .stdout
            .contains("ADMITTED by rule pairing_approved: 15550001111 was approved with `hermes pairing approve`"),
        "{}",
        approved.stdout
    );
    let v = json(&home.run(&["whatsapp", "explain", stranger, "--json"]));
    assert_eq!((v["decision"].as_str(), v["rule"].as_str()), (Some("allow"), Some("pairing_approved")), "{v}");
    assert_eq!(v["matched_via"], "15550001111", "{v}");

    let revoke = home.run(&["pairing", "revoke", "whatsapp", stranger]);
    assert_eq!(revoke.code, 0, "{revoke:?}");
    let revoked = home.run(&["whatsapp", "explain", stranger, "--json"]);
    assert_eq!(revoked.code, 1, "{revoked:?}");
    let v = json(&revoked);
    // Refused again, and not sent a second code within the hour of the first.
    assert_eq!(
        (v["decision"].as_str(), v["rule"].as_str(), v["action"].as_str()),
        (Some("deny"), Some("allowlist_empty"), Some("ignore")),
        "{v}"
    );
    let text = home.run(&["whatsapp", "explain", stranger]);
    assert!(
        text.stdout.contains("sends no pairing code now: one was sent to this sender within the hour"),
        "{}",
        text.stdout
    );
}

/// Issue 25: a LID whose phone number the gateway learned is judged by that number, as the
/// gateway judges it; one whose number nobody knows is parked, not simply refused.
#[test]
fn issue_25_a_lid_with_a_learned_phone_number_is_judged_by_its_phone() {
    let home = Home::new().with_env(BOT_ENV);
    let lid = "98765432109876@lid";
    let unknown = home.run(&["whatsapp", "explain", lid, "--json"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    let v = json(&unknown);
    assert_eq!(
        (v["rule"].as_str(), v["access_rule"].as_str(), v["action"].as_str()),
        (Some("lid_without_phone"), Some("not_allowlisted"), Some("park")),
        "{v}"
    );

    // What the gateway writes when WhatsApp tells it the LID's number.
    let jid = |s: &str| hermes_core::identity::Jid::parse(s).expect("a JID");
    let learned = hermes_store::Settlement {
        learned: Some((jid(lid), jid("4915112345678@s.whatsapp.net"))),
        outcome: hermes_store::Outcome::Admitted,
    };
    state_db(&home).settle(0, &learned).expect("learn the alias");

    let run = home.run(&["whatsapp", "explain", lid]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("also 4915112345678 (learned by the gateway)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("ADMITTED by rule allowlist: entry #1 '4915112345678' in WHATSAPP_ALLOWED_USERS"),
        "{}",
        run.stdout
    );
    let v = json(&home.run(&["whatsapp", "explain", lid, "--json"]));
    assert_eq!(
        (v["matched_via"].as_str(), v["learned_alias"].as_str()),
        (Some("4915112345678"), Some("4915112345678")),
        "{v}"
    );
}

/// Issue 25: in a group under require_mention, explain applies the mention rule the gateway
/// applies: an allowed sender's ordinary message is not answered, a command is.
#[test]
fn issue_25_group_messages_are_judged_by_the_mention_rule() {
    let home = Home::new().with_env(
        "WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=4915112345678\n\
         WHATSAPP_GROUP_POLICY=open\nWHATSAPP_REQUIRE_MENTION=true\n",
    );
    let group = "120363001234567890@g.us";
    let ordinary = home.run(&["whatsapp", "explain", "4915112345678", "--chat", group, "--json"]);
    assert_eq!(ordinary.code, 1, "{ordinary:?}");
    let v = json(&ordinary);
    assert_eq!((v["rule"].as_str(), v["access_rule"].as_str()), (Some("not_mentioned"), Some("allowlist")), "{v}");
    assert!(v["hint"].as_str().is_some_and(|h| h.contains("does not address the agent")), "{v}");

    let command = home.run(&["whatsapp", "explain", "4915112345678", "--chat", group, "--text", "/status"]);
    assert_eq!(command.code, 0, "{command:?}");
    assert!(command.stdout.contains("ADMITTED by rule allowlist"), "{}", command.stdout);
}
