//! End-to-end encrypted text from a simulated contact to the real client.

use std::time::Duration;

use wa_sim::{Sim, SimEvent};
use whatsapp_rust::prelude::*;

use crate::client::{TestClient, init_logs};

const T: Duration = Duration::from_secs(30);
const ME: &str = "15550007777";
const CONTACT: &str = "4915100007777";

/// A simulator with this account and a contact, and a directory for the client's store.
async fn setup() -> (Sim, wa_sim::PhoneInfo, tempfile::TempDir) {
    init_logs();
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(ME);
    let contact = sim.add_phone(CONTACT);
    (sim, contact, tempfile::tempdir().expect("tempdir"))
}

/// (text, sender JID, message id) of the first message in a batch.
fn first_text(e: &Event) -> Option<(String, String, String)> {
    match e {
        Event::Messages(batch) => batch.messages.first().map(|m| {
            (
                m.message.text_content().map(str::to_owned).unwrap_or_default(),
                m.info.source.sender.to_string(),
                m.info.id.to_string(),
            )
        }),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_text_arrives_decrypted_and_equal() {
    let (sim, _, dir) = setup().await;
    let mut client = TestClient::linked(&sim, ME, &dir.path().join("session.db")).await;

    let cursor = sim.cursor();
    let id = sim.send_text(CONTACT, ME, "hello from the simulator", false).await.expect("send");
    let (text, sender, got_id) = client.wait(T, "the first message", first_text).await;
    assert_eq!((text.as_str(), got_id.as_str()), ("hello from the simulator", id.as_str()));
    assert!(sender.starts_with(CONTACT), "{sender}");
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageDelivered { id: i, .. } if *i == id))
        .await
        .expect("acknowledged");

    // The same session carries the next one. Signal keeps sending `pkmsg` until the recipient
    // has answered, so both are pre-key messages; a reply would switch the sender to `msg`.
    let id2 = sim.send_text(CONTACT, ME, "second", false).await.expect("send");
    let (text, _, got_id) = client.wait(T, "the second message", first_text).await;
    assert_eq!((text.as_str(), got_id.as_str()), ("second", id2.as_str()));
    let kinds: Vec<bool> = sim
        .events()
        .iter()
        .filter_map(|e| match e {
            SimEvent::Stanza { inbound: false, xml, .. }
                if xml.starts_with("<message") && xml.contains(&format!("from=\"{CONTACT}@")) =>
            {
                Some(xml.contains("type=\"pkmsg\""))
            }
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec![true, true], "pre-key messages until the recipient answers");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lid_addressed_sender_carries_its_phone_number() {
    let (sim, contact, dir) = setup().await;
    let mut client = TestClient::linked(&sim, ME, &dir.path().join("session.db")).await;
    sim.send_text(CONTACT, ME, "from my LID", true).await.expect("send");
    let (text, sender, alt) = client
        .wait(T, "the message", |e| match e {
            Event::Messages(batch) => batch.messages.first().map(|m| {
                (
                    m.message.text_content().map(str::to_owned).unwrap_or_default(),
                    m.info.source.sender.to_string(),
                    m.info.source.sender_alt.as_ref().map(ToString::to_string),
                )
            }),
            _ => None,
        })
        .await;
    assert_eq!(text, "from my LID");
    assert!(sender.starts_with(&contact.lid) && sender.ends_with("@lid"), "{sender}");
    assert!(alt.as_deref().is_some_and(|a| a.starts_with(CONTACT)), "the phone number travels with it: {alt:?}");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_offline_arrive_at_the_next_login() {
    let (sim, _, dir) = setup().await;
    let db = dir.path().join("session.db");
    let client = TestClient::linked(&sim, ME, &db).await;
    client.stop().await;

    let cursor = sim.cursor();
    let id = sim.send_text(CONTACT, ME, "while you were away", false).await.expect("queued");
    assert!(!sim.events()[cursor..].iter().any(|e| matches!(e, SimEvent::MessageDelivered { .. })));

    let mut client = TestClient::start(&sim.ws_url(), &db).await;
    let (text, _, got_id) = client.wait(T, "the queued message", first_text).await;
    assert_eq!((text.as_str(), got_id.as_str()), ("while you were away", id.as_str()));
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageDelivered { id: i, .. } if *i == id))
        .await
        .expect("acknowledged");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_text_reaches_the_contact_who_answers() {
    let (sim, _, dir) = setup().await;
    let mut client = TestClient::linked(&sim, ME, &dir.path().join("session.db")).await;

    let cursor = sim.cursor();
    let to: Jid = format!("{CONTACT}@s.whatsapp.net").parse().expect("jid");
    let sent = client.handle.client().send_text(&to, "hello contact").await.expect("sent");
    let got = sim
        .wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == CONTACT))
        .await
        .expect("the contact received it");
    let SimEvent::MessageReceived { from, id, text, .. } = got else { unreachable!("matched above") };
    assert_eq!((from.as_str(), id.as_str(), text.as_str()), (ME, sent.message_id.as_str(), "hello contact"));
    let read = client
        .wait(T, "a read receipt", |e| match e {
            Event::Receipt(r) if r.r#type == whatsapp_rust::types::presence::ReceiptType::Read => {
                Some(r.message_ids.clone())
            }
            _ => None,
        })
        .await;
    assert!(read.iter().any(|m| m.as_str() == sent.message_id.as_str()), "{read:?}");

    // The contact answers on the session the client opened: a plain `msg` now.
    sim.send_text(CONTACT, ME, "got it", false).await.expect("reply");
    let (text, _, _) = client.wait(T, "the reply", first_text).await;
    assert_eq!(text, "got it");
    let last = sim
        .events()
        .iter()
        .rev()
        .find_map(|e| match e {
            SimEvent::Stanza { inbound: false, xml, .. }
                if xml.starts_with("<message") && xml.contains(&format!("from=\"{CONTACT}@")) =>
            {
                Some(xml.clone())
            }
            _ => None,
        })
        .expect("the reply's stanza");
    assert!(last.contains("type=\"msg\""), "{last}");
    assert_eq!(sim.inbox(CONTACT).len(), 1);
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_message_is_redelivered_with_the_same_id() {
    let (sim, _, dir) = setup().await;
    let db = dir.path().join("session.db");
    TestClient::linked(&sim, ME, &db).await.stop().await;

    // The client commits inbound messages through a hook; its first commit fails.
    let hook = crate::client::FlakyHook::default();
    hook.fail.store(1, std::sync::atomic::Ordering::SeqCst);
    let mut client = TestClient::start_with_hook(&sim.ws_url(), &db, hook.clone()).await;
    client.wait(T, "connected", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    let cursor = sim.cursor();
    let id = sim.send_text(CONTACT, ME, "keep me", false).await.expect("send");
    tokio::time::timeout(T, hook.called.notified()).await.expect("the hook ran");
    assert!(
        !sim.events()[cursor..].iter().any(|e| matches!(e, SimEvent::MessageDelivered { .. })),
        "a message whose commit failed is not acknowledged"
    );

    // The connection drops; at the next login the server redelivers it, same id, and the
    // hook commits it this time.
    sim.inject(wa_sim::Fault::DropConnections).expect("drop");
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageDelivered { id: i, .. } if *i == id))
        .await
        .expect("acknowledged after redelivery");
    let seen = hook.seen.lock().expect("poisoned").clone();
    assert!(seen.len() >= 2 && seen.iter().all(|s| *s == id), "the same id both times: {seen:?}");
    client.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_storm_sends_the_same_id_again_and_the_client_survives_it() {
    let (sim, _, dir) = setup().await;
    let hook = crate::client::FlakyHook::default();
    TestClient::linked(&sim, ME, &dir.path().join("session.db")).await.stop().await;
    let mut client = TestClient::start_with_hook(&sim.ws_url(), &dir.path().join("session.db"), hook.clone()).await;
    client.wait(T, "connected", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    let id = sim.send_text(CONTACT, ME, "once", false).await.expect("send");
    client.wait(T, "the message", first_text).await;
    let before = sim.events().len();
    sim.inject(wa_sim::Fault::RedeliveryStorm { id: id.clone(), times: 5 }).expect("storm");
    // The copies reach the wire with the same id...
    // Each event is shown to the predicate once, so it can count.
    let copies = std::cell::Cell::new(0);
    sim.wait_for(before, T, |e| {
        let copy = matches!(e, SimEvent::Stanza { inbound: false, xml, .. } if xml.starts_with("<message") && xml.contains(&format!("id=\"{id}\"")));
        copies.set(copies.get() + usize::from(copy));
        copies.get() >= 5
    })
    .await
    .expect("five copies sent");
    // ...and the client stays connected: it acknowledges the copies it can make sense of.
    let probe = sim.send_text(CONTACT, ME, "still there?", false).await.expect("send");
    let (text, _, got) = client.wait(T, "the next message", |e| first_text(e).filter(|(_, _, i)| *i == probe)).await;
    assert_eq!((text.as_str(), got.as_str()), ("still there?", probe.as_str()));
    client.stop().await;
}
