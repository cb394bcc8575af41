//! `hermes send` against what it finds in `state/gateway.json`, without a gateway.

use std::os::unix::fs::PermissionsExt as _;

use crate::support::Home;

fn control_file(home: &Home, json: &str, mode: u32) {
    let state = home.path.join("state");
    std::fs::create_dir_all(&state).expect("state");
    let file = state.join("gateway.json");
    std::fs::write(&file, json).expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Issue 11: the token is a secret; a control file others could read or plant is refused.
#[test]
fn issue_11_a_control_file_readable_by_others_is_refused() {
    let home = Home::new();
    let json = format!(r#"{{"pid":{},"socket":"/nonexistent.sock","token":"t"}}"#, std::process::id());
    control_file(&home, &json, 0o644);
    let run = home.run(&["send", "hi"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("readable by others (mode 644)"), "{run:?}");
}

/// Issue 11: a control file whose process lives but does not answer is a problem found (1),
/// not a usage error (2), and it does not hang.
#[test]
fn issue_11_a_stale_control_file_exits_1() {
    let home = Home::new();
    // This test's own PID is alive; nothing listens on the socket.
    let sock = home.path.join("state").join("gateway.sock");
    let json = format!(r#"{{"pid":{},"socket":"{}","token":"t"}}"#, std::process::id(), sock.display());
    control_file(&home, &json, 0o600);
    let run = home.run(&["send", "hi"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("does not answer"), "{run:?}");
    // And with no control file at all: not running.
    std::fs::remove_file(home.path.join("state/gateway.json")).expect("rm");
    let run = home.run(&["send", "hi"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not running"), "{run:?}");
}
