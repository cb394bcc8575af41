//! Issue 15 (first slice): the gateway's HTTP listener: health that tells running from ready,
//! Prometheus metrics counted where things happen, and a status page, against wa-sim.

use std::time::{Duration, Instant};

use serde_json::Value;
use wa_sim::Fault;

use crate::pipeline::Setup;

const ACCOUNT: &str = "15550003000";
const FRIEND: &str = "4915100004444";
const STRANGER: &str = "4915100005555";

/// The listener's URL and the token its page asks for, from `state/gateway.json`.
fn http_url(s: &Setup) -> (String, String) {
    let deadline = Instant::now() + crate::gateway::T;
    loop {
        let info: Option<Value> =
            std::fs::read(s.home.path.join("state/gateway.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some((url, token)) =
            info.as_ref().and_then(|i| Some((i["http_url"].as_str()?, i["http_token"].as_str()?)))
        {
            return (url.to_owned(), token.to_owned());
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
    let (url, token) = http_url(&s);
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
    let ready: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 200).await).expect("json");
    assert_eq!((ready["ready"].as_bool(), ready["state"].as_str()), (Some(true), Some("connected")));

    let cursor = s.sim.cursor();
    s.say(FRIEND, "hello").await;
    s.reply_containing(cursor, FRIEND, "hello").await;
    s.say(STRANGER, "let me in").await;
    s.wait_drops(&format!("{STRANGER}@s.whatsapp.net"), 1);
    assert_eq!(get(&format!("{url}/metrics")).await.0, 401, "on loopback too, the token is asked for");
    let (status, text) = get(&format!("{url}/metrics?token={token}")).await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "hermes_messages_received_total"), Some(2.0), "{text}");
    assert_eq!(metric(&text, "hermes_messages_answered_total"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "hermes_messages_dropped_total{rule=\"not_allowlisted\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "hermes_link_state{state=\"connected\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "hermes_model_request_duration_seconds_count"), Some(1.0), "{text}");
    assert!(metric(&text, "hermes_messages_sent_total").is_some_and(|n| n >= 1.0), "{text}");
    assert!(!text.contains(FRIEND) && !text.contains("hello"), "no numbers or words in metrics");

    assert_eq!(get(&format!("{url}/")).await.0, 401, "the page lists strangers' numbers: the token is asked for");
    let (status, page) = get(&format!("{url}/?token={token}")).await;
    assert_eq!(status, 200);
    // The owner finds the page's address, token and all, in `status`.
    let shown = s.home.run(&["whatsapp", "status"]);
    assert!(shown.stdout.contains(&format!("page       {url}/?token={token}")), "{shown:?}");
    assert!(page.contains("id=\"state\">connected<") && page.contains(&format!("+{ACCOUNT}")), "{page}");
    assert!(page.contains(&format!("{STRANGER}@s.whatsapp.net")) && page.contains("WHATSAPP_ALLOWED_USERS="), "{page}");

    // Down: not ready, with the state and what to do; running all the same.
    s.sim.inject(Fault::RefuseConnections(1000)).expect("refuse");
    s.sim.inject(Fault::DropConnections).expect("drop");
    // (Not ready at once; the link's state follows as the supervisor sees the loss.)
    let deadline = Instant::now() + crate::gateway::T;
    let down = loop {
        let down: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 503).await).expect("json");
        if ["reconnecting", "connecting"].contains(&down["state"].as_str().unwrap_or_default()) {
            break down;
        }
        assert!(Instant::now() < deadline, "{down}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(down["ready"], false);
    assert!(down["fix"].as_str().is_some_and(|f| f.contains("reconnects")), "{down}");
    assert_eq!(get(&format!("{url}/healthz")).await.0, 200);
    s.sim.clear_faults();
    until(&format!("{url}/readyz"), 200).await;
    let text = get(&format!("{url}/metrics?token={token}")).await.1;
    assert!(text.lines().any(|l| l.starts_with("hermes_reconnects_total{cause=") && !l.ends_with(" 0")), "{text}");
    s.stop();
}

/// A webhook on 127.0.0.1 that keeps what it is sent.
async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/alert",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().expect("lock").push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/alert", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_alerts_a_person_once_by_webhook_and_by_command() {
    let (url, got) = webhook().await;
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("alert.json");
    let env = format!(
        "WHATSAPP_ALLOWED_USERS={FRIEND}\nHERMES_ALERT_WEBHOOK={url}\nHERMES_ALERT_COMMAND=sh -c 'cat > \"$0\"' {}\n",
        file.display()
    );
    let mut s = Setup::new(ACCOUNT, &env).await;
    let device = s.sim.devices(ACCOUNT)[0];
    s.sim.inject(Fault::DeviceRemoved { phone: ACCOUNT.to_owned(), device }).expect("remove");
    let (code, log) = s.gw.take().expect("running").exit();
    assert_eq!(code, 1, "{log}");
    let alerts = got.lock().expect("lock").clone();
    assert_eq!(alerts.len(), 1, "once: {alerts:?}");
    assert_eq!(alerts[0]["state"], "device_removed");
    assert!(alerts[0]["fix"].as_str().is_some_and(|f| f.contains("hermes whatsapp repair")), "{alerts:?}");
    assert_eq!(alerts[0]["account"], ACCOUNT);
    let by_command: Value = serde_json::from_slice(&std::fs::read(&file).expect("the command ran")).expect("json");
    assert_eq!(by_command, alerts[0]);
}

/// Debian's Chromium and the pinned playwright-core that drives it (`.ci/run` installs the
/// browser; the packages install themselves on the first run, as Baileys' do).
fn browser_harness() -> std::path::PathBuf {
    let chromium = std::env::var("HERMES_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does, or set HERMES_CHROMIUM"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("browser");
    wa_sim::baileys::npm_ci(&dir).unwrap_or_else(|e| panic!("cannot install the browser harness: {e}"));
    dir
}

/// The QR code in a screenshot, read as a phone's camera would.
fn read_qr(png: &std::path::Path) -> String {
    let picture = image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(picture);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the screenshot {}", png.display());
    grids[0].decode().expect("a readable QR code").1
}

/// A gateway started with no session and a listener is linked from its page in a real
/// browser: the QR code is read off a screenshot and scanned by wa-sim's phone. The first time
/// WhatsApp asks for a passkey: the page, `/readyz` and an alert say so, and the page's button
/// gives a new code. The second scan links; the page turns to "connected" by itself, and the
/// gateway answers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_gateway_is_linked_from_its_page_in_a_browser_and_answers() {
    let harness = browser_harness();
    let (hook, alerts) = webhook().await;
    let env =
        format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nHERMES_GATEWAY_LISTEN=127.0.0.1:0\nHERMES_ALERT_WEBHOOK={hook}\n");
    let mut s = Setup::unlinked(ACCOUNT, &env).await;
    s.contact(FRIEND);
    let (url, token) = http_url(&s);
    let ready: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 503).await).expect("json");
    assert_eq!(ready["state"], "not_linked", "{ready}");

    let shots = tempfile::tempdir().expect("tempdir");
    let shot = shots.path().join("page.png");
    let mut browser = tokio::process::Command::new("node")
        .arg(harness.join("pair.mjs"))
        .arg(format!("{url}/?token={token}"))
        .arg(&shot)
        .arg("passkey")
        .current_dir(&harness)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(browser.stdout.take().expect("out")));
    let mut next = async || tokio::time::timeout(crate::gateway::T, lines.next_line()).await.expect("in time");
    assert_eq!(next().await.expect("read").as_deref(), Some("screenshot"), "the page showed a QR code");
    s.sim.ask_passkey(&read_qr(&shot)).expect("WhatsApp asks for a passkey");
    assert_eq!(next().await.expect("read").as_deref(), Some("passkey"), "the page said so");
    let ready: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 503).await).expect("json");
    assert_eq!(ready["state"], "passkey_required", "{ready}");
    assert!(ready["fix"].as_str().is_some_and(|f| f.contains("pairing code")), "{ready}");
    let deadline = Instant::now() + crate::gateway::T;
    while !alerts.lock().expect("lock").iter().any(|a| a["state"] == "passkey_required") {
        assert!(Instant::now() < deadline, "no passkey alert: {:?}", alerts.lock().expect("lock"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(next().await.expect("read").as_deref(), Some("screenshot"), "a new QR code after the click");
    s.sim.link_qr(ACCOUNT, &read_qr(&shot)).expect("scan");
    assert_eq!(next().await.expect("read").as_deref(), Some("connected"), "the page turned to connected");
    assert!(browser.wait().await.expect("node").success());

    until(&format!("{url}/readyz"), 200).await;
    let reply = s.ask(FRIEND, "hello after linking").await;
    assert!(reply.contains("hello after linking"), "{reply}");
    assert_eq!(s.llm.requests().len(), 1);
    s.stop();
}

/// With a listener, a removed device does not end the gateway: it is not ready, says why,
/// and is linked again from the page by a pairing code, then answers, with no restart. The
/// old session is kept as a backup; a request without the token (a local neighbour's, or a
/// form from another site) is refused and starts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_linked_again_by_pairing_code_from_the_page() {
    let mut s =
        Setup::new(ACCOUNT, &format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nHERMES_GATEWAY_LISTEN=127.0.0.1:0\n")).await;
    s.contact(FRIEND);
    let (url, token) = http_url(&s);
    let device = s.sim.devices(ACCOUNT)[0];
    s.sim.inject(Fault::DeviceRemoved { phone: ACCOUNT.to_owned(), device }).expect("remove");
    // The page is opened as soon as the link is down, before the gateway is ready for it:
    // what it asked for then is answered, not lost.
    let deadline = Instant::now() + crate::gateway::T;
    loop {
        let page = get(&format!("{url}/?token={token}")).await.1;
        if page.contains("<svg") {
            assert!(page.contains("Link this gateway to WhatsApp"), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "no QR code on the page: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down: Value = serde_json::from_str(&until(&format!("{url}/readyz"), 503).await).expect("json");
    assert_eq!(down["state"], "device_removed", "{down}");
    let fix = down["fix"].as_str().unwrap_or_default();
    assert!(fix.contains(&url) && fix.contains("link WhatsApp again"), "the fix points at the page: {down}");
    assert!(!fix.contains(&token), "anyone may ask /readyz: the fix never shows the token: {down}");
    // Docker's health check (the binary, as the Dockerfile names it) says so too.
    let health: Vec<String> = crate::install::dockerfile_healthcheck();
    let health: Vec<&str> = health.iter().map(String::as_str).collect();
    let unhealthy = s.home.run(&health);
    assert!(unhealthy.code == 1 && unhealthy.stderr.contains("device_removed"), "{unhealthy:?}");

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let pair = |origin: Option<&str>, host: Option<&str>, token: &str| {
        let mut r = client
            .post(format!("{url}/pair?token={token}"))
            .form(&[("kind", "code"), ("phone", &format!("+{ACCOUNT}"))]);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(h) = host {
            r = r.header("host", h);
        }
        r.send()
    };
    // Issue 25, hole 2: a local process posting its own number without the token (as curl
    // would: no Origin) is refused, and so is another site's form.
    assert_eq!(pair(None, None, "").await.expect("post").status().as_u16(), 401);
    assert_eq!(pair(Some("http://evil.example"), None, "wrong").await.expect("post").status().as_u16(), 401);
    assert_eq!(pair(None, Some("evil.example"), "").await.expect("post").status().as_u16(), 401);
    assert!(!get(&format!("{url}/?token={token}")).await.1.contains("id=\"code\""), "no code was asked for");
    assert_eq!(pair(Some(&url), None, &token).await.expect("post").status().as_u16(), 303);

    let deadline = Instant::now() + crate::gateway::T;
    let code = loop {
        let page = get(&format!("{url}/?token={token}")).await.1;
        if let Some(code) = page.split("id=\"code\" class=\"code\">").nth(1).and_then(|r| r.split('<').next()) {
            break code.replace('-', "");
        }
        assert!(Instant::now() < deadline, "no pairing code on the page: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    s.sim.link_code(ACCOUNT, &code).expect("type the code");
    until(&format!("{url}/readyz"), 200).await;
    let reply = s.ask(FRIEND, "still there?").await;
    assert!(reply.contains("still there?"), "{reply}");
    assert_eq!(s.llm.requests().len(), 1);
    let backups = std::fs::read_dir(s.home.path.join("platforms/whatsapp/session.bak")).map_or(0, |d| d.count());
    assert_eq!(backups, 1, "the removed session is kept as a backup");
    let healthy = s.home.run(&health);
    assert!(healthy.code == 0 && healthy.stdout.contains("connected"), "{healthy:?}");
    // The QR attempt the code replaced left nothing behind.
    let leftovers: Vec<String> = std::fs::read_dir(s.home.path.join("platforms/whatsapp"))
        .expect("session parent")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".linking-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.stop();
}

/// A gateway that cannot answer for the configured minutes tells a person once (here WhatsApp
/// is unreachable; 5 minutes are scaled down to 3 s for the test, well above the one-second
/// grain of message times), and is quiet again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_cannot_answer_for_minutes_alerts_once() {
    let (hook, alerts) = webhook().await;
    let env = format!("WHATSAPP_ALLOWED_USERS={FRIEND}\nHERMES_ALERT_WEBHOOK={hook}\nHERMES_ALERT_AFTER_MINUTES=5\n");
    let mut s = Setup::new(ACCOUNT, &env).await;
    s.contact(FRIEND);
    s.stop();
    s.start(&[("HERMES_TEST_TIME_SCALE", "0.01")]);
    s.sim.inject(Fault::RefuseConnections(1_000_000)).expect("refuse");
    s.sim.inject(Fault::DropConnections).expect("drop");
    let deadline = Instant::now() + crate::gateway::T;
    let stuck = loop {
        if let Some(a) = alerts.lock().expect("lock").iter().find(|a| a["state"] == "not_answering").cloned() {
            break a;
        }
        assert!(Instant::now() < deadline, "no not_answering alert: {:?}", alerts.lock().expect("lock"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(stuck["reason"].as_str().is_some_and(|r| r.contains("not been reachable")), "{stuck}");
    assert!(stuck["fix"].as_str().is_some_and(|f| f.contains("network")), "{stuck}");
    assert_eq!(stuck["account"], ACCOUNT, "{stuck}");
    let count = |alerts: &std::sync::Mutex<Vec<Value>>| {
        alerts.lock().expect("lock").iter().filter(|a| a["state"] == "not_answering").count()
    };
    // Down a while longer (the watchdog keeps looking, every few hundred milliseconds here):
    // one alert for the episode (`Watchdog`'s unit test covers each tick).
    s.gw().wait_log("state=\"reconnecting\"");
    s.sim.clear_faults();
    s.gw().wait_state("connected");
    let reply = s.ask(FRIEND, "back?").await;
    assert!(reply.contains("back?"), "{reply}");
    assert_eq!(count(&alerts), 1, "{:?}", alerts.lock().expect("lock"));
    s.stop();
}
