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
