//! `hermes`: the command line. It parses arguments, reads the environment and files, calls the
//! libraries and prints. Decisions live in `hermes-core`; this crate only knows clap, JSON
//! shapes and exit codes.
//!
//! One program under two names: `hermes`, and `hermes-whatsapp` for a machine where Hermes
//! Agent's own CLI is `hermes` (`program`: every command it names is spelled with the name it
//! was started by).

/// Everything this crate prints names its own commands by the name it was started by
/// ([`program::fix`]): these shadow std's printing macros in every module of the crate.
macro_rules! println {
    () => { ::std::println!() };
    ($($t:tt)*) => { ::std::println!("{}", $crate::program::fix(&::std::format!($($t)*))) };
}
macro_rules! eprintln {
    () => { ::std::eprintln!() };
    ($($t:tt)*) => { ::std::eprintln!("{}", $crate::program::fix(&::std::format!($($t)*))) };
}
macro_rules! eprint {
    ($($t:tt)*) => { ::std::eprint!("{}", $crate::program::fix(&::std::format!($($t)*))) };
}
macro_rules! writeln {
    ($w:expr) => { ::std::writeln!($w) };
    ($w:expr, $($t:tt)*) => { ::std::writeln!($w, "{}", $crate::program::fix(&::std::format!($($t)*))) };
}

mod alerts;
#[cfg(feature = "simulator")]
mod demo;
mod doctor;
mod drops;
mod exit;
mod explain;
mod gateway;
mod handoff;
mod health;
mod history;
mod import;
mod install;
mod load;
mod messenger;
mod pairing;
mod program;
mod qr;
mod relink;
mod reload;
mod send;
mod whatsapp;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Try the whole gateway on a simulated WhatsApp: link, an answer, a dropped stranger.
    ///
    /// Needs nothing: no account, no phone, no internet. Uses the configured model when it
    /// answers, else a built-in offline responder that says what it is.
    #[cfg(feature = "simulator")]
    Demo(demo::Args),
    /// Check the configuration, the session directory and who can reach the agent.
    Doctor {
        /// Print one JSON object: {"ok": bool, "checks": [{"name", "status", "message", "fix"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Run the gateway in the foreground: keep the WhatsApp link up and answer messages
    /// (Ctrl-C or SIGTERM stops; what is not answered yet is answered at the next start).
    /// `install` and `uninstall` make it a systemd service.
    ///
    /// Exit status: 0 stopped on request, 1 WhatsApp ended the session (the fix is printed),
    /// 2 usage or configuration error, 70 internal error (I/O, the state database, a bug).
    #[command(args_conflicts_with_subcommands = true)]
    Gateway {
        #[command(subcommand)]
        command: Option<GatewayCommand>,
        #[command(flatten)]
        run: GatewayArgs,
    },
    /// A chat's record from the journal: `hermes history export [--chat CHAT] [--since 7d]
    /// [--format jsonl|txt]` (read-only).
    History {
        #[command(subcommand)]
        command: history::Command,
    },
    /// A person takes a chat over: the agent does not answer there (until `--minutes` pass, or
    /// `hermes resume`). The owner writing in a chat from the phone does the same for a while.
    Pause(handoff::PauseArgs),
    /// The agent answers in a paused chat again.
    Resume {
        /// The chat: a phone number with its country code, or a JID.
        chat: String,
    },
    /// Approve or refuse strangers who were sent a pairing code.
    Pairing {
        #[command(subcommand)]
        command: pairing::Command,
    },
    /// Send a message through the running gateway (to WHATSAPP_HOME_CHANNEL by default).
    ///
    /// Exit status: 0 sent or queued, 1 the gateway is not running, 2 usage error, 70 internal
    /// error (I/O, a bug).
    Send(send::Args),
    /// Link this gateway to WhatsApp (QR code, or --pair-code), or manage the link.
    ///
    /// Exit status: 0 linked, 1 not linked (timeout, refused, already linked), 2 usage or
    /// configuration error, 70 internal error (I/O, the state database, a bug).
    #[command(args_conflicts_with_subcommands = true)]
    Whatsapp {
        #[command(subcommand)]
        command: Option<WhatsappCommand>,
        #[command(flatten)]
        link: whatsapp::LinkArgs,
    },
    /// Internal: the gateway's parser child (reads one file within limits; see
    /// `hermes_gateway::parse`). Not for people.
    #[command(name = "__parse", hide = true)]
    Parse { job: String, path: std::path::PathBuf, cpu_secs: u64, memory_bytes: u64 },
}

/// Runs the command; `Ok` carries the exit status it decided on.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    let profile = cli.profile.as_deref();
    match cli.command {
        #[cfg(feature = "simulator")]
        Command::Demo(args) => demo::run(profile, &args).await,
        Command::Doctor { json } => doctor::run(profile, json).await,
        Command::Gateway { command: None, run } | Command::Gateway { command: Some(GatewayCommand::Run(run)), .. } => {
            gateway::run(profile, run.listen.as_deref(), run.ephemeral).await
        }
        Command::Gateway { command: Some(GatewayCommand::Install(args)), .. } => install::install(profile, &args),
        Command::Gateway { command: Some(GatewayCommand::Uninstall(args)), .. } => install::uninstall(profile, &args),
        Command::Gateway { command: Some(GatewayCommand::Health(args)), .. } => health::run(profile, &args).await,
        Command::Pairing { command } => pairing::run(profile, &command),
        Command::Pause(args) => handoff::pause(profile, &args),
        Command::History { command } => history::run(profile, &command),
        Command::Resume { chat } => handoff::resume(profile, &chat),
        Command::Send(args) => send::run(profile, &args).await,
        Command::Whatsapp { command: Some(WhatsappCommand::Drops(args)), .. } => drops::run(profile, &args),
        Command::Whatsapp { command: Some(WhatsappCommand::Explain(args)), .. } => explain::run(profile, &args).await,
        Command::Whatsapp { command: Some(WhatsappCommand::Status { json }), .. } => {
            whatsapp::status(profile, json).await
        }
        Command::Whatsapp { command: Some(WhatsappCommand::Repair(args)), .. } => {
            whatsapp::repair(profile, &args).await
        }
        Command::Whatsapp { command: Some(WhatsappCommand::Import(args)), .. } => import::run(profile, &args).await,
        Command::Whatsapp { command: Some(WhatsappCommand::Unlink(args)), .. } => {
            whatsapp::unlink(profile, &args).await
        }
        Command::Whatsapp { command: None, link } => whatsapp::link(profile, &link).await,
        // Run before the runtime is built, in `main`.
        Command::Parse { .. } => Ok(exit::USAGE),
    }
}

#[derive(Debug, Default, clap::Args)]
struct GatewayArgs {
    /// Serve /healthz, /readyz, /metrics and a status (or pairing) page on ADDR (e.g.
    /// 127.0.0.1:8080; port 0 picks one, written to state/gateway.json). Also
    /// HERMES_GATEWAY_LISTEN or `gateway.listen` in config.yaml. Everything but the probes
    /// needs the token (`hermes whatsapp status` prints the page's address with it). With a listener, a link that needs a person waits for one
    /// on the page instead of ending the gateway.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Start even though HERMES_HOME is on a container's writable layer (the session is then
    /// lost when the container is re-created).
    #[arg(long)]
    ephemeral: bool,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// The same as `hermes gateway` (Hermes' name for it).
    Run(GatewayArgs),
    /// Install the gateway as a systemd service (hermes-gateway), enabled, not started.
    ///
    /// Restarted after a crash, never after exit 1 (WhatsApp ended the session) or 2 (a
    /// configuration error). Exit status: 0 installed (or already), 1 not done (a different unit
    /// is there, systemctl failed), 2 usage or configuration error, 70 internal error.
    Install(install::Args),
    /// Stop, disable and remove the service.
    Uninstall(install::UninstallArgs),
    /// Ask the running gateway's listener whether it is ready (a container's HEALTHCHECK).
    ///
    /// Exit status: 0 ready (with --live: running), 1 not (the reason and the fix are printed),
    /// 2 usage or configuration error.
    Health(health::Args),
}

#[derive(Debug, Subcommand)]
enum WhatsappCommand {
    /// Explain whether a sender would reach the agent, and what would change it.
    ///
    /// Exit status: 0 admitted, 1 refused, 2 usage or configuration error, 70 internal error.
    Explain(explain::Args),
    /// Messages the gateway did not answer, grouped by sender, with the fix for each.
    Drops(drops::Args),
    /// Check the session with WhatsApp; re-link only if WhatsApp really ended it.
    ///
    /// A valid session is left untouched (exit 0); when WhatsApp cannot be reached nothing is
    /// changed (exit 1); a session that was logged out, removed or is corrupt is re-linked, and
    /// kept as a backup once the new link works. --force re-links a valid session too.
    Repair(whatsapp::LinkArgs),
    /// Take over the session of Hermes' Node bridge (Baileys): no new QR code, the same device.
    ///
    /// Reads the Baileys auth directory (never changing it), builds hermes' store beside the
    /// session, verifies it and installs it under the session lock. Exit status: 0 imported,
    /// 1 nothing importable, refused (the bridge still runs, already linked without --force,
    /// a damaged directory), 2 usage or configuration error, 70 internal error.
    Import(import::Args),
    /// Log this device out on WhatsApp and move the session to a backup.
    Unlink(whatsapp::LinkArgs),
    /// Is the gateway linked, to which account, and what to do if not.
    ///
    /// Exit status: 0 linked, 1 not linked or not usable, 2 usage or configuration error,
    /// 70 internal error.
    Status {
        /// Print one JSON object with at least `state` and `linked`.
        #[arg(long)]
        json: bool,
    },
}

/// The program: `hermes` and `hermes-whatsapp` are this.
pub fn main() -> ExitCode {
    program::init();
    // Everything hermes writes (session keys, .env with API keys) is for this user only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    // A parser child reads one file and prints; it needs no runtime, and must not start one
    // (threads and their stacks under its own memory limit).
    if let Command::Parse { job, path, cpu_secs, memory_bytes } = &cli.command {
        return ExitCode::from(hermes_gateway::parse::child(job, path, *cpu_secs, *memory_bytes));
    }
    // The one runtime: commands are async functions run on it, and no library builds another.
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hermes: {e:#}");
            ExitCode::from(exit::status_of(&e))
        }
    }
}
