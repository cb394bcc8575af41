//! `hermes gateway` keeps the link against wa-sim's faults: transient trouble is ridden out,
//! WhatsApp's own verdicts stop it for good, and nothing ever asks for a new QR code.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wa_sim::{Fault, Sim, SimEvent};

use crate::link::{link_phone, status};
use crate::support::Home;

pub const T: Duration = Duration::from_secs(60);

/// A running gateway; its log lines (stderr) arrive on a channel.
pub struct Gateway {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Gateway {
    pub fn start(home: &Home, sim: &Sim) -> Gateway {
        Gateway::start_with(home, sim, &[])
    }

    pub fn start_with(home: &Home, sim: &Sim, env: &[(&str, &str)]) -> Gateway {
        let mut cmd = home.command(&["gateway"]);
        // HERMES_IT_RUST_LOG turns the gateway's log up when a rare failure needs reading.
        let filter = std::env::var("HERMES_IT_RUST_LOG").unwrap_or_else(|_| "info,whatsapp_rust=warn".to_owned());
        cmd.env("RUST_LOG", filter).envs(env.iter().copied());
        Gateway::spawn(cmd, sim)
    }

    /// Runs `cmd` (a `hermes gateway`, maybe behind a wrapper) against `sim`.
    pub fn spawn(mut cmd: std::process::Command, sim: &Sim) -> Gateway {
        let mut child = cmd
            .env("WHATSAPP_SERVER_URL", sim.ws_url())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hermes gateway");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        // HERMES_IT_LOG_DIR keeps every gateway's whole log, for failures seen once in many runs.
        let mut keep = std::env::var_os("HERMES_IT_LOG_DIR").and_then(|dir| {
            let path = std::path::Path::new(&dir).join(format!("gateway-{}.log", child.id()));
            std::fs::File::create(path).ok()
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(file) = keep.as_mut() {
                    let _ = std::io::Write::write_all(file, format!("{line}\n").as_bytes());
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Gateway { child, log }
    }

    /// Waits for the link to enter `state`, as the gateway logs it. Returns the lines seen.
    pub fn wait_state(&self, state: &str) -> Vec<String> {
        self.wait_log(&format!("state=\"{state}\""))
    }

    /// The log lines not read yet.
    pub fn drain_log(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Waits for a log line containing `needle`. Returns the lines seen.
    pub fn wait_log(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.log.recv_timeout(T).unwrap_or_else(|e| panic!("no '{needle}' ({e}); log: {seen:#?}"));
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    /// Waits for the process to exit; returns its code and the rest of its log.
    pub fn exit(mut self) -> (i32, String) {
        let code = self.child.wait().expect("wait").code().unwrap_or(-1);
        let rest: Vec<String> = self.log.try_iter().collect();
        (code, rest.join("\n"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGHUP: read the settings again.
    pub fn hang_up(&self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).expect("pid")).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
    }

    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).expect("pid")).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn linked_gateway(phone: &str) -> (Sim, Home, Gateway) {
    let sim = Sim::start().await.expect("sim");
    sim.add_phone(phone);
    let home = Home::new();
    link_phone(&home, &sim, phone);
    let gw = Gateway::start(&home, &sim);
    gw.wait_state("connected");
    (sim, home, gw)
}

fn count(sim: &Sim, from: usize, pred: impl Fn(&SimEvent) -> bool) -> usize {
    sim.events()[from..].iter().filter(|e| pred(e)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_out_drops_and_refused_connections() {
    let (sim, home, gw) = linked_gateway("15554440000").await;
    let (code, st) = status(&home);
    assert_eq!(
        (code, st["state"].as_str(), st["gateway_running"].as_bool()),
        (0, Some("connected"), Some(true)),
        "{st}"
    );

    let cursor = sim.cursor();
    sim.inject(Fault::RefuseConnections(2)).expect("inject");
    sim.inject(Fault::DropConnections).expect("inject");
    gw.wait_state("reconnecting");
    let log = gw.wait_state("connected");
    assert!(!log.iter().any(|l| l.contains("qr")), "a network blip never leads to a QR code: {log:#?}");
    assert_eq!(count(&sim, cursor, |e| matches!(e, SimEvent::Refused { .. })), 2, "both refusals were retried");
    assert_eq!(count(&sim, cursor, |e| matches!(e, SimEvent::PairingStarted { .. })), 0, "never re-paired");
    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str()), (0, Some("connected")), "{st}");
    assert!(st["reconnects_last_hour"].as_u64().is_some_and(|n| n >= 1), "{st}");

    gw.terminate();
    let (code, _) = gw.exit();
    assert_eq!(code, 0, "SIGTERM is a clean stop");
}

/// A terminal verdict stops the gateway after exactly one refused attempt, with the fix.
async fn stops_for_good(phone: &str, fault: Fault, state: &str, fix: &str) {
    let (sim, home, gw) = linked_gateway(phone).await;
    let cursor = sim.cursor();
    sim.inject(fault).expect("inject");
    sim.inject(Fault::DropConnections).expect("inject");
    let (code, rest) = gw.exit();
    assert_eq!(code, 1, "{rest}");
    assert!(rest.contains(fix), "the fix is printed: {rest}");
    assert_eq!(count(&sim, cursor, |e| matches!(e, SimEvent::Connected { .. })), 1, "no retries after the verdict");
    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str(), st["gateway_running"].as_bool()), (1, Some(state), Some(false)), "{st}");
    assert!(st["fix"].as_str().is_some_and(|f| f.contains(fix)), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_out_401_stops_and_says_repair() {
    stops_for_good("15554441111", Fault::FailLogins { reason: 401 }, "logged_out", "hermes whatsapp repair").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_403_stops() {
    stops_for_good("15554442222", Fault::FailLogins { reason: 403 }, "logged_out", "locked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_outdated_405_says_update_not_relink() {
    stops_for_good("15554443333", Fault::FailLogins { reason: 405 }, "client_outdated", "update hermes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_removed_on_the_phone_stops() {
    let (sim, home, gw) = linked_gateway("15554444444").await;
    let cursor = sim.cursor();
    sim.inject(Fault::DeviceRemoved { phone: "15554444444".into(), device: 1 }).expect("inject");
    let (code, rest) = gw.exit();
    assert_eq!(code, 1, "{rest}");
    assert!(rest.contains("removed from Linked Devices"), "{rest}");
    assert_eq!(count(&sim, cursor, |e| matches!(e, SimEvent::Connected { .. })), 0, "no reconnection attempt");
    assert_eq!(status(&home).1["state"], "device_removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_waits_instead_of_giving_up() {
    let (sim, home, gw) = linked_gateway("15554445555").await;
    sim.inject(Fault::TemporaryBan { code: 101, expire: Duration::from_secs(3600) }).expect("inject");
    sim.inject(Fault::DropConnections).expect("inject");
    gw.wait_state("temporarily_banned");
    let (code, st) = status(&home);
    assert_eq!(
        (code, st["state"].as_str(), st["gateway_running"].as_bool()),
        (1, Some("temporarily_banned"), Some(true)),
        "{st}"
    );
    gw.terminate();
    assert_eq!(gw.exit().0, 0);
}

#[test]
fn refuses_to_run_without_a_linked_session() {
    let home = Home::new();
    let run = home.run(&["gateway"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("run `hermes whatsapp`"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_are_journaled_once_before_they_are_acknowledged() {
    let (sim, home, gw) = linked_gateway("15554446666").await;
    sim.add_phone("4915100006666");
    let cursor = sim.cursor();
    let id = sim.send_text("4915100006666", "15554446666", "journal me", false).await.expect("send");
    // WhatsApp hears of it only after the journal has it.
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageDelivered { id: i, .. } if *i == id))
        .await
        .expect("acknowledged");
    // A storm of the same message, then one more message, handled after the storm's copies.
    sim.inject(Fault::RedeliveryStorm { id: id.clone(), times: 5 }).expect("storm");
    let id2 = sim.send_text("4915100006666", "15554446666", "and me", true).await.expect("send");
    sim.wait_for(cursor, T, |e| matches!(e, SimEvent::MessageDelivered { id: i, .. } if *i == id2))
        .await
        .expect("acknowledged");
    gw.terminate();
    assert_eq!(gw.exit().0, 0);

    // Self-chat mode (the default) answers only the account's own chat: each message of the
    // stranger left one row in the drop ledger, and no pairing code was offered.
    let store = hermes_store::Store::open(&home.path.join("state/hermes.db")).expect("open the journal");
    let stranger = hermes_core::identity::Jid::parse("4915100006666@s.whatsapp.net").expect("a JID");
    assert!(
        store.is_journaled(&stranger, &stranger, &hermes_core::identity::MessageId::new(id.as_str())).expect("query")
    );
    let drops = store.drops_since(0).expect("drops");
    assert_eq!(drops.len(), 2, "each message once, however often it came: {drops:?}");
    assert_eq!(drops[0].sender, stranger, "{drops:?}");
    assert_eq!(
        *drops[1].sender.server(),
        hermes_core::identity::Server::Lid,
        "a LID sender is journaled as it came: {drops:?}"
    );
    assert!(drops[1].sender_forms.contains(&stranger), "its phone form is known: {drops:?}");
    assert!(drops.iter().all(|d| d.rule.as_str() == "self_chat_only"), "{drops:?}");
    assert!(store.codes_since(0).expect("codes").is_empty(), "never a pairing code in self-chat mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_storm_stops_with_another_client_is_using_this_session() {
    let sim = Sim::start().await.expect("sim");
    let phone = "15554447777";
    sim.add_phone(phone);
    let home = Home::new();
    link_phone(&home, &sim, phone);
    // The real policy (30 s, then 60 s, stop at the third replacement in ten minutes) on a
    // clock a thousand times faster.
    let gw = Gateway::start_with(&home, &sim, &[("HERMES_TEST_TIME_SCALE", "0.001")]);
    gw.wait_state("connected");
    for _ in 0..2 {
        sim.inject(Fault::Replaced { phone: phone.into() }).expect("inject");
        gw.wait_state("replaced");
        let log = gw.wait_state("connected");
        assert!(!log.iter().any(|l| l.contains("qr")), "{log:#?}");
    }
    let cursor = sim.cursor();
    sim.inject(Fault::Replaced { phone: phone.into() }).expect("inject");
    let (code, rest) = gw.exit();
    assert_eq!(code, 1, "{rest}");
    assert!(rest.contains("another client is using this session"), "{rest}");
    assert_eq!(count(&sim, cursor, |e| matches!(e, SimEvent::Connected { .. })), 0, "no retry after the third");
    assert_eq!(count(&sim, 0, |e| matches!(e, SimEvent::PairingStarted { .. })), 1, "paired once, at the start");
    let (code, st) = status(&home);
    assert_eq!((code, st["state"].as_str()), (1, Some("stopped")), "{st}");
}
