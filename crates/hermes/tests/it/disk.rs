//! A full disk under HERMES_HOME: nothing is acknowledged that is not kept, and once there is
//! room again every message is answered, once. The home lives on a small tmpfs mounted in a
//! private mount namespace (`unshare -m`, as root), filled and emptied through `nsenter`.

use std::process::Command;

use hermes_agent::loopback::LoopbackLlm;
use wa_sim::{Sim, SimEvent};

use crate::gateway::{Gateway, T};
use crate::link::link_phone;
use crate::support::Home;

const ACCOUNT: &str = "15557770000";
const CONTACT: &str = "15557771111";

/// The gateway on a copy of `home` on a fresh 32 MiB tmpfs, in a mount namespace of its own.
fn gateway_on_tmpfs(home: &Home, sim: &Sim, min_free_mb: &str) -> (Gateway, std::path::PathBuf) {
    let mnt = home.path.parent().expect("parent").join("mnt");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let moved = mnt.join("hermes");
    let script = format!(
        "mount -t tmpfs -o size=32m tmpfs '{m}' && cp -a '{h}' '{moved}' && exec '{bin}' gateway",
        m = mnt.display(),
        h = home.path.display(),
        moved = moved.display(),
        bin = env!("CARGO_BIN_EXE_hermes"),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path.parent().expect("parent"))
        .env("HERMES_HOME", &moved)
        .env("WHATSAPP_MIN_FREE_MB", min_free_mb);
    (Gateway::spawn(cmd, sim), mnt)
}

/// Runs `script` in the gateway's mount namespace.
fn in_namespace(gw: &Gateway, script: &str) {
    let status = Command::new("nsenter")
        .args(["-t", &gw.pid().to_string(), "-m", "--", "sh", "-c", script])
        .status()
        .expect("nsenter");
    assert!(status.success(), "{script}: {status}");
}

/// `hermes whatsapp status --json` as seen from inside the gateway's mount namespace.
fn status_in_namespace(gw: &Gateway, mnt: &std::path::Path) -> serde_json::Value {
    let out = Command::new("nsenter")
        .args(["-t", &gw.pid().to_string(), "-m", "--", env!("CARGO_BIN_EXE_hermes"), "whatsapp", "status", "--json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HERMES_HOME", mnt.join("hermes"))
        .env("WHATSAPP_MIN_FREE_MB", "8")
        .output()
        .expect("nsenter");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status JSON ({e}): {out:?}"))
}

async fn setup() -> (Sim, Home, LoopbackLlm) {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ACCOUNT);
    sim.add_phone(CONTACT);
    let llm = LoopbackLlm::start(0).await.expect("llm");
    let home = Home::new()
        .with_env(&format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={CONTACT}\n"))
        .with_yaml(&format!("model:\n  default: test-model\n  base_url: {}\n", llm.base_url()));
    link_phone(&home, &sim, ACCOUNT);
    (sim, home, llm)
}

async fn answered(sim: &Sim, cursor: usize) {
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == CONTACT))
        .await
        .expect("an answer");
}

/// Issue 11: with the disk completely full (no reserve), the message is not acknowledged and
/// the client's unsaved state is thrown away; when space returns it is answered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_full_disk_loses_nothing_and_answers_once_space_returns() {
    let (sim, home, _llm) = setup().await;
    let (gw, mnt) = gateway_on_tmpfs(&home, &sim, "0");
    gw.wait_state("connected");
    let fill = mnt.join("fill");
    in_namespace(&gw, &format!("cat /dev/zero > '{}' 2>/dev/null; true", fill.display()));
    let cursor = sim.cursor();
    sim.send_text(CONTACT, ACCOUNT, "written while the disk is full", false).await.expect("send");
    gw.wait_state("storage_paused");
    in_namespace(&gw, &format!("rm '{}'", fill.display()));
    gw.wait_state("connected");
    answered(&sim, cursor).await;
    // A second message proves the first was answered once, not once per redelivery.
    let cursor = sim.cursor();
    sim.send_text(CONTACT, ACCOUNT, "and after", false).await.expect("send");
    answered(&sim, cursor).await;
    assert_eq!(sim.inbox(CONTACT).len(), 2, "each message answered exactly once: {:?}", sim.inbox(CONTACT));
}

/// Issue 11: below the reserve, receiving pauses before anything can fail, and resumes by
/// itself when there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_below_the_free_space_reserve_receiving_pauses_and_resumes() {
    let (sim, home, _llm) = setup().await;
    let (gw, mnt) = gateway_on_tmpfs(&home, &sim, "8");
    gw.wait_state("connected");
    let fill = mnt.join("fill");
    // Leaves about 4 MiB of the 32: below the 8 MiB reserve, far from full.
    in_namespace(
        &gw,
        &format!(
            "head -c $(( $(df -k --output=avail '{m}' | tail -1) * 1024 - 4194304 )) /dev/zero > '{f}'",
            m = mnt.display(),
            f = fill.display()
        ),
    );
    let lines = gw.wait_state("storage_paused");
    assert!(lines.iter().any(|l| l.contains("reserve")), "{lines:#?}");
    let st = status_in_namespace(&gw, &mnt);
    assert_eq!(st["state"], "storage_paused", "{st}");
    assert!(st["fix"].as_str().is_some_and(|f| f.contains("free some space")), "{st}");
    let cursor = sim.cursor();
    sim.send_text(CONTACT, ACCOUNT, "written while paused", false).await.expect("send");
    in_namespace(&gw, &format!("rm '{}'", fill.display()));
    gw.wait_state("connected");
    answered(&sim, cursor).await;
    assert_eq!(sim.inbox(CONTACT).len(), 1, "{:?}", sim.inbox(CONTACT));
}
