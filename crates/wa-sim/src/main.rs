//! `wa-sim serve`: the simulator as a process, controlled over a JSON API on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wa-sim", about = "A WhatsApp server simulator on loopback, for tests and demos")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the WhatsApp protocol and the control API; prints one JSON line with their URLs.
    Serve {
        /// Where WhatsApp clients connect (loopback only; port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Where the JSON control API listens (loopback only; port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:0")]
        control: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve { listen, control } = Cli::parse().command;
    if !control.ip().is_loopback() {
        bail!("--control must be a loopback address, not {control}");
    }
    let sim = Arc::new(wa_sim::Sim::start_on(listen).await?);
    let api = tokio::net::TcpListener::bind(control).await.with_context(|| format!("bind control API on {control}"))?;
    let control_addr = api.local_addr()?;
    println!(
        "{}",
        serde_json::json!({
            "ws_url": sim.ws_url(),
            "control_url": format!("http://{control_addr}"),
            "root_public_key": hex::encode(sim.root_public_key()),
        })
    );
    let app = wa_sim::control::router(sim);
    axum::serve(api, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
