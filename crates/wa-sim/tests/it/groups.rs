//! Groups with sender keys: a member's text reaches the linked device, and the device's text
//! reaches every member, each decrypted with the sender key its author distributed.

use std::time::Duration;

use wa_sim::{Sim, SimEvent};
use whatsapp_rust::prelude::*;

use crate::client::{TestClient, init_logs};

const T: Duration = Duration::from_secs(30);
const ME: &str = "15550008888";
const ALICE: &str = "4915100008881";
const BOB: &str = "4915100008882";

/// (chat, sender, text) of the first message in a batch.
fn group_text(e: &Event) -> Option<(String, String, String)> {
    match e {
        Event::Messages(batch) => batch.messages.first().map(|m| {
            (
                m.info.source.chat.to_string(),
                m.info.source.sender.to_string(),
                m.message.text_content().map(str::to_owned).unwrap_or_default(),
            )
        }),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_texts_both_ways_with_sender_keys() {
    init_logs();
    let sim = Sim::start().await.expect("sim");
    for p in [ME, ALICE, BOB] {
        sim.add_phone(p);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = TestClient::linked(&sim, ME, &dir.path().join("session.db")).await;
    let group = sim.create_group("Team", &[ALICE, ME, BOB]).expect("group");
    assert!(sim.create_group("Nobody", &["0000"]).is_err(), "members must exist");

    // Two messages from Alice: the first distributes her sender key, the second uses it.
    for text in ["hello team", "again"] {
        sim.send_group_text(ALICE, &group, text).await.expect("send");
        let (chat, sender, got) = client.wait(T, "Alice's group message", group_text).await;
        assert_eq!((chat.as_str(), got.as_str()), (group.as_str(), text));
        assert!(sender.starts_with(ALICE), "{sender}");
    }
    assert!(sim.send_group_text("4915100008889", &group, "not a member").await.is_err());

    // The device writes to the group: both members read it, once each.
    let cursor = sim.cursor();
    let to: Jid = group.parse().expect("group jid");
    let sent = client.handle.client().send_text(to, "hello from the device").await.expect("sent");
    for member in [ALICE, BOB] {
        let got = sim
            .wait_for(cursor, T, |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == member))
            .await
            .expect("received");
        assert!(
            matches!(&got, SimEvent::MessageReceived { text, id, .. } if text == "hello from the device" && *id == sent.message_id),
            "{got:?}"
        );
    }
    client.stop().await;
}
