//! Odd and hostile configuration: each gets a clear error or works, in bounded time.

use std::os::unix::ffi::OsStrExt as _;

use crate::support::{Home, run_output};

/// Issue 11: a byte-order mark before the first key hid the allowlist from explain.
#[test]
fn issue_11_a_byte_order_mark_in_env_keeps_the_first_key() {
    let home = Home::new().with_env("\u{feff}WHATSAPP_ALLOWED_USERS=15551234567\nWHATSAPP_MODE=bot\n");
    let run = home.run(&["whatsapp", "explain", "+1 555 123 4567"]);
    assert_eq!(run.code, 0, "{run:?}");
}

/// Issue 11: a FIFO where .env should be made doctor wait forever for a writer.
#[test]
fn issue_11_a_fifo_as_env_is_an_error_not_a_hang() {
    let home = Home::new();
    let fifo = home.path.join(".env");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let run = home.run(&["doctor"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is not a regular file"), "{run:?}");
}

/// Issue 11: 50,000 nested list items crashed every command with a stack overflow.
#[test]
fn issue_11_deeply_nested_yaml_is_an_error_not_a_crash() {
    let home = Home::new().with_yaml(&("- ".repeat(50_000) + "x\n"));
    let run = home.run(&["doctor", "--json"]);
    assert!(matches!(run.code, 1 | 2), "{run:?}");
    assert!(run.stdout.contains("nested deeper than 64 levels"), "{run:?}");
}

/// Issue 11: a HERMES_HOME that is not UTF-8 silently fell back to ~/.hermes.
#[test]
fn issue_11_a_non_utf8_hermes_home_is_an_error() {
    let home = Home::new();
    let odd = std::ffi::OsStr::from_bytes(b"/tmp/hermes-\xff-home");
    let out = home.command(&["doctor"]).env("HERMES_HOME", odd).output().expect("run");
    let run = run_output(out);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("HERMES_HOME") && run.stderr.contains("UTF-8"), "{run:?}");
}

/// An internal error (here the state database is a directory) exits 70, not 2 like a usage
/// error: a script can tell "fix the command" from "something broke". The message names the file.
#[test]
fn an_io_failure_exits_70_naming_the_file() {
    let home = Home::new();
    std::fs::create_dir_all(home.path.join("state").join("hermes.db")).expect("mkdir");
    for args in [&["pairing", "list"][..], &["whatsapp", "drops"]] {
        let run = home.run(args);
        assert_eq!(run.code, 70, "{args:?}: {run:?}");
        assert!(run.stderr.starts_with("hermes: ") && run.stderr.contains("state/hermes.db"), "{args:?}: {run:?}");
    }
}

/// Issue 12 review: `pairing` migrated an older state database under a running older
/// gateway, which then could not read its journal and answered nothing until restarted.
#[test]
fn pairing_does_not_upgrade_the_database_under_an_older_running_gateway() {
    let home = Home::new();
    let db = home.path.join("state").join("hermes.db");
    std::fs::create_dir_all(db.parent().expect("state")).expect("mkdir");
    // A database that says it is at an older schema version (the upgrade itself is the
    // store's tests' business), and a live process holding the session lock.
    let store = hermes_store::Store::open(&db).expect("create");
    drop(store);
    let old = hermes_store::SCHEMA_VERSION - 1;
    rusqlite::Connection::open(&db).expect("open").pragma_update(None, "user_version", old).expect("set version");
    let session = home.path.join("platforms").join("whatsapp");
    std::fs::create_dir_all(&session).expect("mkdir");
    std::fs::write(session.join("session.lock"), std::process::id().to_string()).expect("lock");
    let run = home.run(&["pairing", "list"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("restart it"), "{run:?}");
    let version = hermes_store::Store::open_read_only(&db).expect("open").expect("exists").schema_version().expect("v");
    assert_eq!(version, old, "left as it was for the running gateway");
}

/// Issue 11: a 100,000-entry allowlist took 33 s in explain (a quadratic pass).
#[test]
fn issue_11_a_huge_allowlist_is_explained_in_bounded_time() {
    let entries: Vec<String> = (0..100_000u64).map(|i| format!("4915{:09}", i)).collect();
    let home = Home::new().with_env(&format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={}\n", entries.join(",")));
    let child = home.command(&["whatsapp", "explain", "15551234567"]).spawn().expect("run");
    // Bounded, not timed: a generous ceiling that a quadratic pass over 100,000 entries misses.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait().expect("wait").code());
    });
    let code = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("explain did not finish within 60 s");
    assert_eq!(code, Some(1));
}

/// Issue 11: doctor did not warn about a `.env` that holds the API key and others can read.
#[test]
fn issue_11_doctor_warns_about_a_readable_env_with_a_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = Home::new().with_env("OPENAI_API_KEY=sk-test-not-a-real-key\nWHATSAPP_ALLOWED_USERS=15551234567\n");
    std::fs::set_permissions(home.path.join(".env"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = home.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let check = v["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "env_file").cloned();
    let check = check.unwrap_or_else(|| panic!("no env_file check: {v}"));
    assert_eq!(check["status"], "warn", "{check}");
    assert!(check["message"].as_str().is_some_and(|m| m.contains("644")), "{check}");
    assert!(!run.stdout.contains("sk-test-not-a-real-key"), "the key is never printed");
    std::fs::set_permissions(home.path.join(".env"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let v: serde_json::Value = serde_json::from_str(&home.run(&["doctor", "--json"]).stdout).expect("json");
    let check = v["checks"].as_array().expect("checks").iter().find(|c| c["name"] == "env_file").cloned();
    assert_eq!(check.expect("check")["status"], "ok");
}

/// A linked device's `creds.json` as Baileys writes it, every value of the right length.
fn linked_creds() -> String {
    let buffer = |n: usize| serde_json::json!({"type": "Buffer", "data": vec![7u8; n]});
    let pair = || serde_json::json!({"private": buffer(32), "public": buffer(32)});
    serde_json::json!({
        "noiseKey": pair(),
        "signedIdentityKey": pair(),
        "signedPreKey": {"keyPair": pair(), "keyId": 1, "signature": buffer(64)},
        "registrationId": 1234,
        "advSecretKey": buffer(32),
        "me": {"id": "15551234567:3@s.whatsapp.net"},
        "account": {"details": buffer(16), "accountSignature": buffer(64), "deviceSignature": buffer(64)}
    })
    .to_string()
}

/// Runs hermes and fails the test, killing it, if it has not finished within a minute: what
/// is tested is that it does not hang.
fn run_within_a_minute(home: &Home, args: &[&str]) -> crate::support::Run {
    use std::process::Stdio;
    let child = home.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run hermes");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => run_output(out.expect("wait")),
        Err(_) => {
            if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            panic!("hermes {args:?} did not finish within a minute");
        }
    }
}

/// Issue 25: a FIFO among the files of a Baileys session (a key file, `bridge.pid`) hung
/// `hermes whatsapp import` while it held the session lock, and a key file linked to
/// `/dev/zero` ran it out of memory. Each is refused at once, by name, and the lock let go.
#[test]
fn issue_25_an_import_refuses_a_fifo_or_a_link_among_the_key_files_and_lets_the_session_go() {
    let home = Home::new();
    let session = home.path.join("platforms/whatsapp/session");
    std::fs::create_dir_all(&session).expect("mkdir");
    std::fs::write(session.join("creds.json"), linked_creds()).expect("creds");
    let mkfifo = |p: &std::path::Path| {
        assert!(std::process::Command::new("mkfifo").arg(p).status().expect("mkfifo").success());
    };
    mkfifo(&session.join("bridge.pid"));
    let key = session.join("pre-key-1.json");
    mkfifo(&key);
    let run = run_within_a_minute(&home, &["whatsapp", "import", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["kind"], "not_regular_file", "{run:?}");
    let message = v["message"].as_str().expect("message");
    assert!(message.contains("pre-key-1.json' is a FIFO (named pipe), not a regular file"), "{message}");
    assert!(message.contains("move it out of the directory"), "{message}");
    drop(hermes_whatsapp::lock::SessionLock::acquire(&session).expect("the session lock was let go"));

    std::fs::remove_file(&key).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &key).expect("symlink");
    let run = run_within_a_minute(&home, &["whatsapp", "import", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("pre-key-1.json' is a symbolic link"), "{run:?}");
    assert!(run.stdout.contains("copy the real file in its place"), "{run:?}");
    drop(hermes_whatsapp::lock::SessionLock::acquire(&session).expect("the session lock was let go"));
    assert!(!session.join("whatsapp.db").exists());
}
