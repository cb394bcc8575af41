//! `wa-sim serve` as a process, driven only through its JSON control API with curl, the way a
//! shell script drives it; the client is the real whatsapp-rust one.

use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use whatsapp_rust::prelude::*;

use crate::client::{LINK_TIMEOUT, TestClient, init_logs};

struct Served {
    child: Child,
    ws_url: String,
    control: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wa-sim"))
        .args(["serve", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wa-sim serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the JSON line");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON line ({e}): {line:?}"));
    assert_eq!(v["root_public_key"].as_str().map(str::len), Some(64), "{v}");
    Served {
        ws_url: v["ws_url"].as_str().expect("ws_url").to_owned(),
        control: v["control_url"].as_str().expect("control_url").to_owned(),
        child,
    }
}

/// `curl -sS -X METHOD URL [-d BODY]`, parsed as JSON.
fn curl(method: &str, url: &str, body: Option<Value>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, url, "-H", "content-type: application/json"]);
    if let Some(b) = body {
        cmd.args(["-d", &b.to_string()]);
    }
    let out = cmd.output().expect("curl is installed (.ci/run installs it)");
    assert!(out.status.success(), "curl failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Waits for an event with the long-polling `GET /events/wait`, as a script would.
fn wait_event(control: &str, event: &str, phone: &str) -> Value {
    let phone = if phone.is_empty() { String::new() } else { format!("&phone={phone}") };
    let url = format!("{control}/events/wait?event={event}{phone}&timeout_ms=60000");
    let answer = curl("GET", &url, None);
    assert!(answer["event"]["event"] == event, "{answer}");
    answer["event"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_driven_by_its_control_api() {
    init_logs();
    let sim = serve();
    let phone =
        curl("POST", &format!("{}/phones", sim.control), Some(serde_json::json!({ "phone": "+1 555 000 3333" })));
    assert_eq!(phone["phone"], "15550003333");
    assert!(phone["lid"].as_str().is_some_and(|l| l.len() >= 14), "{phone}");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = TestClient::start(&sim.ws_url, &dir.path().join("session.db")).await;
    let qr = client
        .wait(LINK_TIMEOUT, "a QR code", |e| match e {
            Event::PairingQrCode(q) => Some(q.code.clone()),
            _ => None,
        })
        .await;
    let linked =
        curl("POST", &format!("{}/phones/15550003333/link-qr", sim.control), Some(serde_json::json!({ "qr": qr })));
    assert_eq!(linked["ok"], true, "{linked}");
    client.wait(LINK_TIMEOUT, "connected", |e| matches!(e, Event::Connected(_)).then_some(())).await;
    let linked = wait_event(&sim.control, "device_linked", "15550003333");
    assert_eq!(linked["device"], 1);
    assert_eq!(curl("GET", &format!("{}/phones/15550003333/devices", sim.control), None), serde_json::json!([1]));

    // A contact writes, the client answers; both through the API.
    let contact =
        curl("POST", &format!("{}/contacts", sim.control), Some(serde_json::json!({ "phone": "4915100003333" })));
    assert_eq!(contact["phone"], "4915100003333");
    let sent = curl(
        "POST",
        &format!("{}/contacts/4915100003333/send", sim.control),
        Some(serde_json::json!({ "to": "15550003333", "text": "hi from curl", "as": "lid" })),
    );
    let id = sent["id"].as_str().expect("id").to_owned();
    let got = client
        .wait(LINK_TIMEOUT, "the message", |e| match e {
            Event::Messages(b) => {
                b.messages.first().map(|m| (m.info.id.to_string(), m.message.text_content().map(str::to_owned)))
            }
            _ => None,
        })
        .await;
    assert_eq!(got, (id, Some("hi from curl".to_owned())));
    let to: Jid = "4915100003333@s.whatsapp.net".parse().expect("jid");
    client.handle.client().send_text(&to, "hi back").await.expect("send");
    let received = wait_event(&sim.control, "message_received", "");
    assert_eq!(received["text"], "hi back", "{received}");
    let inbox = curl("GET", &format!("{}/contacts/4915100003333/inbox", sim.control), None);
    assert_eq!(inbox[0]["text"], "hi back", "{inbox}");
    assert_eq!(inbox[0]["from"], "15550003333");

    // A reply quoting that message, the owner typing on the phone, a group: through the API.
    let ours = inbox[0]["id"].as_str().expect("id").to_owned();
    let reply = curl(
        "POST",
        &format!("{}/contacts/4915100003333/send", sim.control),
        Some(serde_json::json!({ "to": "15550003333", "text": "what do you mean?", "quote": ours })),
    );
    let quoted = client
        .wait(LINK_TIMEOUT, "the reply", |e| match e {
            Event::Messages(b) => b.messages.iter().find(|m| reply["id"] == m.info.id.as_str()).map(|m| {
                let c = m.message.extended_text_message.as_option().and_then(|t| t.context_info.as_option());
                (
                    c.and_then(|c| c.stanza_id.clone()),
                    c.and_then(|c| c.quoted_message.as_option()?.conversation.clone()),
                )
            }),
            _ => None,
        })
        .await;
    assert_eq!(quoted, (Some(ours), Some("hi back".to_owned())));
    let owner = curl(
        "POST",
        &format!("{}/phones/15550003333/send", sim.control),
        Some(serde_json::json!({ "to": "4915100003333", "text": "typed on the phone" })),
    );
    let from_me = client
        .wait(LINK_TIMEOUT, "the owner's message", |e| match e {
            Event::Messages(b) => {
                b.messages.iter().find(|m| owner["id"] == m.info.id.as_str()).map(|m| m.info.source.is_from_me)
            }
            _ => None,
        })
        .await;
    assert!(from_me);
    let group = curl(
        "POST",
        &format!("{}/groups", sim.control),
        Some(serde_json::json!({ "subject": "team", "owner": "4915100003333", "members": ["15550003333"] })),
    );
    let gid = group["id"].as_str().expect("a group id").to_owned();
    assert!(gid.ends_with("@g.us"), "{group}");
    let said = curl(
        "POST",
        &format!("{}/contacts/4915100003333/send", sim.control),
        Some(serde_json::json!({ "to": "", "group": gid, "text": "hello team" })),
    );
    let in_group = client
        .wait(LINK_TIMEOUT, "the group message", |e| match e {
            Event::Messages(b) => {
                b.messages.iter().find(|m| said["id"] == m.info.id.as_str()).map(|m| m.info.source.chat.to_string())
            }
            _ => None,
        })
        .await;
    assert_eq!(in_group, gid);

    // A fault through the API: the socket drops, the client comes back.
    let ok = curl("POST", &format!("{}/faults", sim.control), Some(serde_json::json!({ "kind": "drop_connections" })));
    assert_eq!(ok["ok"], true);
    client.wait(LINK_TIMEOUT, "disconnected", |e| matches!(e, Event::Disconnected(_)).then_some(())).await;
    client.wait(LINK_TIMEOUT, "connected again", |e| matches!(e, Event::Connected(_)).then_some(())).await;

    // Unlinking from the phone logs the device out.
    let unlinked = curl("POST", &format!("{}/phones/15550003333/unlink", sim.control), None);
    assert_eq!(unlinked["unlinked"], serde_json::json!([1]));
    client.wait(LINK_TIMEOUT, "logged out", |e| matches!(e, Event::LoggedOut(_)).then_some(())).await;

    // Bad requests say what is wrong.
    let bad = curl(
        "POST",
        &format!("{}/phones/15550003333/link-qr", sim.control),
        Some(serde_json::json!({ "qr": "nonsense" })),
    );
    assert!(bad["error"].as_str().is_some_and(|e| e.contains("not a WhatsApp linking QR code")), "{bad}");
    client.stop().await;
}
