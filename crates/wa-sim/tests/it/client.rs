//! A whatsapp-rust client pointed at the simulator, with its events on a channel.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use whatsapp_rust::prelude::*;
use whatsapp_rust::transport::TokioWebSocketTransportFactory;

/// Linking includes the client's 10 s wait for the phone's app-state key share.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TestClient {
    pub handle: BotHandle,
    pub client: Arc<Client>,
    pub events: mpsc::UnboundedReceiver<Arc<Event>>,
}

/// The app version the client would otherwise fetch from web.whatsapp.com.
const VERSION: (u32, u32, u32) = (2, 3000, 1_000_000_000);

impl TestClient {
    /// Starts a client whose SQLite store is `db` (created if missing).
    pub async fn start(ws_url: &str, db: &Path) -> TestClient {
        Self::start_with(ws_url, db, None, None).await
    }

    /// Starts a client whose inbound messages go through `hook` before they are acked.
    pub async fn start_with_hook(ws_url: &str, db: &Path, hook: FlakyHook) -> TestClient {
        Self::start_with(ws_url, db, None, Some(hook)).await
    }

    /// Starts a client that asks to link to `phone` by pairing code.
    pub async fn start_with_code(ws_url: &str, db: &Path, phone: &str) -> TestClient {
        Self::start_with(ws_url, db, Some(phone), None).await
    }

    async fn start_with(ws_url: &str, db: &Path, pair_code_phone: Option<&str>, hook: Option<FlakyHook>) -> TestClient {
        let store = SqliteStore::new(db.to_str().expect("utf-8 path")).await.expect("open sqlite store");
        let (tx, events) = mpsc::unbounded_channel();
        let mut builder = Bot::builder().with_backend(store);
        if let Some(hook) = hook {
            builder = builder.with_inbound_durability_hook(hook);
        }
        if let Some(phone) = pair_code_phone {
            builder = builder.with_pair_code(whatsapp_rust::pair_code::PairCodeOptions {
                phone_number: phone.to_owned(),
                ..Default::default()
            });
        }
        let bot = builder
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws_url))
            .with_version(VERSION)
            .with_http_client(wa_sim::http::LoopbackMedia(whatsapp_rust::http::UreqHttpClient::new()))
            .with_push_name("wa-sim test")
            .on_event(move |event, _client| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .build()
            .await
            .expect("build client");
        let client = bot.client();
        TestClient { handle: bot.spawn(), client, events }
    }

    /// The first event that `pick` maps to `Some`, within `timeout`.
    pub async fn wait<T>(&mut self, timeout: Duration, what: &str, pick: impl Fn(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    if let Some(t) = pick(&e) {
                        return t;
                    }
                    seen.push(format!("{:?}", e.kind()));
                }
                Ok(None) => panic!("client event stream ended while waiting for {what}; saw {seen:?}"),
                Err(_) => panic!("timed out after {timeout:?} waiting for {what}; saw {seen:?}"),
            }
        }
    }

    /// Starts a fresh client and links it to `phone` by QR code, waiting until it is connected.
    pub async fn linked(sim: &wa_sim::Sim, phone: &str, db: &Path) -> TestClient {
        let mut client = TestClient::start(&sim.ws_url(), db).await;
        let qr = client
            .wait(LINK_TIMEOUT, "a QR code", |e| match e {
                Event::PairingQrCode(q) => Some(q.code.clone()),
                _ => None,
            })
            .await;
        sim.link_qr(phone, &qr).expect("phone scans the QR code");
        client.wait(LINK_TIMEOUT, "connected after linking", |e| matches!(e, Event::Connected(_)).then_some(())).await;
        client
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A durability hook that fails its first `fail` calls (as a full disk or a crashed database
/// would), recording the ids of every batch it was given.
#[derive(Clone, Default)]
pub struct FlakyHook {
    pub fail: Arc<std::sync::atomic::AtomicUsize>,
    pub seen: Arc<std::sync::Mutex<Vec<String>>>,
    /// Signalled on every call.
    pub called: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl whatsapp_rust::InboundDurabilityHook for FlakyHook {
    async fn on_messages(&self, _client: Arc<Client>, batch: &[InboundMessage]) -> anyhow::Result<()> {
        self.seen.lock().expect("poisoned").extend(batch.iter().map(|m| m.info.id.to_string()));
        self.called.notify_one();
        let left = self.fail.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.fail.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            anyhow::bail!("simulated storage failure");
        }
        Ok(())
    }
}
