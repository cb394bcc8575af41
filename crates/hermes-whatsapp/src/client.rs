//! Starting a whatsapp-rust client on a session store, the one way every command does it.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

use crate::store::STORE_FILE;

/// The app version the simulator accepts; against WhatsApp the client asks for the current one.
const SIMULATOR_VERSION: (u32, u32, u32) = (2, 3000, 1_000_000_000);

/// A running client and its events.
pub(crate) struct Running {
    pub handle: BotHandle,
    pub client: Arc<Client>,
    pub events: mpsc::UnboundedReceiver<Arc<Event>>,
}

impl Running {
    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

/// Opens the store in `dir` and starts a client on it. `server_url` points it at a simulator
/// (checked by the caller); `pair_code_phone` asks to link by code. With `auto_reconnect` off
/// the client's run loop ends with its connection, and the caller decides when to run again.
pub(crate) async fn start(
    dir: &Path,
    server_url: Option<&str>,
    push_name: &str,
    pair_code_phone: Option<&str>,
    auto_reconnect: bool,
    journal: Option<crate::journal::JournalHook>,
    fence: Option<Arc<crate::fence::Fence>>,
) -> Result<Running, String> {
    let db = dir.join(STORE_FILE);
    let db = db.to_str().ok_or("the session path is not valid UTF-8")?;
    let store = SqliteStore::new(db).await.map_err(|e| e.to_string())?;
    let (tx, events) = mpsc::unbounded_channel::<Arc<Event>>();
    let builder = match fence {
        Some(fence) => Bot::builder().with_backend(crate::fence::FencedStore::new(store, fence)),
        None => Bot::builder().with_backend(store),
    };
    let mut builder = builder.with_push_name(push_name.to_owned());
    if let Some(hook) = journal {
        builder = builder.with_inbound_durability_hook(hook);
    }
    if let Some(url) = server_url {
        builder = builder
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(url))
            .with_version(SIMULATOR_VERSION);
    }
    if let Some(phone) = pair_code_phone {
        builder = builder.with_pair_code(whatsapp_rust::pair_code::PairCodeOptions {
            phone_number: phone.to_owned(),
            ..Default::default()
        });
    }
    let bot = builder
        .on_event(move |event, _client| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let client = bot.client();
    client.enable_auto_reconnect.store(auto_reconnect, std::sync::atomic::Ordering::Relaxed);
    Ok(Running { handle: bot.spawn(), client, events })
}
