//! `hermes`: the command line. It parses arguments, reads the environment and files, calls the
//! libraries and prints. Decisions live in `hermes-core`; this crate only knows clap, JSON
//! shapes and exit codes.

mod doctor;
mod explain;
mod load;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit statuses, documented in the README.
pub mod exit {
    /// Everything is fine / the sender is admitted.
    pub const OK: u8 = 0;
    /// Checked and found a problem / the sender is refused.
    pub const PROBLEM: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(name = "hermes", version, about = "A WhatsApp gateway for LLM agents, compatible with Hermes Agent")]
struct Cli {
    /// Use the profile HERMES_HOME/profiles/NAME.
    #[arg(short = 'p', long, global = true, value_name = "NAME")]
    profile: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration, the session directory and who can reach the agent.
    Doctor {
        /// Print one JSON object: {"ok": bool, "checks": [{"name", "status", "message", "fix"}]}.
        #[arg(long)]
        json: bool,
    },
    /// WhatsApp: linking, status and access.
    Whatsapp {
        #[command(subcommand)]
        command: WhatsappCommand,
    },
}

#[derive(Debug, Subcommand)]
enum WhatsappCommand {
    /// Explain whether a sender would reach the agent, and what would change it.
    ///
    /// Exit status: 0 admitted, 1 refused, 2 usage or configuration error.
    Explain(explain::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor { json } => doctor::run(cli.profile.as_deref(), json),
        Command::Whatsapp { command: WhatsappCommand::Explain(args) } => explain::run(cli.profile.as_deref(), &args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hermes: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}
