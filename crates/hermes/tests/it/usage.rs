//! Usage errors: a flag's value hermes refuses exits 2 and names the flag, before anything
//! connects or is written.

use serde_json::Value;

use crate::support::Home;

#[test]
fn a_mode_that_core_does_not_know_is_a_usage_error() {
    let home = Home::new();
    let run = home.run(&["whatsapp", "--no-input", "--json", "--mode", " Robot "]);
    assert_eq!(run.code, 2, "{run:?}");
    let v: Value = serde_json::from_str(run.stdout.lines().next().expect("one line")).expect("json");
    assert_eq!(v["kind"], "usage", "{v}");
    assert_eq!(v["message"], "--mode 'robot' is not valid; accepted values: bot, self-chat", "{v}");
    assert!(!home.path.join(".env").exists(), "nothing is saved");
}

#[test]
fn a_chat_that_names_nobody_is_a_usage_error() {
    let home = Home::new().with_env("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=15551234567\n");
    let run = home.run(&["whatsapp", "explain", "15551234567", "--chat", "alice"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--chat 'alice' contains 'a'"), "{run:?}");
    let run = home.run(&["whatsapp", "explain", "15551234567", "--chat", "@g.us"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is not a JID"), "{run:?}");
}
