//! The baseline: the least a WhatsApp bot on whatsapp-rust can be. It links by QR code (the
//! code is printed as a JSON line for the benchmark to scan with the simulated phone), answers
//! every text with "echo: TEXT", and reconnects with the library's own auto-reconnect. No
//! journal, no access decision, no agent: whatever hermes costs beyond this is hermes' own.
//! It dials with hermes' transport (TCP_NODELAY), or with `--stock-transport` the library's.

use std::path::Path;

use anyhow::Context as _;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// The app version the simulator accepts (the client would otherwise ask the internet).
const VERSION: (u32, u32, u32) = (2, 3000, 1_000_000_000);

/// `stock`: the library's own transport (no TCP_NODELAY), to measure what the flag is worth;
/// otherwise the one hermes uses, so that the comparison is of the rest.
pub async fn run(db: &Path, server: &str, stock: bool) -> anyhow::Result<()> {
    anyhow::ensure!(server.starts_with("ws://127.0.0.1:"), "the echo bot talks to a loopback simulator only");
    let store = SqliteStore::new(db.to_str().context("utf-8 path")?).await?;
    let builder = Bot::builder().with_backend(store);
    let builder = if stock {
        builder.with_transport_factory(TokioWebSocketTransportFactory::new().with_url(server))
    } else {
        builder.with_transport_factory(hermes_whatsapp::transport::NoDelayTransportFactory::with_url(server))
    };
    let bot = builder
        .with_version(VERSION)
        .with_push_name("echo bot")
        .on_event(|event, client| async move {
            match &*event {
                Event::PairingQrCode(q) => println!("{}", serde_json::json!({"event": "qr", "qr": q.code})),
                Event::Connected(_) => println!("{}", serde_json::json!({"event": "connected"})),
                Event::Messages(batch) => {
                    for m in batch.messages.iter() {
                        let Some(text) = m.message.text_content() else { continue };
                        if m.info.source.is_from_me {
                            continue;
                        }
                        let reply = whatsapp_rust::waproto::whatsapp::Message {
                            conversation: Some(format!("echo: {text}")),
                            ..Default::default()
                        };
                        if let Err(e) = client.send_message(m.info.source.chat.clone(), reply).await {
                            eprintln!("echo bot: send failed: {e}");
                        }
                    }
                }
                _ => {}
            }
        })
        .build()
        .await?;
    let handle = bot.spawn();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    handle.shutdown().await;
    Ok(())
}
