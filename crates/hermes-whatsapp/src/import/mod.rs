//! Taking over a Hermes session: a Baileys auth directory (what Hermes' Node bridge keeps)
//! becomes hermes' WhatsApp store, so the gateway logs in as the same linked device, with no
//! QR code, and goes on with the same Signal sessions, pre-keys, sender keys, app-state keys and
//! LID mappings.
//!
//! [`baileys::read`] reads and checks everything first; [`build`] writes a new store in a
//! directory of the caller's (never the Baileys one) and verifies it by opening it as the client
//! would; [`install`] puts it in place under the session lock, as a link does. The Baileys
//! directory is only ever read.

pub mod baileys;
mod signal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use wacore::libsignal::protocol::{KeyPair, PrivateKey, PublicKey, SenderKeyStateComponents};
use wacore::store::traits::{AppStateSyncKey, AppSyncStore as _, DeviceStore as _, LidPnMappingEntry};
use wacore::store::traits::{ProtocolStore as _, SignalStore as _};
use whatsapp_rust::Jid;
use whatsapp_rust::store::SqliteStore;

use crate::store::{self, LinkedAccount, STORE_FILE, StoreState};
use baileys::AuthState;

/// What an import took over, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub account: LinkedAccount,
    pub sessions: usize,
    pub pre_keys: usize,
    pub identities: usize,
    pub sender_keys: usize,
    pub app_state_keys: usize,
    pub lid_mappings: usize,
    /// Files not taken over, by kind, with why (a cache whatsapp-rust rebuilds, ...).
    pub skipped: BTreeMap<String, usize>,
    /// Records that could not be converted (a damaged session, ...): their peers re-key on the
    /// next message, as after a retry receipt. Each names its file.
    pub warnings: Vec<String>,
}

/// Why a store could not be built from a Baileys directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error(transparent)]
    Read(#[from] baileys::ReadError),
    #[error("{0}")]
    Refused(String),
    #[error("the new store: {0}")]
    Store(String),
}

impl ImportError {
    pub fn kind(&self) -> &'static str {
        match self {
            ImportError::Read(e) => e.kind(),
            ImportError::Refused(_) => "refused",
            ImportError::Store(_) => "store",
        }
    }
}

fn key_pair(k: &baileys::KeyPair, what: &str) -> Result<KeyPair, ImportError> {
    let public = PublicKey::from_djb_public_key_bytes(&k.public)
        .map_err(|e| ImportError::Refused(format!("{what}: the public key is not a Curve25519 key ({e})")))?;
    let private = PrivateKey::deserialize(&k.private)
        .map_err(|e| ImportError::Refused(format!("{what}: the private key is not a Curve25519 key ({e})")))?;
    // A pair whose halves do not match would log in with a key WhatsApp does not know.
    let derived = private.public_key().map_err(|e| ImportError::Refused(format!("{what}: {e}")))?;
    if derived.public_key_bytes() != k.public {
        return Err(ImportError::Refused(format!("{what}: the private and public keys do not belong together")));
    }
    Ok(KeyPair::new(public, private))
}

fn store_err(e: impl std::fmt::Display) -> ImportError {
    ImportError::Store(e.to_string())
}

/// The account as `me` names it: `PHONE:DEVICE@s.whatsapp.net` and `LID[:DEVICE]@lid`.
fn own_jids(state: &AuthState) -> Result<(Jid, Option<Jid>), ImportError> {
    let c = &state.creds;
    let pn: Jid = c.me_id.parse().map_err(|_| ImportError::Refused(format!("`me.id` '{}' is not a JID", c.me_id)))?;
    if pn.device == 0 {
        return Err(ImportError::Refused(format!(
            "`me.id` '{}' names the phone itself, not a linked device: this is not a companion session",
            c.me_id
        )));
    }
    let lid = c
        .me_lid
        .as_deref()
        .and_then(|l| l.parse::<Jid>().ok())
        .map(|l| if l.device == 0 { Jid::lid_device(l.user.as_str(), pn.device) } else { l });
    Ok((pn, lid))
}

/// Writes a new whatsapp-rust store at `dir/whatsapp.db` from `state`, then opens it again as
/// the client would and checks it holds the device. `dir` must be new and empty.
pub async fn build(state: &AuthState, dir: &Path) -> Result<Imported, ImportError> {
    let c = &state.creds;
    let (pn, lid) = own_jids(state)?;
    let identity = key_pair(&c.identity_key, "signedIdentityKey")?;
    let mut device = wacore::store::Device::new();
    device.pn = Some(pn.clone());
    device.lid = lid.clone();
    device.registration_id = c.registration_id;
    device.noise_key = key_pair(&c.noise_key, "noiseKey")?;
    device.identity_key = identity;
    device.signed_pre_key = key_pair(&c.signed_pre_key, "signedPreKey")?;
    device.signed_pre_key_id = c.signed_pre_key_id;
    device.signed_pre_key_signature = c.signed_pre_key_signature;
    // WhatsApp checks this signature before trusting the pre-key: a mismatch is a broken session.
    let mut signed = vec![0x05];
    signed.extend_from_slice(&c.signed_pre_key.public);
    if !device.identity_key.public_key.verify_signature(&signed, &c.signed_pre_key_signature) {
        return Err(ImportError::Refused(
            "the signed pre-key's signature does not verify with the identity key".into(),
        ));
    }
    device.adv_secret_key = c.adv_secret_key;
    device.account = Some(Arc::new(whatsapp_rust::waproto::whatsapp::ADVSignedDeviceIdentity {
        details: Some(c.account.details.clone()),
        account_signature_key: c.account.account_signature_key.clone(),
        account_signature: Some(c.account.account_signature.clone()),
        device_signature: Some(c.account.device_signature.clone()),
    }));
    device.push_name = c.push_name.clone().unwrap_or_default();
    device.edge_routing_info = c.routing_info.clone();
    device.props_hash = c.last_prop_hash.clone();
    let max_pre_key = state.pre_keys.keys().max().copied().unwrap_or(0);
    device.next_pre_key_id = c.next_pre_key_id.max(max_pre_key + 1).max(1);
    device.first_unupload_pre_key_id = c.first_unuploaded_pre_key_id.clamp(1, device.next_pre_key_id);
    // Uploaded once more at the first login: the server's count is not in the directory.
    device.server_has_prekeys = false;

    let db = dir.join(STORE_FILE);
    let db_str = db.to_str().ok_or_else(|| ImportError::Store("the session path is not valid UTF-8".into()))?;
    let store = SqliteStore::new(db_str).await.map_err(store_err)?;
    store.save(&device).await.map_err(store_err)?;

    let mut imported = Imported {
        account: LinkedAccount {
            phone: pn.user.to_string(),
            lid: lid.as_ref().map(|l| l.user.to_string()),
            name: c.push_name.clone(),
            device: pn.device,
        },
        sessions: 0,
        pre_keys: 0,
        identities: 0,
        sender_keys: 0,
        app_state_keys: 0,
        lid_mappings: 0,
        skipped: state.skipped.clone(),
        warnings: state
            .damaged
            .iter()
            .map(|d| format!("{d} (skipped: that contact's next message starts a new session)"))
            .collect(),
    };

    // LID mappings first: they decide under which address each Signal record goes.
    let now = hermes_store::clock::now();
    let mut pn_to_lid: BTreeMap<String, String> = state.lid_mappings.clone();
    if let Some(l) = &lid {
        pn_to_lid.insert(pn.user.to_string(), l.user.to_string());
    }
    let entries: Vec<LidPnMappingEntry> = pn_to_lid
        .iter()
        .map(|(phone, lid_user)| LidPnMappingEntry {
            lid: lid_user.clone(),
            phone_number: phone.clone(),
            created_at: now,
            updated_at: now,
            learning_source: if *phone == pn.user.as_str() { "pairing".into() } else { "other".into() },
        })
        .collect();
    store.put_lid_mappings(&entries).await.map_err(store_err)?;
    imported.lid_mappings = entries.len();

    // Pre-keys: those below the first not-yet-uploaded id are on WhatsApp's server.
    let mut uploaded = Vec::new();
    let mut pending = Vec::new();
    for (id, k) in &state.pre_keys {
        let pair = key_pair(k, &format!("pre-key-{id}"))?;
        let record = wacore::libsignal::store::record_helpers::new_pre_key_record(*id, &pair);
        let bytes = Bytes::from(whatsapp_rust::waproto::codec::pre_key_record_to_vec(&record));
        if *id < device.first_unupload_pre_key_id { uploaded.push((*id, bytes)) } else { pending.push((*id, bytes)) }
    }
    imported.pre_keys = uploaded.len() + pending.len();
    store.store_prekeys_batch(&uploaded, true).await.map_err(store_err)?;
    store.store_prekeys_batch(&pending, false).await.map_err(store_err)?;

    // Signal sessions and identities, each under the address whatsapp-rust will look it up by.
    let address = |baileys_address: &str| -> Option<String> {
        let jid = signal::address_jid(baileys_address)?;
        Some(signal::protocol_address(&lid_first(&jid, &pn_to_lid)))
    };
    let mut sessions: BTreeMap<String, (bool, Vec<u8>)> = BTreeMap::new();
    for (addr, json) in &state.sessions {
        let Some(target) = address(addr) else {
            imported.warnings.push(format!("session-{addr}.json: not an address hermes knows; skipped"));
            continue;
        };
        match signal::session_record(json, &c.identity_key.public, c.registration_id) {
            // A record kept under the LID itself wins over one found under the phone number.
            Ok(bytes) => {
                let is_lid = addr.contains('_');
                if sessions.get(&target).is_none_or(|(had_lid, _)| !had_lid || is_lid) {
                    sessions.insert(target, (is_lid, bytes));
                }
            }
            Err(e) => imported.warnings.push(format!(
                "session-{addr}.json: {e}; that contact's next message starts a new session (WhatsApp re-keys it)"
            )),
        }
    }
    let batch: Vec<(Arc<str>, Bytes)> =
        sessions.into_iter().map(|(a, (_, b))| (Arc::from(a.as_str()), Bytes::from(b))).collect();
    imported.sessions = batch.len();
    store.put_sessions_batch(&batch).await.map_err(store_err)?;
    for (addr, key) in &state.identities {
        if let Some(target) = address(addr) {
            store.put_identity(&target, *key).await.map_err(store_err)?;
            imported.identities += 1;
        }
    }

    // Sender keys: our own by our device, others merged per sender (whatsapp-rust keeps one
    // record per sender without its device).
    let own_users: Vec<String> =
        std::iter::once(pn.user.to_string()).chain(lid.iter().map(|l| format!("{}_1", l.user))).collect();
    let mut by_name: BTreeMap<String, Vec<Vec<SenderKeyStateComponents>>> = BTreeMap::new();
    for (name, json) in &state.sender_keys {
        let mut parts = name.rsplitn(3, "--");
        let (Some(device), Some(user), Some(group)) = (parts.next(), parts.next(), parts.next()) else {
            imported.warnings.push(format!("sender-key-{name}.json: not a sender-key name; skipped"));
            continue;
        };
        let Some(jid) = device.parse::<u16>().ok().and_then(|d| signal::signal_user_jid(user, d)) else {
            imported.warnings.push(format!("sender-key-{name}.json: not an address hermes knows; skipped"));
            continue;
        };
        let own = own_users.iter().any(|u| u == user) && jid.device == pn.device;
        let jid = lid_first(&jid, &pn_to_lid);
        let sender = if own { jid } else { jid.to_non_ad() };
        let key = format!("{group}:{}", signal::protocol_address(&sender));
        match signal::sender_key_states(json) {
            Ok(states) => by_name.entry(key).or_default().push(states),
            Err(e) => imported.warnings.push(format!(
                "sender-key-{name}.json: {e}; the sender sends its key again with its next group message"
            )),
        }
    }
    for (name, per_device) in by_name {
        // Each device's current state first, then the older ones; one state per key id.
        let mut states: Vec<SenderKeyStateComponents> = Vec::new();
        let longest = per_device.iter().map(Vec::len).max().unwrap_or(0);
        for depth in 0..longest {
            for s in per_device.iter().filter_map(|d| d.get(depth)) {
                if !states.iter().any(|x| x.key_id == s.key_id) {
                    states.push(s.clone());
                }
            }
        }
        states.truncate(5);
        match signal::sender_key_record(states) {
            Ok(bytes) => {
                store.put_sender_key(&name, &bytes).await.map_err(store_err)?;
                imported.sender_keys += 1;
            }
            Err(e) => imported.warnings.push(format!("sender key {name}: {e}; it is sent again when needed")),
        }
    }

    // App-state keys, as whatsapp-rust keeps a key the phone shared.
    for k in &state.app_state_keys {
        let fingerprint = whatsapp_rust::waproto::whatsapp::message::AppStateSyncKeyFingerprint {
            raw_id: k.fingerprint_raw_id,
            current_index: k.fingerprint_current_index,
            device_indexes: k.fingerprint_device_indexes.clone(),
        };
        let key = AppStateSyncKey {
            key_data: k.key_data.clone(),
            fingerprint: whatsapp_rust::waproto::codec::app_state_sync_key_fingerprint_to_vec(&fingerprint),
            timestamp: k.timestamp,
        };
        store.set_sync_key(&k.key_id, key).await.map_err(store_err)?;
        imported.app_state_keys += 1;
    }
    drop(store);

    // Opened again as the client would: only a store that holds the device is installed.
    match store::inspect(dir).await {
        StoreState::Linked(a) if a.phone == imported.account.phone && a.device == imported.account.device => {}
        other => return Err(ImportError::Store(format!("the new store did not verify: {other:?}"))),
    }
    Ok(imported)
}

/// The address Signal state lives under: a phone number's LID when the mapping is known, as
/// both Baileys and whatsapp-rust key it.
fn lid_first(jid: &Jid, pn_to_lid: &BTreeMap<String, String>) -> Jid {
    if jid.is_pn()
        && let Some(lid) = pn_to_lid.get(jid.user.as_str())
    {
        return Jid::lid_device(lid.as_str(), jid.device);
    }
    jid.clone()
}

/// Where an import is being built, beside the session directory (so installing is a rename).
pub fn staging_dir(session_dir: &Path) -> PathBuf {
    let name = session_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    session_dir.with_file_name(format!("{name}.importing-{}", std::process::id()))
}

/// Puts a store built in `staging` in place as the session, as a finished link does. The
/// caller holds the session lock. A hermes store the import replaces is moved to a backup
/// first; other files in the session directory (the Baileys session itself, when it lives
/// there, as it does for Hermes users) stay where they are, untouched. Returns the backup, if
/// one was made, and warnings that did not stop the install.
pub fn install(
    staging: &Path,
    session_dir: &Path,
    now_secs: i64,
) -> Result<(Option<PathBuf>, Vec<String>), ImportError> {
    let io = |what: String| move |e: std::io::Error| ImportError::Store(format!("{what}: {e}"));
    crate::linking::restrict_files(staging).map_err(store_err)?;
    let mut warnings = Vec::new();
    if !session_dir.exists() {
        let parent =
            session_dir.parent().ok_or_else(|| ImportError::Store("the session directory has no parent".into()))?;
        hermes_store::files::create_private_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
        std::fs::rename(staging, session_dir)
            .map_err(io(format!("move the new session to {}", session_dir.display())))?;
        hermes_store::files::sync_dir(parent).map_err(io(format!("sync {}", parent.display())))?;
        return Ok((None, warnings));
    }
    let store_files: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| session_dir.join(format!("{STORE_FILE}{suffix}")))
        .filter(|p| p.exists())
        .collect();
    let mut backup = None;
    if !store_files.is_empty() {
        let aside = staging.with_extension("replaced");
        hermes_store::files::create_private_dir_all(&aside).map_err(io(format!("create {}", aside.display())))?;
        for f in &store_files {
            let to = aside.join(f.file_name().unwrap_or_default());
            std::fs::rename(f, &to).map_err(io(format!("move {} aside", f.display())))?;
        }
        backup = crate::backup::move_to_backup(session_dir, &aside, now_secs)
            .map_err(io(format!("back up the store {} replaces", session_dir.display())))?;
    }
    let entries = std::fs::read_dir(staging).map_err(io(format!("read {}", staging.display())))?;
    for entry in entries.flatten() {
        let to = session_dir.join(entry.file_name());
        match std::fs::rename(entry.path(), &to) {
            // The store's `-wal` or `-shm`, removed as its last connection closed: nothing to move.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.map_err(io(format!("move the new store into {}", session_dir.display())))?,
        }
    }
    std::fs::remove_dir(staging).map_err(io(format!("remove {}", staging.display())))?;
    hermes_store::files::sync_dir(session_dir).map_err(io(format!("sync {}", session_dir.display())))?;
    if hermes_store::files::others_can_replace_entries(session_dir) {
        warnings.push(format!(
            "{} can be written by other users, who could replace the session kept in it; run `chmod 700 {}`",
            session_dir.display(),
            session_dir.display()
        ));
    }
    warnings.extend(crate::backup::rotate(session_dir));
    Ok((backup, warnings))
}

/// Whether `dir` holds a linked session of Hermes' bridge (a Baileys `creds.json` with an
/// account) that `hermes whatsapp import` could take over.
pub fn bridge_session(dir: &Path) -> bool {
    // Read as the import reads it (the gateway, `status` and the wizard ask): a link, a FIFO or
    // a huge file is no session, and neither hangs nor fills memory here.
    let creds = dir.join("creds.json");
    let Ok(bytes) = hermes_store::files::read_regular_capped(&creds, baileys::MAX_FILE_BYTES) else { return false };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v.get("me").is_some_and(|m| !m.is_null()) && v.get("account").is_some_and(|a| !a.is_null()))
}

/// What to tell someone whose session directory holds such a session and no hermes one.
pub const IMPORT_FIX: &str = "this directory holds the session of Hermes' WhatsApp bridge: stop the bridge, then run \
                              `hermes whatsapp import` (no QR code: hermes goes on as the same linked device)";
