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

/// Issue 25: lines another user appended to a `.env` they could write were put in force at
/// once: `WHATSAPP_ALLOW_ALL_USERS=true`, and a model URL of theirs that was then sent the API
/// key. Now nothing in such a file is applied; the log, `status` and `doctor` say why and how
/// to fix it, and once the owner has, the file is read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_a_settings_file_other_users_can_write_is_not_applied() {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let s = Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\n")).await;
    s.contact(FRIEND);
    s.contact(STRANGER);
    let theirs = hermes_agent::loopback::LoopbackLlm::start(0).await.expect("their model server");
    let env = s.home.path.join(".env");
    let original = std::fs::read_to_string(&env).expect(".env");
    let fix = format!("chmod go-w {}", env.display());

    // Anyone may write it now: refused as soon as the mode changes, before anything else does.
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let lines = s.gw().wait_log("the gateway keeps the settings in force");
    let said = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("not reloaded") && l.contains("can be written by other users") && l.contains(&fix))
    };
    assert!(said(&lines), "{lines:#?}");

    // Someone else appends their settings in place.
    let mut file = std::fs::OpenOptions::new().append(true).open(&env).expect("open .env");
    writeln!(file, "WHATSAPP_ALLOW_ALL_USERS=true\nOPENAI_BASE_URL={}", theirs.base_url()).expect("append");
    drop(file);
    let lines = s.gw().wait_log("the gateway keeps the settings in force");
    assert!(said(&lines), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("in force now")), "nothing was applied: {lines:#?}");

    // The settings in force are the owner's: the stranger is refused, the owner's model answers.
    s.say(STRANGER, "let me in").await;
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    let reply = s.ask(FRIEND, "who answers?").await;
    assert!(reply.contains("who answers?"), "{reply}");
    assert!(theirs.requests().is_empty(), "their server was never asked (nor sent the API key)");

    let status = s.json(&["whatsapp", "status", "--json"])["settings"].clone();
    assert_eq!(status["current"], false, "{status}");
    assert!(status["message"].as_str().is_some_and(|m| m.contains("can be written by other users")), "{status}");
    let run = s.home.run(&["doctor", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let doctor: Value = serde_json::from_str(&run.stdout).expect("doctor JSON");
    let check = doctor["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "settings_files").cloned();
    let check = check.unwrap_or_else(|| panic!("no settings_files check: {doctor}"));
    assert_eq!(check["status"], "error", "{check}");
    assert_eq!(check["fix"], format!("check what it holds, then run {fix}"), "{check}");

    // The owner takes their lines out and the file back: read again, nothing changed.
    save(&env, &original);
    s.gw().wait_log("nothing changed");
    let status = s.json(&["whatsapp", "status", "--json"])["settings"].clone();
    assert_eq!(status["current"], true, "{status}");
}

/// Issue 25: the gateway started on settings files another user could change. It refuses with
/// exit 2 and the command that fixes it, for the file, for the folder it is in, and for a
/// folder of another user's; `status` and `doctor` say the same.
#[test]
fn issue_25_the_gateway_does_not_start_on_settings_other_users_can_change() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = crate::support::Home::new().with_env(&format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND}\n"));
    let env = home.path.join(".env");
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };

    chmod(&env, 0o664);
    let run = home.run(&["gateway"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("can be written by other users (mode 664)"), "{run:?}");
    assert!(run.stderr.contains(&format!("chmod go-w {}", env.display())), "{run:?}");
    let status: Value = serde_json::from_str(&home.run(&["whatsapp", "status", "--json"]).stdout).expect("status JSON");
    assert_eq!(status["settings"]["current"], false, "{status}");
    assert!(status["settings"]["message"].as_str().is_some_and(|m| m.contains("does not start")), "{status}");
    let run = home.run(&["doctor", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("\"settings_files\""), "{run:?}");

    // A private file in a folder others can write: they could rename their own over it.
    chmod(&env, 0o600);
    chmod(&home.path, 0o777);
    let run = home.run(&["gateway"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains(&format!("chmod go-w {} ", home.path.display())), "{run:?}");
    chmod(&home.path, 0o755);

    // A folder of another user's (CI runs the tests as root, which may hand one over).
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&home.path, Some(65534), None).expect("chown");
        let run = home.run(&["gateway"]);
        assert_eq!(run.code, 2, "{run:?}");
        assert!(run.stderr.contains("belongs to uid 65534"), "{run:?}");
        assert!(run.stderr.contains(&format!("chown 0 {} ", home.path.display())), "{run:?}");
    }
}
