//! Simulated people who write to a linked account, end-to-end encrypted for real.
//!
//! A contact is an account of the simulator whose own phone is the sender (device 0). To
//! write, it does what a WhatsApp client does: fetches a pre-key bundle for each of the
//! recipient's linked devices from the server's directory, builds a Signal session
//! (`pkmsg` first, `msg` once established) and sends one `<message>` per device. The linked
//! client decrypts with its own keys; nothing here knows them.

use std::collections::HashMap;

use buffa::Message as _;
use wacore_libsignal::protocol::{
    CiphertextMessage, Direction, GenericSignedPreKey as _, IdentityChange, IdentityKey, IdentityKeyPair,
    IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord, PreKeySignalMessage, PreKeyStore, ProtocolAddress,
    PublicKey, SenderKeyDistributionMessage, SenderKeyName, SenderKeyRecord, SenderKeyStore, SessionRecord,
    SessionStore, SignalMessage, SignalProtocolError, SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore, Timestamp,
    UsePQRatchet, create_sender_key_distribution_message, group_decrypt, group_encrypt, message_decrypt,
    message_encrypt, process_prekey_bundle, process_sender_key_distribution_message,
};

use crate::keys::PhoneSecrets;
use waproto::whatsapp as wa;

type SignalResult<T> = wacore_libsignal::protocol::error::Result<T>;

/// A contact's sessions, by the device address it wrote to.
#[derive(Default)]
pub(crate) struct Sessions(HashMap<ProtocolAddress, Vec<u8>>);

/// A contact's identity, and the identities of the devices it wrote to.
pub(crate) struct Identities {
    own: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<ProtocolAddress, IdentityKey>,
}

/// A contact's one-time pre-keys (private), consumed as senders use them.
pub(crate) struct PreKeys(HashMap<u32, PreKeyRecord>);

/// A contact's signed pre-key (private).
pub(crate) struct SignedPreKeys(HashMap<u32, SignedPreKeyRecord>);

/// A contact's sender keys (groups): its own per group, and those other devices distributed.
#[derive(Default)]
pub(crate) struct SenderKeys(HashMap<SenderKeyName, SenderKeyRecord>);

#[async_trait::async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(&mut self, name: &SenderKeyName, record: SenderKeyRecord) -> SignalResult<()> {
        self.0.insert(name.clone(), record);
        Ok(())
    }

    async fn load_sender_key(&self, name: &SenderKeyName) -> SignalResult<Option<SenderKeyRecord>> {
        Ok(self.0.get(name).cloned())
    }
}

/// A contact's Signal state.
pub(crate) struct ContactCrypto {
    sessions: Sessions,
    identities: Identities,
    prekeys: PreKeys,
    signed: SignedPreKeys,
    sender_keys: SenderKeys,
}

#[async_trait::async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0.get(&u32::from(id)).cloned().ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(&mut self, id: PreKeyId, record: &PreKeyRecord) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(id));
        Ok(())
    }
}

#[async_trait::async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        self.0.get(&u32::from(id)).cloned().ok_or(SignalProtocolError::InvalidSignedPreKeyId)
    }

    async fn save_signed_pre_key(&mut self, id: SignedPreKeyId, record: &SignedPreKeyRecord) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }
}

impl ContactCrypto {
    pub fn has_session(&self, address: &ProtocolAddress) -> bool {
        self.sessions.0.contains_key(address)
    }

    /// Drops the session with a device that could not decrypt (it sent a retry receipt), so
    /// the next message starts a new one from its published keys, as a phone does.
    pub fn forget_session(&mut self, address: &ProtocolAddress) {
        self.sessions.0.remove(address);
    }

    pub fn new(account: &KeyPair, registration_id: u32, secrets: &PhoneSecrets) -> ContactCrypto {
        let (sid, skey, ssig) = &secrets.signed;
        let signed = SignedPreKeyRecord::new((*sid).into(), Timestamp::from_epoch_millis(0), skey, ssig);
        ContactCrypto {
            sessions: Sessions::default(),
            identities: Identities {
                own: IdentityKeyPair::from(account.clone()),
                registration_id,
                known: HashMap::new(),
            },
            prekeys: PreKeys(secrets.prekeys.iter().map(|(id, k)| (*id, PreKeyRecord::new((*id).into(), k))).collect()),
            signed: SignedPreKeys(HashMap::from([(*sid, signed)])),
            sender_keys: SenderKeys::default(),
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, a: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(a).and_then(|b| SessionRecord::deserialize(b).ok()))
    }

    async fn has_session(&self, a: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(a))
    }

    async fn store_session(&mut self, a: &ProtocolAddress, r: SessionRecord) -> SignalResult<()> {
        self.0.insert(a.clone(), r.serialize()?);
        Ok(())
    }
}

#[async_trait::async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.own.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(&mut self, a: &ProtocolAddress, id: &IdentityKey) -> SignalResult<IdentityChange> {
        let changed = self.known.insert(a.clone(), *id).is_some_and(|old| old != *id);
        Ok(IdentityChange::from_changed(changed))
    }

    async fn is_trusted_identity(&self, _: &ProtocolAddress, _: &IdentityKey, _: Direction) -> SignalResult<bool> {
        // A person trusts whoever they write to; WhatsApp shows a notice, it does not block.
        Ok(true)
    }

    async fn get_identity(&self, a: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(a).copied())
    }
}

/// One device's published bundle, as the server hands it out.
#[derive(Clone, Debug)]
pub(crate) struct Bundle {
    pub registration_id: u32,
    pub identity: Vec<u8>,
    pub signed_prekey: (u32, Vec<u8>, Vec<u8>),
    pub prekey: Option<(u32, Vec<u8>)>,
}

/// Encrypts a message for one device: `("pkmsg" | "msg", ciphertext)`. `bundle` is needed
/// only when there is no session with that device yet.
pub(crate) async fn encrypt_message(
    crypto: &mut ContactCrypto,
    device_address: &ProtocolAddress,
    bundle: Option<Bundle>,
    message: &wa::Message,
) -> anyhow::Result<(&'static str, Vec<u8>)> {
    if !crypto.sessions.0.contains_key(device_address) {
        let b = bundle.ok_or_else(|| anyhow::anyhow!("no session and no pre-key bundle for {device_address}"))?;
        let key = |bytes: &[u8]| PublicKey::from_djb_public_key_bytes(bytes);
        let prekey = match &b.prekey {
            Some((id, k)) => Some(((*id).into(), key(k)?)),
            None => None,
        };
        let bundle = PreKeyBundle::new(
            b.registration_id,
            device_address.device_id(),
            prekey,
            b.signed_prekey.0.into(),
            key(&b.signed_prekey.1)?,
            b.signed_prekey.2.clone(),
            IdentityKey::new(key(&b.identity)?),
        )?;
        process_prekey_bundle(
            device_address,
            &mut crypto.sessions,
            &mut crypto.identities,
            &bundle,
            &mut rand::make_rng::<rand::rngs::StdRng>(),
            UsePQRatchet::No,
        )
        .await?;
    }
    let padded = wacore::messages::MessageUtils::pad_message_v2(message.encode_to_vec());
    let ciphertext = message_encrypt(&padded, device_address, &mut crypto.sessions, &mut crypto.identities).await?;
    let kind = match ciphertext {
        wacore_libsignal::protocol::CiphertextMessage::PreKeySignalMessage(_) => "pkmsg",
        _ => "msg",
    };
    Ok((kind, ciphertext.serialize().to_vec()))
}

/// Decrypts what a device sent to this contact: the `wa::Message` inside.
pub(crate) async fn decrypt(
    crypto: &mut ContactCrypto,
    sender: &ProtocolAddress,
    kind: &str,
    ciphertext: &[u8],
) -> anyhow::Result<wa::Message> {
    let message = match kind {
        "pkmsg" => CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(ciphertext)?),
        "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(ciphertext)?),
        other => anyhow::bail!("cannot decrypt a '{other}' message"),
    };
    let result = message_decrypt(
        &message,
        sender,
        &mut crypto.sessions,
        &mut crypto.identities,
        &mut crypto.prekeys,
        &crypto.signed,
        &mut rand::make_rng::<rand::rngs::StdRng>(),
        UsePQRatchet::No,
    )
    .await?;
    let plain = wacore::messages::MessageUtils::unpad_message_ref(&result.plaintext, 2)?;
    Ok(wa::Message::decode_from_slice(plain)?)
}

/// A contact writes to a group: its sender key's distribution message (to send to each
/// device, pairwise) and `message` encrypted with that sender key (`skmsg`, one for all).
pub(crate) async fn group_encrypt_message(
    crypto: &mut ContactCrypto,
    group: &str,
    own: &ProtocolAddress,
    message: &wa::Message,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let name = SenderKeyName::new(group.to_owned(), own.to_string());
    let mut rng = rand::make_rng::<rand::rngs::StdRng>();
    let skdm = create_sender_key_distribution_message(&name, &mut crypto.sender_keys, &mut rng).await?;
    let padded = wacore::messages::MessageUtils::pad_message_v2(message.encode_to_vec());
    let skmsg = group_encrypt(&mut crypto.sender_keys, &name, &padded, &mut rng).await?;
    Ok((skdm.serialized().to_vec(), skmsg.serialized().to_vec()))
}

/// Keeps the sender key a device distributed for a group.
pub(crate) async fn process_distribution(
    crypto: &mut ContactCrypto,
    group: &str,
    sender: &ProtocolAddress,
    skdm: &[u8],
) -> anyhow::Result<()> {
    let name = SenderKeyName::new(group.to_owned(), sender.to_string());
    let skdm = SenderKeyDistributionMessage::try_from(skdm)?;
    process_sender_key_distribution_message(&name, &skdm, &mut crypto.sender_keys).await?;
    Ok(())
}

/// Decrypts a device's group message (`skmsg`) with the sender key it distributed.
pub(crate) async fn group_decrypt_message(
    crypto: &mut ContactCrypto,
    group: &str,
    sender: &ProtocolAddress,
    ciphertext: &[u8],
) -> anyhow::Result<wa::Message> {
    let name = SenderKeyName::new(group.to_owned(), sender.to_string());
    let plain = group_decrypt(ciphertext, &mut crypto.sender_keys, &name).await?;
    let plain = wacore::messages::MessageUtils::unpad_message_ref(&plain, 2)?;
    Ok(wa::Message::decode_from_slice(plain)?)
}

/// The text of a message, whichever kind carries it.
pub(crate) fn text_of(message: &wa::Message) -> Option<String> {
    message
        .conversation
        .clone()
        .or_else(|| message.extended_text_message.as_option().and_then(|e| e.text.clone()))
        .or_else(|| message.device_sent_message.as_option().and_then(|d| d.message.as_option()).and_then(text_of))
}

/// The initial history sync a phone sends a device it just linked: one complete chunk, inline
/// (zlib-compressed), as phones send a small bootstrap, so no media download is involved.
pub(crate) fn initial_history_sync() -> wa::Message {
    use std::io::Write as _;
    let history = wa::HistorySync {
        sync_type: wa::history_sync::HistorySyncType::INITIAL_BOOTSTRAP,
        chunk_order: Some(1),
        progress: Some(100),
        ..Default::default()
    };
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let payload = z.write_all(&history.encode_to_vec()).and_then(|()| z.finish()).unwrap_or_default();
    wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::HISTORY_SYNC_NOTIFICATION),
            history_sync_notification: buffa::MessageField::some(wa::message::HistorySyncNotification {
                file_length: Some(u64::try_from(payload.len()).unwrap_or(0)),
                sync_type: Some(wa::message::HistorySyncType::INITIAL_BOOTSTRAP),
                chunk_order: Some(1),
                progress: Some(100),
                initial_hist_bootstrap_inline_payload: Some(payload),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The app-state sync key a phone shares with a device it just linked, so the device can read
/// the account's app state without waiting. `now` is in Unix seconds.
pub(crate) fn app_state_key_share(now: u64) -> wa::Message {
    use wa::message::{
        AppStateSyncKey, AppStateSyncKeyData, AppStateSyncKeyFingerprint, AppStateSyncKeyId, AppStateSyncKeyShare,
    };
    let key = AppStateSyncKey {
        key_id: buffa::MessageField::some(AppStateSyncKeyId { key_id: Some(rand::random::<[u8; 6]>().to_vec()) }),
        key_data: buffa::MessageField::some(AppStateSyncKeyData {
            key_data: Some(rand::random::<[u8; 32]>().to_vec()),
            fingerprint: buffa::MessageField::some(AppStateSyncKeyFingerprint {
                raw_id: Some(rand::random::<u32>()),
                current_index: Some(0),
                device_indexes: vec![0],
            }),
            timestamp: Some(i64::try_from(now).unwrap_or(0) * 1000),
        }),
    };
    wa::Message {
        protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
            r#type: Some(wa::message::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
            app_state_sync_key_share: buffa::MessageField::some(AppStateSyncKeyShare { keys: vec![key] }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
