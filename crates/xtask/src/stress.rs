//! `xtask stress`: kill -9 the gateway at random moments of a busy run, many times, and count
//! at the contacts that every message was answered exactly once.
//!
//! Contacts on wa-sim write steadily the whole time; the gateway (the release `hermes`, with
//! the simulator feature) is started, SIGKILLed after a random delay, started again, and so
//! on. What was journaled but not answered, answered but not committed, committed but not
//! sent, or sent but not marked, is exactly what a kill at a random moment leaves behind. At
//! the end the gateway runs until everything is answered; each reply quotes its message, so
//! the contacts' inboxes say what was lost and what was answered twice. Opt-in: not part of
//! the test run. It asserts nothing; it reports (exit 1 if anything was lost or doubled).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hermes_agent::loopback::LoopbackLlm;
use wa_sim::{Sim, SimEvent};

use crate::procs::{HermesHome, build_hermes};
use crate::report::{answers_per_message, machine};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// How many times the gateway is killed.
    #[arg(long, default_value_t = 100)]
    kills: usize,
    /// Contacts writing at once.
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Gap between two messages (from the contacts in turn), in milliseconds.
    #[arg(long, default_value_t = 25)]
    gap_ms: u64,
    /// The longest a gateway lives before it is killed, in milliseconds (uniformly random below).
    #[arg(long, default_value_t = 1500)]
    max_life_ms: u64,
    /// Where STRESS.md goes; nothing is written with --quick.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Five kills, to check that the runner works.
    #[arg(long)]
    quick: bool,
}

const ACCOUNT: &str = "15550100009";

fn contact(i: usize) -> String {
    format!("49153{:08}", i)
}

pub async fn run(mut opts: Options) -> anyhow::Result<()> {
    if opts.quick {
        opts.kills = 5;
    }
    let hermes_bin = build_hermes()?;
    let dir = tempfile::Builder::new().prefix("hermes-stress-").tempdir()?;
    // Shared with the writer task.
    let sim = Arc::new(Sim::start().await?);
    // Kept: a lost message is explained by the stanzas that carried its id.
    sim.record_stanzas(true);
    let llm = LoopbackLlm::start(0).await?;
    for i in 0..opts.contacts {
        sim.add_phone(&contact(i));
    }
    let home = HermesHome::link(&hermes_bin, dir.path(), &sim, ACCOUNT, &llm.base_url())?;
    let cursor = sim.cursor();
    let started = Instant::now();

    // Steady traffic for the whole run, numbered so every reply names its message.
    let sending = Arc::new(AtomicBool::new(true));
    let writer = {
        let (sim, sending, contacts, gap) = (sim.clone(), sending.clone(), opts.contacts, opts.gap_ms);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while sending.load(Ordering::Relaxed) {
                let n = ids.len();
                ids.push(sim.send_text(&contact(n % contacts), ACCOUNT, &format!("stress {n}."), false).await?);
                tokio::time::sleep(Duration::from_millis(gap)).await;
            }
            anyhow::Ok(ids)
        })
    };

    let mut lives = Vec::with_capacity(opts.kills);
    for k in 0..opts.kills {
        let life = Duration::from_millis((rand::random::<f64>() * opts.max_life_ms as f64) as u64);
        let mut gw = home.gateway(&hermes_bin, &sim)?;
        tokio::time::sleep(life).await;
        gw.child.kill().context("SIGKILL the gateway")?;
        let _ = gw.child.wait();
        lives.push(life);
        if (k + 1) % 10 == 0 {
            eprintln!("   {} kills", k + 1);
        }
    }
    sending.store(false, Ordering::Relaxed);
    let ids = writer.await??;
    let sent = ids.len();

    eprintln!("{sent} messages sent; the gateway now runs until every one is answered...");
    let last = home.gateway(&hermes_bin, &sim)?;
    let counts = |sim: &Sim| answers_per_message(sim, cursor, "stress ", sent);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut settled: Option<Instant> = None;
    loop {
        let c = counts(&sim);
        let unanswered = c.iter().filter(|n| **n == 0).count();
        if unanswered == 0 {
            // Everything answered: a little longer, for a second answer to show if there is one.
            let since = *settled.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(5) {
                break;
            }
        }
        if Instant::now() > deadline {
            eprintln!("   gave up waiting: {unanswered} unanswered");
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last.stop();
    let c = counts(&sim);
    let lost: Vec<usize> = (0..sent).filter(|n| c[*n] == 0).collect();
    let twice: Vec<usize> = (0..sent).filter(|n| c[*n] > 1).collect();
    let elapsed = started.elapsed();
    let mean_life = lives.iter().map(Duration::as_secs_f64).sum::<f64>() / lives.len().max(1) as f64;
    // Decrypt failures after a kill, each answered by the contact's phone with a resend.
    let retries = sim
        .events_since(cursor)
        .iter()
        .filter(|e| matches!(e, SimEvent::Stanza { inbound: true, xml, .. } if xml.starts_with("<receipt") && xml.contains("type=\"retry\"")))
        .count();
    let report = format!(
        "# Crash-anywhere stress\n\n\
         `cargo run --release -p xtask -- stress --kills {kills} --contacts {contacts} --gap-ms {gap} --max-life-ms {life}`\n\n\
         The release `hermes` (simulator feature) against wa-sim on 127.0.0.1, an instant model, \
         {contacts} contacts writing one message every {gap} ms between them for the whole run. \
         The gateway was SIGKILLed {kills} times, each after a uniformly random {mean:.0} ms on \
         average (at most {life} ms), then ran until every message was answered. Counted at the \
         contacts, from the replies, each of which quotes its message.\n\n\
         | | |\n| --- | --- |\n\
         | messages sent | {sent} |\n| kills | {kills} |\n| lost (never answered) | {lost} |\n\
         | answered more than once | {twice} |\n| retry receipts (could not decrypt after a kill; resent) | {retries} |\n\
         | run time | {secs:.0} s |\n\n\
         Machine: `{machine}`\n",
        kills = opts.kills,
        contacts = opts.contacts,
        gap = opts.gap_ms,
        life = opts.max_life_ms,
        mean = mean_life * 1000.0,
        lost = lost.len(),
        twice = twice.len(),
        secs = elapsed.as_secs_f64(),
        machine = machine(),
    );
    println!("{report}");
    for n in &lost {
        let id = &ids[*n];
        eprintln!("message {n} (id {id}, from {}):", contact(n % opts.contacts));
        for e in sim.events_since(cursor) {
            match e {
                SimEvent::Stanza { conn, inbound, xml } if xml.contains(id.as_str()) => {
                    let xml: String = xml.chars().take(300).collect();
                    eprintln!("   conn {conn} {}: {xml}", if inbound { "client->server" } else { "server->client" });
                }
                SimEvent::MessageDelivered { id: d, .. } if d == *id => eprintln!("   acknowledged by the device"),
                _ => {}
            }
        }
    }
    if !lost.is_empty() || !twice.is_empty() {
        eprintln!(
            "lost: {:?}\nanswered more than once: {:?}",
            &lost[..lost.len().min(20)],
            &twice[..twice.len().min(20)]
        );
        eprintln!("kept for a look: {}", dir.keep().display());
    }
    if !opts.quick {
        std::fs::create_dir_all(&opts.out)?;
        std::fs::write(opts.out.join("STRESS.md"), &report)?;
    }
    anyhow::ensure!(lost.is_empty() && twice.is_empty(), "{} lost, {} answered twice", lost.len(), twice.len());
    Ok(())
}
