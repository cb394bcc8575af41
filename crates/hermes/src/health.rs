//! `hermes gateway health`: asks the running gateway's listener whether it is ready (or, with
//! `--live`, only running), for a container's HEALTHCHECK or a script: no curl needed, and
//! the answer says what is wrong and the fix.

use std::time::Duration;

use crate::exit;
use crate::load;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only whether the process runs its loops (/healthz), not whether it answers (/readyz).
    #[arg(long)]
    live: bool,
}

pub async fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let state = loaded.home.path.join("state");
    let file = hermes_gateway::control_file(&state);
    let Some(base) = hermes_gateway::ControlInfo::read(&state).and_then(|i| i.http_url) else {
        eprintln!(
            "hermes: no gateway with a listener runs for {} ({} names no http_url): start `hermes gateway --listen \
             ADDR` or set HERMES_GATEWAY_LISTEN",
            loaded.home.path.display(),
            file.display()
        );
        return Ok(exit::PROBLEM);
    };
    // A listener on every interface is asked on loopback.
    let base = base.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:");
    let url = format!("{base}/{}", if args.live { "healthz" } else { "readyz" });
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let response = match client.get(&url).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hermes: the gateway does not answer on {url} ({}): is it running?", e.without_url());
            return Ok(exit::PROBLEM);
        }
    };
    let ok = response.status().is_success();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if ok {
        match body["state"].as_str() {
            Some(state) => println!("ready: the WhatsApp link is {state}"),
            None => println!("running"),
        }
        return Ok(exit::OK);
    }
    eprintln!(
        "hermes: not ready: {} ({}); {}",
        body["reason"].as_str().unwrap_or("no reason given"),
        body["state"].as_str().unwrap_or("unknown state"),
        body["fix"].as_str().unwrap_or("see the gateway's log")
    );
    Ok(exit::PROBLEM)
}
