//! Linking by QR code and logging in again from the stored session.

use std::time::Duration;

use wa_sim::{Sim, SimEvent};
use whatsapp_rust::prelude::*;

use crate::client::{TestClient, init_logs};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_qr_then_restart_without_pairing() {
    init_logs();
    let sim = Sim::start().await.expect("start simulator");
    let phone = sim.add_phone("15550001111");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("session.db");

    let mut client = TestClient::start(&sim.ws_url(), &db).await;
    let qr = client
        .wait(T, "a QR code", |e| match e {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
    sim.link_qr(&phone.phone, &qr).expect("phone scans the QR code");
    let jid = client
        .wait(T, "pair success", |e| match e {
            Event::PairSuccess(p) => Some(p.id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(jid.user, phone.phone);
    client.wait(T, "connected after linking", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    sim.wait_for(0, T, |e| matches!(e, SimEvent::DeviceLinked { phone: p, .. } if *p == phone.phone))
        .await
        .expect("the server recorded the link");
    assert_eq!(sim.devices(&phone.phone).len(), 1);
    client.stop().await;

    // A new process with the same store: straight to connected, no QR, no new device.
    let before = sim.cursor();
    let mut client = TestClient::start(&sim.ws_url(), &db).await;
    client
        .wait(T, "connected on restart", |e| match e {
            Event::PairingQrCode(_) => panic!("a restart must not ask for a new scan"),
            Event::Connected(_) => Some(()),
            _ => None,
        })
        .await;
    let login = sim.wait_for(before, T, |e| matches!(e, SimEvent::LoggedIn { .. })).await.expect("logged in");
    assert!(matches!(login, SimEvent::LoggedIn { phone: p, .. } if p == phone.phone));
    assert_eq!(sim.devices(&phone.phone).len(), 1, "no second device was linked");
    dump(&sim);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_code_and_a_wrong_code_links_nothing() {
    init_logs();
    let sim = Sim::start().await.expect("start simulator");
    let phone = sim.add_phone("4915112345678");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("session.db");
    let mut client = TestClient::start_with_code(&sim.ws_url(), &db, &phone.phone).await;
    let code = client
        .wait(T, "a pairing code", |e| match e {
            Event::PairingCode(c) => Some(c.code.clone()),
            _ => None,
        })
        .await;
    assert_eq!(code.chars().filter(char::is_ascii_alphanumeric).count(), 8, "WhatsApp codes have 8 characters: {code}");

    // The user mistypes the code on the phone.
    let cursor = sim.cursor();
    let wrong = if code.starts_with('A') { "BBBBBBBB" } else { "AAAAAAAA" };
    sim.link_code(&phone.phone, wrong).expect("phone sends primary_hello");
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::PairingCodeRejected { .. })).await.expect("wrong code rejected");
    assert!(sim.devices(&phone.phone).is_empty(), "a wrong code links nothing");
    client.stop().await;

    // A fresh attempt with the right code links.
    let mut client = TestClient::start_with_code(&sim.ws_url(), &db, &phone.phone).await;
    let code = client
        .wait(T, "a pairing code", |e| match e {
            Event::PairingCode(c) => Some(c.code.clone()),
            _ => None,
        })
        .await;
    sim.link_code(&phone.phone, &code).expect("phone sends primary_hello");
    client.wait(T, "pair success", |e| matches!(e, Event::PairSuccess(_)).then_some(())).await;
    client.wait(T, "connected", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    assert_eq!(sim.devices(&phone.phone).len(), 1);
    client.stop().await;
}

/// Prints the simulator's log when `WA_SIM_DUMP` is set: the way to see what a client asked.
pub fn dump(sim: &Sim) {
    if std::env::var_os("WA_SIM_DUMP").is_some() {
        for e in sim.events() {
            eprintln!("{e:?}");
        }
    }
}
