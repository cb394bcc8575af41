//! One client connection: WebSocket, the Noise handshake as the responder, then encrypted
//! binary nodes in both directions.
//!
//! The wire format is WhatsApp's: the client opens with the 4-byte `WA` prologue, every
//! message is a 3-byte big-endian length and a payload, the handshake runs Noise XX (or IK for
//! a returning device that cached our static key), and afterwards each payload is AES-GCM with
//! a per-direction counter over a flag byte and a marshalled node.

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use buffa::Message as _;
use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_websockets::{Message, WebSocketStream};
use wacore::handshake::NoiseHandshake;
use wacore_binary::Node;
use wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, WA_CONN_HEADER};
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::NoiseCipher;
use wacore_noise::framing::FrameDecoder;
use waproto::whatsapp as wa;

use crate::cert::CertAuthority;

/// What the server side asks a connection to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Encrypt and send a node.
    Node(Node),
    /// Close the socket after everything queued before it.
    Close,
    /// Drop the TCP connection at once, as a network failure would.
    Abort,
}

/// The server's long-lived Noise identity.
pub(crate) struct ServerIdentity {
    pub static_kp: KeyPair,
    pub cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub fn new(ca: &CertAuthority) -> ServerIdentity {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let cert_chain = ca.chain_for(&public(&static_kp));
        ServerIdentity { static_kp, cert_chain }
    }
}

fn public(kp: &KeyPair) -> [u8; 32] {
    kp.public_key.public_key_bytes().try_into().expect("an X25519 public key is 32 bytes")
}

type Ws = WebSocketStream<TcpStream>;

/// A connection after the handshake: who the client says it is, and the encrypted pipe.
pub(crate) struct Session {
    pub payload: wa::ClientPayload,
    /// The client's Noise static key, which identifies a device across connections.
    pub client_static: [u8; 32],
    /// Whether the client used IK (it had cached our static key from an earlier XX).
    pub used_ik: bool,
    ws: Ws,
    decoder: FrameDecoder,
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("used_ik", &self.used_ik).finish_non_exhaustive()
    }
}

/// Reads WebSocket messages until one whole frame is buffered.
async fn next_frame(ws: &mut Ws, decoder: &mut FrameDecoder) -> anyhow::Result<Option<BytesMut>> {
    loop {
        if let Some(frame) = decoder.decode_frame() {
            return Ok(Some(frame));
        }
        match ws.next().await {
            Some(Ok(msg)) if msg.is_binary() => decoder.feed(msg.as_payload()),
            Some(Ok(msg)) if msg.is_close() => return Ok(None),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(None),
        }
    }
}

async fn send_frame(ws: &mut Ws, payload: &[u8]) -> anyhow::Result<()> {
    let framed = wacore::framing::encode_frame(payload, None)?;
    ws.send(Message::binary(bytes::Bytes::from(framed))).await?;
    Ok(())
}

/// Accepts the WebSocket upgrade and runs the Noise handshake as the responder.
pub(crate) async fn accept(tcp: TcpStream, identity: &ServerIdentity) -> anyhow::Result<Option<Session>> {
    let (_request, mut ws) = tokio_websockets::ServerBuilder::new().accept(tcp).await.context("websocket upgrade")?;
    let mut decoder = FrameDecoder::new();

    // The prologue arrives in front of the first frame.
    let mut first = Vec::new();
    while first.len() < WA_CONN_HEADER.len() {
        match ws.next().await {
            Some(Ok(msg)) if msg.is_binary() => first.extend_from_slice(msg.as_payload()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(None),
        }
    }
    if first[..4] != WA_CONN_HEADER {
        bail!("client did not open with the WA prologue (got {:02x?})", &first[..4]);
    }
    decoder.feed(&first[4..]);

    let Some(hello) = next_frame(&mut ws, &mut decoder).await? else { return Ok(None) };
    let hello = wa::HandshakeMessage::decode_from_slice(&hello).context("client hello")?;
    let ch = hello.client_hello.into_option().ok_or_else(|| anyhow!("first message is not a client hello"))?;
    let client_eph: [u8; 32] = ch
        .ephemeral
        .ok_or_else(|| anyhow!("client hello without ephemeral"))?
        .try_into()
        .map_err(|_| anyhow!("ephemeral is not 32 bytes"))?;
    let server_static_pub = public(&identity.static_kp);
    let server_static_priv = identity.static_kp.private_key.serialize();

    let server_eph = KeyPair::generate(&mut rand::rng());
    let server_eph_pub = public(&server_eph);
    let server_eph_priv = server_eph.private_key.serialize();

    let (noise, payload_bytes, client_static, used_ik) = match (ch.r#static, ch.payload) {
        // IK: `<- s` pre-message, `-> e, es, s, ss` + payload, `<- e, ee, se` + cert.
        (Some(enc_static), Some(enc_payload)) => {
            let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
            noise.authenticate(&server_static_pub);
            noise.authenticate(&client_eph);
            noise.mix_shared_secret(server_static_priv, &client_eph)?;
            let client_static: [u8; 32] =
                noise.decrypt(&enc_static)?.try_into().map_err(|_| anyhow!("client static is not 32 bytes"))?;
            noise.mix_shared_secret(server_static_priv, &client_static)?;
            let payload = noise.decrypt(&enc_payload)?;
            noise.authenticate(&server_eph_pub);
            noise.mix_shared_secret(server_eph_priv, &client_eph)?;
            noise.mix_shared_secret(server_eph_priv, &client_static)?;
            let enc_cert = noise.encrypt(&identity.cert_chain)?;
            let hello = wa::HandshakeMessage {
                server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
                    ephemeral: Some(server_eph_pub.to_vec()),
                    payload: Some(enc_cert),
                    ..Default::default()
                }),
                ..Default::default()
            };
            send_frame(&mut ws, &hello.encode_to_vec()).await?;
            (noise, payload, client_static, true)
        }
        // XX: `-> e`, `<- e, ee, s, es` + cert, `-> s, se` + payload.
        _ => {
            let mut noise = NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER)?;
            noise.authenticate(&client_eph);
            noise.authenticate(&server_eph_pub);
            noise.mix_shared_secret(server_eph_priv, &client_eph)?;
            let enc_static = noise.encrypt(&server_static_pub)?;
            noise.mix_shared_secret(server_static_priv, &client_eph)?;
            let enc_cert = noise.encrypt(&identity.cert_chain)?;
            let hello = wa::HandshakeMessage {
                server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
                    ephemeral: Some(server_eph_pub.to_vec()),
                    r#static: Some(enc_static),
                    payload: Some(enc_cert),
                    ..Default::default()
                }),
                ..Default::default()
            };
            send_frame(&mut ws, &hello.encode_to_vec()).await?;
            let Some(finish) = next_frame(&mut ws, &mut decoder).await? else { return Ok(None) };
            let finish = wa::HandshakeMessage::decode_from_slice(&finish).context("client finish")?;
            let cf = finish.client_finish.into_option().ok_or_else(|| anyhow!("expected a client finish"))?;
            let client_static: [u8; 32] = noise
                .decrypt(cf.r#static.as_deref().ok_or_else(|| anyhow!("client finish without static"))?)?
                .try_into()
                .map_err(|_| anyhow!("client static is not 32 bytes"))?;
            noise.mix_shared_secret(server_eph_priv, &client_static)?;
            let payload =
                noise.decrypt(cf.payload.as_deref().ok_or_else(|| anyhow!("client finish without payload"))?)?;
            (noise, payload, client_static, false)
        }
    };
    let payload = wa::ClientPayload::decode_from_slice(&payload_bytes).context("client payload")?;
    // The split is named from the initiator's side: its write key is our read key.
    let (client_write, client_read) = noise.finish()?;
    Ok(Some(Session {
        payload,
        client_static,
        used_ik,
        ws,
        decoder,
        read: client_write,
        write: client_read,
        read_counter: 0,
        write_counter: 0,
    }))
}

impl Session {
    /// The next node from the client, or `None` when it hung up.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Node>> {
        let Some(mut frame) = next_frame(&mut self.ws, &mut self.decoder).await? else { return Ok(None) };
        self.read.decrypt_in_place_with_counter(self.read_counter, &mut frame)?;
        self.read_counter += 1;
        let unpacked = wacore_binary::util::unpack(&frame)?;
        let node = wacore_binary::marshal::unmarshal_ref(&unpacked)?.to_owned();
        Ok(Some(node))
    }

    pub async fn send(&mut self, node: &Node) -> anyhow::Result<()> {
        let mut plain = wacore_binary::marshal::marshal(node)?;
        self.write.encrypt_in_place_with_counter(self.write_counter, &mut plain)?;
        self.write_counter += 1;
        send_frame(&mut self.ws, &plain).await
    }

    pub async fn close(mut self) {
        let _ = self.ws.close().await;
    }
}

/// Runs a logged-in connection: hands each client node to `on_node`, sends what the server
/// queues, until either side closes.
pub(crate) async fn pump(
    mut session: Session,
    mut outbound: mpsc::UnboundedReceiver<Outbound>,
    on_node: Arc<dyn Fn(Node) + Send + Sync>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            // recv is cancel-safe at this granularity: a partially read frame stays in the decoder.
            incoming = session.recv() => match incoming? {
                Some(node) => on_node(node),
                None => return Ok(()),
            },
            out = outbound.recv() => match out {
                Some(Outbound::Node(node)) => session.send(&node).await?,
                Some(Outbound::Close) | None => {
                    session.close().await;
                    return Ok(());
                }
                // Dropping the session drops the socket: no close frame, no goodbye.
                Some(Outbound::Abort) => return Ok(()),
            },
        }
    }
}
