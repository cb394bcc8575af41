//! `hermes doctor` on real directories: the session directory problems that make users re-scan.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::snapshot;
use crate::support::{Home, Run, run_output};

const SESSION: &str = "platforms/whatsapp/session";

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {run:?}"))
}

/// (status, message, fix) of the named check; the first if there are several.
#[track_caller]
fn check<'a>(report: &'a serde_json::Value, name: &str) -> (&'a str, &'a str, Option<&'a str>) {
    let c = report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check named {name} in {report:#}"));
    (c["status"].as_str().expect("status"), c["message"].as_str().expect("message"), c["fix"].as_str())
}

fn mkdir_mode(p: &Path, mode: u32) {
    fs::create_dir_all(p).expect("mkdir");
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn typical() -> Home {
    Home::new()
        .with_env("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=+1 555 123 4567, 0151 1234567\nOPENAI_API_KEY=sk-test-not-shown\nWHATSAPP_ALLOWED_USER=1\n")
        .with_yaml("model:\n  default: gpt-4o-mini\nwhatsapp:\n  dm_policy: allowlist\nplatforms:\n  whatsapp:\n    enabled: true\n")
}

#[test]
fn typical_setup_text_report() {
    let home = typical();
    mkdir_mode(&home.path.join(SESSION), 0o700);
    let run = home.run(&["doctor"]);
    assert_eq!(run.code, 1, "an invalid allowlist entry is an error: {run:?}");
    assert!(!run.stdout.contains("sk-test-not-shown"), "secrets never print");
    snapshot!(home, "doctor_typical", run.stdout);
}

#[test]
fn json_report_shape() {
    let home = Home::new().with_env("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=15551234567\nWHATSAPP_ENABLED=true\nOPENAI_BASE_URL=http://127.0.0.1:11434/v1\n");
    mkdir_mode(&home.path.join(SESSION), 0o700);
    let run = home.run(&["doctor", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report = json(&run);
    assert_eq!(report["ok"], true);
    for c in report["checks"].as_array().expect("checks") {
        let keys: Vec<&str> = c.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["fix", "message", "name", "status"]);
        assert!(matches!(c["status"].as_str(), Some("ok" | "warn" | "error")));
    }
    snapshot!(home, "doctor_json_healthy", run.stdout);
}

#[test]
fn missing_session_dir_is_fine_when_it_can_be_created() {
    let home = Home::new();
    let report = json(&home.run(&["doctor", "--json"]));
    let (status, message, _) = check(&report, "session_dir_writable");
    assert_eq!(status, "ok");
    assert!(message.starts_with("does not exist yet"), "{message}");
    assert!(!home.path.join(SESSION).exists(), "doctor must not create the session directory");
}

#[test]
fn a_file_where_the_session_dir_should_be_is_an_error() {
    let home = Home::new();
    fs::create_dir_all(home.path.join("platforms/whatsapp")).expect("mkdir");
    fs::write(home.path.join(SESSION), b"oops").expect("write");
    let run = home.run(&["doctor", "--json"]);
    assert_eq!(run.code, 1);
    let report = json(&run);
    let (status, message, fix) = check(&report, "session_dir_writable");
    assert_eq!(status, "error");
    assert!(message.ends_with("is a regular file, not a directory"), "{message}");
    assert!(fix.is_some_and(|f| f.starts_with("move it away")));
}

#[test]
fn too_wide_permissions_warn_with_the_chmod() {
    let home = Home::new();
    let session = home.path.join(SESSION);
    mkdir_mode(&session, 0o755);
    let report = json(&home.run(&["doctor", "--json"]));
    let (status, message, fix) = check(&report, "session_dir_permissions");
    assert_eq!(status, "warn");
    assert!(message.starts_with("0755"), "{message}");
    assert_eq!(fix, Some(format!("chmod 700 {}", session.display())).as_deref());
}

#[test]
fn legacy_and_new_layouts_both_present_says_which_is_used() {
    let home = Home::new();
    mkdir_mode(&home.path.join(SESSION), 0o700);
    mkdir_mode(&home.path.join("whatsapp/session"), 0o700);
    let report = json(&home.run(&["doctor", "--json"]));
    let (status, message, _) = check(&report, "session_dir");
    assert_eq!(status, "warn");
    let legacy = home.path.join("whatsapp/session");
    let current = home.path.join(SESSION);
    assert_eq!(
        message,
        format!(
            "{} (Hermes' legacy layout, used because it exists); {} exists too and is NOT used",
            legacy.display(),
            current.display()
        )
    );
}

#[test]
fn configured_session_path_wins_and_is_attributed() {
    let home = Home::new().with_yaml("platforms:\n  whatsapp:\n    extra:\n      session_path: wa-session\n");
    let report = json(&home.run(&["doctor", "--json"]));
    let (_, message, _) = check(&report, "session_dir");
    assert_eq!(
        message,
        format!(
            "{} (set by config.yaml platforms.whatsapp.extra.session_path (line 4))",
            home.path.join("wa-session").display()
        )
    );
}

/// A read-only mount must be caught even as root, which passes every permission-bit check.
#[test]
fn read_only_session_dir_is_an_error_even_for_root() {
    let home = Home::new();
    let session = home.path.join(SESSION);
    mkdir_mode(&session, 0o700);
    let run = if rustix::process::geteuid().is_root() {
        // A private mount namespace: the bind mount is seen by this one command only.
        let script = format!(
            "mount --bind '{0}' '{0}' && mount -o remount,ro,bind '{0}' '{0}' && exec \"$0\" doctor --json",
            session.display()
        );
        let mut cmd = home.command(&[]);
        let program = cmd.get_program().to_owned();
        let envs: Vec<_> = cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
        cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]).arg(program).env_clear();
        for (k, v) in envs {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        run_output(cmd.output().expect("unshare is part of util-linux; .ci/run installs it"))
    } else {
        // Without root, a directory we may not write to is the same finding.
        fs::set_permissions(&session, fs::Permissions::from_mode(0o500)).expect("chmod");
        home.run(&["doctor", "--json"])
    };
    assert_eq!(run.code, 1, "{run:?}");
    let report = json(&run);
    let (status, message, fix) = check(&report, "session_dir_writable");
    assert_eq!(status, "error", "{message}");
    assert!(
        message.contains("is on a read-only filesystem") || message.contains("is not writable by this user"),
        "{message}"
    );
    assert!(message.ends_with("so every start would ask for a new scan"), "{message}");
    assert!(fix.is_some(), "a fix is always given");
}

#[test]
fn a_session_on_tmpfs_is_an_error() {
    let shm = tempfile::tempdir_in("/dev/shm").expect("this test needs the tmpfs at /dev/shm");
    let home_path = shm.path().join("hermes");
    fs::create_dir(&home_path).expect("mkdir");
    let home = Home::new();
    let mut cmd = home.command(&["doctor", "--json"]);
    cmd.env("HERMES_HOME", &home_path);
    let run = run_output(cmd.output().expect("run"));
    assert_eq!(run.code, 1, "{run:?}");
    let report = json(&run);
    let (status, message, _) = check(&report, "session_dir_persistence");
    assert_eq!(status, "error");
    assert!(message.starts_with("on tmpfs (/dev/shm), which lives in memory"), "{message}");
}

#[test]
fn unparseable_files_are_errors_with_line_numbers() {
    let home =
        Home::new().with_env("WHATSAPP_MODE=bot\nthis is not a line\n").with_yaml("whatsapp:\n  dm_policy: [open\n");
    let run = home.run(&["doctor", "--json"]);
    assert_eq!(run.code, 1);
    let report = json(&run);
    let messages: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["name"] == "config")
        .map(|c| c["message"].as_str().expect("message"))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0], ".env line 2: 'this is not a line' has no '='");
    assert!(messages[1].starts_with("config.yaml: cannot be parsed: config.yaml line"), "{}", messages[1]);
}

#[test]
fn a_node_bridge_session_is_recognised_and_explained() {
    let home = Home::new();
    let legacy = home.path.join("whatsapp/session");
    std::fs::create_dir_all(&legacy).expect("mkdir");
    std::fs::write(legacy.join("creds.json"), br#"{"me":{"id":"15551234567:3@s.whatsapp.net"}}"#).expect("write");
    let report = json(&home.run(&["doctor", "--json"]));
    let (status, message, fix) = check(&report, "node_bridge_session");
    assert_eq!(status, "warn");
    assert!(message.contains("Node bridge (Baileys)"), "{message}");
    assert!(fix.is_some_and(|f| f.contains("hermes whatsapp")), "{fix:?}");
    // The legacy directory is the one in use, and it holds no hermes session.
    let (status, _, _) = check(&report, "whatsapp_link");
    assert_eq!(status, "warn");
}

/// Issue 25: doctor followed a `creds.json` that is a symbolic link, which the import refuses.
#[test]
fn issue_25_a_linked_creds_json_is_not_taken_for_a_bridge_session() {
    let home = Home::new();
    let legacy = home.path.join("whatsapp/session");
    std::fs::create_dir_all(&legacy).expect("mkdir");
    let real = home.path.join("creds-elsewhere.json");
    std::fs::write(&real, br#"{"me":{"id":"15551234567:3@s.whatsapp.net"}}"#).expect("write");
    std::os::unix::fs::symlink(&real, legacy.join("creds.json")).expect("symlink");
    let report = json(&home.run(&["doctor", "--json"]));
    let names: Vec<&str> =
        report["checks"].as_array().expect("checks").iter().filter_map(|c| c["name"].as_str()).collect();
    assert!(names.contains(&"whatsapp_link"), "{report:#}");
    assert!(!names.contains(&"node_bridge_session"), "{report:#}");
}

/// Issue 25: doctor printed a Slack webhook's URL whole, its token included, in the settings
/// it lists; the host and the first parts of the path stay, to say which URL it is.
#[test]
fn issue_25_a_webhook_token_is_never_printed() {
    let secret = "XXXXSECRETb2c3";
    let home = Home::new().with_env(&format!(
        "HERMES_ALERT_WEBHOOK=https://hooks.slack.com/services/T000/B000/{secret}\n\
         OPENAI_BASE_URL=https://proxy.example/9f86d081884c7d659a2feaa0c55ad015/v1\n"
    ));
    for args in [&["doctor"][..], &["doctor", "--json"]] {
        let run = home.run(args);
        assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret), "{args:?}: {run:?}");
        assert!(!run.stdout.contains("9f86d081884c7d659a2feaa0c55ad015"), "{args:?}: {run:?}");
        assert!(run.stdout.contains("HERMES_ALERT_WEBHOOK=https://hooks.slack.com/services/T000/B000/***"), "{run:?}");
    }
}

/// Issue 25, hole 1: a folder files may be sent from that other users can write to lets them
/// put a file there for the agent to send. Doctor warns, naming the folder and the fix; a
/// private folder says nothing.
#[test]
fn issue_25_a_media_folder_others_can_write_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let shared = tempfile::tempdir().expect("shared");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let home = Home::new().with_env(&format!("HERMES_MEDIA_ALLOW_DIRS={}\n", shared.path().display()));
    let run = home.run(&["doctor"]);
    assert!(
        run.stdout.contains("media_folders") && run.stdout.contains(&format!("chmod go-w {}", shared.path().display())),
        "{run:?}"
    );
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let run = home.run(&["doctor"]);
    assert!(!run.stdout.contains("media_folders"), "{run:?}");
}

/// Hermes Agent run from the same folder would start its own WhatsApp bridge on the device
/// hermes owns: an error naming why and the fix, until the folder says hermes owns it.
#[test]
fn hermes_agents_own_bridge_on_the_same_device_is_an_error_until_switched_off() {
    let home = Home::new().with_env("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=15551234567\nWHATSAPP_ENABLED=true\n");
    mkdir_mode(&home.path.join(SESSION), 0o700);
    // A Baileys session beside hermes' own (left by an import), and Node on the PATH.
    std::fs::write(home.path.join(SESSION).join("creds.json"), "{}").expect("creds");
    let bin = home.path.parent().expect("parent").join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::write(bin.join("node"), "#!/bin/sh\n").expect("node");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let report = json(&home.run_with(&[("PATH", &path)], &["doctor", "--json"]));
    let (status, message, fix) = check(&report, "hermes_whatsapp");
    assert_eq!(status, "error", "{message}");
    assert!(message.contains("WHATSAPP_ENABLED is true in .env"), "{message}");
    let fix = fix.expect("a fix");
    assert!(fix.contains("WHATSAPP_ENABLED=false") && fix.contains("enabled: false"), "{fix}");
    // A `whatsapp:` block without `enabled:` starts it too, WHATSAPP_ENABLED=false or not.
    let home = home.with_env("WHATSAPP_ENABLED=false\n").with_yaml("whatsapp:\n  dm_policy: allowlist\n");
    let report = json(&home.run_with(&[("PATH", &path)], &["doctor", "--json"]));
    let (status, message, _) = check(&report, "hermes_whatsapp");
    assert_eq!(status, "error", "{message}");
    let home = home.with_yaml("whatsapp:\n  enabled: false\n  dm_policy: allowlist\n");
    let report = json(&home.run_with(&[("PATH", &path)], &["doctor", "--json"]));
    let (status, message, _) = check(&report, "hermes_whatsapp");
    assert_eq!(status, "ok", "{message}");
}
