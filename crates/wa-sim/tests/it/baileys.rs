//! Baileys (7.0.0-rc13, what Hermes' bridge pins), a WhatsApp client nobody here wrote,
//! against wa-sim: what whatsapp-rust and wa-sim might wrongly agree on, Baileys does not.
//!
//! The driver is `wa_sim::baileys`.

use std::time::Duration;

use wa_sim::baileys::Baileys;
use wa_sim::{Sim, SimEvent};

use crate::client::init_logs;

/// Linking includes a reconnection (515) and the first login's initial sync.
const T: Duration = Duration::from_secs(60);
const ME: &str = "15550008888";
const CONTACT: &str = "4915100008888";

async fn setup() -> (Sim, tempfile::TempDir) {
    init_logs();
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ME);
    sim.add_phone(CONTACT);
    (sim, tempfile::tempdir().expect("tempdir"))
}

/// A text from Baileys reaches the contact's phone, decrypted.
async fn contact_receives(sim: &Sim, cursor: usize, text: &str) {
    let want = text.to_owned();
    sim.wait_for(
        cursor,
        T,
        move |e| matches!(e, SimEvent::MessageReceived { contact, text, .. } if contact == CONTACT && *text == want),
    )
    .await
    .unwrap_or_else(|_| panic!("the contact never read {text:?}; it read {:?}", sim.inbox(CONTACT)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_links_by_qr_talks_both_ways_and_restarts_without_a_qr() {
    let (sim, dir) = setup().await;
    let auth = dir.path().join("auth");
    let mut b = Baileys::linked(&sim, ME, &auth).await;
    assert_eq!(sim.devices(ME).len(), 1, "one linked device");

    let id = sim.send_text(CONTACT, ME, "hello Baileys", false).await.expect("send");
    let got = b
        .wait("the contact's message", |v| (v["event"] == "message" && v["text"] == "hello Baileys").then(|| v.clone()))
        .await;
    assert_eq!(got["id"], id.as_str());
    assert!(got["sender"].as_str().is_some_and(|s| s.starts_with(CONTACT)), "{got}");

    let cursor = sim.cursor();
    b.send(&format!("{CONTACT}@s.whatsapp.net"), "hello contact").await;
    contact_receives(&sim, cursor, "hello contact").await;
    b.quit().await;

    // A restart on the kept session: no QR code, the same device, and the session goes on.
    let logins = sim.cursor();
    let mut b = Baileys::start(&sim, &auth, None);
    let opened = b
        .wait("open", |v| match v["event"].as_str() {
            Some("qr") => panic!("Baileys asked for a QR code again: {v}"),
            Some("open") => Some(v.clone()),
            _ => None,
        })
        .await;
    assert!(opened["id"].as_str().is_some_and(|id| id.starts_with(ME)), "{opened}");
    sim.wait_for(logins, T, |e| matches!(e, SimEvent::LoggedIn { phone, .. } if phone == ME)).await.expect("logged in");
    assert_eq!(sim.devices(ME).len(), 1, "no new device");
    sim.send_text(CONTACT, ME, "after the restart", false).await.expect("send");
    b.wait("the message after the restart", |v| {
        (v["event"] == "message" && v["text"] == "after the restart").then_some(())
    })
    .await;
    let cursor = sim.cursor();
    b.send(&format!("{CONTACT}@s.whatsapp.net"), "still here").await;
    contact_receives(&sim, cursor, "still here").await;
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_links_by_pairing_code() {
    let (sim, dir) = setup().await;
    let requests = sim.cursor();
    let mut b = Baileys::start(&sim, &dir.path().join("auth"), Some(ME));
    let code = b
        .wait("a pairing code", |v| {
            (v["event"] == "pair_code").then(|| v["code"].as_str().map(str::to_owned)).flatten()
        })
        .await;
    assert_eq!(code.chars().filter(char::is_ascii_alphanumeric).count(), 8, "{code}");
    // Baileys shows the code without waiting for the server's answer to its request: the
    // owner can only type it once the request has reached the server.
    sim.wait_for(requests, T, |e| matches!(e, SimEvent::PairingCodeRequested { .. }))
        .await
        .expect("the pairing code request reaches the server");
    sim.link_code(ME, &code).expect("the owner types the code on the phone");
    b.event("open").await;
    assert_eq!(sim.devices(ME).len(), 1);
    b.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baileys_talks_in_a_group() {
    let (sim, dir) = setup().await;
    let group = sim.create_group("friends", &[ME, CONTACT]).expect("group");
    let mut b = Baileys::linked(&sim, ME, &dir.path().join("auth")).await;
    sim.send_group_text(CONTACT, &group, "hi all").await.expect("send");
    let got =
        b.wait("the group message", |v| (v["event"] == "message" && v["text"] == "hi all").then(|| v.clone())).await;
    assert_eq!(got["chat"], group.as_str());
    let cursor = sim.cursor();
    b.send(&group, "hi from Baileys").await;
    contact_receives(&sim, cursor, "hi from Baileys").await;
    b.quit().await;
}
