//! The simulated server: accounts, linked devices, connections, and the API tests drive.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::KeyPair;
use waproto::whatsapp as wa;

use crate::cert::CertAuthority;
use crate::conn::{self, Outbound, ServerIdentity, Session};
use crate::events::{EventLog, SimEvent, WaitTimeout};
use crate::faults::{Fault, Faults};
use crate::keys::PublishedKeys;
use crate::keys::be_u32;
use crate::pairing;

/// The server's own JID, as it names itself in `from` attributes.
pub(crate) const SERVER: &str = "s.whatsapp.net";

/// A simulated phone: the primary device of an account.
pub(crate) struct Phone {
    pub lid: String,
    /// The account's identity key: it signs every companion it links.
    pub account: KeyPair,
    /// The phone's own Signal keys, as device 0.
    pub keys: PublishedKeys,
    /// Their private halves, for when this account receives as a contact.
    pub secrets: crate::keys::PhoneSecrets,
    pub devices: BTreeMap<u16, Device>,
    pub next_device: u16,
    pub next_key_index: u32,
    /// Days since the phone was last online ([`Fault::PhoneOffline`]); `None` when it is.
    pub offline_days: Option<u32>,
}

/// A linked companion device, as the server knows it.
#[derive(Clone, Debug)]
pub(crate) struct Device {
    /// The Noise static key it logs in with.
    pub noise_public: [u8; 32],
    pub key_index: u32,
    pub keys: PublishedKeys,
    /// Its `ADVSignedDeviceIdentity`, countersigned at linking; others receive it with its
    /// key bundle so they can check the phone vouched for it.
    pub signed_identity: Vec<u8>,
}

/// A companion that asked to register and is waiting to be scanned.
struct Pending {
    conn: u64,
    noise_public: [u8; 32],
    identity_public: [u8; 32],
    keys: PublishedKeys,
    /// Set once a phone scanned it: (phone, device, key index, pair-success iq id).
    linking: Option<(String, u16, u32, String)>,
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Registering,
    Device { phone: String, device: u16 },
}

pub(crate) struct Conn {
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub peer: Peer,
}

/// A device: its phone number and device number.
pub(crate) type DeviceKey = (String, u16);

/// A companion linking by code: what it sent in `companion_hello`, and the phone's side once
/// the code was typed on the phone.
pub(crate) struct CodeFlow {
    pub conn: u64,
    pub wrapped_companion_ephemeral: Vec<u8>,
    pub pairing_ref: String,
    pub hello: Option<pairing::PrimaryHello>,
}

#[derive(Default)]
pub(crate) struct State {
    pub phones: BTreeMap<String, Phone>,
    pending: HashMap<String, Pending>,
    /// Code flows by the phone number the companion named; WhatsApp routes them by number.
    pub code_flows: HashMap<String, CodeFlow>,
    pub conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_id: u64,
    pub faults: Faults,
    /// Messages sent to a device and not yet acknowledged by it, oldest first: delivered when
    /// it is online, again on its next login until it acknowledges them.
    pub undelivered: HashMap<DeviceKey, Vec<(String, Node)>>,
    /// Every message delivered, by id: where it went and what it was (for redelivery storms).
    pub sent: HashMap<String, Vec<(DeviceKey, Node)>>,
    /// What each contact's message said, by id, to send it again when a device asks for a
    /// retry (it could not decrypt it).
    pub plain: HashMap<String, Plain>,
    /// (contact, message id) of every message a contact received, to show each once.
    pub received: std::collections::HashSet<(String, String)>,
    /// Groups by id (the user part of `ID@g.us`).
    pub groups: BTreeMap<String, Group>,
}

/// A group: its subject and its members' phone numbers, the creator first.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub subject: String,
    pub members: Vec<String>,
    pub created: u64,
}

impl Group {
    /// The `<group>` node of a `w:g2` answer.
    pub fn node(&self, id: &str) -> Node {
        let participants = self.members.iter().enumerate().map(|(i, m)| {
            let p = NodeBuilder::new("participant").attr("jid", format!("{m}@s.whatsapp.net"));
            if i == 0 { p.attr("type", "superadmin").build() } else { p.build() }
        });
        NodeBuilder::new("group")
            .attr("id", id.to_owned())
            .attr("subject", self.subject.clone())
            .attr("creation", self.created.to_string())
            .attr("creator", format!("{}@s.whatsapp.net", self.members.first().cloned().unwrap_or_default()))
            .attr("addressing_mode", "pn")
            .children(participants)
            .build()
    }
}

impl State {
    /// A fresh stanza id for server-initiated requests.
    pub fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("sim-{}", self.next_id)
    }

    pub fn send(&self, conn: u64, node: Node) {
        if let Some(c) = self.conns.get(&conn) {
            // A closed connection's receiver is gone; what it would have got is moot.
            let _ = c.tx.send(Outbound::Node(node));
        }
    }

    /// The open connections of `phone:device`.
    pub fn conns_of(&self, phone: &str, device: u16) -> Vec<u64> {
        let peer = Peer::Device { phone: phone.to_owned(), device };
        self.conns.iter().filter(|(_, c)| c.peer == peer).map(|(id, _)| *id).collect()
    }

    /// Delivers a message to a device: queued until it acknowledges, recorded for storms, and
    /// sent now if it is online.
    pub fn deliver(&mut self, phone: &str, device: u16, id: &str, node: Node) {
        self.undelivered.entry((phone.to_owned(), device)).or_default().push((id.to_owned(), node.clone()));
        self.sent.entry(id.to_owned()).or_default().push(((phone.to_owned(), device), node.clone()));
        for conn in self.conns_of(phone, device) {
            self.send(conn, node.clone());
        }
    }

    pub fn close(&self, conn: u64) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.tx.send(Outbound::Close);
        }
    }
}

pub(crate) struct Inner {
    identity: ServerIdentity,
    ca: CertAuthority,
    state: Mutex<State>,
    pub events: EventLog,
    /// Each contact's Signal state, by phone number. Async: encryption awaits the stores.
    pub contacts: tokio::sync::Mutex<HashMap<String, crate::contacts::ContactCrypto>>,
}

impl Inner {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("simulator state poisoned")
    }
}

/// Identity of a simulated phone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneInfo {
    /// The phone number, digits only.
    pub phone: String,
    /// Its LID user part (digits), as in `LID@lid`.
    pub lid: String,
}

/// A running simulator. Dropping it stops the listener; connections end with it.
pub struct Sim {
    inner: Arc<Inner>,
    addr: SocketAddr,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Sim {
    /// Starts a simulator on 127.0.0.1 with a port the OS picks.
    pub async fn start() -> anyhow::Result<Sim> {
        Sim::start_on("127.0.0.1:0".parse().expect("valid address")).await
    }

    /// Starts a simulator on `addr`, which must be a loopback address.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Sim> {
        if !addr.ip().is_loopback() {
            bail!("wa-sim listens on loopback only, not {addr}");
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let ca = CertAuthority::generate();
        let inner = Arc::new(Inner {
            identity: ServerIdentity::new(&ca),
            ca,
            state: Mutex::new(State::default()),
            events: EventLog::default(),
            contacts: tokio::sync::Mutex::new(HashMap::new()),
        });
        let accept_inner = inner.clone();
        let listener = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                // WhatsApp's servers answer at once; Nagle's algorithm would add the simulator's
                // own delays to every figure measured against it.
                let _ = tcp.set_nodelay(true);
                let inner = accept_inner.clone();
                let refused = {
                    let mut st = inner.state();
                    let refuse = st.faults.refuse > 0;
                    if refuse {
                        st.faults.refuse -= 1;
                        st.next_conn += 1;
                    }
                    refuse.then_some(st.next_conn)
                };
                if let Some(conn) = refused {
                    drop(tcp);
                    inner.events.push(SimEvent::Refused { conn });
                    continue;
                }
                tokio::spawn(async move {
                    if let Err(e) = serve(inner, tcp).await {
                        tracing::debug!(error = %format!("{e:#}"), "connection ended with an error");
                    }
                });
            }
        });
        Ok(Sim { inner, addr, listener })
    }

    /// The URL a client connects to: `ws://127.0.0.1:PORT/ws/chat`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root key the certificate chain is signed with.
    pub fn root_public_key(&self) -> [u8; 32] {
        self.inner.ca.root_public_key()
    }

    /// Creates a phone (an account) with a fresh LID. Idempotent for the same number.
    pub fn add_phone(&self, phone: &str) -> PhoneInfo {
        let mut st = self.inner.state();
        let p = st.phones.entry(phone.to_owned()).or_insert_with(|| {
            let account = KeyPair::generate(&mut rand::rng());
            let (keys, secrets) = crate::keys::phone_keys(&account);
            Phone {
                // LIDs are opaque 14-15 digit numbers, unrelated to the phone number.
                lid: format!("{}", 100_000_000_000_000u64 + rand::random::<u64>() % 900_000_000_000_000),
                keys,
                secrets,
                account,
                devices: BTreeMap::new(),
                next_device: 1,
                next_key_index: 1,
                offline_days: None,
            }
        });
        PhoneInfo { phone: phone.to_owned(), lid: p.lid.clone() }
    }

    /// The phone scans a companion's QR code: the server sends it `pair-success`. The link is
    /// complete when [`SimEvent::DeviceLinked`] is recorded.
    pub fn link_qr(&self, phone: &str, qr: &str) -> anyhow::Result<()> {
        let scanned = pairing::parse_qr(qr)?;
        let mut st = self.inner.state();
        let pending =
            st.pending.get(&scanned.pairing_ref).ok_or_else(|| anyhow!("the QR code's ref is unknown or expired"))?;
        if pending.noise_public != scanned.noise_public || pending.identity_public != scanned.identity_public {
            bail!("the QR code's keys do not match the device that registered this ref");
        }
        let conn = pending.conn;
        send_pair_success(&mut st, phone, conn, &scanned.adv_secret)
    }

    /// The user types the code a companion showed into the phone: the phone answers the
    /// companion's `companion_hello` with `primary_hello`. The link completes (or fails, for a
    /// wrong code) when the companion sends `companion_finish`.
    pub fn link_code(&self, phone: &str, code: &str) -> anyhow::Result<()> {
        let code: String = code.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_uppercase();
        let mut st = self.inner.state();
        let id = st.next_id();
        let account_public = st
            .phones
            .get(phone)
            .ok_or_else(|| anyhow!("no phone {phone}; add it first"))?
            .account
            .public_key
            .public_key_bytes()
            .to_vec();
        let flow =
            st.code_flows.get_mut(phone).ok_or_else(|| anyhow!("no device is waiting to link to {phone} by code"))?;
        let hello = pairing::primary_hello(&flow.wrapped_companion_ephemeral, &code)?;
        let node = NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "link_code_companion_reg")
            .attr("id", id)
            .children([NodeBuilder::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .children([
                    NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .bytes(hello.wrapped.to_vec())
                        .build(),
                    NodeBuilder::new("primary_identity_pub").bytes(account_public).build(),
                    NodeBuilder::new("link_code_pairing_ref").bytes(flow.pairing_ref.as_bytes().to_vec()).build(),
                ])
                .build()])
            .build();
        flow.hello = Some(hello);
        let conn = flow.conn;
        st.send(conn, node);
        Ok(())
    }

    /// A contact (an account of the simulator, writing from its phone) sends `text` to every
    /// linked device of `to`, end-to-end encrypted. With `as_lid` it writes from its LID, its
    /// phone number in `sender_pn`, as WhatsApp addresses LID-migrated chats. Returns the id.
    pub async fn send_text(&self, from: &str, to: &str, text: &str, as_lid: bool) -> anyhow::Result<String> {
        let addressing = if as_lid { Addressing::Lid } else { Addressing::Phone };
        self.send_text_addressed(from, to, text, addressing).await
    }

    /// [`Sim::send_text`] with the sender's addressing chosen exactly.
    pub async fn send_text_addressed(
        &self,
        from: &str,
        to: &str,
        text: &str,
        addressing: Addressing,
    ) -> anyhow::Result<String> {
        let message = waproto::whatsapp::Message { conversation: Some(text.to_owned()), ..Default::default() };
        send_message(&self.inner, from, to, &message, addressing, None, None).await
    }

    /// Creates a group of existing phones (the first is its creator and admin); returns its JID.
    pub fn create_group(&self, subject: &str, members: &[&str]) -> anyhow::Result<String> {
        let mut st = self.inner.state();
        if let Some(m) = members.iter().find(|m| !st.phones.contains_key(**m)) {
            bail!("no phone {m}; add it first");
        }
        let id = format!("120363{:012}", rand::random::<u64>() % 1_000_000_000_000);
        let group = Group {
            subject: subject.to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            created: now(),
        };
        st.groups.insert(id.clone(), group);
        Ok(format!("{id}@g.us"))
    }

    /// A member writes `text` to a group: every other member's linked devices get it,
    /// encrypted with the member's sender key (`skmsg`), whose distribution message rides
    /// along, pairwise encrypted, as WhatsApp sends it. Returns the id.
    pub async fn send_group_text(&self, from: &str, group: &str, text: &str) -> anyhow::Result<String> {
        let message = waproto::whatsapp::Message { conversation: Some(text.to_owned()), ..Default::default() };
        send_group_message(&self.inner, from, group, &message).await
    }

    /// The owner of `phone` types `text` on the phone itself, in the chat `chat` (a JID; the
    /// phone's own JID is its "Message yourself" chat). WhatsApp copies it to the linked
    /// devices as a device-sent message from the account, addressed with `recipient`.
    pub async fn send_from_phone(&self, phone: &str, chat: &str, text: &str) -> anyhow::Result<String> {
        let inner = waproto::whatsapp::Message { conversation: Some(text.to_owned()), ..Default::default() };
        let message = waproto::whatsapp::Message {
            device_sent_message: buffa::MessageField::some(waproto::whatsapp::message::DeviceSentMessage {
                destination_jid: Some(chat.to_owned()),
                message: buffa::MessageField::some(inner),
                ..Default::default()
            }),
            ..Default::default()
        };
        send_message(&self.inner, phone, phone, &message, Addressing::Phone, None, Some(chat)).await
    }

    /// Injects a fault. Faults that concern a phone or device fail if it does not exist.
    pub fn inject(&self, fault: Fault) -> anyhow::Result<()> {
        let mut st = self.inner.state();
        match fault {
            Fault::DropConnections => st.conns.values().for_each(|c| {
                let _ = c.tx.send(Outbound::Abort);
            }),
            Fault::RefuseConnections(n) => st.faults.refuse = n,
            Fault::SlowResponses(d) => st.faults.delay = d,
            Fault::FailLogins { reason } => st.faults.login_failure = Some((reason, None, None)),
            Fault::TemporaryBan { code, expire } => {
                st.faults.login_failure = Some((402, Some(code), Some(expire.as_secs())));
            }
            Fault::StreamError { code } => {
                let error = NodeBuilder::new("stream:error").attr("code", code.to_string()).build();
                for c in st.conns.values() {
                    let _ = c.tx.send(Outbound::Node(error.clone()));
                    let _ = c.tx.send(Outbound::Close);
                }
            }
            Fault::RedeliveryStorm { id, times } => {
                let copies = st.sent.get(&id).cloned().ok_or_else(|| anyhow!("no message {id} was sent"))?;
                for ((phone, device), node) in copies {
                    let targets = st.conns_of(&phone, device);
                    for _ in 0..times {
                        for c in &targets {
                            st.send(*c, node.clone());
                        }
                    }
                }
            }
            Fault::Replaced { phone } => {
                if !st.phones.contains_key(&phone) {
                    bail!("no phone {phone}");
                }
                let targets: Vec<u64> = st
                    .conns
                    .iter()
                    .filter(|(_, c)| matches!(&c.peer, Peer::Device { phone: p, .. } if *p == phone))
                    .map(|(id, _)| *id)
                    .collect();
                for conn in targets {
                    st.send(conn, conflict("replaced"));
                    st.close(conn);
                }
            }
            Fault::PhoneOffline { phone, days } => {
                let p = st.phones.get_mut(&phone).ok_or_else(|| anyhow!("no phone {phone}"))?;
                p.offline_days = Some(days);
                let removed: Vec<u16> = if days >= crate::faults::COMPANION_LOGOUT_DAYS {
                    std::mem::take(&mut p.devices).into_keys().collect()
                } else {
                    Vec::new()
                };
                for device in removed {
                    for conn in st.conns_of(&phone, device) {
                        st.send(conn, conflict("device_removed"));
                        st.close(conn);
                    }
                }
                drop(st);
                self.inner.events.push(SimEvent::PhoneOffline { phone, days });
                return Ok(());
            }
            Fault::DeviceRemoved { phone, device } => {
                let p = st.phones.get_mut(&phone).ok_or_else(|| anyhow!("no phone {phone}"))?;
                p.devices.remove(&device).ok_or_else(|| anyhow!("phone {phone} has no device {device}"))?;
                for conn in st.conns_of(&phone, device) {
                    st.send(conn, conflict("device_removed"));
                    st.close(conn);
                }
            }
        }
        Ok(())
    }

    /// Ends every fault in force (refusals, delays, login failures).
    pub fn clear_faults(&self) {
        self.inner.state().faults = Faults::default();
    }

    /// What a contact received: `(from, id, text)` in order.
    pub fn inbox(&self, contact: &str) -> Vec<(String, String, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SimEvent::MessageReceived { contact: c, from, id, text } if c == contact => Some((from, id, text)),
                _ => None,
            })
            .collect()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<SimEvent> {
        self.inner.events.snapshot()
    }

    /// The events at and after position `from`.
    pub fn events_since(&self, from: usize) -> Vec<SimEvent> {
        self.inner.events.since(from)
    }

    /// Waits until `n` events at or after `from` match `pred`; returns the position after the
    /// last of them. (The predicate runs under the log's lock: it must not call the simulator.)
    pub async fn wait_count(
        &self,
        from: usize,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&SimEvent) -> bool,
    ) -> Result<usize, WaitTimeout> {
        self.inner.events.wait_count(from, n, timeout, pred).await
    }

    /// Whether every stanza is recorded as a [`SimEvent::Stanza`] (the default). Benchmarks
    /// turn it off: formatting each stanza is the simulator's cost, not the client's.
    pub fn record_stanzas(&self, on: bool) {
        self.inner.events.set_record_stanzas(on);
    }

    /// A position in the event log, for waiting only on what happens after it.
    pub fn cursor(&self) -> usize {
        self.inner.events.len()
    }

    /// Waits for the first event at or after `from` that matches.
    pub async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&SimEvent) -> bool,
    ) -> Result<SimEvent, WaitTimeout> {
        self.inner.events.wait_for(from, timeout, pred).await
    }

    /// How many connections reached the handshake so far.
    pub fn connection_count(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, SimEvent::Connected { .. })).count()
    }

    /// The devices linked to a phone.
    pub fn devices(&self, phone: &str) -> Vec<u16> {
        self.inner.state().phones.get(phone).map(|p| p.devices.keys().copied().collect()).unwrap_or_default()
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One connection, from accept to close.
async fn serve(inner: Arc<Inner>, tcp: TcpStream) -> anyhow::Result<()> {
    let Some(session) = conn::accept(tcp, &inner.identity).await? else { return Ok(()) };
    let (tx, rx) = mpsc::unbounded_channel();
    let conn_id = {
        let mut st = inner.state();
        st.next_conn += 1;
        st.next_conn
    };
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
    let result = conn::pump(session, log_rx, on_node).await;
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

/// The companion signed its identity: it is linked. Tell it to reconnect (515) and log in.
pub(crate) fn complete_link(inner: &Arc<Inner>, conn: u64, iq_id: &str, signed_identity: &[u8]) {
    let mut st = inner.state();
    let Some(pending) =
        st.pending.values().find(|p| p.conn == conn && p.linking.as_ref().is_some_and(|l| l.3 == iq_id))
    else {
        return;
    };
    if let Err(e) = pairing::verify_device_signature(signed_identity, &pending.identity_public) {
        tracing::warn!(error = %e, "companion answered pair-success with a bad signature");
        return;
    }
    let Some((phone, device, key_index, _)) = pending.linking.clone() else { return };
    let record = Device {
        noise_public: pending.noise_public,
        key_index,
        keys: pending.keys.clone(),
        signed_identity: signed_identity.to_vec(),
    };
    st.pending.retain(|_, p| p.conn != conn);
    if let Some(p) = st.phones.get_mut(&phone) {
        p.devices.insert(device, record);
    }
    st.send(conn, NodeBuilder::new("stream:error").attr("code", "515").build());
    st.close(conn);
    drop(st);
    inner.events.push(SimEvent::DeviceLinked { phone: phone.clone(), device });
    // As a phone does right after linking: share the app-state key with the new device, so
    // it need not wait for one. It is queued for the device's first login.
    let inner = inner.clone();
    tokio::spawn(async move {
        let share = crate::contacts::app_state_key_share();
        if let Err(e) = send_message(&inner, &phone, &phone, &share, Addressing::Phone, Some(device), None).await {
            tracing::warn!(error = %format!("{e:#}"), "could not share the app-state key");
        }
    });
}

fn conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict").attr("type", kind.to_owned()).build()])
        .build()
}

/// Sends `pair-success` to a registering connection, as `phone`'s new device.
pub(crate) fn send_pair_success(st: &mut State, phone: &str, conn: u64, adv_secret: &[u8; 32]) -> anyhow::Result<()> {
    let id = st.next_id();
    let p = st.phones.get_mut(phone).ok_or_else(|| anyhow!("no phone {phone}; add it first"))?;
    let pending = st
        .pending
        .values_mut()
        .find(|p| p.conn == conn)
        .ok_or_else(|| anyhow!("that device is no longer waiting to be linked"))?;
    if pending.linking.is_some() {
        bail!("this device is already being linked");
    }
    let device = p.next_device;
    let key_index = p.next_key_index;
    p.next_device += 1;
    p.next_key_index += 1;
    let identity = pairing::device_identity(&p.account, &pending.identity_public, adv_secret, key_index, now());
    let success = NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", id.clone())
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-success")
            .children([
                NodeBuilder::new("device-identity").bytes(identity).build(),
                NodeBuilder::new("device")
                    .attr("jid", format!("{phone}:{device}@s.whatsapp.net"))
                    .attr("lid", format!("{}:{device}@lid", p.lid))
                    .build(),
                NodeBuilder::new("platform").attr("name", "android").build(),
            ])
            .build()])
        .build();
    pending.linking = Some((phone.to_owned(), device, key_index, id));
    st.send(conn, success);
    Ok(())
}

/// The registering companion's identity key, as it sent it at registration.
pub(crate) fn companion_identity(st: &State, conn: u64) -> Option<[u8; 32]> {
    st.pending.values().find(|p| p.conn == conn).map(|p| p.identity_public)
}

/// A contact's Signal state, made from its account and keys the first time it is needed.
pub(crate) fn crypto_for<'a>(
    inner: &Inner,
    contacts: &'a mut HashMap<String, crate::contacts::ContactCrypto>,
    phone: &str,
) -> anyhow::Result<&'a mut crate::contacts::ContactCrypto> {
    match contacts.entry(phone.to_owned()) {
        std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
        std::collections::hash_map::Entry::Vacant(v) => {
            let st = inner.state();
            let p = st.phones.get(phone).ok_or_else(|| anyhow!("no account {phone}"))?;
            Ok(v.insert(crate::contacts::ContactCrypto::new(&p.account, p.keys.registration_id, &p.secrets)))
        }
    }
}

/// `from`'s phone sends `message` to the linked devices of `to` (all, or just `only`),
/// end-to-end encrypted; queued per device until acknowledged. Returns the message id.
pub(crate) async fn send_group_message(
    inner: &Inner,
    from: &str,
    group: &str,
    message: &waproto::whatsapp::Message,
) -> anyhow::Result<String> {
    let id = format!("3EB0{}", hex::encode_upper(rand::random::<[u8; 8]>()));
    let group_id = group.split('@').next().unwrap_or_default();
    let targets: Vec<(String, u16)> = {
        let st = inner.state();
        let g = st.groups.get(group_id).ok_or_else(|| anyhow!("no group {group}"))?;
        if !g.members.iter().any(|m| m == from) {
            bail!("{from} is not a member of {group}");
        }
        g.members
            .iter()
            .filter(|m| *m != from)
            .flat_map(|m| {
                st.phones.get(m).into_iter().flat_map(move |p| p.devices.keys().map(move |d| (m.clone(), *d)))
            })
            .collect()
    };
    let mut contacts = inner.contacts.lock().await;
    let crypto = crypto_for(inner, &mut contacts, from)?;
    let own = wacore_libsignal::protocol::ProtocolAddress::new(from, 0.into());
    let (skdm, skmsg) = crate::contacts::group_encrypt_message(crypto, group, &own, message).await?;
    let distribution = waproto::whatsapp::Message {
        sender_key_distribution_message: buffa::MessageField::some(
            waproto::whatsapp::message::SenderKeyDistributionMessage {
                group_id: Some(group.to_owned()),
                axolotl_sender_key_distribution_message: Some(skdm),
            },
        ),
        ..Default::default()
    };
    for (member, device) in targets {
        let address = wacore_libsignal::protocol::ProtocolAddress::new(&member, u32::from(device).into());
        let bundle = if crypto.has_session(&address) { None } else { take_bundle(inner, &member, device) };
        let (kind, ciphertext) = crate::contacts::encrypt_message(crypto, &address, bundle, &distribution).await?;
        let node = NodeBuilder::new("message")
            .attr("id", id.clone())
            .attr("from", group.to_owned())
            .attr("participant", format!("{from}@s.whatsapp.net"))
            .attr("t", now().to_string())
            .attr("type", "text")
            .attr("notify", format!("Contact {from}"))
            .children([
                NodeBuilder::new("enc").attr("v", "2").attr("type", kind).bytes(ciphertext).build(),
                NodeBuilder::new("enc").attr("v", "2").attr("type", "skmsg").bytes(skmsg.clone()).build(),
            ])
            .build();
        inner.state().deliver(&member, device, &id, node);
    }
    inner.events.push(SimEvent::MessageSent { from: from.to_owned(), to: group.to_owned(), id: id.clone() });
    Ok(id)
}

/// A contact's message as written, before encryption.
#[derive(Clone, Debug)]
pub(crate) struct Plain {
    from: String,
    to: String,
    message: waproto::whatsapp::Message,
    addressing: Addressing,
    recipient: Option<String>,
}

/// How a contact's message names its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// From the phone number.
    Phone,
    /// From the LID, with the phone number alongside (`sender_pn`), as WhatsApp usually does.
    Lid,
    /// From the LID alone: the recipient does not learn the phone number from this message.
    LidOnly,
}

pub(crate) async fn send_message(
    inner: &Inner,
    from: &str,
    to: &str,
    message: &waproto::whatsapp::Message,
    addressing: Addressing,
    only: Option<u16>,
    recipient: Option<&str>,
) -> anyhow::Result<String> {
    let id = format!("3EB0{}", hex::encode_upper(rand::random::<[u8; 8]>()));
    let mut contacts = inner.contacts.lock().await;
    let (lid, devices) = {
        let st = inner.state();
        let sender = st.phones.get(from).ok_or_else(|| anyhow!("no contact {from}; add it first"))?;
        let recipient = st.phones.get(to).ok_or_else(|| anyhow!("no phone {to}"))?;
        let devices: Vec<u16> = recipient.devices.keys().copied().filter(|d| only.is_none_or(|o| o == *d)).collect();
        (sender.lid.clone(), devices)
    };
    if devices.is_empty() {
        bail!("{to} has no linked device to receive it");
    }
    let crypto = crypto_for(inner, &mut contacts, from)?;
    let plain = Plain {
        from: from.to_owned(),
        to: to.to_owned(),
        message: message.clone(),
        addressing,
        recipient: recipient.map(str::to_owned),
    };
    for device in devices {
        let address = device_address(&plain, device);
        let bundle = if crypto.has_session(&address) { None } else { take_bundle(inner, to, device) };
        let (kind, ciphertext) = crate::contacts::encrypt_message(crypto, &address, bundle, message).await?;
        let node = contact_stanza(&plain, &lid, &id, kind, ciphertext);
        inner.state().deliver(to, device, &id, node);
    }
    inner.state().plain.insert(id.clone(), plain);
    inner.events.push(SimEvent::MessageSent { from: from.to_owned(), to: to.to_owned(), id: id.clone() });
    Ok(id)
}

/// The address a contact's session with `device` goes by: one session per addressing mode, as
/// the recipient keys sessions by the sender's address.
fn device_address(p: &Plain, device: u16) -> wacore_libsignal::protocol::ProtocolAddress {
    let name = if p.addressing == Addressing::Phone { p.to.clone() } else { format!("{}.lid", p.to) };
    wacore_libsignal::protocol::ProtocolAddress::new(&name, u32::from(device).into())
}

/// The `<message>` stanza that carries a contact's ciphertext to a device.
fn contact_stanza(p: &Plain, lid: &str, id: &str, kind: &'static str, ciphertext: Vec<u8>) -> Node {
    let kind_attr = if p.message.protocol_message.is_set() { "protocol" } else { "text" };
    let mut stanza = NodeBuilder::new("message")
        .attr("id", id.to_owned())
        .attr("t", now().to_string())
        .attr("type", kind_attr)
        .attr("notify", format!("Contact {}", p.from));
    stanza = if p.addressing != Addressing::Phone {
        stanza = stanza.attr("from", format!("{lid}@lid")).attr("addressing_mode", "lid");
        match p.addressing {
            Addressing::LidOnly => stanza,
            _ => stanza.attr("sender_pn", format!("{}@s.whatsapp.net", p.from)),
        }
    } else {
        stanza.attr("from", format!("{}@s.whatsapp.net", p.from))
    };
    if let Some(r) = &p.recipient {
        stanza = stanza.attr("recipient", r.clone());
    }
    stanza.children([NodeBuilder::new("enc").attr("v", "2").attr("type", kind).bytes(ciphertext).build()]).build()
}

/// A device could not decrypt message `id` and asked for a retry: the contact's phone drops
/// its session with that device, starts a new one from the device's published keys and sends
/// the message again under the same id, as WhatsApp phones do. Without this, a retry receipt
/// would end the message's life in the simulator while WhatsApp would deliver it.
pub(crate) async fn resend_after_retry(inner: Arc<Inner>, phone: String, device: u16, id: String) {
    let Some(plain) = inner.state().plain.get(&id).cloned() else { return };
    if plain.to != phone {
        return;
    }
    let Some(lid) = inner.state().phones.get(&plain.from).map(|p| p.lid.clone()) else { return };
    let mut contacts = inner.contacts.lock().await;
    let Ok(crypto) = crypto_for(&inner, &mut contacts, &plain.from) else { return };
    let address = device_address(&plain, device);
    crypto.forget_session(&address);
    let bundle = take_bundle(&inner, &plain.to, device);
    if let Ok((kind, ciphertext)) = crate::contacts::encrypt_message(crypto, &address, bundle, &plain.message).await {
        let node = contact_stanza(&plain, &lid, &id, kind, ciphertext);
        inner.state().deliver(&plain.to, device, &id, node);
    }
}

/// A pre-key bundle of `phone:device` from the directory, consuming one one-time key.
fn take_bundle(inner: &Inner, phone: &str, device: u16) -> Option<crate::contacts::Bundle> {
    let mut st = inner.state();
    let keys = &mut st.phones.get_mut(phone)?.devices.get_mut(&device)?.keys;
    let signed_prekey = keys.signed_prekey.clone()?;
    let prekey = (!keys.prekeys.is_empty()).then(|| keys.prekeys.remove(0));
    Some(crate::contacts::Bundle {
        registration_id: keys.registration_id,
        identity: keys.identity.clone(),
        signed_prekey,
        prekey,
    })
}
