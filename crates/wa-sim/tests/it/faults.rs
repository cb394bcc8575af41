//! Each fault the simulator injects produces the client event WhatsApp's would.

use std::time::Duration;

use wa_sim::{Fault, Sim, SimEvent};
use whatsapp_rust::prelude::*;
use whatsapp_rust::types::events::ConnectFailureReason;

use crate::client::{TestClient, init_logs};

const T: Duration = Duration::from_secs(30);
const PHONE: &str = "15550002222";

/// A simulator with a phone, and a client linked to it, connected.
async fn linked() -> (Sim, TestClient, tempfile::TempDir) {
    init_logs();
    let sim = Sim::start().await.expect("start simulator");
    sim.add_phone(PHONE);
    let dir = tempfile::tempdir().expect("tempdir");
    let client = TestClient::linked(&sim, PHONE, &dir.path().join("session.db")).await;
    (sim, client, dir)
}

/// Restarts the client against a simulator that now refuses logins as `fault` says.
async fn restart_into(fault: Fault) -> (Sim, TestClient, tempfile::TempDir) {
    let (sim, client, dir) = linked().await;
    client.stop().await;
    sim.inject(fault).expect("inject");
    let client = TestClient::start(&sim.ws_url(), &dir.path().join("session.db")).await;
    (sim, client, dir)
}

fn logged_out(e: &Event) -> Option<(bool, ConnectFailureReason)> {
    match e {
        Event::LoggedOut(l) => Some((l.on_connect, l.reason)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_401_is_logged_out_on_connect() {
    let (_sim, mut client, _dir) = restart_into(Fault::FailLogins { reason: 401 }).await;
    let got = client.wait(T, "LoggedOut", logged_out).await;
    assert_eq!(got, (true, ConnectFailureReason::LoggedOut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_403_is_locked() {
    let (_sim, mut client, _dir) = restart_into(Fault::FailLogins { reason: 403 }).await;
    let got = client.wait(T, "LoggedOut", logged_out).await;
    assert_eq!(got, (true, ConnectFailureReason::AccountLocked));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_402_is_a_temporary_ban_with_its_expiry() {
    let (_sim, mut client, _dir) =
        restart_into(Fault::TemporaryBan { code: 101, expire: Duration::from_secs(3600) }).await;
    let expire = client
        .wait(T, "TemporaryBan", |e| match e {
            Event::TemporaryBan(b) => Some(b.expire),
            _ => None,
        })
        .await;
    assert_eq!(expire.num_seconds(), 3600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_405_is_client_outdated() {
    let (_sim, mut client, _dir) = restart_into(Fault::FailLogins { reason: 405 }).await;
    client.wait(T, "ClientOutdated", |e| matches!(e, Event::ClientOutdated(_)).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_replaced_is_stream_replaced() {
    let (sim, mut client, _dir) = linked().await;
    sim.inject(Fault::Replaced { phone: PHONE.into() }).expect("inject");
    client.wait(T, "StreamReplaced", |e| matches!(e, Event::StreamReplaced(_)).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_removed_logs_out_and_the_device_is_gone() {
    let (sim, mut client, dir) = linked().await;
    let device = sim.devices(PHONE)[0];
    sim.inject(Fault::DeviceRemoved { phone: PHONE.into(), device }).expect("inject");
    let got = client.wait(T, "LoggedOut", logged_out).await;
    assert!(!got.0, "removal arrives on a live connection, not at connect");
    assert!(sim.devices(PHONE).is_empty());
    client.stop().await;
    // Its session is dead for good: logging in again is refused as logged out.
    let cursor = sim.cursor();
    let mut client = TestClient::start(&sim.ws_url(), &dir.path().join("session.db")).await;
    let refused = sim.wait_for(cursor, T, |e| matches!(e, SimEvent::LoginRefused { .. })).await.expect("refused");
    assert!(matches!(refused, SimEvent::LoginRefused { reason: 401, .. }));
    assert_eq!(client.wait(T, "LoggedOut", logged_out).await, (true, ConnectFailureReason::LoggedOut));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_socket_is_disconnected_then_reconnected() {
    let (sim, mut client, _dir) = linked().await;
    let cursor = sim.cursor();
    sim.inject(Fault::DropConnections).expect("inject");
    client.wait(T, "Disconnected", |e| matches!(e, Event::Disconnected(_)).then_some(())).await;
    client.wait(T, "Connected again", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::LoggedIn { .. })).await.expect("logged in again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_retried_until_accepted() {
    let (sim, mut client, _dir) = linked().await;
    let cursor = sim.cursor();
    sim.inject(Fault::RefuseConnections(2)).expect("inject");
    sim.inject(Fault::SlowResponses(Duration::from_millis(50))).expect("inject");
    sim.inject(Fault::DropConnections).expect("inject");
    client.wait(T, "Connected again", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    let refused = sim.events()[cursor..].iter().filter(|e| matches!(e, SimEvent::Refused { .. })).count();
    assert_eq!(refused, 2, "both refusals were hit before the client got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_515_reconnects_without_logging_out() {
    let (sim, mut client, _dir) = linked().await;
    let cursor = sim.cursor();
    sim.inject(Fault::StreamError { code: 515 }).expect("inject");
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::LoggedIn { .. })).await.expect("logged in again");
    client
        .wait(T, "Connected again", |e| match e {
            Event::LoggedOut(_) => panic!("515 is a restart, not a logout"),
            Event::Connected(_) => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_offline_for_days_keeps_its_devices_until_the_fourteenth() {
    let (sim, mut client, dir) = linked().await;
    sim.inject(Fault::PhoneOffline { phone: PHONE.into(), days: 13 }).expect("inject");
    assert_eq!(sim.devices(PHONE).len(), 1, "still linked after 13 days");
    // Still connected: a contact's message arrives.
    sim.add_phone("4915100007777");
    sim.send_text("4915100007777", PHONE, "still there?", false).await.expect("send");
    client.wait(T, "the message", |e| matches!(e, Event::Messages(_)).then_some(())).await;

    sim.inject(Fault::PhoneOffline { phone: PHONE.into(), days: wa_sim::COMPANION_LOGOUT_DAYS }).expect("inject");
    let got = client.wait(T, "LoggedOut", logged_out).await;
    assert!(!got.0, "on the live connection");
    assert!(sim.devices(PHONE).is_empty());
    client.stop().await;
    let mut client = TestClient::start(&sim.ws_url(), &dir.path().join("session.db")).await;
    assert_eq!(client.wait(T, "LoggedOut", logged_out).await, (true, ConnectFailureReason::LoggedOut));
}
