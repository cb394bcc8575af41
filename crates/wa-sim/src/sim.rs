//! The `Sim` API: what a test (or `wa-sim serve`'s control API) does to the simulated world:
//! start the server, create phones, link devices from them, write as contacts, inject faults,
//! and wait on events.
//!
//! It sits on top: it drives the world, linking and messaging, and starts the connection loop,
//! while none of them know it exists.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::KeyPair;

use crate::cert::CertAuthority;
use crate::clock::now;
use crate::conn::{self, ServerIdentity};
use crate::events::{SimEvent, WaitTimeout};
use crate::faults::{Fault, Faults};
use crate::link::send_pair_success;
use crate::messages::{send_group_message, send_message};
use crate::pairing;
use crate::state::{Addressing, Group, Inner, Outbound, Peer, Phone, SERVER};

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
    ca: CertAuthority,
    addr: SocketAddr,
    listener: JoinHandle<()>,
    cdn: JoinHandle<()>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.listener.abort();
        self.cdn.abort();
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
        let inner = Arc::new(Inner::default());
        let (_, cdn) = crate::media::serve(inner.cdn.clone()).await?;
        let listener = tokio::spawn(conn::listen(listener, inner.clone(), ServerIdentity::new(&ca)));
        Ok(Sim { inner, ca, addr, listener, cdn })
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
        self.ca.root_public_key()
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

    /// The phone scans a companion's QR code, but WhatsApp asks the companion for the
    /// account's passkey before it links it (as it now does for some accounts): the server
    /// sends `passkey_prologue_request` with WebAuthn request options instead of `pair-success`.
    /// Nothing is linked.
    pub fn ask_passkey(&self, qr: &str) -> anyhow::Result<()> {
        let scanned = pairing::parse_qr(qr)?;
        let mut st = self.inner.state();
        let pending =
            st.pending.get(&scanned.pairing_ref).ok_or_else(|| anyhow!("the QR code's ref is unknown or expired"))?;
        let conn = pending.conn;
        let id = st.next_id();
        let options =
            br#"{"challenge":"aGVybWVzLXNpbQ","rpId":"whatsapp.com","userVerification":"required","timeout":600000}"#;
        let node = NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "passkey_prologue_request")
            .attr("id", id)
            .children([NodeBuilder::new("passkey_request_options").bytes(options.to_vec()).build()])
            .build();
        st.send(conn, node);
        Ok(())
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

    /// A contact replies to a message of its chat with `to`, quoting it as a phone does: the
    /// reply's context names the quoted message's id and author and carries a copy of it. The
    /// copy is the text the simulator saw for that id (one the contact received from `to`'s
    /// linked devices), or `copy` when given; with neither, the reply carries the id alone.
    pub async fn send_reply(
        &self,
        from: &str,
        to: &str,
        text: &str,
        quote: &str,
        copy: Option<&str>,
    ) -> anyhow::Result<String> {
        let received = self.inbox(from).into_iter().find(|(_, id, _)| id == quote).map(|(_, _, text)| text);
        let (author, copy) = match (received, copy) {
            (Some(text), None) => (to, Some(text)),
            (_, Some(copy)) => (from, Some(copy.to_owned())),
            (None, None) => (from, None),
        };
        let context = waproto::whatsapp::ContextInfo {
            stanza_id: Some(quote.to_owned()),
            participant: Some(format!("{author}@s.whatsapp.net")),
            quoted_message: copy.map_or_else(buffa::MessageField::none, |c| {
                buffa::MessageField::some(waproto::whatsapp::Message { conversation: Some(c), ..Default::default() })
            }),
            ..Default::default()
        };
        let message = waproto::whatsapp::Message {
            extended_text_message: buffa::MessageField::some(waproto::whatsapp::message::ExtendedTextMessage {
                text: Some(text.to_owned()),
                context_info: buffa::MessageField::some(context),
                ..Default::default()
            }),
            ..Default::default()
        };
        send_message(&self.inner, from, to, &message, Addressing::Phone, None, None).await
    }

    /// A contact sends any message (a location, a contact card, a reaction...) to every linked
    /// device of `to`, end-to-end encrypted, from its phone number. Returns the id.
    pub async fn send_message(
        &self,
        from: &str,
        to: &str,
        message: waproto::whatsapp::Message,
    ) -> anyhow::Result<String> {
        send_message(&self.inner, from, to, &message, Addressing::Phone, None, None).await
    }

    /// A contact sends media to every linked device of `to`: its phone encrypts and uploads the
    /// bytes to the CDN, then sends the message that points at them. Returns the id.
    pub async fn send_media(
        &self,
        from: &str,
        to: &str,
        kind: crate::media::MediaKind,
        media: &crate::media::Media,
    ) -> anyhow::Result<String> {
        // Encrypting megabytes is CPU work: off the runtime, so the simulator's connections
        // (and whatever a benchmark measures through them) are not held up by it.
        let (cdn, data) = (self.inner.cdn.clone(), media.data.clone());
        let up = tokio::task::spawn_blocking(move || cdn.upload(kind, &data)).await??;
        let message = crate::media::message(kind, media, &up, &self.inner.cdn);
        let id = send_message(&self.inner, from, to, &message, Addressing::Phone, None, None).await?;
        self.inner.cdn.remember(&id, crate::media::Sent { direct_path: up.direct_path, media_key: up.media_key });
        Ok(id)
    }

    /// Media a contact received from linked devices, in order, with their decrypted bytes.
    pub fn received_media(&self, contact: &str) -> Vec<crate::media::ReceivedMedia> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                SimEvent::MediaReceived { contact: c, media } if c == contact => Some(media),
                _ => None,
            })
            .collect()
    }

    /// How many files clients uploaded to the CDN.
    pub fn media_uploads(&self) -> usize {
        self.inner.cdn.uploads()
    }

    /// The CDN's `host:port` on 127.0.0.1, as `media_conn` names it.
    pub fn media_host(&self) -> String {
        self.inner.cdn.host()
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
            Fault::ExpireMedia { id, reupload } => {
                drop(st);
                return self.inner.cdn.expire(id.as_deref(), reupload);
            }
            Fault::CorruptMedia { id } => {
                drop(st);
                return self.inner.cdn.corrupt(id.as_deref());
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

/// The `<stream:error><conflict type="…"/>` that ends a session the server took away.
fn conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict").attr("type", kind.to_owned()).build()])
        .build()
}
