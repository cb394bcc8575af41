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
    pub events: mpsc::UnboundedReceiver<Arc<Event>>,
}

/// The app version the client would otherwise fetch from web.whatsapp.com.
const VERSION: (u32, u32, u32) = (2, 3000, 1_000_000_000);

impl TestClient {
    /// Starts a client whose SQLite store is `db` (created if missing).
    pub async fn start(ws_url: &str, db: &Path) -> TestClient {
        Self::start_with(ws_url, db, None).await
    }

    /// Starts a client that asks to link to `phone` by pairing code.
    pub async fn start_with_code(ws_url: &str, db: &Path, phone: &str) -> TestClient {
        Self::start_with(ws_url, db, Some(phone)).await
    }

    async fn start_with(ws_url: &str, db: &Path, pair_code_phone: Option<&str>) -> TestClient {
        let store = SqliteStore::new(db.to_str().expect("utf-8 path")).await.expect("open sqlite store");
        let (tx, events) = mpsc::unbounded_channel();
        let mut builder = Bot::builder().with_backend(store);
        if let Some(phone) = pair_code_phone {
            builder = builder.with_pair_code(whatsapp_rust::pair_code::PairCodeOptions {
                phone_number: phone.to_owned(),
                ..Default::default()
            });
        }
        let bot = builder
            .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws_url))
            .with_version(VERSION)
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
        TestClient { handle: bot.spawn(), events }
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
