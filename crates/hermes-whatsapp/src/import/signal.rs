//! libsignal-node's records (what Baileys keeps) in whatsapp-rust's form: session records
//! through whatsapp-rust's own `legacy-session-interop` reader, sender-key records by their
//! components, and Baileys' signal addresses as whatsapp-rust's.
//!
//! Two traps, named where they are handled: a record's chains must be read in the file's order
//! (only the last five receiving chains survive), and Baileys keeps a sender key's current state
//! last where whatsapp-rust keeps it first.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use wacore::libsignal::protocol::{
    IdentityKey, LegacyIndexedSessionV1, LegacySessionBaseKeyRoleV1, LegacySessionChainCounterV1,
    LegacySessionChainKeyV1, LegacySessionChainRoleV1, LegacySessionChainV1, LegacySessionDispositionV1,
    LegacySessionIndexV1, LegacySessionKeyPairV1, LegacySessionLocalContext, LegacySessionMessageKeyV1,
    LegacySessionPendingPreKeyV1, LegacySessionRatchetV1, LegacySessionRecordV1, LegacySessionV1, PublicKey,
    SenderChainKeyComponents, SenderKeyRecord, SenderKeyRecordComponents, SenderKeyStateComponents,
    SenderMessageKeyComponents, SenderSigningKeyComponents,
};
use wacore::types::jid::JidExt as _;
use whatsapp_rust::Jid;

/// A JSON object read as its entries in the file's order (serde_json's map sorts them).
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

#[derive(Deserialize)]
struct SessionFile {
    /// Absent in records written before libsignal-node's v1 format.
    #[serde(rename = "registrationId")]
    registration_id: Option<u32>,
    #[serde(rename = "_sessions", default)]
    sessions: Ordered<SessionEntry>,
}

#[derive(Deserialize)]
struct SessionEntry {
    #[serde(rename = "registrationId")]
    registration_id: Option<u32>,
    #[serde(rename = "currentRatchet")]
    ratchet: RatchetJson,
    #[serde(rename = "indexInfo")]
    index: IndexJson,
    #[serde(rename = "_chains", default)]
    chains: Ordered<ChainJson>,
    #[serde(rename = "pendingPreKey")]
    pending_pre_key: Option<PendingJson>,
}

#[derive(Deserialize)]
struct RatchetJson {
    #[serde(rename = "ephemeralKeyPair")]
    key_pair: KeyPairJson,
    #[serde(rename = "lastRemoteEphemeralKey")]
    last_remote: String,
    #[serde(rename = "previousCounter", default)]
    previous_counter: i64,
    #[serde(rename = "rootKey")]
    root_key: String,
}

#[derive(Deserialize)]
struct KeyPairJson {
    #[serde(rename = "pubKey")]
    public: String,
    #[serde(rename = "privKey")]
    private: String,
}

#[derive(Deserialize)]
struct IndexJson {
    #[serde(rename = "baseKey")]
    base_key: String,
    #[serde(rename = "baseKeyType")]
    base_key_type: u32,
    closed: i64,
    #[serde(default)]
    used: Option<f64>,
    #[serde(default)]
    created: Option<f64>,
    #[serde(rename = "remoteIdentityKey")]
    remote_identity: String,
}

#[derive(Deserialize)]
struct ChainJson {
    #[serde(rename = "chainKey")]
    chain_key: ChainKeyJson,
    #[serde(rename = "chainType")]
    chain_type: u32,
    #[serde(rename = "messageKeys", default)]
    message_keys: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ChainKeyJson {
    counter: i64,
    key: Option<String>,
}

#[derive(Deserialize)]
struct PendingJson {
    #[serde(rename = "signedKeyId")]
    signed_key_id: u32,
    #[serde(rename = "preKeyId")]
    pre_key_id: Option<u32>,
    #[serde(rename = "baseKey")]
    base_key: String,
}

fn b64(s: &str, what: &str) -> Result<Bytes, String> {
    B64.decode(s).map(Bytes::from).map_err(|_| format!("{what} is not base64"))
}

/// A public key as the records keep it: 33 bytes with libsignal's 0x05 prefix.
fn pub33(s: &str, what: &str) -> Result<Bytes, String> {
    let b = b64(s, what)?;
    match b.len() {
        33 => Ok(b),
        32 => Ok(Bytes::from([&[0x05][..], &b[..]].concat())),
        n => Err(format!("{what} is {n} bytes, not a public key")),
    }
}

/// Converts one `session-*.json` into whatsapp-rust's session record bytes. `own_identity`
/// (32 bytes) and `own_registration_id` are this device's, which libsignal-node does not keep
/// in the record.
pub(crate) fn session_record(
    json: &[u8],
    own_identity: &[u8; 32],
    own_registration_id: u32,
) -> Result<Vec<u8>, String> {
    let file: SessionFile = serde_json::from_slice(json).map_err(|e| format!("not a session record ({e})"))?;
    let mut indexed = Vec::new();
    let mut current = 0;
    for (key, e) in file.sessions.0 {
        // Without a registration id anywhere, libsignal-node itself treats the entry as closed.
        let Some(registration_id) = e.registration_id.or(file.registration_id) else { continue };
        let closed = if e.index.closed == -1 {
            current += 1;
            // Two open sessions cannot both be current: the later one is archived.
            if current > 1 { e.index.used.unwrap_or(0.0) as i64 } else { -1 }
        } else {
            e.index.closed
        };
        let mut chains = Vec::new();
        for (ratchet_key, c) in e.chains.0 {
            let mut message_keys: Vec<LegacySessionMessageKeyV1> = c
                .message_keys
                .iter()
                .map(|(i, seed)| {
                    Ok(LegacySessionMessageKeyV1 {
                        index: i.parse().map_err(|_| format!("message key index {i} is not a number"))?,
                        seed: b64(seed, "a message key")?,
                    })
                })
                .collect::<Result<_, String>>()?;
            // Keep the newest skipped keys when a chain holds more than the reader takes.
            message_keys.sort_by_key(|k| k.index);
            let excess = message_keys.len().saturating_sub(2000);
            message_keys.drain(..excess);
            chains.push(LegacySessionChainV1 {
                ratchet_key: pub33(&ratchet_key, "a chain's ratchet key")?,
                role: LegacySessionChainRoleV1::try_from(c.chain_type).map_err(|e| e.to_string())?,
                chain_key: LegacySessionChainKeyV1 {
                    counter: LegacySessionChainCounterV1::new(c.chain_key.counter).map_err(|e| e.to_string())?,
                    key: c.chain_key.key.as_deref().map(|k| b64(k, "a chain key")).transpose()?,
                },
                message_keys,
            });
        }
        let session = LegacySessionV1 {
            registration_id,
            ratchet: LegacySessionRatchetV1 {
                key_pair: LegacySessionKeyPairV1 {
                    public: pub33(&e.ratchet.key_pair.public, "the ratchet key")?,
                    private: b64(&e.ratchet.key_pair.private, "the ratchet private key")?,
                },
                last_remote_ephemeral_key: pub33(&e.ratchet.last_remote, "the remote ratchet key")?,
                previous_counter: e.ratchet.previous_counter,
                root_key: b64(&e.ratchet.root_key, "the root key")?,
            },
            index: LegacySessionIndexV1 {
                base_key: pub33(&e.index.base_key, "the base key")?,
                base_key_role: LegacySessionBaseKeyRoleV1::try_from(e.index.base_key_type)
                    .map_err(|e| e.to_string())?,
                disposition: LegacySessionDispositionV1::from_closed_timestamp(closed).map_err(|e| e.to_string())?,
                used_at_ms: e.index.used.map_or(0, |u| u as u64),
                created_at_ms: e.index.created.map_or(0, |c| c as u64),
                remote_identity_key: pub33(&e.index.remote_identity, "the remote identity key")?,
            },
            chains,
            pending_pre_key: e
                .pending_pre_key
                .map(|p| {
                    Ok::<_, String>(LegacySessionPendingPreKeyV1 {
                        pre_key_id: p.pre_key_id,
                        signed_pre_key_id: p.signed_key_id,
                        base_key: pub33(&p.base_key, "the pending pre-key's base key")?,
                    })
                })
                .transpose()?,
        };
        indexed.push(LegacyIndexedSessionV1 { index_key: pub33(&key, "a session's index key")?, session });
    }
    let context = LegacySessionLocalContext {
        identity_key: IdentityKey::new(
            PublicKey::from_djb_public_key_bytes(own_identity).map_err(|e| format!("our identity key: {e}"))?,
        ),
        registration_id: own_registration_id,
    };
    let record = LegacySessionRecordV1::from_indexed_sessions(indexed)
        .and_then(|r| r.into_session_record(context))
        .map_err(|e| e.to_string())?;
    record.serialize().map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct SenderStateJson {
    #[serde(rename = "senderKeyId")]
    key_id: u32,
    #[serde(rename = "senderChainKey")]
    chain_key: SenderChainJson,
    #[serde(rename = "senderSigningKey")]
    signing_key: SigningJson,
    #[serde(rename = "senderMessageKeys", default)]
    message_keys: Vec<SenderChainJson>,
}

#[derive(Deserialize)]
struct SenderChainJson {
    iteration: u32,
    seed: serde_json::Value,
}

#[derive(Deserialize)]
struct SigningJson {
    public: serde_json::Value,
    #[serde(default)]
    private: Option<serde_json::Value>,
}

fn buf(v: &serde_json::Value, what: &str) -> Result<Vec<u8>, String> {
    super::baileys::bytes(v).ok_or_else(|| format!("{what} is not binary data"))
}

/// The states of one libsignal-node sender-key record, current first (Baileys keeps it last).
pub(crate) fn sender_key_states(json: &[u8]) -> Result<Vec<SenderKeyStateComponents>, String> {
    let states: Vec<SenderStateJson> =
        serde_json::from_slice(json).map_err(|e| format!("not a sender-key record ({e})"))?;
    states
        .into_iter()
        .rev()
        .map(|s| {
            let private = s.signing_key.private.as_ref().map(|p| buf(p, "the signing private key")).transpose()?;
            Ok(SenderKeyStateComponents {
                key_id: s.key_id,
                chain_key: SenderChainKeyComponents {
                    iteration: s.chain_key.iteration,
                    seed: buf(&s.chain_key.seed, "the chain seed")?,
                },
                signing_key: SenderSigningKeyComponents {
                    public: buf(&s.signing_key.public, "the signing key")?,
                    private: private.filter(|p| !p.is_empty()),
                },
                message_keys: s
                    .message_keys
                    .iter()
                    .map(|m| {
                        Ok(SenderMessageKeyComponents { iteration: m.iteration, seed: buf(&m.seed, "a message key")? })
                    })
                    .collect::<Result<_, String>>()?,
            })
        })
        .collect()
}

/// A record of at most five states, current first.
pub(crate) fn sender_key_record(states: Vec<SenderKeyStateComponents>) -> Result<Vec<u8>, String> {
    let record = SenderKeyRecord::from_components(SenderKeyRecordComponents { states }).map_err(|e| e.to_string())?;
    record.serialize().map_err(|e| e.to_string())
}

/// Baileys' signal address (`user[_domain].device`) as a JID: domain 0 is a phone number,
/// 1 a LID, 128 and 129 hosted ones.
pub(crate) fn address_jid(address: &str) -> Option<Jid> {
    let (user, device) = address.rsplit_once('.')?;
    let device: u16 = device.parse().ok()?;
    signal_user_jid(user, device)
}

/// `user[_domain]` and a device as a JID.
pub(crate) fn signal_user_jid(user: &str, device: u16) -> Option<Jid> {
    let (user, domain) = match user.rsplit_once('_') {
        Some((u, d)) => (u, d.parse::<u16>().ok()?),
        None => (user, 0),
    };
    let jid = match domain {
        0 => Jid::pn_device(user, device),
        1 => Jid::lid_device(user, device),
        128 => format!("{user}:{device}@hosted").parse().ok()?,
        129 => format!("{user}:{device}@hosted.lid").parse().ok()?,
        _ => return None,
    };
    Some(jid)
}

/// whatsapp-rust's name for a JID's Signal state (`user[:device]@server.0`, `c.us` for phones).
pub(crate) fn protocol_address(jid: &Jid) -> String {
    jid.to_protocol_address_string()
}

#[cfg(test)]
mod tests {
    use wacore::libsignal::protocol::SenderKeyRecord;

    use super::*;

    #[test]
    fn baileys_addresses_become_whatsapp_rusts() {
        let addr = |a: &str| address_jid(a).map(|j| protocol_address(&j));
        assert_eq!(addr("15551234567.0").as_deref(), Some("15551234567@c.us.0"));
        assert_eq!(addr("15551234567.12").as_deref(), Some("15551234567:12@c.us.0"));
        assert_eq!(addr("883081073749055_1.0").as_deref(), Some("883081073749055@lid.0"));
        assert_eq!(addr("883081073749055_1.3").as_deref(), Some("883081073749055:3@lid.0"));
        assert_eq!(addr("883081073749055_7.0"), None, "an unknown domain is skipped, not guessed");
        assert_eq!(addr("no-device"), None);
    }

    /// Baileys keeps the current state last; whatsapp-rust reads the first as current.
    #[test]
    fn the_current_sender_key_state_stays_current() {
        let buf = |b: u8, n: usize| serde_json::json!({"type": "Buffer", "data": vec![b; n]});
        let mut public = vec![5u8];
        public.extend([2u8; 32]);
        let state = |id: u32, seed: u8| {
            serde_json::json!({
                "senderKeyId": id,
                "senderChainKey": {"iteration": id * 10, "seed": buf(seed, 32)},
                "senderSigningKey": {"public": {"type": "Buffer", "data": public}, "private": buf(0, 0)},
                "senderMessageKeys": [{"iteration": 1, "seed": buf(9, 32)}],
            })
        };
        let json = serde_json::to_vec(&serde_json::json!([state(1, 1), state(2, 2)])).expect("json");
        let states = sender_key_states(&json).expect("states");
        assert_eq!(states.iter().map(|s| s.key_id).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(states[0].signing_key.private, None, "an empty private key is no key");
        let record = SenderKeyRecord::deserialize(&sender_key_record(states).expect("record")).expect("reads back");
        assert_eq!(record.sender_key_state().expect("a state").chain_id(), 2);
    }
}
