//! Starting a whatsapp-rust client on a session store, the one way every command does it.

use std::path::Path;
use std::sync::Arc;

use crate::transport::NoDelayTransportFactory;
use tokio::sync::mpsc;
use whatsapp_rust::prelude::*;

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

/// The name a linked device shows on the phone, unless the user chose another.
pub const PUSH_NAME: &str = "Hermes Agent";

/// How to start a client.
pub(crate) struct Start<'a> {
    /// The session directory, holding the client's store.
    pub dir: &'a Path,
    /// A simulator to connect to (checked by the caller) instead of WhatsApp.
    pub server_url: Option<&'a str>,
    pub push_name: &'a str,
    /// Link by pairing code for this phone number instead of a QR code.
    pub pair_code_phone: Option<&'a str>,
    /// Off: the run loop ends with its connection, and the caller decides when to run again.
    pub auto_reconnect: bool,
    /// Where inbound messages are kept before they are acknowledged.
    pub journal: Option<crate::journal::JournalHook>,
    /// Stops the store's writes once one failed (see [`crate::fence`]).
    pub fence: Option<Arc<crate::fence::Fence>>,
}

impl<'a> Start<'a> {
    /// A client on the session in `dir`, reconnecting on its own, with nothing else set.
    pub(crate) fn new(dir: &'a Path, server_url: Option<&'a str>) -> Start<'a> {
        Start {
            dir,
            server_url,
            push_name: PUSH_NAME,
            pair_code_phone: None,
            auto_reconnect: true,
            journal: None,
            fence: None,
        }
    }
}

/// Opens the store in the session directory and starts a client on it.
pub(crate) async fn start(opts: Start<'_>) -> Result<Running, String> {
    let Start { dir, server_url, push_name, pair_code_phone, auto_reconnect, journal, fence } = opts;
    let db = dir.join(STORE_FILE);
    let db = db.to_str().ok_or("the session path is not valid UTF-8")?;
    let store = SqliteStore::new(db).await.map_err(|e| e.to_string())?;
    let (tx, events) = mpsc::unbounded_channel::<Arc<Event>>();
    // Every client that journals goes through the fence's store, which also tells a genuine
    // duplicate from a message another client of the device read (see `FencedStore`).
    let builder = match (fence, &journal) {
        (Some(fence), j) => Bot::builder().with_backend(crate::fence::FencedStore::new(store, fence, j.clone())),
        (None, Some(j)) => {
            let open = crate::fence::Fence::new(Arc::new(tokio::sync::Notify::new()));
            Bot::builder().with_backend(crate::fence::FencedStore::new(store, open, Some(j.clone())))
        }
        (None, None) => Bot::builder().with_backend(store),
    };
    let mut builder = builder.with_push_name(push_name.to_owned()).with_transport_factory(match server_url {
        Some(url) => NoDelayTransportFactory::with_url(url),
        None => NoDelayTransportFactory::new(),
    });
    if let Some(hook) = journal {
        builder = builder.with_inbound_durability_hook(hook);
    }
    if server_url.is_some() {
        builder = builder.with_version(SIMULATOR_VERSION);
        // The simulator's CDN serves plain HTTP on 127.0.0.1; nothing else loses TLS.
        #[cfg(feature = "simulator")]
        {
            builder = builder.with_http_client(wa_sim::http::LoopbackMedia(whatsapp_rust::http::UreqHttpClient::new()));
        }
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
