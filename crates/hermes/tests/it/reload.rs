//! Issue 15: live reload. `.env` and `config.yaml` edited under a running gateway are put in
//! force without a restart, logged as a diff with origins; a broken file keeps the settings in
//! force and says so in the log, `doctor` and `status`; SIGHUP reads them again too.

use serde_json::Value;

use crate::pipeline::Setup;

const ACCOUNT: &str = "15550007000";
const FRIEND: &str = "4915100007777";
const STRANGER: &str = "4915100008888";

/// Replaces a file the way editors save: a new file renamed over the old one.
fn save(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_allowlist_applies_at_once_and_a_broken_file_keeps_the_settings_in_force() {
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    s.contact(STRANGER);
    s.say(STRANGER, "hello?").await;
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    let in_force = |s: &Setup| s.json(&["whatsapp", "status", "--json"])["settings"].clone();
    assert_eq!(in_force(&s)["current"], true, "{}", in_force(&s));

    // The owner lets the stranger in: no restart.
    let env = std::fs::read_to_string(s.home.path.join(".env")).expect(".env");
    let env = env
        .replace(&format!("WHATSAPP_ALLOWED_USERS={FRIEND}"), &format!("WHATSAPP_ALLOWED_USERS={FRIEND},+{STRANGER}"));
    save(&s.home.path.join(".env"), &env);
    let lines = s.gw().wait_log("setting changed, in force now");
    assert!(!lines.iter().any(|l| l.contains("next restart")), "only the allowlist changed: {lines:#?}");
    let line = lines.last().expect("a line");
    assert!(line.contains("WHATSAPP_ALLOWED_USERS") && line.contains(&format!("{FRIEND},{STRANGER}")), "{line}");
    assert!(line.contains(".env"), "the origin is named: {line}");
    let reply = s.ask(STRANGER, "now?").await;
    assert!(reply.contains("now?"), "{reply}");

    // A broken config.yaml: refused with its error, the settings in force are kept.
    let yaml = std::fs::read_to_string(s.home.path.join("config.yaml")).expect("yaml");
    save(&s.home.path.join("config.yaml"), &format!("{yaml}  dm_policy: sometimes\n"));
    let lines = s.gw().wait_log("the gateway keeps the settings in force");
    assert!(lines.iter().any(|l| l.contains("dm_policy") && l.contains("not reloaded")), "{lines:#?}");
    let reply = s.ask(STRANGER, "still?").await;
    assert!(reply.contains("still?"), "{reply}");
    let status = in_force(&s);
    assert_eq!(status["current"], false, "{status}");
    assert!(status["message"].as_str().is_some_and(|m| m.contains("dm_policy")), "{status}");
    let doctor = s.json(&["doctor", "--json"]);
    let check = doctor["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "settings_in_force").cloned();
    let check = check.unwrap_or_else(|| panic!("no settings_in_force check: {doctor}"));
    assert_eq!(check["status"], "warn", "{check}");

    // Fixed, with a change only a restart applies: said so; and SIGHUP reads again.
    save(&s.home.path.join("config.yaml"), &format!("{yaml}  retention_days: 60\n"));
    let lines = s.gw().wait_log("applies at the next restart");
    assert!(lines.last().is_some_and(|l| l.contains("RETENTION_DAYS")), "{lines:#?}");
    let status = in_force(&s);
    assert_eq!(status["current"], false, "{status}");
    assert!(
        status["message"].as_str().is_some_and(|m| m.contains("WHATSAPP_RETENTION_DAYS") && m.contains("restart")),
        "{status}"
    );
    s.gw().hang_up();
    s.gw().wait_log("nothing changed");
    let _: Value = s.json(&["whatsapp", "status", "--json"]);
}
