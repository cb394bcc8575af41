//! Issue 15 (first slice): the gateway's HTTP listener: health that tells running from ready,
//! Prometheus metrics counted where things happen, and a status page, against wa-sim.

use std::time::{Duration, Instant};

use serde_json::Value;
use wa_sim::Fault;

use crate::pipeline::Setup;

const ACCOUNT: &str = "15550003000";
const FRIEND: &str = "4915100004444";
const STRANGER: &str = "4915100005555";

/// The listener's URL, from `state/gateway.json`.
fn http_url(s: &Setup) -> String {
    let deadline = Instant::now() + crate::gateway::T;
    loop {
        let info: Option<Value> =
            std::fs::read(s.home.path.join("state/gateway.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(url) = info.as_ref().and_then(|i| i["http_url"].as_str()) {
            return url.to_owned();
        }
        assert!(Instant::now() < deadline, "no http_url in gateway.json: {info:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Polls `url` until its status is `want`; the last body.
async fn until(url: &str, want: u16) -> String {
    let deadline = Instant::now() + crate::gateway::T;
    loop {
        let (status, body) = get(url).await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "{url} stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A metric's value in the exposition text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_the_status_page_tell_what_the_gateway_is_doing() {
    let mut s =
        Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nHERMES_GATEWAY_LISTEN=127.0.0.1:0\n")).await;
    s.contact(FRIEND);
    s.contact(STRANGER);
    let url = http_url(&s);
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
    let ready: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 200).await).expect("json");
    assert_eq!((ready["ready"].as_bool(), ready["state"].as_str()), (Some(true), Some("connected")));

    let cursor = s.sim.cursor();
    s.say(FRIEND, "hello").await;
    s.reply_containing(cursor, FRIEND, "hello").await;
    s.say(STRANGER, "let me in").await;
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    let (status, text) = get(&format!("{url}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "hermes_messages_received_total"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "hermes_messages_answered_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "hermes_messages_dropped_total{rule=\"not_allowlisted\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "hermes_link_state{state=\"connected\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "hermes_model_request_duration_seconds_count"), Some(1.0), "{text}");
    assert!(metric(&text, "hermes_messages_sent_total").is_some_and(|n| n >= 1.0), "{text}");
    assert!(!text.contains(FRIEND) && !text.contains("hello"), "no numbers or words in metrics");

    let (status, page) = get(&format!("{url}/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"state\">connected<") && page.contains(&format!("+{ACCOUNT}")), "{page}");
    assert!(page.contains(&format!("{STRANGER}@s.whatsapp.net")) && page.contains("WHATSAPP_ALLOWED_USERS="), "{page}");

    // Down: not ready, with the state and what to do; running all the same.
    s.sim.inject(Fault::RefuseConnections(1000)).expect("refuse");
    s.sim.inject(Fault::DropConnections).expect("drop");
    let down: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 503).await).expect("json");
    assert_eq!(down["ready"], false);
    assert!(["reconnecting", "connecting"].contains(&down["state"].as_str().unwrap_or_default()), "{down}");
    assert!(down["fix"].as_str().is_some_and(|f| f.contains("reconnects")), "{down}");
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
    s.sim.clear_faults();
    until(&format!("{url}/readyz"), 200).await;
    let text = get(&format!("{url}/metrics")).await.1;
    assert!(text.lines().any(|l| l.starts_with("hermes_reconnects_total{cause=") && !l.ends_with(" 0")), "{text}");
    s.stop();
}
