//! Issue 15: `hermes gateway install` and `uninstall` (a systemd unit that `systemd-analyze
//! verify` accepts, and that does not restart a verdict that needs a person), the Dockerfile's
//! health check through the binary, and the refusal to keep a session on a container's layer.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::support::Home;

/// A `systemctl` on PATH that records what it was asked (systemd does not run in a test).
fn recording_systemctl(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let script = bin.join("systemctl");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$@\" >> {}\n", dir.join("calls").display())).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

#[test]
fn the_unit_passes_systemd_analyze_and_never_restarts_a_session_whatsapp_ended() {
    let home = Home::new();
    for scope in ["--user", "--system"] {
        let run = home.run(&["gateway", "install", scope, "--print"]);
        assert_eq!(run.code, 0, "{run:?}");
        let unit = run.stdout;
        assert!(unit.lines().any(|l| l == "RestartPreventExitStatus=1 2"), "{unit}");
        assert!(unit.lines().any(|l| l == format!("Environment=\"HERMES_HOME={}\"", home.path.display())), "{unit}");
        assert!(unit.contains(&format!("ExecStart=\"{}\" gateway", env!("CARGO_BIN_EXE_hermes"))), "{unit}");
        if scope == "--system" {
            assert!(unit.lines().any(|l| l == format!("ReadWritePaths=\"{}\"", home.path.display())), "{unit}");
            assert!(unit.lines().any(|l| l.starts_with("User=")), "{unit}");
        }
        // systemd's own check, when systemd is on the machine (.ci/run's Debian has it).
        if Path::new("/usr/bin/systemd-analyze").exists() {
            let dir = tempfile::tempdir().expect("tempdir");
            let file = dir.path().join("hermes-gateway.service");
            std::fs::write(&file, &unit).expect("write");
            let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&file).output().expect("verify");
            let said = String::from_utf8_lossy(&out.stderr);
            // Only what concerns this unit: a container's systemd also complains about itself.
            let ours: Vec<&str> = said.lines().filter(|l| l.contains("hermes-gateway.service")).collect();
            assert!(out.status.success() && ours.is_empty(), "systemd-analyze verify ({scope}): {said}\n{unit}");
        }
    }
    assert!(!home.path.parent().expect("parent").join(".config").exists(), "--print changes nothing");
}

#[test]
fn install_writes_and_enables_the_user_unit_keeps_a_changed_one_and_uninstall_removes_it() {
    let home = Home::new();
    let tools = tempfile::tempdir().expect("tempdir");
    let path = path_with(&recording_systemctl(tools.path()));
    let env = [("PATH", path.as_str())];
    let unit = home.path.parent().expect("parent").join(".config/systemd/user/hermes-gateway.service");

    let run = home.run_with(&env, &["gateway", "install", "--user"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("systemctl --user start hermes-gateway.service"), "{run:?}");
    assert!(run.stdout.contains("HERMES_GATEWAY_LISTEN"), "no listener configured: said how to add one: {run:?}");
    let mode = std::fs::metadata(&unit).expect("unit written").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "systemd reads it; it holds no secret");
    let calls = std::fs::read_to_string(tools.path().join("calls")).expect("calls");
    assert_eq!(calls, "--user daemon-reload\n--user enable hermes-gateway.service\n");

    // Again: nothing to do. Changed by hand: kept unless --force.
    let again = home.run_with(&env, &["gateway", "install", "--user"]);
    assert!(again.code == 0 && again.stdout.contains("already installed"), "{again:?}");
    std::fs::write(&unit, "[Service]\nExecStart=/bin/true\n").expect("edit");
    let kept = home.run_with(&env, &["gateway", "install", "--user"]);
    assert!(kept.code == 1 && kept.stderr.contains("--force"), "{kept:?}");
    assert_eq!(std::fs::read_to_string(&unit).expect("unit"), "[Service]\nExecStart=/bin/true\n");
    assert_eq!(home.run_with(&env, &["gateway", "install", "--user", "--force"]).code, 0);
    assert!(std::fs::read_to_string(&unit).expect("unit").contains("RestartPreventExitStatus=1 2"));

    let gone = home.run_with(&env, &["gateway", "uninstall", "--user"]);
    assert_eq!(gone.code, 0, "{gone:?}");
    assert!(!unit.exists());
    let calls = std::fs::read_to_string(tools.path().join("calls")).expect("calls");
    assert!(calls.ends_with("--user disable --now hermes-gateway.service\n--user daemon-reload\n"), "{calls}");
    let none = home.run_with(&env, &["gateway", "uninstall", "--user"]);
    assert!(none.code == 0 && none.stdout.contains("not installed"), "{none:?}");
}

#[test]
fn a_profile_gets_its_own_unit() {
    let home = Home::new();
    let tools = tempfile::tempdir().expect("tempdir");
    let path = path_with(&recording_systemctl(tools.path()));
    let run = home.run_with(&[("PATH", path.as_str())], &["--profile", "work", "gateway", "install", "--user"]);
    assert_eq!(run.code, 0, "{run:?}");
    let unit = home.path.parent().expect("parent").join(".config/systemd/user/hermes-gateway-work.service");
    let text = std::fs::read_to_string(unit).expect("unit");
    let profile_home = home.path.join("profiles").join("work");
    assert!(text.contains(&format!("Environment=\"HERMES_HOME={}\"", profile_home.display())), "{text}");
}

/// Docker's health check is the binary itself: the argv the Dockerfile names.
pub fn dockerfile_healthcheck() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Dockerfile"))
        .expect("the Dockerfile at the repository's root");
    let line = dockerfile.lines().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    let argv = line.split_once("CMD ").expect("CMD").1;
    let argv: Vec<String> = serde_json::from_str(argv).expect("CMD in exec form");
    assert_eq!(argv[0], "hermes", "the binary checks itself, no curl: {line}");
    argv[1..].to_vec()
}

#[test]
fn the_health_check_says_when_no_gateway_listens() {
    let home = Home::new();
    let argv = dockerfile_healthcheck();
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let run = home.run(&args);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("HERMES_GATEWAY_LISTEN"), "{run:?}");
}

/// The mount table of a container whose HERMES_HOME is on its own writable layer.
#[cfg(feature = "simulator")]
#[test]
fn on_a_containers_writable_layer_the_gateway_refuses_to_start_unless_ephemeral() {
    let home = Home::new().with_env("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS=*\n");
    let table = home.path.parent().expect("parent").join("mountinfo");
    std::fs::write(
        &table,
        "613 520 0:52 / / rw,relatime master:236 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/u,workdir=/w\n\
         700 613 0:60 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n",
    )
    .expect("table");
    let env = [("HERMES_TEST_MOUNTINFO", table.to_str().expect("utf-8")), ("container", "docker")];
    let refused = home.run_with(&env, &["gateway"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("writable layer")
            && refused.stderr.contains("--ephemeral")
            && refused.stderr.contains("-v "),
        "{refused:?}"
    );
    // --ephemeral: started (and, with no session and no listener, ended as it always does).
    let started = home.run_with(&env, &["gateway", "--ephemeral"]);
    assert_eq!(started.code, 1, "{started:?}");
    assert!(!started.stderr.contains("writable layer") && started.stderr.contains("hermes whatsapp"), "{started:?}");
    // An anonymous volume (the image's VOLUME, and no -v) goes with the container too.
    let anonymous = format!(
        "613 520 0:52 / / rw - overlay overlay rw\n\
         620 613 8:1 /var/lib/docker/volumes/{}/_data {} rw - ext4 /dev/sda1 rw\n",
        "ab".repeat(32),
        home.path.display()
    );
    std::fs::write(&table, anonymous).expect("table");
    let refused = home.run_with(&env, &["gateway"]);
    assert!(refused.code == 2 && refused.stderr.contains("anonymous docker volume"), "{refused:?}");
    // A volume over HERMES_HOME is what makes it keep.
    let volume = format!(
        "613 520 0:52 / / rw - overlay overlay rw\n\
         620 613 8:1 /var/lib/docker/volumes/hermes-data/_data {} rw - ext4 /dev/sda1 rw\n",
        home.path.display()
    );
    std::fs::write(&table, volume).expect("table");
    let kept = home.run_with(&env, &["gateway"]);
    assert!(kept.code == 1 && !kept.stderr.contains("writable layer"), "{kept:?}");
}

/// Beside Hermes Agent, whose own unit is `hermes-gateway` too: hermes' unit gets a name of its
/// own, wants and starts after Hermes', and neither install nor uninstall touches Hermes' unit.
#[test]
fn beside_hermes_agents_unit_hermes_installs_its_own_and_leaves_hermes_alone() {
    let home = Home::new();
    let tools = tempfile::tempdir().expect("tempdir");
    let path = path_with(&recording_systemctl(tools.path()));
    let env = [("PATH", path.as_str())];
    let units = home.path.parent().expect("parent").join(".config/systemd/user");
    std::fs::create_dir_all(&units).expect("units");
    let hermes_unit = "[Unit]\nDescription=Hermes Agent Gateway - Messaging Platform Integration\n\n[Service]\n\
                       ExecStart=/home/ana/.hermes/venv/bin/python -m hermes_cli.main gateway run\n";
    std::fs::write(units.join("hermes-gateway.service"), hermes_unit).expect("Hermes' unit");
    let run = home.run_with(&env, &["gateway", "install", "--user"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("systemctl --user start hermes-whatsapp.service"), "{run:?}");
    let ours = std::fs::read_to_string(units.join("hermes-whatsapp.service")).expect("our unit");
    assert!(ours.contains("\nWants=hermes-gateway.service\nAfter=hermes-gateway.service\n"), "{ours}");
    assert_eq!(std::fs::read_to_string(units.join("hermes-gateway.service")).expect("Hermes' unit"), hermes_unit);
    let gone = home.run_with(&env, &["gateway", "uninstall", "--user"]);
    assert_eq!(gone.code, 0, "{gone:?}");
    assert!(!units.join("hermes-whatsapp.service").exists());
    assert_eq!(std::fs::read_to_string(units.join("hermes-gateway.service")).expect("Hermes' unit"), hermes_unit);
    // Run as `hermes-whatsapp`, it names itself so in what it prints.
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hermes-whatsapp"));
    let out = std::process::Command::new(exe)
        .args(["gateway", "install", "--user"])
        .env_clear()
        .env("PATH", &path)
        .env("HOME", home.path.parent().expect("parent"))
        .env("HERMES_HOME", &home.path)
        .output()
        .expect("run hermes-whatsapp");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("`hermes-whatsapp whatsapp repair`") && !said.contains("`hermes whatsapp"), "{said}");
    let unit = std::fs::read_to_string(units.join("hermes-whatsapp.service")).expect("our unit");
    assert!(unit.contains(&format!("ExecStart=\"{}\" gateway", exe.display())), "{unit}");
}
