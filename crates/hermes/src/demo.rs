//! `hermes demo` (simulator build): the whole product on one machine, no account needed.
//!
//! It starts wa-sim (a WhatsApp server on 127.0.0.1), links a simulated phone by QR code
//! exactly as `hermes whatsapp` does, runs the real `hermes gateway` on a temporary
//! HERMES_HOME, and lets two contacts write: an allowed one, who gets the agent's answer, and
//! a stranger, whose message is dropped with the explanation `hermes whatsapp drops` gives.
//! The agent is the configured model when it answers, else the built-in offline responder,
//! which says what it is in every reply.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hermes_agent::loopback::LoopbackLlm;
use hermes_agent::{Agent, Endpoint, Message, Retry, Speaker};
use hermes_whatsapp::linking::{self, LinkOptions, LinkProgress};
use wa_sim::{Sim, SimEvent};

use crate::{exit, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo's HERMES_HOME (session, state database, gateway log) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// Never use the configured model, even when it is reachable.
    #[arg(long)]
    offline: bool,
}

const ACCOUNT: &str = "15550001000";
const FRIEND: &str = "4915100001111";
const STRANGER: &str = "447700900123";
const WAIT: Duration = Duration::from_secs(60);

pub async fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let dir = tempfile::Builder::new().prefix("hermes-demo-").tempdir().context("create the demo's HERMES_HOME")?;
    let home = dir.path().to_path_buf();
    let outcome = demo(&loaded, &home, args).await;
    if args.keep {
        let kept = dir.keep();
        println!("\nThe demo's HERMES_HOME is kept at {}", kept.display());
    }
    outcome
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

async fn demo(loaded: &load::Loaded, home: &Path, args: &Args) -> anyhow::Result<u8> {
    let started = Instant::now();
    println!("hermes demo: a simulated WhatsApp on 127.0.0.1; no account, no phone and no internet needed.");
    let sim = Sim::start().await.context("start the WhatsApp simulator")?;
    sim.add_phone(ACCOUNT);
    sim.add_phone(FRIEND);
    sim.add_phone(STRANGER);

    step(1, &format!("Linking the simulated phone +{ACCOUNT} by QR code (as `hermes whatsapp` does)"));
    let session_dir = home.join("platforms").join("whatsapp").join("session");
    let opts = LinkOptions {
        session_dir,
        pair_code_phone: None,
        timeout: WAIT,
        server_url: Some(sim.ws_url()),
        push_name: hermes_whatsapp::linking::PUSH_NAME.to_owned(),
    };
    let mut scanned = false;
    let progress = |p: LinkProgress| {
        if let LinkProgress::Qr { code, .. } = p
            && !scanned
        {
            scanned = true;
            match crate::qr::terminal(&code) {
                Ok(qr) => println!("{qr}"),
                Err(e) => println!("   (cannot draw the QR code: {e})"),
            }
            println!("   The simulated phone scans it...");
            if let Err(e) = sim.link_qr(ACCOUNT, &code) {
                println!("   the phone could not scan: {e:#}");
            }
        }
    };
    let linked = linking::link(&opts, progress, std::future::pending(), hermes_store::clock::now()).await?;
    println!(
        "   Linked to +{} (LID {}). This session now survives restarts: no new scan.",
        linked.account.phone,
        linked.account.lid.as_deref().unwrap_or("unknown")
    );

    step(2, "Choosing the agent's model");
    let llm = LoopbackLlm::start(0).await.context("start the offline responder")?;
    let (endpoint, label) = match model(loaded, args).await {
        Ok(endpoint) => {
            let label =
                format!("the configured model {} at {}", endpoint.model, hermes_agent::redact_url(&endpoint.base_url));
            (endpoint, label)
        }
        Err(why) => {
            let endpoint = Endpoint { base_url: llm.base_url(), model: "offline".to_owned(), api_key: None };
            (endpoint, format!("the built-in offline responder ({why})"))
        }
    };
    println!("   Using {label}.");

    step(3, "Starting `hermes gateway` on the linked session");
    let env = format!("WHATSAPP_MODE=bot\nWHATSAPP_ALLOWED_USERS={FRIEND}\nWHATSAPP_HOME_CHANNEL={FRIEND}\n");
    hermes_store::files::write_private(&home.join(".env"), env.as_bytes())?;
    let yaml = format!("model:\n  default: {}\n  base_url: {}\n", endpoint.model, endpoint.base_url);
    hermes_store::files::write_private(&home.join("config.yaml"), yaml.as_bytes())?;
    println!("   HERMES_HOME={}", home.display());
    println!("   WHATSAPP_ALLOWED_USERS={FRIEND}  (only this contact reaches the agent)");
    let cursor = sim.cursor();
    let mut gateway = Gateway::start(home, &sim, endpoint.api_key.as_deref())?;
    let active = sim.wait_for(cursor, WAIT, |e| matches!(e, SimEvent::Active { phone, .. } if phone == ACCOUNT)).await;
    if active.is_err() {
        return Err(gateway.failed("the gateway did not connect"));
    }
    println!("   Connected.");

    step(4, &format!("An allowed contact, +{FRIEND}, writes"));
    let question = "Hi Hermes! What can you do for me?";
    println!("   +{FRIEND}: {question}");
    let cursor = sim.cursor();
    sim.send_text(FRIEND, ACCOUNT, question, false).await?;
    let reply = sim
        .wait_for(
            cursor,
            Duration::from_secs(180),
            |e| matches!(e, SimEvent::MessageReceived { contact, .. } if contact == FRIEND),
        )
        .await;
    match reply {
        Ok(SimEvent::MessageReceived { text, .. }) => println!("   Hermes -> +{FRIEND}: {text}"),
        _ => return Err(gateway.failed("no answer arrived")),
    }

    step(5, &format!("A stranger, +{STRANGER}, writes"));
    let hello = "hello? is this the support line?";
    println!("   +{STRANGER}: {hello}");
    let cursor = sim.cursor();
    let id = sim.send_text(STRANGER, ACCOUNT, hello, false).await?;
    let drop = match wait_for_drop(home, &format!("{STRANGER}@s.whatsapp.net")).await {
        Ok(drop) => drop,
        Err(e) => {
            // Whether the gateway had the message at all tells the simulator's side from ours.
            let acked = sim
                .events_since(cursor)
                .iter()
                .any(|e| matches!(e, SimEvent::MessageDelivered { id: d, .. } if *d == id));
            let had = if acked { "the gateway acknowledged it" } else { "the gateway never acknowledged it" };
            return Err(gateway.failed(&format!("{e:#} ({had})")));
        }
    };
    println!("   Not answered: the gateway dropped it and wrote down why (`hermes whatsapp drops`):");
    println!("     rule: {}", drop.rule);
    if let Some(h) = &drop.hint {
        println!("     why:  {h}");
    }

    gateway.stop();
    println!(
        "\nDone in {:.1} s. With a real account: `hermes whatsapp` (scan the QR code with your phone), then `hermes gateway`.",
        started.elapsed().as_secs_f64()
    );
    let _ = std::io::stdout().flush();
    Ok(exit::OK)
}

/// The configured model, if one is set and answers a one-word question.
async fn model(loaded: &load::Loaded, args: &Args) -> Result<Endpoint, String> {
    if args.offline {
        return Err("--offline".to_owned());
    }
    let m = &loaded.resolved.config.model;
    let Some(name) = m.name.value.clone() else {
        return Err("no model is configured in config.yaml".to_owned());
    };
    let base_url = m
        .base_url
        .value
        .clone()
        .or_else(|| Endpoint::provider_base_url(m.provider.value.as_deref()).map(str::to_owned))
        .ok_or_else(|| format!("model {name} has no base_url"))?;
    let endpoint = Endpoint { base_url, model: name, api_key: m.api_key.value.as_ref().map(|k| k.expose().to_owned()) };
    let retry = Retry { attempts: 1, timeout: Duration::from_secs(15), ..Retry::default() };
    let probe = [Message::new(Speaker::User, "Answer with the single word OK.")];
    match Agent::new(endpoint.clone(), retry).complete(&probe).await {
        Ok(_) => Ok(endpoint),
        Err(e) => Err(format!("the configured model {} did not answer: {e}", endpoint.model)),
    }
}

/// The drop ledger entry for `sender`, once the gateway has written it.
async fn wait_for_drop(home: &Path, sender: &str) -> anyhow::Result<hermes_store::Dropped> {
    let db = home.join("state").join("hermes.db");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        // Read-only: the demo watches the gateway's database, it never writes to it.
        if let Some(store) = hermes_store::Store::open_read_only(&db)?
            && let Some(d) = store.drops_since(0)?.into_iter().find(|d| d.sender.to_string() == sender)
        {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the stranger's message was not recorded as dropped within {WAIT:?}")
}

/// The real `hermes gateway`, as a child process of this one.
struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Gateway {
    fn start(home: &Path, sim: &Sim, api_key: Option<&str>) -> anyhow::Result<Gateway> {
        let logs = home.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join("gateway.log");
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        // Nothing from the caller's environment may change the demo's configuration.
        cmd.arg("gateway")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HERMES_HOME", home)
            .env("WHATSAPP_SERVER_URL", sim.ws_url())
            .env("RUST_LOG", "info,whatsapp_rust=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(key) = api_key {
            cmd.env("OPENAI_API_KEY", key);
        }
        let child = cmd.spawn().context("start hermes gateway")?;
        Ok(Gateway { child, log })
    }

    /// `what` went wrong, with the end of the gateway's log: the demo's HERMES_HOME (and the
    /// log in it) is removed when the demo ends, unless `--keep` is given.
    fn failed(&self, what: &str) -> anyhow::Error {
        const LINES: usize = 40;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
        anyhow::anyhow!("{what}; the gateway's log ({}) ends with:\n{tail}", self.log.display())
    }

    fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
