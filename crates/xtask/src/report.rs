//! Numbers into `bench/results.json` and `bench/RESULTS.md`.

use std::fmt::Write as _;

use serde::Serialize;

/// Summary of repeated measurements.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(mut xs: Vec<f64>) -> Stats {
        xs.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if xs.is_empty() {
                f64::NAN
            } else {
                let i = ((xs.len() - 1) as f64 * q).round() as usize;
                xs[i]
            }
        };
        Stats { n: xs.len(), min: at(0.0), median: at(0.5), p99: at(0.99), max: at(1.0) }
    }
}

/// One measured figure, with the baseline's where there is one, and the target.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub scenario: &'static str,
    pub metric: &'static str,
    pub unit: &'static str,
    pub hermes: Stats,
    pub baseline: Option<Stats>,
    /// The target, in words, and whether the hermes median (or p99 where the target says
    /// p99) meets it.
    pub target: Option<(String, bool)>,
    pub note: Option<String>,
}

impl Figure {
    pub fn new(scenario: &'static str, metric: &'static str, unit: &'static str, hermes: Stats) -> Figure {
        Figure { scenario, metric, unit, hermes, baseline: None, target: None, note: None }
    }

    pub fn baseline(mut self, b: Stats) -> Figure {
        self.baseline = Some(b);
        self
    }

    pub fn target(mut self, words: &str, met: bool) -> Figure {
        self.target = Some((words.to_owned(), met));
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }
}

/// Where the run happened.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(str::trim);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({
        "cpu": model.unwrap_or("unknown"),
        "cores": cores,
        "memory_gib": (mem_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0,
        "kernel": kernel.trim(),
    })
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub fn markdown(figures: &[Figure], machine: &serde_json::Value, when: &str, settings: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmark results\n");
    let _ = writeln!(
        md,
        "Measured by `cargo run --release -p xtask -- bench` on {when}: {} ({} cores, {} GiB, Linux {}). \
         Everything ran on 127.0.0.1: wa-sim as WhatsApp, a chat-completions server that answers at once \
         (so the figures are the gateway's own), hermes and the baseline as separate processes. \
         The baseline is a minimal echo bot written directly on whatsapp-rust (no journal, no agent). \
         Settings: {settings}.\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(
        md,
        "| scenario | metric | hermes min / median / p99 / max | baseline median | ratio | target | met |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    for f in figures {
        let h = &f.hermes;
        let (base, ratio) = match &f.baseline {
            Some(b) => (format!("{} {}", num(b.median), f.unit), num(h.median / b.median)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let (target, met) = match &f.target {
            Some((t, m)) => (t.clone(), if *m { "yes" } else { "**no**" }.to_owned()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} / {} / {} / {} {} (n={}) | {base} | {ratio} | {target} | {met} |",
            f.scenario,
            f.metric,
            num(h.min),
            num(h.median),
            num(h.p99),
            num(h.max),
            f.unit,
            h.n
        );
    }
    let notes: Vec<String> =
        figures.iter().filter_map(|f| Some(format!("- {} / {}: {}", f.scenario, f.metric, f.note.as_ref()?))).collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "\nNotes:\n\n{}", notes.join("\n"));
    }
    md
}

/// How many times each of `n` numbered messages was answered, from the replies contacts
/// received after `cursor`: every reply quotes its message (`"{prefix}{k}."`), and one reply
/// may quote several.
pub fn answers_per_message(sim: &wa_sim::Sim, cursor: usize, prefix: &str, n: usize) -> Vec<usize> {
    let mut counts = vec![0usize; n];
    for e in sim.events_since(cursor) {
        if let wa_sim::SimEvent::MessageReceived { text, .. } = e {
            for k in numbers_after(&text, prefix).filter(|k| *k < n) {
                counts[k] += 1;
            }
        }
    }
    counts
}
/// Of the answer counts per message: how many got none, and how many more than one.
pub fn lost_and_twice(counts: &[usize]) -> (usize, usize) {
    (counts.iter().filter(|c| **c == 0).count(), counts.iter().filter(|c| **c > 1).count())
}

/// The numbers `k` of every `"{prefix}{k}."` in a reply (a reply quotes what it answers).
pub fn numbers_after<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(prefix).filter_map(move |(i, _)| {
        let rest = &text[i + prefix.len()..];
        rest[..rest.find('.')?].parse().ok()
    })
}

/// The pictures a run drew, each under its caption, linked relative to RESULTS.md (which is
/// written to `out`).
pub fn plot_links(dir: &std::path::Path, out: &std::path::Path) -> String {
    const CAPTIONS: &[(&str, &str)] = &[
        ("latency.svg", "Per-message latency, each direction and the round trip, hermes against the echo bot"),
        ("drain.svg", "Backlog drain: messages journaled and replies received per second"),
        ("soak-memory.svg", "Soak: the gateway's resident memory over time"),
        ("soak-latency.svg", "Soak: round-trip p99 and median over time"),
        ("scale.svg", "Scale: round trip with an empty and with a large database"),
    ];
    let rel = dir.strip_prefix(out).unwrap_or(dir);
    let mut md = String::new();
    for (file, caption) in CAPTIONS {
        if dir.join(file).is_file() {
            let _ = writeln!(md, "\n### {caption}\n\n![{caption}]({}/{file})", rel.display());
        }
    }
    if md.is_empty() { md } else { format!("\n## Plots\n{md}") }
}
