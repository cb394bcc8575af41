//! `hermes send --to whatsapp[:CHAT] TEXT`: a message through the running gateway (its
//! outbox, so it is sent once even if the link is down for a while), to
//! `WHATSAPP_HOME_CHANNEL` when no chat is given.

use std::io::Write as _;

use anyhow::Context as _;

use crate::{exit, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `whatsapp` (the home channel) or `whatsapp:CHAT` (a phone number or a JID).
    #[arg(long, default_value = "whatsapp")]
    to: String,
    /// The message (words are joined with spaces).
    #[arg(required = true)]
    text: Vec<String>,
}

pub fn run(profile: Option<&str>, args: &Args) -> anyhow::Result<u8> {
    let loaded = load::load(profile)?;
    let chat = match args.to.split_once(':') {
        Some((p, chat)) if p.eq_ignore_ascii_case("whatsapp") => Some(chat.to_owned()),
        None if args.to.eq_ignore_ascii_case("whatsapp") => None,
        _ => {
            eprintln!(
                "hermes: --to '{}': write whatsapp or whatsapp:CHAT (this gateway serves WhatsApp only)",
                args.to
            );
            return Ok(exit::USAGE);
        }
    };
    let file = hermes_gateway::control_file(&loaded.home.path.join("state"));
    let info: Option<hermes_gateway::ControlInfo> =
        std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let Some(info) = info.filter(|i| crate::whatsapp::process_alive(i.pid)) else {
        eprintln!(
            "hermes: the gateway is not running for {}: start it with `hermes gateway`",
            loaded.home.path.display()
        );
        return Ok(exit::PROBLEM);
    };
    let body = serde_json::json!({"to": chat, "text": args.text.join(" ")});
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, answer) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}/send", info.url))
            .bearer_auth(&info.token)
            .json(&body)
            .send()
            .await
            .context("reach the gateway")?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.context("read the gateway's answer")?;
        anyhow::Ok((status, answer))
    })?;
    let mut out = std::io::stdout().lock();
    match status.as_u16() {
        200 => {
            writeln!(out, "Sent to {}.", answer["chat"].as_str().unwrap_or_default())?;
            Ok(exit::OK)
        }
        202 => {
            writeln!(
                out,
                "Queued for {}: WhatsApp is not connected right now; the gateway sends it when it is.",
                answer["chat"].as_str().unwrap_or_default()
            )?;
            Ok(exit::OK)
        }
        400 => {
            eprintln!("hermes: {}", answer["error"].as_str().unwrap_or("the gateway refused the message"));
            Ok(exit::USAGE)
        }
        _ => {
            eprintln!("hermes: the gateway answered {status}: {}", answer["error"].as_str().unwrap_or_default());
            Ok(exit::PROBLEM)
        }
    }
}
