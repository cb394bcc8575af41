//! The benchmark scenarios: idle cost, cold start, per-message overhead, reconnect, backlog
//! drain and (opt-in) soak, each for hermes and, where it applies, for the bare-library echo
//! bot in the same run. Nothing here asserts a timing: it measures and reports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hermes_agent::loopback::LoopbackLlm;
use wa_sim::{Fault, Sim, SimEvent};

use crate::plots::Line;
use crate::procs::{EchoHome, HermesHome, Proc, TICKS_PER_SEC, build_hermes};
use crate::report::{Figure, Stats, answers_per_message, lost_and_twice, machine, markdown, numbers_after};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Seconds of idling before memory and CPU are read.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Messages for the per-message overhead.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Messages queued while the gateway is down, for the backlog drain.
    #[arg(long, default_value_t = 10_000)]
    backlog: usize,
    /// Repetitions of cold start and reconnect.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Minutes of soak (steady traffic from 50 contacts, a socket drop every 5 minutes, one
    /// redelivery storm); 0 skips it.
    #[arg(long, default_value_t = 0)]
    soak_minutes: u64,
    /// Messages per second during the soak, from the 50 contacts together.
    #[arg(long, default_value_t = 1.0)]
    soak_rate: f64,
    /// Seconds between socket drops in the soak (what grows at a reconnect shows sooner).
    #[arg(long, default_value_t = 300)]
    soak_drop_secs: u64,
    /// The scale scenario: the same gateway with an empty database and with a large one
    /// (`--scale-rows` journal rows over 10,000 chats, about 2 GB); off by default (it writes
    /// that much to the temporary directory).
    #[arg(long)]
    scale: bool,
    /// Journal rows in the large database of the scale scenario.
    #[arg(long, default_value_t = 1_000_000)]
    scale_rows: usize,
    /// Only the scale scenario (results not written).
    #[arg(long)]
    only_scale: bool,
    /// Only the soak (results not written, except its plots).
    #[arg(long)]
    only_soak: bool,
    /// Where results.json and RESULTS.md go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Tiny counts, to check that the runner works (results not written).
    #[arg(long)]
    quick: bool,
    /// Only the backlog drain (results not written), keeping its HERMES_HOME for a look.
    #[arg(long)]
    only_backlog: bool,
    /// Text round trips for the media scenario, alone and beside 16 MB videos; 0 skips it.
    #[arg(long, default_value_t = 100)]
    media_messages: usize,
    /// Only the media scenario (results not written).
    #[arg(long)]
    only_media: bool,
    /// Only the per-message latency, hermes and both echo bots (results not written).
    #[arg(long)]
    only_latency: bool,
    /// Round trips through hermes to the real Hermes Agent (`hermes-agent` from PyPI, in a
    /// virtualenv under the bench target directory), beside the same turns sent straight to
    /// its API server; 0 skips it.
    #[arg(long, default_value_t = 200)]
    agent_messages: usize,
    /// Only the Hermes Agent scenario (results not written).
    #[arg(long)]
    only_agent: bool,
}

const HERMES: &str = "15550100001";
const HISTORY: &str = "15550100002";
const ECHO: &str = "15550100003";
/// The echo bot on the library's own transport (no TCP_NODELAY).
const ECHO_STOCK: &str = "15550100004";
/// The scale scenario's two gateways: an empty database, and a large one.
const SCALE_EMPTY: &str = "15550100005";
const SCALE_FULL: &str = "15550100006";
/// The gateway in front of the real Hermes Agent.
const AGENT: &str = "15550100007";
const WAIT: Duration = Duration::from_secs(120);

fn contact(i: usize) -> String {
    format!("49152{:08}", i)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Bench {
    sim: Sim,
    llm: LoopbackLlm,
    hermes_bin: PathBuf,
    /// Where the pictures go (`bench/plots`), when this run writes its results.
    plots: Option<PathBuf>,
}

/// One backlog drain, as the contacts and `/proc` saw it.
struct Drain {
    n: usize,
    /// The queued messages' ids, in the order sent (`backlog {k}.` is `ids[k]`).
    ids: Vec<String>,
    /// From the start to the last one acknowledged, and the process's CPU ticks then; `None`
    /// when some never were (the echo bot's run only).
    acked: Option<(Duration, Option<u64>)>,
    /// From the start to the last one answered, and the CPU ticks then; `None` likewise.
    answered: Option<(Duration, Option<u64>)>,
    /// Per second over time, in 250 ms steps.
    ack_rate: Vec<(f64, f64)>,
    answer_rate: Vec<(f64, f64)>,
    /// How many answers each message got.
    answers: Vec<usize>,
}

impl Drain {
    fn lost_and_twice(&self) -> (usize, usize) {
        lost_and_twice(&self.answers)
    }

    fn ack_rate_overall(&self) -> Option<f64> {
        self.acked.map(|(after, _)| self.n as f64 / after.as_secs_f64())
    }

    /// CPU milliseconds per message, from the start to `moment` (the answers to the first
    /// ones run beside the acknowledging of the last).
    fn cpu_ms_per_message(&self, moment: Option<(Duration, Option<u64>)>) -> Option<f64> {
        moment.and_then(|(_, ticks)| ticks).map(|t| t as f64 / TICKS_PER_SEC * 1000.0 / self.n as f64)
    }
}

impl Bench {
    /// Draws a picture when this run keeps its results; a picture that fails is said, not fatal.
    fn plot(&self, name: &str, draw: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) {
        let Some(dir) = &self.plots else { return };
        let path = dir.join(name);
        if let Err(e) = std::fs::create_dir_all(dir).map_err(anyhow::Error::from).and_then(|()| draw(&path)) {
            eprintln!("   plot {}: {e:#}", path.display());
        }
    }
}

pub async fn run(mut opts: Options) -> anyhow::Result<()> {
    if opts.quick {
        (opts.idle_secs, opts.messages, opts.backlog, opts.runs, opts.media_messages, opts.agent_messages) =
            (3, 20, 200, 2, 10, 10);
    }
    let started = Instant::now();
    let hermes_bin = build_hermes()?;
    let dir = tempfile::Builder::new().prefix("hermes-bench-").tempdir()?;
    let sim = Sim::start().await?;
    // Formatting every stanza for the event log would be the simulator's cost, not theirs.
    sim.record_stanzas(false);
    let llm = LoopbackLlm::start(0).await?;
    let keep = !(opts.quick
        || opts.only_backlog
        || opts.only_media
        || opts.only_latency
        || opts.only_scale
        || opts.only_agent);
    let plots = keep.then(|| opts.out.join("plots"));
    let b = Bench { sim, llm, hermes_bin, plots };
    for i in 0..100 {
        b.sim.add_phone(&contact(i));
    }
    let mut figures = Vec::new();
    if opts.only_backlog {
        let hermes = HermesHome::link(&b.hermes_bin, dir.path(), &b.sim, HERMES, &b.llm.base_url())?;
        let (echo_home, echo) = EchoHome::link(dir.path(), &b.sim, ECHO, false)?;
        echo.stop();
        let f = b.backlog(&hermes, opts.backlog, &echo_home).await?;
        println!("{}", markdown(&f, &machine(), "now", "backlog only"));
        eprintln!("kept: {}", dir.keep().display());
        return Ok(());
    }

    if opts.only_scale {
        let f = b.scale(dir.path(), &opts).await?;
        println!("{}", markdown(&f, &machine(), "now", "scale only"));
        return Ok(());
    }

    if opts.only_soak {
        let hermes = HermesHome::link(&b.hermes_bin, dir.path(), &b.sim, HERMES, &b.llm.base_url())?;
        let f = b.soak(&hermes, opts.soak_minutes.max(1), opts.soak_rate, opts.soak_drop_secs).await?;
        println!("{}", markdown(&f, &machine(), "now", &format!("soak only, {} min", opts.soak_minutes)));
        return Ok(());
    }

    if opts.only_media {
        let hermes = HermesHome::link(&b.hermes_bin, dir.path(), &b.sim, HERMES, &b.llm.base_url())?;
        let f = b.media(&hermes, opts.media_messages).await?;
        let when = std::process::Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output().ok();
        let when = when.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
        let md =
            markdown(&f, &machine(), &when, &format!("media only, {} text round trips each way", opts.media_messages));
        println!("{md}");
        if !opts.quick {
            std::fs::create_dir_all(&opts.out)?;
            std::fs::write(opts.out.join("MEDIA.md"), md)?;
            eprintln!("written: {}/MEDIA.md", opts.out.display());
        }
        return Ok(());
    }

    if opts.only_agent {
        let (_, echo) = EchoHome::link(dir.path(), &b.sim, ECHO, false)?;
        let f = b.agent(dir.path(), opts.agent_messages).await?;
        echo.stop();
        println!(
            "{}",
            markdown(&f, &machine(), "now", &format!("Hermes Agent only, {} messages", opts.agent_messages))
        );
        return Ok(());
    }

    if opts.only_latency {
        let hermes = HermesHome::link(&b.hermes_bin, dir.path(), &b.sim, HERMES, &b.llm.base_url())?;
        let (_, echo) = EchoHome::link(dir.path(), &b.sim, ECHO, false)?;
        let (_, echo_stock) = EchoHome::link(dir.path(), &b.sim, ECHO_STOCK, true)?;
        let cursor = b.sim.cursor();
        let gw = hermes.gateway(&b.hermes_bin, &b.sim)?;
        b.wait_active(cursor, HERMES).await?;
        let f = b.per_message(opts.messages).await?;
        gw.stop();
        echo.stop();
        echo_stock.stop();
        println!("{}", markdown(&f, &machine(), "now", &format!("latency only, {} messages", opts.messages)));
        return Ok(());
    }

    eprintln!("linking hermes (x2) and the echo bots...");
    let hermes = HermesHome::link(&b.hermes_bin, dir.path(), &b.sim, HERMES, &b.llm.base_url())?;
    let history = HermesHome::link(&b.hermes_bin, dir.path(), &b.sim, HISTORY, &b.llm.base_url())?;
    fill_history(&history, 1000)?;
    let (echo_home, echo) = EchoHome::link(dir.path(), &b.sim, ECHO, false)?;
    let (_, echo_stock) = EchoHome::link(dir.path(), &b.sim, ECHO_STOCK, true)?;

    eprintln!("1. idle ({} s)...", opts.idle_secs);
    let cursor = b.sim.cursor();
    let gw = hermes.gateway(&b.hermes_bin, &b.sim)?;
    let gw_history = history.gateway(&b.hermes_bin, &b.sim)?;
    b.wait_active(cursor, HERMES).await?;
    b.wait_active(cursor, HISTORY).await?;
    figures.extend(idle(&[&gw, &gw_history, &echo], opts.idle_secs).await);
    gw_history.stop();

    eprintln!("3. per-message overhead ({} messages, each)...", opts.messages);
    figures.extend(b.per_message(opts.messages).await?);
    if opts.agent_messages > 0 {
        eprintln!("9. Hermes Agent ({} round trips, each way)...", opts.agent_messages);
        figures.extend(b.agent(dir.path(), opts.agent_messages).await?);
    }
    echo.stop();
    echo_stock.stop();

    eprintln!("4. reconnect ({} runs, each)...", opts.runs);
    gw.stop();
    let hermes_reconnect =
        b.reconnect(HERMES, opts.runs, "You wrote", || hermes.gateway(&b.hermes_bin, &b.sim)).await?;
    let echo_reconnect = b.reconnect(ECHO, opts.runs, "echo: ", || echo_home.start(&b.sim, false)).await?;
    figures.push(
        Figure::new("4. reconnect", "socket dropped -> connected again", "ms", hermes_reconnect.0)
            .baseline(echo_reconnect.0)
            .note(
                "each run is a lone blip: the first drop of a fresh process, which is also what a gateway healthy for a \
                 minute sees; hermes' first retry waits a random 0-1 s (full jitter), so its median is about 0.5 s, \
                 while the library retries at once; drops that repeat within a minute back off further, by design",
            )
            .target_median("<= 2000 ms", 2000.0),
    );
    figures.push(
        Figure::new("4. reconnect", "socket dropped -> next message answered", "ms", hermes_reconnect.1)
            .baseline(echo_reconnect.1),
    );

    eprintln!("2. cold start ({} runs)...", opts.runs);
    let cold_hermes = b.cold_start(opts.runs, HERMES, || hermes.gateway(&b.hermes_bin, &b.sim)).await?;
    let cold_echo = b.cold_start(opts.runs, ECHO, || echo_home.start(&b.sim, false)).await?;
    figures.push(
        Figure::new("2. cold start", "start -> first queued message journaled", "ms", cold_hermes)
            .baseline(cold_echo)
            .note("with an existing session: process start, stores opened, Noise IK handshake, login, offline delivery, journal commit")
            .target_median("<= 300 ms", 300.0),
    );

    eprintln!("5. backlog drain ({} messages)...", opts.backlog);
    figures.extend(b.backlog(&hermes, opts.backlog, &echo_home).await?);

    if opts.media_messages > 0 {
        eprintln!("7. media ({} text round trips, each way)...", opts.media_messages);
        figures.extend(b.media(&hermes, opts.media_messages).await?);
    }

    if opts.soak_minutes > 0 {
        eprintln!("6. soak ({} min)...", opts.soak_minutes);
        figures.extend(b.soak(&hermes, opts.soak_minutes, opts.soak_rate, opts.soak_drop_secs).await?);
    }

    if opts.scale {
        eprintln!("8. scale ({} journal rows)...", opts.scale_rows);
        figures.extend(b.scale(dir.path(), &opts).await?);
    }

    let machine = machine();
    let when = std::process::Command::new("date").arg("-u").arg("+%Y-%m-%d %H:%M UTC").output().ok();
    let when = when.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
    let settings = format!(
        "idle {} s, {} messages, backlog {}, {} runs, soak {} min at {} msg/s, scale {}; total {:.0} s",
        opts.idle_secs,
        opts.messages,
        opts.backlog,
        opts.runs,
        opts.soak_minutes,
        opts.soak_rate,
        if opts.scale { format!("{} rows", opts.scale_rows) } else { "off".to_owned() },
        started.elapsed().as_secs_f64()
    );
    let mut md = markdown(&figures, &machine, &when, &settings);
    if let Some(dir) = &b.plots {
        md.push_str(&crate::report::plot_links(dir, &opts.out));
    }
    println!("{md}");
    if !opts.quick {
        std::fs::create_dir_all(&opts.out)?;
        let json = serde_json::json!({ "when": when, "machine": machine, "settings": settings, "figures": figures });
        std::fs::write(opts.out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
        std::fs::write(opts.out.join("RESULTS.md"), md)?;
        eprintln!("written: {}/results.json, {}/RESULTS.md", opts.out.display(), opts.out.display());
    }
    Ok(())
}

impl Figure {
    /// A target on the median, in `unit`s.
    fn target_median(self, words: &str, limit: f64) -> Figure {
        let met = self.hermes.median <= limit;
        self.target(words, met)
    }

    fn target_p99(self, words: &str, limit: f64) -> Figure {
        let met = self.hermes.p99 <= limit;
        self.target(words, met)
    }
}

/// 1,000 chats of history in the store, as months of use would leave.
fn fill_history(home: &HermesHome, chats: usize) -> anyhow::Result<()> {
    let state = home.path.join("state");
    std::fs::create_dir_all(&state)?;
    let mut store = hermes_store::Store::open(&state.join("hermes.db"))?;
    for c in 0..chats {
        let chat = hermes_core::identity::Jid::from_wire(&format!("{}@s.whatsapp.net", contact(10_000 + c)));
        for t in 0..10 {
            let q = format!("question {t} of chat {c}: {}", "lorem ipsum ".repeat(8));
            let a = format!("answer {t}: {}", "dolor sit amet ".repeat(12));
            store.commit_reply(&hermes_store::Reply {
                chat: &chat,
                answers: &[],
                exchange: Some((&q, &a)),
                messages: &[],
                files: &[],
                at: 1_790_000_000,
                turn: None,
            })?;
        }
    }
    Ok(())
}

/// Months of traffic in a gateway's database: `rows` messages over `chats` chats, each with
/// its reply and two history turns, within the retention. Returns the file's size in bytes.
fn fill_scale(home: &HermesHome, chats: usize, rows: usize) -> anyhow::Result<u64> {
    let state = home.path.join("state");
    std::fs::create_dir_all(&state)?;
    let path = state.join("hermes.db");
    // Created and migrated by the store itself, then filled in bulk.
    drop(hermes_store::Store::open(&path)?);
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let span = 29 * 86_400;
    let question = "How do I get the quarterly numbers into the shared sheet before Friday? ".repeat(3);
    let answer = "Open the sheet, paste the figures into the Q3 tab, then check the totals row. ".repeat(6);
    const BATCH: usize = 20_000;
    for start in (0..rows).step_by(BATCH) {
        let tx = conn.transaction()?;
        {
            let mut inbox = tx.prepare_cached(
                "INSERT INTO inbox (chat, sender, msg_id, ts, text, state) VALUES (?1, ?1, ?2, ?3, ?4, 'handled')",
            )?;
            let mut outbox = tx.prepare_cached(
                "INSERT INTO outbox (chat, msg_id, text, created_at, sent_at, state) VALUES (?1, ?2, ?3, ?4, ?4, 'sent')",
            )?;
            let mut history =
                tx.prepare_cached("INSERT INTO history (chat, role, content, at) VALUES (?1, ?2, ?3, ?4)")?;
            for i in start..(start + BATCH).min(rows) {
                let chat = format!("{}@s.whatsapp.net", contact(100_000 + i % chats));
                let at = now - span + (span * i as i64) / rows as i64;
                let q = format!("{question}({i})");
                inbox.execute(rusqlite::params![chat, format!("3EB0{i:016X}"), at, q])?;
                outbox.execute(rusqlite::params![chat, format!("HRM{i:016X}"), answer, at])?;
                history.execute(rusqlite::params![chat, "user", q, at])?;
                history.execute(rusqlite::params![chat, "assistant", answer, at])?;
            }
        }
        tx.commit()?;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(conn);
    Ok(std::fs::metadata(&path)?.len())
}

async fn idle(procs: &[&Proc], secs: u64) -> Vec<Figure> {
    let names = ["hermes", "hermes, 1,000 chats of history", "echo bot"];
    let start: Vec<Option<u64>> = procs.iter().map(|p| p.cpu_ticks()).collect();
    let began = Instant::now();
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); procs.len()];
    let step = Duration::from_secs(10).min(Duration::from_secs(secs.max(1)));
    while began.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(step).await;
        for (i, p) in procs.iter().enumerate() {
            if let Some(kib) = p.rss_kib() {
                rss[i].push(kib as f64 / 1024.0);
            }
        }
    }
    let elapsed = began.elapsed().as_secs_f64();
    let cpu: Vec<f64> = procs
        .iter()
        .zip(&start)
        .map(|(p, s)| match (p.cpu_ticks(), s) {
            (Some(e), Some(s)) => (e - s) as f64 / TICKS_PER_SEC / elapsed * 100.0,
            _ => f64::NAN,
        })
        .collect();
    let mut out = Vec::new();
    for i in 0..2 {
        let mut f = Figure::new(
            "1. idle",
            if i == 0 { "resident memory" } else { "resident memory, 1,000 chats" },
            "MiB",
            Stats::of(rss[i].clone()),
        )
        .baseline(Stats::of(rss[2].clone()))
        .target_median("<= 30 MiB", 30.0);
        f.note = Some(format!("{}: sampled every 10 s over {secs} s of idling after linking", names[i]));
        out.push(f);
    }
    out.push(
        Figure::new("1. idle", "CPU while idle", "%", Stats::of(vec![cpu[0]]))
            .baseline(Stats::of(vec![cpu[2]]))
            .note(format!("one core = 100 %, over {elapsed:.0} s; with 1,000 chats of history: {:.3} %", cpu[1])),
    );
    out
}

impl Bench {
    async fn wait_active(&self, cursor: usize, account: &str) -> anyhow::Result<()> {
        let account = account.to_owned();
        self.sim
            .wait_for(cursor, WAIT, move |e| matches!(e, SimEvent::Active { phone, .. } if *phone == account))
            .await
            .with_context(|| "the client did not connect")?;
        Ok(())
    }

    /// Sends `text` from `from` to `to` and waits for the reply that contains `needle`.
    async fn round_trip(&self, from: &str, to: &str, text: &str, needle: &str) -> anyhow::Result<Instant> {
        let cursor = self.sim.cursor();
        self.sim.send_text(from, to, text, false).await?;
        let (from, needle) = (from.to_owned(), needle.to_owned());
        self.sim
            .wait_for(cursor, WAIT, move |e| {
                matches!(e, SimEvent::MessageReceived { contact, text, .. } if *contact == from && text.contains(&needle))
            })
            .await?;
        Ok(Instant::now())
    }

    /// Ten round trips to set up the sessions, then `n` timed ones from ten contacts, in ms;
    /// `reply` is what the reply to a text holds.
    async fn timed_round_trips(
        &self,
        account: &str,
        n: usize,
        reply: impl Fn(&str) -> String,
    ) -> anyhow::Result<Vec<f64>> {
        for i in 0..10 {
            let text = format!("warm {i}");
            self.round_trip(&contact(i), account, &text, &reply(&text)).await?;
        }
        let mut took = Vec::with_capacity(n);
        for k in 0..n {
            let text = format!("m{k}");
            let t0 = Instant::now();
            let done = self.round_trip(&contact(k % 10), account, &text, &reply(&text)).await?;
            took.push(ms(done - t0));
        }
        Ok(took)
    }

    /// hermes in front of the real Hermes Agent (its model the same instant loopback server):
    /// WhatsApp round trips through both, the same turns sent straight to Hermes' API server
    /// (one session per contact in both, so the history Hermes loads grows alike), and echo
    /// bot round trips on the same transport. What hermes adds in front of the agent is the
    /// first less the other two (medians).
    async fn agent(&self, dir: &Path, n: usize) -> anyhow::Result<Vec<Figure>> {
        use hermes_agent::loopback::real;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
        let venv = real::venv(&target.join("bench").join("hermes-agent-venv")).map_err(anyhow::Error::msg)?;
        let home = HermesHome::link(&self.hermes_bin, dir, &self.sim, AGENT, &self.llm.base_url())?;
        let (port, key) = (real::free_port(), format!("bench-key-{:016x}", rand::random::<u64>()));
        let mut env = std::fs::read_to_string(home.path.join(".env")).unwrap_or_default();
        env.push_str(&format!(
            "API_SERVER_ENABLED=true\nAPI_SERVER_KEY={key}\nAPI_SERVER_HOST=127.0.0.1\nAPI_SERVER_PORT={port}\n"
        ));
        std::fs::write(home.path.join(".env"), env)?;
        let config = std::fs::read_to_string(home.path.join("config.yaml"))?.replacen(
            "model:\n",
            &format!("model:\n{}", real::MODEL_LINES),
            1,
        );
        std::fs::write(home.path.join("config.yaml"), format!("{config}{}", real::QUIET_CONFIG))?;
        let agent = real::RealHermes::start(&venv, &home.path, port, WAIT).map_err(anyhow::Error::msg)?;
        let cursor = self.sim.cursor();
        let gw = home.gateway(&self.hermes_bin, &self.sim)?;
        self.wait_active(cursor, AGENT).await?;
        let via = self.timed_round_trips(AGENT, n, |t| format!("\"{t}\"")).await?;
        let api = hermes_agent::HermesApi::new(&format!("http://127.0.0.1:{port}/v1"), &key);
        let system = hermes_core::hermes_api::system_context(&hermes_core::hermes_api::Context {
            phone: Some("15550000000"),
            group: None,
            per_user: true,
        });
        let mut direct = Vec::with_capacity(n);
        for k in 0..n + 10 {
            let body = hermes_agent::HermesApi::turn_body(
                &system,
                &hermes_agent::Message::new(hermes_agent::Speaker::User, format!("m{k}")),
            );
            let (session, idem) = (format!("bench-direct-{}", k % 10), format!("bench-{k}"));
            let request = hermes_agent::hermes_api::TurnRequest {
                session_id: &session,
                memory_key: &session,
                idempotency_key: &idem,
                body: &body,
            };
            let t0 = Instant::now();
            api.turn(&request).await.map_err(|e| anyhow::anyhow!("a direct turn failed: {}", e.error))?;
            // The first ten set the sessions up, as the WhatsApp side's warm-up does.
            if k >= 10 {
                direct.push(ms(t0.elapsed()));
            }
        }
        let echo = self.timed_round_trips(ECHO, n, |t| format!("echo: {t}")).await?;
        gw.stop();
        agent.kill();
        let (via, direct, echo) = (Stats::of(via), Stats::of(direct), Stats::of(echo));
        let adds = via.median - direct.median - echo.median;
        Ok(vec![
            Figure::new("9. Hermes Agent", "WhatsApp round trip through hermes and Hermes Agent", "ms", via.clone())
                .baseline(direct.clone())
                .note(
                    "baseline: the same turn sent straight to Hermes' API server over HTTP (non-streaming, session \
                     header, idempotency key); Hermes' model is the instant loopback server, so this is Hermes' own time \
                     per turn",
                ),
            Figure::new("9. Hermes Agent", "what hermes adds in front of Hermes Agent (medians)", "ms", Stats::of(vec![adds]))
                .note(format!(
                    "round trip {:.1} ms - direct API call {:.1} ms - echo bot round trip {:.1} ms (WhatsApp's part on \
                     the same transport); hermes journals, decides, keeps the turn before sending it, commits the \
                     answer with the turn closed, sends",
                    via.median, direct.median, echo.median
                ))
                .target("<= 10 ms", adds <= 10.0),
        ])
    }

    async fn per_message(&self, n: usize) -> anyhow::Result<Vec<Figure>> {
        // Warm up (sessions established with each contact), not measured.
        for i in 0..10 {
            let c = contact(i);
            self.round_trip(&c, HERMES, &format!("warm {i}"), &format!("warm {i}")).await?;
        }
        let (mut inbound, mut outbound, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..n {
            let c = contact(k % 10);
            let text = format!("m{k}");
            let before = self.llm.requests().len();
            let t0 = Instant::now();
            let cursor = self.sim.cursor();
            self.sim.send_text(&c, HERMES, &text, false).await?;
            if !self.llm.wait_for_requests(before + 1, WAIT).await {
                bail!("the model was not asked about {text}");
            }
            let t1 = Instant::now();
            let needle = format!("\"{text}\"");
            let cc = c.clone();
            self.sim
                .wait_for(cursor, WAIT, move |e| {
                    matches!(e, SimEvent::MessageReceived { contact, text, .. } if *contact == cc && text.contains(&needle))
                })
                .await?;
            let t2 = Instant::now();
            inbound.push(ms(t1 - t0));
            outbound.push(ms(t2 - t1));
            total.push(ms(t2 - t0));
        }
        // The same round trips through the echo bots: on hermes' transport, and on the stock one.
        let echo = self.timed_round_trips(ECHO, n, |t| format!("echo: {t}")).await?;
        let echo_stock = self.timed_round_trips(ECHO_STOCK, n, |t| format!("echo: {t}")).await?;
        self.plot("latency.svg", |path| {
            crate::plots::distribution(
                path,
                &format!("Per message on loopback, instant model ({n} messages each)"),
                &[
                    Line::cdf("hermes: contact sends -> request at the model", &inbound),
                    Line::cdf("hermes: model answers -> reply at the contact", &outbound),
                    Line::cdf("hermes: round trip", &total),
                    Line::cdf("echo bot (baseline): round trip, same transport", &echo),
                    Line::cdf("echo bot: round trip, whatsapp-rust's stock transport", &echo_stock),
                ],
            )
        });
        let total = Stats::of(total);
        let echo = Stats::of(echo);
        let within = total.median <= 1.2 * echo.median;
        Ok(vec![
            Figure::new("3. per message", "contact sends -> request at the LLM", "ms", Stats::of(inbound))
                .note("includes the simulator encrypting and delivering the message, and the client decrypting it")
                .target_p99("p99 <= 5 ms", 5.0),
            Figure::new("3. per message", "LLM answers -> reply at the contact", "ms", Stats::of(outbound))
                .note("includes the LLM server's own (instant) answer, the client encrypting, and the contact decrypting")
                .target_p99("p99 <= 5 ms", 5.0),
            Figure::new("3. per message", "round trip (contact -> contact)", "ms", total.clone())
                .baseline(echo.clone())
                .note(
                    "the baseline echoes at once, on the same transport as hermes (TCP_NODELAY); hermes journals, \
                     decides, asks the LLM over HTTP, commits the outbox, sends",
                )
                .target_median("median <= 10 ms", 10.0),
            Figure::new("3. per message", "round trip, hermes / baseline", "x", Stats::of(vec![total.median / echo.median]))
                .target("<= 1.2", within),
            Figure::new("3. per message", "round trip, baseline on the stock transport", "ms", Stats::of(echo_stock))
                .baseline(echo)
                .note("the same echo bot on whatsapp-rust's own transport, which does not set TCP_NODELAY; its baseline is the echo bot with it"),
        ])
    }

    /// Waits for `n` matching events after `cursor`, saying how many there are when it takes long.
    /// Waits until `n` events match, saying how many so far every 10 s; gives up when none
    /// has come for `STALL` (or after `WAIT * 5` in all).
    async fn count(&self, cursor: usize, n: usize, what: &str, pred: impl Fn(&SimEvent) -> bool) -> anyhow::Result<()> {
        const STALL: Duration = Duration::from_secs(60);
        let deadline = Instant::now() + WAIT * 5;
        let (mut have, mut progress) = (0, Instant::now());
        loop {
            match self.sim.wait_count(cursor, n, Duration::from_secs(10), &pred).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let now = self.sim.events_since(cursor).iter().filter(|e| pred(e)).count();
                    if now > have {
                        (have, progress) = (now, Instant::now());
                    }
                    if Instant::now() >= deadline || progress.elapsed() >= STALL {
                        bail!("{what}: {have} of {n}, none more for {} s: {e}", progress.elapsed().as_secs());
                    }
                    eprintln!("   {what}: {have} of {n} so far");
                }
            }
        }
    }

    async fn reconnect(
        &self,
        account: &str,
        runs: usize,
        needle: &str,
        start: impl Fn() -> anyhow::Result<Proc>,
    ) -> anyhow::Result<(Stats, Stats)> {
        let (mut connected, mut answered) = (Vec::new(), Vec::new());
        for r in 0..runs {
            let cursor = self.sim.cursor();
            let proc = start()?;
            self.wait_active(cursor, account).await?;
            let cursor = self.sim.cursor();
            let t0 = Instant::now();
            self.sim.inject(Fault::DropConnections)?;
            self.wait_active(cursor, account).await?;
            connected.push(ms(t0.elapsed()));
            let c = contact(20 + r);
            let done = self.round_trip(&c, account, &format!("after drop {r}"), needle).await?;
            answered.push(ms(done - t0));
            proc.stop();
        }
        Ok((Stats::of(connected), Stats::of(answered)))
    }

    async fn cold_start(
        &self,
        runs: usize,
        account: &str,
        start: impl Fn() -> anyhow::Result<Proc>,
    ) -> anyhow::Result<Stats> {
        let mut out = Vec::new();
        for r in 0..runs {
            // Queued while it is down: the first thing it receives when it is back.
            let id = self.sim.send_text(&contact(40 + r), account, &format!("while you were away {r}"), false).await?;
            let cursor = self.sim.cursor();
            let t0 = Instant::now();
            let proc = start()?;
            let (account_s, id_s) = (account.to_owned(), id.clone());
            self.sim
                .wait_for(cursor, WAIT, move |e| {
                    matches!(e, SimEvent::MessageDelivered { phone, id, .. } if *phone == account_s && *id == id_s)
                })
                .await?;
            out.push(ms(t0.elapsed()));
            // Let it answer before stopping, so the next run starts from a drained queue.
            let needle = format!("while you were away {r}");
            let c = contact(40 + r);
            let cc = c.clone();
            self.sim
                .wait_for(cursor, WAIT, move |e| {
                    matches!(e, SimEvent::MessageReceived { contact, text, .. } if *contact == cc && text.contains(&needle))
                })
                .await?;
            proc.stop();
        }
        Ok(Stats::of(out))
    }

    /// Messages queued while `account` is down, from 100 contacts, then drained by what
    /// `start` starts: how fast they are acknowledged (for hermes: journaled, each ack after
    /// its commit) and answered, and the process's CPU time for it. `lenient`: a stall is
    /// measured (what was never answered counted as lost), not an error.
    async fn drain(
        &self,
        account: &str,
        n: usize,
        lenient: bool,
        start: impl FnOnce() -> anyhow::Result<Proc>,
    ) -> anyhow::Result<Drain> {
        let mut ids = Vec::with_capacity(n);
        for k in 0..n {
            ids.push(self.sim.send_text(&contact(k % 100), account, &format!("backlog {k}."), false).await?);
        }
        let cursor = self.sim.cursor();
        let t0 = Instant::now();
        let proc = start()?;
        let set: std::collections::HashSet<String> = ids.iter().cloned().collect();
        let is_acked = |e: &SimEvent| matches!(e, SimEvent::MessageDelivered { phone, id, .. } if phone == account && set.contains(id));
        let is_answer = |e: &SimEvent| matches!(e, SimEvent::MessageReceived { contact, text, .. } if contact.starts_with("49152") && text.contains("backlog "));
        // Both rates over time, sampled beside the counting until everything is answered.
        let done = std::sync::atomic::AtomicBool::new(false);
        let sampler = async {
            const STEP: Duration = Duration::from_millis(250);
            let (mut acked, mut answered) = (Vec::new(), Vec::new());
            let (mut last_j, mut last_a) = (0usize, 0usize);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + STEP, STEP);
            let deadline = Instant::now() + WAIT * 5;
            while Instant::now() < deadline {
                tick.tick().await;
                let events = self.sim.events_since(cursor);
                let j = events.iter().filter(|e| is_acked(e)).count();
                let a = events.iter().filter(|e| is_answer(e)).count();
                let at = t0.elapsed().as_secs_f64();
                acked.push((at, (j - last_j) as f64 / STEP.as_secs_f64()));
                answered.push((at, (a - last_a) as f64 / STEP.as_secs_f64()));
                (last_j, last_a) = (j, a);
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
            (acked, answered)
        };
        // A stall ends the run for hermes (a message it never answers is a bug); the echo bot
        // has no outbox, so what it fails to send is lost, and counted.
        let stalled = |e: anyhow::Error| {
            if lenient {
                eprintln!("   {account}: {e:#}");
                Ok(None)
            } else {
                Err(e)
            }
        };
        // The process's CPU time too: on a shared machine it moves less from run to run than
        // the rate does, so an A/B of two builds reads it first.
        let counting = async {
            let counted = async {
                let acked = match self.count(cursor, n, "acknowledged", is_acked).await {
                    Ok(()) => Some((t0.elapsed(), proc.cpu_ticks())),
                    Err(e) => stalled(e)?,
                };
                let answered = match self.count(cursor, n, "answered", is_answer).await {
                    Ok(()) => Some((t0.elapsed(), proc.cpu_ticks())),
                    Err(e) => stalled(e)?,
                };
                anyhow::Ok((acked, answered))
            }
            .await;
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            counted
        };
        let (counted, (ack_rate, answer_rate)) = tokio::join!(counting, sampler);
        let (acked, answered) = counted?;
        proc.stop();
        let answers = answers_per_message(&self.sim, cursor, "backlog ", n);
        Ok(Drain { n, ids, acked, answered, ack_rate, answer_rate, answers })
    }

    /// The backlog drain of hermes and, with `echo`, of the echo bot on the same backlog: what
    /// the library alone costs is the floor under hermes' figures.
    async fn backlog(&self, hermes: &HermesHome, n: usize, echo: &EchoHome) -> anyhow::Result<Vec<Figure>> {
        let gw = self.drain(HERMES, n, false, || hermes.gateway(&self.hermes_bin, &self.sim)).await?;
        let (lost, twice) = gw.lost_and_twice();
        if lost + twice > 0 {
            let db = hermes_store::Store::open(&hermes.path.join("state").join("hermes.db"))?;
            for (k, c) in gw.answers.iter().enumerate().filter(|(_, c)| **c != 1).take(10) {
                let who = hermes_core::identity::Jid::from_wire(&format!("{}@s.whatsapp.net", contact(k % 100)));
                let id = hermes_core::identity::MessageId::new(gw.ids[k].as_str());
                let journaled = db.is_journaled(&who, &who, &id)?;
                eprintln!("   backlog {k} (id {}): answered {c} times; journaled: {journaled}", gw.ids[k]);
            }
        }
        let bot = self.drain(ECHO, n, true, || echo.start(&self.sim, false)).await?;
        let lines = [
            Line::new("hermes: messages journaled (acknowledged after their commit)", gw.ack_rate.clone()),
            Line::new("hermes: replies received by the contacts (bounded by the model)", gw.answer_rate.clone()),
            Line::new("echo bot: messages acknowledged (no journal)", bot.ack_rate.clone()),
        ];
        self.plot("drain.svg", |path| {
            crate::plots::over_time(
                path,
                &format!("Backlog drain: {n} messages queued while the gateway was down"),
                ("seconds since the gateway started", "per second (250 ms steps)"),
                &lines,
                Some((5000.0, "target: 5,000 journaled per second")),
            )
        });
        let with_baseline = |f: Figure, b: Option<f64>| match b {
            Some(b) => f.baseline(Stats::of(vec![b])),
            None => f,
        };
        // Why the echo bot lost some, if it did: read from its log once, for both notes.
        let (bot_lost, bot_twice) = bot.lost_and_twice();
        let why = if bot_lost > 0 { echo.failed_sends() } else { String::new() };
        let echo_note = |what: &str| {
            format!(
                "; baseline: the echo bot draining the same backlog, {what} (lost: {bot_lost}, answered more than \
                 once: {bot_twice}{why})"
            )
        };
        let seconds = |moment: Option<(Duration, Option<u64>)>| moment.map(|(after, _)| after.as_secs_f64());
        let (rate, journaled) = (
            gw.ack_rate_overall().context("hermes' drain ends when all are journaled")?,
            seconds(gw.acked).unwrap_or(f64::NAN),
        );
        let answered = seconds(gw.answered).unwrap_or(f64::NAN);
        let mut figures = vec![
            with_baseline(
                Figure::new("5. backlog", "messages journaled per second", "msg/s", Stats::of(vec![rate])),
                bot.ack_rate_overall(),
            )
            .note(format!(
                "{n} messages queued while down; all journaled {journaled:.2} s after the start{}",
                echo_note("each acknowledged as the library does, with no journal")
            ))
            .target(">= 5000 msg/s", rate >= 5000.0),
            with_baseline(
                Figure::new("5. backlog", "start -> all answered", "s", Stats::of(vec![answered])),
                seconds(bot.answered),
            )
            .note(format!(
                "lost: {lost}, answered more than once: {twice} (counted at the contacts){}",
                echo_note("each echoed at once")
            )),
        ];
        if let (Some(j), Some(a)) = (gw.cpu_ms_per_message(gw.acked), gw.cpu_ms_per_message(gw.answered)) {
            figures.push(
                with_baseline(
                    Figure::new(
                        "5. backlog",
                        "gateway CPU per message, start -> all answered",
                        "ms",
                        Stats::of(vec![a]),
                    ),
                    bot.cpu_ms_per_message(bot.answered),
                )
                .note(format!(
                    "{j:.3} ms per message from the start to the last one journaled{}",
                    bot.cpu_ms_per_message(bot.acked)
                        .map(|e| format!(" (the echo bot: {e:.3} ms to the last one acknowledged)"))
                        .unwrap_or_default()
                )),
            );
        }
        Ok(figures)
    }

    /// Media beside text: a chat's text answers while another chat's 16 MB videos download
    /// (each chat has its own worker; a download must not hold anyone else up), and the
    /// gateway's memory while a 100 MB document streams to disk.
    async fn media(&self, hermes: &HermesHome, n: usize) -> anyhow::Result<Vec<Figure>> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let cursor = self.sim.cursor();
        let gw = hermes.gateway(&self.hermes_bin, &self.sim)?;
        self.wait_active(cursor, HERMES).await?;
        let (texter, sender) = (contact(1), contact(0));
        for i in 0..5 {
            self.round_trip(&texter, HERMES, &format!("warm {i}"), &format!("warm {i}")).await?;
        }
        let mut alone = Vec::new();
        for k in 0..n {
            let t0 = Instant::now();
            let done = self.round_trip(&texter, HERMES, &format!("alone {k}"), &format!("alone {k}")).await?;
            alone.push(ms(done - t0));
        }
        // 16 MB videos from another chat, back to back, each waited for (downloaded, answered).
        let video = wa_sim::Media {
            mime: "video/mp4".into(),
            data: (0..16 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
            seconds: Some(30),
            ..Default::default()
        };
        let stop = AtomicBool::new(false);
        let videos = AtomicUsize::new(0);
        let loader = async {
            while !stop.load(Ordering::Relaxed) {
                let c = self.sim.cursor();
                self.sim.send_media(&sender, HERMES, wa_sim::MediaKind::Video, &video).await?;
                let who = sender.clone();
                self.sim
                    .wait_for(c, WAIT, move |e| {
                        matches!(e, SimEvent::MessageReceived { contact, text, .. } if *contact == who && text.contains("video attachment"))
                    })
                    .await?;
                videos.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        };
        let texts = async {
            let mut beside = Vec::new();
            for k in 0..n {
                let t0 = Instant::now();
                let done = self.round_trip(&texter, HERMES, &format!("beside {k}"), &format!("beside {k}")).await?;
                beside.push(ms(done - t0));
            }
            stop.store(true, Ordering::Relaxed);
            anyhow::Ok(beside)
        };
        let (loaded, beside) = tokio::join!(loader, texts);
        loaded?;
        let beside = beside?;
        let videos = videos.load(Ordering::Relaxed);

        // A 100 MB document: the gateway's RSS sampled while it streams to disk.
        let doc = wa_sim::Media {
            mime: "application/octet-stream".into(),
            data: vec![0x5a; 100_000_000],
            file_name: Some("big.bin".into()),
            ..Default::default()
        };
        let before = gw.rss_kib().unwrap_or(0);
        let c = self.sim.cursor();
        self.sim.send_media(&contact(2), HERMES, wa_sim::MediaKind::Document, &doc).await?;
        let who = contact(2);
        let answered = self.sim.wait_for(c, WAIT, move |e| {
            matches!(e, SimEvent::MessageReceived { contact, text, .. } if *contact == who && text.contains("big.bin"))
        });
        tokio::pin!(answered);
        let (mut peak, mut samples) = (before, 0usize);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let t0 = Instant::now();
        loop {
            tokio::select! {
                r = &mut answered => { r?; break; }
                _ = tick.tick() => {
                    peak = peak.max(gw.rss_kib().unwrap_or(0));
                    samples += 1;
                }
            }
        }
        let took = t0.elapsed();
        gw.stop();
        let growth = (peak.saturating_sub(before)) as f64 / 1024.0;
        let (beside, alone_stats) = (Stats::of(beside), Stats::of(alone.clone()));
        let unchanged = beside.p99 <= alone_stats.p99 * 1.2;
        Ok(vec![
            Figure::new("7. media", "text round trip beside 16 MB videos in another chat", "ms", beside)
                .baseline(alone_stats)
                .target("p99 within 1.2x of the text path alone", unchanged)
                .note(format!(
                    "baseline: the same text round trips with nothing else going on (its p99: {:.1} ms); {videos} videos of \
                     16 MiB were downloaded, decrypted and answered meanwhile (the simulator encrypts each in this process too)",
                    Stats::of(alone.clone()).p99
                )),
            Figure::new("7. media", "gateway RSS growth during a 100 MB document download", "MiB", Stats::of(vec![growth]))
                .note(format!(
                    "RSS sampled {samples} times (every 20 ms) over the {:.1} s from the send to the answer: {:.1} MiB before, \
                     {:.1} MiB at most; streamed to the cache, decrypted in 8 KiB blocks",
                    took.as_secs_f64(),
                    before as f64 / 1024.0,
                    peak as f64 / 1024.0
                ))
                .target("<= 16 MiB (flat, not buffered)", growth <= 16.0),
        ])
    }

    /// The same gateway with an empty database and with months of traffic in it (10,000 chats,
    /// `scale_rows` journal rows with their replies and history, about 2 GB, all within the
    /// retention so none is pruned away): cold start, round trip and resident memory, each
    /// measured the same way on both, one after the other.
    async fn scale(&self, dir: &std::path::Path, opts: &Options) -> anyhow::Result<Vec<Figure>> {
        let empty = HermesHome::link(&self.hermes_bin, dir, &self.sim, SCALE_EMPTY, &self.llm.base_url())?;
        let full = HermesHome::link(&self.hermes_bin, dir, &self.sim, SCALE_FULL, &self.llm.base_url())?;
        let t0 = Instant::now();
        let size = fill_scale(&full, 10_000, opts.scale_rows)?;
        eprintln!("   filled {:.2} GB in {:.0} s", size as f64 / 1e9, t0.elapsed().as_secs_f64());
        let messages = opts.messages.min(500);
        let mut measured = Vec::new();
        for (home, account) in [(&empty, SCALE_EMPTY), (&full, SCALE_FULL)] {
            let cold = self.cold_start(opts.runs.max(5), account, || home.gateway(&self.hermes_bin, &self.sim)).await?;
            let cursor = self.sim.cursor();
            let gw = home.gateway(&self.hermes_bin, &self.sim)?;
            self.wait_active(cursor, account).await?;
            let trips = self.timed_round_trips(account, messages, |t| format!("\"{t}\"")).await?;
            let mut rss = Vec::new();
            for _ in 0..(opts.idle_secs / 5).clamp(2, 12) {
                tokio::time::sleep(Duration::from_secs(5)).await;
                rss.extend(gw.rss_kib().map(|kib| kib as f64 / 1024.0));
            }
            gw.stop();
            measured.push((cold, trips, rss));
        }
        let [(cold_e, trips_e, rss_e), (cold_f, trips_f, rss_f)] =
            <[_; 2]>::try_from(measured).map_err(|_| anyhow::anyhow!("two measurements"))?;
        self.plot("scale.svg", |path| {
            crate::plots::distribution(
                path,
                &format!(
                    "Round trip with an empty and with a {:.1} GB database ({messages} messages each)",
                    size as f64 / 1e9
                ),
                &[
                    Line::cdf("empty database", &trips_e),
                    Line::cdf(format!("{} journal rows", opts.scale_rows), &trips_f),
                ],
            )
        });
        let within = |f: &Stats, e: &Stats| f.median <= e.median * 1.1;
        let (cold_f, rss_f, trips_f) = (cold_f, Stats::of(rss_f), Stats::of(trips_f));
        let (rss_e, trips_e) = (Stats::of(rss_e), Stats::of(trips_e));
        let what = format!(
            "hermes.db of {:.2} GB: 10,000 chats, {} journal rows, as many replies and twice as many history turns, \
             spread over the last 29 days; baseline: the same with an empty database",
            size as f64 / 1e9,
            opts.scale_rows
        );
        Ok(vec![
            Figure::new("8. scale", "cold start, large database", "ms", cold_f.clone())
                .baseline(cold_e.clone())
                .note(what)
                .target("within 10 % of the empty database", within(&cold_f, &cold_e)),
            Figure::new("8. scale", "round trip, large database", "ms", trips_f.clone())
                .baseline(trips_e.clone())
                .target("within 10 % of the empty database", within(&trips_f, &trips_e)),
            Figure::new("8. scale", "resident memory after use, large database", "MiB", rss_f.clone())
                .baseline(rss_e.clone())
                .note("sampled every 5 s after the round trips")
                .target("within 10 % of the empty database", within(&rss_f, &rss_e)),
        ])
    }

    /// Steady traffic for `minutes`: 50 contacts writing `rate` messages a second between them,
    /// a socket drop every `drop_secs` (5 minutes) and, half-way, a redelivery storm of messages already
    /// answered. Every message is timed from its send to its reply (a follower of the event log
    /// stamps each reply as it arrives), every answer is counted at the contacts, and the
    /// gateway's memory is read every 10 s.
    async fn soak(&self, hermes: &HermesHome, minutes: u64, rate: f64, drop_secs: u64) -> anyhow::Result<Vec<Figure>> {
        use std::sync::atomic::{AtomicBool, Ordering};
        const WINDOW: Duration = Duration::from_secs(300);
        let cursor = self.sim.cursor();
        let gw = hermes.gateway(&self.hermes_bin, &self.sim)?;
        self.wait_active(cursor, HERMES).await?;
        let cursor = self.sim.cursor();
        let began = Instant::now();
        let length = Duration::from_secs(minutes * 60);
        // A drop every 5 minutes; a short soak still gets two.
        let drop_every = Duration::from_secs(drop_secs.max(1)).min(length / 3);
        let is_answer = |e: &SimEvent| matches!(e, SimEvent::MessageReceived { contact, text, .. } if contact.starts_with("49152") && text.contains("soak "));
        let finished = AtomicBool::new(false);
        // Stamps each reply when it shows up: message number -> when.
        let follower = async {
            let mut seen: std::collections::HashMap<usize, Instant> = std::collections::HashMap::new();
            let mut pos = cursor;
            while !finished.load(Ordering::Relaxed) {
                let Ok(next) = self.sim.wait_count(pos, 1, Duration::from_millis(200), is_answer).await else {
                    continue;
                };
                let now = Instant::now();
                for e in self.sim.events_since(pos).iter().take(next - pos) {
                    if let SimEvent::MessageReceived { text, .. } = e {
                        for k in numbers_after(text, "soak ") {
                            seen.entry(k).or_insert(now);
                        }
                    }
                }
                pos = next;
            }
            seen
        };
        let driver = async {
            let mut sent: Vec<(Instant, String)> = Vec::new();
            let mut rss: Vec<(f64, f64)> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut next_sample, mut next_drop, mut stormed) = (began, began + drop_every, false);
            let mut storm = 0;
            while began.elapsed() < length {
                tick.tick().await;
                let k = sent.len();
                let at = Instant::now();
                let id = self.sim.send_text(&contact(50 + k % 50), HERMES, &format!("soak {k}."), false).await?;
                sent.push((at, id));
                if Instant::now() >= next_sample {
                    if let Some(kib) = gw.rss_kib() {
                        rss.push((began.elapsed().as_secs_f64() / 60.0, kib as f64 / 1024.0));
                    }
                    next_sample += Duration::from_secs(10);
                }
                if Instant::now() >= next_drop {
                    self.sim.inject(Fault::DropConnections)?;
                    next_drop += drop_every;
                }
                // Half-way: ten messages answered a while ago come back, twenty times each.
                if !stormed && began.elapsed() >= length / 2 && sent.len() > 40 {
                    for (_, id) in &sent[sent.len() - 40..sent.len() - 30] {
                        self.sim.inject(Fault::RedeliveryStorm { id: id.clone(), times: 20 })?;
                        storm += 20;
                    }
                    stormed = true;
                }
            }
            let answered = self.count(cursor, sent.len(), "answered", is_answer).await;
            // Late duplicates of the storm would show up in this time.
            tokio::time::sleep(Duration::from_secs(2)).await;
            finished.store(true, Ordering::Relaxed);
            answered?;
            anyhow::Ok((sent, rss, storm))
        };
        let (seen, driven) = tokio::join!(follower, driver);
        let (sent, rss, storm) = driven?;
        gw.stop();

        let counts = answers_per_message(&self.sim, cursor, "soak ", sent.len());
        let (lost, twice) = lost_and_twice(&counts);
        // (minute sent, round trip in ms) of each answered message.
        let timed: Vec<(f64, f64)> = sent
            .iter()
            .enumerate()
            .filter_map(|(k, (at, _))| Some(((*at - began).as_secs_f64() / 60.0, ms(*seen.get(&k)? - *at))))
            .collect();
        let per = |width: f64| {
            let windows = (minutes as f64 / width).ceil() as usize;
            (0..windows)
                .map(|w| {
                    let xs: Vec<f64> =
                        timed.iter().filter(|(m, _)| (*m / width) as usize == w).map(|(_, l)| *l).collect();
                    ((w as f64 + 0.5) * width, Stats::of(xs))
                })
                .filter(|(_, s)| s.n > 0)
                .collect::<Vec<_>>()
        };
        let windows = per(WINDOW.as_secs_f64() / 60.0);
        let minutely = per(1.0);
        // The slope after warm-up (the first 5 minutes, or the first third of a short soak).
        let warm = (minutes as f64 / 3.0).min(5.0);
        let steady: Vec<(f64, f64)> = rss.iter().copied().filter(|(m, _)| *m >= warm).collect();
        let slope = slope(&steady);
        self.plot("soak-memory.svg", |path| {
            crate::plots::over_time(
                path,
                &format!(
                    "Soak: {minutes} min, {rate} msg/s from 50 contacts, a socket drop every {} s",
                    drop_every.as_secs()
                ),
                ("minutes", "gateway resident memory (MiB)"),
                &[Line::new("resident memory (VmRSS), every 10 s", rss.clone())],
                None,
            )
        });
        self.plot("soak-latency.svg", |path| {
            crate::plots::over_time(
                path,
                &format!("Soak: round trip per minute and per {}-minute window", WINDOW.as_secs() / 60),
                ("minutes", "round trip contact -> contact (ms)"),
                &[
                    Line::new("p99, each minute", minutely.iter().map(|(m, s)| (*m, s.p99)).collect()),
                    Line::new("median, each minute", minutely.iter().map(|(m, s)| (*m, s.median)).collect()),
                    Line::new(
                        format!("p99, each {}-minute window", WINDOW.as_secs() / 60),
                        windows.iter().map(|(m, s)| (*m, s.p99)).collect(),
                    ),
                ],
                None,
            )
        });
        let listed: Vec<String> = windows
            .iter()
            .map(|(m, s)| format!("{:.0}-{:.0} min: {:.1} ms (n={})", m - 2.5, m + 2.5, s.p99, s.n))
            .collect();
        Ok(vec![
            Figure::new("6. soak", "messages lost or answered twice", "msgs", Stats::of(vec![(lost + twice) as f64]))
                .note(format!(
                    "{} messages in {minutes} min from 50 contacts ({rate} msg/s), a socket drop every {} s, a redelivery \
                     storm of {storm} copies of 10 answered messages half-way; lost: {lost}, answered more than once: \
                     {twice} (counted at the contacts)",
                    sent.len(),
                    drop_every.as_secs()
                ))
                .target("0", lost + twice == 0),
            Figure::new("6. soak", "round trip", "ms", Stats::of(timed.iter().map(|t| t.1).collect()))
                .note("from the send to the reply at the contact, messages sent during a drop included"),
            Figure::new(
                "6. soak",
                "round trip p99, each 5-minute window",
                "ms",
                Stats::of(windows.iter().map(|w| w.1.p99).collect()),
            )
            .note(listed.join("; ")),
            Figure::new("6. soak", "resident memory", "MiB", Stats::of(rss.iter().map(|s| s.1).collect()))
                .note(format!("sampled every 10 s; warm-up: the first {warm:.0} min")),
            Figure::new("6. soak", "memory slope after warm-up", "MiB/min", Stats::of(vec![slope]))
                .note(format!("least squares over {} samples after the warm-up", steady.len()))
                .target("<= 0.1 MiB/min", slope <= 0.1),
        ])
    }
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / points.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>()
}
