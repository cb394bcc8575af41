//! Starting a whatsapp-rust client on a session store, the one way every command does it.

use std::path::Path;
use std::sync::Arc;

use crate::transport::NoDelayTransportFactory;
use tokio::sync::mpsc;
use whatsapp_rust::prelude::*;
use whatsapp_rust::store::SqliteStoreConfig;

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
    /// Spawns the client's tasks, so that they can all be ended; `None` is tokio's own spawner.
    pub runtime: Option<crate::tracked::TrackedRuntime>,
    /// Held by the client's store until SQLite has closed its files: the channel closes once
    /// nothing of the store is left (the store runs its queries on threads of its own, which
    /// no spawner sees).
    pub store_closed: Option<mpsc::Sender<()>>,
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
            runtime: None,
            store_closed: None,
        }
    }
}

/// Opens the store in the session directory and starts a client on it.
pub(crate) async fn start(opts: Start<'_>) -> Result<Running, String> {
    let Start { dir, server_url, push_name, pair_code_phone, auto_reconnect, journal, fence, runtime, store_closed } =
        opts;
    let db = dir.join(STORE_FILE);
    let db = db.to_str().ok_or("the session path is not valid UTF-8")?;
    let store = match store_closed {
        None => SqliteStore::new(db).await,
        Some(closed) => SqliteStore::with_config(db, signalling_close(closed)).await,
    }
    .map_err(|e| e.to_string())?;
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
    if let Some(runtime) = runtime {
        builder = builder.with_runtime(runtime);
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

/// The name of a collation no query uses: registered only for the state SQLite keeps with it.
const CLOSE_WATCH: &str = "hermes_close_watch";

/// The default store configuration, with a clone of `closed` held by each of the store's
/// connections until SQLite has closed that connection's files: SQLite frees a collation's
/// state last when it closes a connection, after the database and its WAL. So the channel
/// closes exactly when every connection of the store is closed.
fn signalling_close(closed: mpsc::Sender<()>) -> SqliteStoreConfig {
    SqliteStoreConfig::default().with_connection_init(move |conn| {
        let held = closed.clone();
        conn.register_collation(CLOSE_WATCH, move |a, b| {
            // Owned, never used: the closure is only a place SQLite drops `held` from.
            let _ = &held;
            a.cmp(b)
        })?;
        Ok(())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Files under `dir` this process has open.
    pub(crate) fn open_under(dir: &Path) -> Vec<PathBuf> {
        let fds = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
        fds.flatten().filter_map(|fd| std::fs::read_link(fd.path()).ok()).filter(|p| p.starts_with(dir)).collect()
    }

    /// The link installs a session only once this channel closed: it must not close while
    /// the store still has a file open.
    #[tokio::test]
    async fn the_store_closed_channel_closes_once_the_store_files_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(STORE_FILE);
        let (closed, mut closed_rx) = mpsc::channel::<()>(1);
        let store = SqliteStore::with_config(db.to_str().expect("a UTF-8 temp path"), signalling_close(closed))
            .await
            .expect("open the store");
        assert!(!open_under(dir.path()).is_empty(), "the open store holds its files");
        assert!(matches!(closed_rx.try_recv(), Err(mpsc::error::TryRecvError::Empty)), "closed while open");
        drop(store);
        let end = tokio::time::timeout(std::time::Duration::from_secs(10), closed_rx.recv())
            .await
            .expect("the channel closes with the store");
        assert_eq!(end, None);
        let open = open_under(dir.path());
        assert!(open.is_empty(), "the channel closed while {open:?} were open");
    }
}
