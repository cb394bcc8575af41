//! The connection to WhatsApp: whatsapp-rust's own WebSocket transport, with `TCP_NODELAY`.
//!
//! The stock factory never sets it, so each small frame (a message, its receipt, an ack) could
//! wait for the peer's delayed ACK before leaving: up to 40 ms on Linux, on every exchange that
//! writes twice in a row. The benchmark measured it (`bench/RESULTS.md`, per message). This
//! factory dials the same way (the first resolved address, the stock TLS connector with its
//! web PKI roots, WhatsApp Web's `Origin`), sets `TCP_NODELAY` on the socket before the TLS
//! handshake, and hands the upgraded stream to the crate's `from_websocket`.

use std::sync::Arc;

use anyhow::Context as _;
use whatsapp_rust::async_channel::Receiver;
use whatsapp_rust::transport::{
    Connector, Transport, TransportEvent, TransportFactory, default_tls_connector, from_websocket,
};

/// WhatsApp Web's socket and origin, as the stock factory uses them.
const WHATSAPP_WS_URL: &str = wacore::net::WHATSAPP_WEB_WS_URL;
const WHATSAPP_ORIGIN: &str = wacore::net::WHATSAPP_WEB_ORIGIN;

/// Dials WhatsApp (or, in the simulator build, the simulator's `ws://` URL) with `TCP_NODELAY`.
#[derive(Clone, Debug)]
pub struct NoDelayTransportFactory {
    url: String,
}

impl Default for NoDelayTransportFactory {
    fn default() -> Self {
        NoDelayTransportFactory { url: WHATSAPP_WS_URL.to_owned() }
    }
}

impl NoDelayTransportFactory {
    /// WhatsApp itself.
    pub fn new() -> Self {
        NoDelayTransportFactory::default()
    }

    pub fn with_url(url: impl Into<String>) -> Self {
        NoDelayTransportFactory { url: url.into() }
    }
}

#[async_trait::async_trait]
impl TransportFactory for NoDelayTransportFactory {
    async fn create_transport(&self) -> Result<(Arc<dyn Transport>, Receiver<TransportEvent>), anyhow::Error> {
        let uri: http::Uri = self.url.parse().with_context(|| format!("the WhatsApp URL {}", self.url))?;
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            other => anyhow::bail!("the WhatsApp URL {} has the scheme {other:?}; ws or wss expected", self.url),
        };
        let host = uri
            .host()
            .with_context(|| format!("the WhatsApp URL {} names no host", self.url))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        // As the stock resolver: the first address.
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
        tcp.set_nodelay(true).context("set TCP_NODELAY")?;
        // The stock TLS configuration exactly; plain only for a ws:// URL (the simulator's).
        let connector = if tls { default_tls_connector() } else { Connector::Plain };
        let stream = connector.wrap(&host, tcp).await.context("TLS handshake")?;
        let (ws, _) = tokio_websockets::ClientBuilder::from_uri(uri)
            .add_header(http::header::ORIGIN, http::HeaderValue::from_static(WHATSAPP_ORIGIN))
            .context("the Origin header")?
            .connect_on(stream)
            .await
            .context("WebSocket upgrade")?;
        Ok(from_websocket(ws))
    }
}
