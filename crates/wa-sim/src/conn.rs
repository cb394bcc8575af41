//! One client connection, from accept to close: the server's side of the wire, and what it
//! does with a connection before the router takes its stanzas.
//!
//! The wire format is WhatsApp's: the client opens with the 4-byte `WA` prologue, every
//! message is a 3-byte big-endian length and a payload, the handshake runs Noise XX (or IK for
//! a returning device that cached our static key), and afterwards each payload is AES-GCM with
//! a per-direction counter over a flag byte and a marshalled node.
//!
//! After the handshake a client either registers (a companion to link) or logs in as a
//! linked device; faults decide whether it is refused first. The world and the router know
//! nothing of sockets: they queue [`Outbound`]s on the connection's channel.

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use buffa::Message as _;
use bytes::BytesMut;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::{Message, WebSocketStream};
use wacore::handshake::NoiseHandshake;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, WA_CONN_HEADER};
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::NoiseCipher;
use wacore_noise::framing::FrameDecoder;
use waproto::whatsapp as wa;

use crate::cert::CertAuthority;
use crate::clock::now;
use crate::events::SimEvent;
use crate::keys::{PublishedKeys, be_u32};
use crate::state::{Conn, Inner, Outbound, Peer, Pending, SERVER};

/// Accepts connections until the task is aborted, each served on its own task.
pub(crate) async fn listen(listener: TcpListener, inner: Arc<Inner>, identity: ServerIdentity) {
    let identity = Arc::new(identity);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        // WhatsApp's servers answer at once; Nagle's algorithm would add the simulator's
        // own delays to every figure measured against it.
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        let refused = {
            let mut st = inner.state();
            if st.faults.refuse > 0 {
                st.faults.refuse -= 1;
                Some(st.next_conn())
            } else {
                None
            }
        };
        if let Some(conn) = refused {
            drop(tcp);
            inner.events.push(SimEvent::Refused { conn });
            continue;
        }
        let identity = identity.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(inner, &identity, tcp).await {
                tracing::debug!(error = %format!("{e:#}"), "connection ended with an error");
            }
        });
    }
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

/// One connection, from accept to close.
async fn serve(inner: Arc<Inner>, identity: &ServerIdentity, tcp: TcpStream) -> anyhow::Result<()> {
    let Some(session) = accept(tcp, identity).await? else { return Ok(()) };
    let (tx, rx) = mpsc::unbounded_channel();
    let conn_id = inner.state().next_conn();
    let login = session.payload.username.map(|u| (u.to_string(), session.payload.device.unwrap_or(0) as u16));
    inner.events.push(SimEvent::Connected { conn: conn_id, login: login.clone(), used_ik: session.used_ik });

    let peer = match login {
        None => match register(&inner, conn_id, &session, &tx) {
            Ok(()) => Peer::Registering,
            Err(e) => {
                tracing::debug!(error = %e, "registration refused");
                session.close().await;
                return Ok(());
            }
        },
        Some((phone, device)) => match check_login(&inner, &phone, device, &session) {
            Ok(()) => Peer::Device { phone, device },
            Err(failure) => {
                inner.events.push(SimEvent::LoginRefused { phone, device, reason: failure.reason });
                let mut session = session;
                session.send(&failure.node()).await?;
                session.close().await;
                inner.events.push(SimEvent::Disconnected { conn: conn_id });
                return Ok(());
            }
        },
    };
    inner.state().conns.insert(conn_id, Conn { tx: tx.clone(), peer: peer.clone() });
    if let Peer::Device { phone, device } = &peer {
        let lid = inner.state().phones.get(phone).map(|p| p.lid.clone()).unwrap_or_default();
        let success = NodeBuilder::new("success")
            .attr("t", now().to_string())
            .attr("lid", format!("{lid}@lid"))
            .attr("creation", now().to_string())
            .build();
        let _ = tx.send(Outbound::Node(success));
        inner.events.push(SimEvent::LoggedIn { phone: phone.clone(), device: *device });
    }

    let handler_inner = inner.clone();
    let on_node: Arc<dyn Fn(Node) + Send + Sync> = Arc::new(move |node: Node| {
        crate::router::handle(&handler_inner, conn_id, node);
    });
    let logging_inner = inner.clone();
    let (log_tx, log_rx) = mpsc::unbounded_channel();
    // Record outbound stanzas on their way out, without holding up the pump.
    let forward = tokio::spawn(forward_outbound(logging_inner, conn_id, rx, log_tx));
    let result = pump(session, log_rx, on_node).await;
    forward.abort();
    {
        let mut st = inner.state();
        st.conns.remove(&conn_id);
        st.pending.retain(|_, p| p.conn != conn_id);
        st.code_flows.retain(|_, f| f.conn != conn_id);
    }
    inner.events.push(SimEvent::Disconnected { conn: conn_id });
    result
}

async fn forward_outbound(
    inner: Arc<Inner>,
    conn: u64,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    tx: mpsc::UnboundedSender<Outbound>,
) {
    while let Some(out) = rx.recv().await {
        let delay = inner.state().faults.delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Outbound::Node(node) = &out
            && inner.events.records_stanzas()
        {
            inner.events.push(SimEvent::Stanza {
                conn,
                inbound: false,
                xml: wacore::xml::DisplayableNode(node).to_string(),
            });
        }
        if tx.send(out).is_err() {
            return;
        }
    }
}

/// A new companion: remember its keys and hand it refs for its QR codes.
fn register(inner: &Inner, conn: u64, session: &Session, tx: &mpsc::UnboundedSender<Outbound>) -> anyhow::Result<()> {
    let reg: &wa::client_payload::DevicePairingRegistrationData = session
        .payload
        .device_pairing_data
        .as_option()
        .ok_or_else(|| anyhow!("no username and no registration data"))?;
    let identity_public: [u8; 32] = reg
        .e_ident
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| anyhow!("registration without a 32-byte identity key"))?;
    let signed_prekey = match (&reg.e_skey_id, &reg.e_skey_val, &reg.e_skey_sig) {
        (Some(id), Some(val), Some(sig)) => Some((be_u32(id), val.clone(), sig.clone())),
        _ => None,
    };
    let keys = PublishedKeys {
        registration_id: reg.e_regid.as_deref().map_or(0, be_u32),
        identity: identity_public.to_vec(),
        signed_prekey,
        prekeys: Vec::new(),
    };
    let mut st = inner.state();
    let id = st.next_id();
    // WhatsApp hands out six refs: one QR for 60 s, then five more for 20 s each.
    let refs: Vec<String> = (0..6).map(|_| format!("2@{}", hex::encode(rand::random::<[u8; 16]>()))).collect();
    for r in &refs {
        st.pending.insert(
            r.clone(),
            Pending { conn, noise_public: session.client_static, identity_public, keys: keys.clone(), linking: None },
        );
    }
    let node = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", id)
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-device")
            .children(refs.iter().map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()))
            .build()])
        .build();
    tx.send(Outbound::Node(node)).map_err(|_| anyhow!("connection closed"))?;
    inner.events.push(SimEvent::PairingStarted { conn });
    Ok(())
}

/// Whether `phone:device` may log in with this Noise key; the failure reason if not.
fn check_login(inner: &Inner, phone: &str, device: u16, session: &Session) -> Result<(), Failure> {
    let st = inner.state();
    if let Some((reason, code, expire)) = st.faults.login_failure {
        return Err(Failure { reason, code, expire });
    }
    let known = st.phones.get(phone).and_then(|p| p.devices.get(&device));
    match known {
        Some(d) if d.noise_public == session.client_static => Ok(()),
        // Unknown, unlinked or a different key: the session is not valid any more.
        _ => Err(Failure { reason: 401, code: None, expire: None }),
    }
}

/// A `<failure>` refusing a login.
struct Failure {
    reason: u16,
    code: Option<u16>,
    expire: Option<u64>,
}

impl Failure {
    fn node(&self) -> Node {
        let mut b = NodeBuilder::new("failure").attr("reason", self.reason.to_string());
        if let Some(code) = self.code {
            b = b.attr("code", code.to_string());
        }
        if let Some(expire) = self.expire {
            b = b.attr("expire", expire.to_string());
        }
        b.build()
    }
}

fn public(kp: &KeyPair) -> [u8; 32] {
    kp.public_key.public_key_bytes().try_into().expect("an X25519 public key is 32 bytes")
}

type Ws = WebSocketStream<TcpStream>;

/// A connection after the handshake: who the client says it is, and the encrypted pipe.
struct Session {
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
async fn accept(tcp: TcpStream, identity: &ServerIdentity) -> anyhow::Result<Option<Session>> {
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
async fn pump(
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
