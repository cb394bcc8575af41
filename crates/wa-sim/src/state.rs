//! The simulated world: accounts, their linked devices, companions waiting to link, open
//! connections, messages in flight, groups and the faults in force.
//!
//! It is the crate's bottom layer. The `Sim` API, the connection loop and the router all read
//! and change it, so it imports none of them, only what lies below (keys, pairing, the
//! contacts' crypto, events, faults, the media CDN); that is what keeps the crate free of
//! import cycles, which `xtask tidy` checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc;
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;
use wacore_libsignal::protocol::KeyPair;

use crate::contacts::ContactCrypto;
use crate::events::EventLog;
use crate::faults::Faults;
use crate::keys::{PhoneSecrets, PublishedKeys};
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
    pub secrets: PhoneSecrets,
    pub devices: BTreeMap<u16, Device>,
    pub next_device: u16,
    pub next_key_index: u32,
    /// Days since the phone was last online
    /// ([`Fault::PhoneOffline`](crate::Fault::PhoneOffline)); `None` when it is.
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
pub(crate) struct Pending {
    pub conn: u64,
    pub noise_public: [u8; 32],
    pub identity_public: [u8; 32],
    pub keys: PublishedKeys,
    /// Set once a phone scanned it: (phone, device, key index, pair-success iq id).
    pub linking: Option<(String, u16, u32, String)>,
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Registering,
    Device { phone: String, device: u16 },
}

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
    /// Companions waiting to link, by pairing ref (six refs each, one per QR code).
    pub pending: HashMap<String, Pending>,
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
    pub received: HashSet<(String, String)>,
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
    /// A fresh connection number. A refused connection takes one too, so the numbers in
    /// [`crate::SimEvent`]s count every attempt.
    pub fn next_conn(&mut self) -> u64 {
        self.next_conn += 1;
        self.next_conn
    }

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

/// The world as the `Sim` API, every connection and the router share it.
#[derive(Default)]
pub(crate) struct Inner {
    state: Mutex<State>,
    pub events: EventLog,
    /// Each contact's Signal state, by phone number. Async: encryption awaits the stores.
    pub contacts: tokio::sync::Mutex<HashMap<String, ContactCrypto>>,
    /// The media CDN (its own HTTP listener).
    pub cdn: std::sync::Arc<crate::media::Cdn>,
}

impl Inner {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("simulator state poisoned")
    }
}

/// A contact's message as written, before encryption.
#[derive(Clone, Debug)]
pub(crate) struct Plain {
    pub from: String,
    pub to: String,
    pub message: waproto::whatsapp::Message,
    pub addressing: Addressing,
    pub recipient: Option<String>,
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
