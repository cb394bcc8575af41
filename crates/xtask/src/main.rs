//! Project tasks. `tidy` checks the invariants of ARCHITECTURE.md (CI runs it). `stress` kills
//! the gateway at random moments and counts what was lost or answered twice. `bench` measures
//! what hermes costs and how fast it recovers, against the bare whatsapp-rust library, on
//! loopback; `echo-bot` is that bare-library baseline (run by `bench` as a child process, so
//! that its memory is its own).

mod bench;
mod echo;
mod plots;
mod procs;
mod report;
mod stress;
mod tidy;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the invariants of ARCHITECTURE.md (path-scoped greps and the crate graph); exit 1,
    /// each broken one named with its place and its fix, if any is broken.
    Tidy,
    /// Run the benchmarks; write bench/results.json and bench/RESULTS.md.
    Bench(bench::Options),
    /// Kill -9 the gateway at random moments of a busy run (100 times by default) and count,
    /// at the contacts, that every message was answered exactly once; writes bench/STRESS.md.
    Stress(stress::Options),
    /// The baseline: a minimal echo bot on whatsapp-rust (no journal, no agent).
    EchoBot {
        /// Its SQLite session store.
        #[arg(long)]
        db: PathBuf,
        /// The WhatsApp simulator's WebSocket URL (loopback only).
        #[arg(long)]
        server: String,
        /// The library's own transport (no TCP_NODELAY) instead of hermes'.
        #[arg(long)]
        stock_transport: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // Reads files only: no runtime.
        Command::Tidy => tidy::run(),
        Command::Bench(opts) => runtime()?.block_on(bench::run(opts)),
        Command::Stress(opts) => runtime()?.block_on(stress::run(opts)),
        Command::EchoBot { db, server, stock_transport } => {
            runtime()?.block_on(echo::run(&db, &server, stock_transport))
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}
