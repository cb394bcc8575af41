//! Reading a Baileys multi-file auth state: the directory Hermes' Node bridge keeps its linked
//! device in (`useMultiFileAuthState`). Nothing here writes; the directory is never touched.
//!
//! One JSON file per key, named `<kind>-<id>.json` with `/` written `__` and `:` written `-`.
//! Binary values are `{"type":"Buffer","data":"<base64>"}` (Baileys' `BufferJSON`), or plain
//! base64 strings inside protobuf-derived objects (`account`). Every value is checked for its
//! length here, so that what reaches the store is either right or refused with its file named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

/// Why a directory cannot be imported. Each says what is missing and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("{0} has no creds.json: it is not a Baileys session (Hermes' bridge keeps one in its session directory)")]
    NoCreds(PathBuf),
    #[error(
        "{0} holds a Baileys session that was never linked (no `me`/`account` in creds.json): there is nothing to take over; link with `hermes whatsapp`"
    )]
    NotLinked(PathBuf),
    #[error("{file}: {what}; the session directory looks damaged: link again with `hermes whatsapp`")]
    Corrupt { file: PathBuf, what: String },
    #[error("cannot read {file}: {source}")]
    Io { file: PathBuf, source: std::io::Error },
}

impl ReadError {
    /// A short name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::NoCreds(_) => "no_session",
            ReadError::NotLinked(_) => "not_linked",
            ReadError::Corrupt { .. } => "corrupt",
            ReadError::Io { .. } => "io",
        }
    }
}

/// A Curve25519 key pair: the 32-byte private key and the 32-byte public key (Baileys may
/// store the public key with libsignal's 0x05 type prefix; it is removed here).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub private: [u8; 32],
    pub public: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public", &hex_prefix(&self.public)).finish_non_exhaustive()
    }
}

fn hex_prefix(b: &[u8]) -> String {
    b.iter().take(4).map(|x| format!("{x:02x}")).collect::<String>() + "…"
}

/// The device's own keys and identity, from `creds.json`.
#[derive(Clone, Debug)]
pub struct Creds {
    pub noise_key: KeyPair,
    pub identity_key: KeyPair,
    pub signed_pre_key: KeyPair,
    pub signed_pre_key_id: u32,
    pub signed_pre_key_signature: [u8; 64],
    pub registration_id: u32,
    pub adv_secret_key: [u8; 32],
    /// `PHONE:DEVICE@s.whatsapp.net`.
    pub me_id: String,
    /// `LID@lid` (sometimes with `:DEVICE`), when WhatsApp said it.
    pub me_lid: Option<String>,
    pub push_name: Option<String>,
    /// The ADVSignedDeviceIdentity fields, as WhatsApp signed them.
    pub account: Account,
    pub platform: Option<String>,
    pub next_pre_key_id: u32,
    pub first_unuploaded_pre_key_id: u32,
    pub routing_info: Option<Vec<u8>>,
    pub last_prop_hash: Option<String>,
}

/// `creds.account`: the device identity the phone signed at linking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub details: Vec<u8>,
    pub account_signature_key: Option<Vec<u8>>,
    pub account_signature: Vec<u8>,
    pub device_signature: Vec<u8>,
}

/// One app-state sync key (`app-state-sync-key-<id>.json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppStateKey {
    pub key_id: Vec<u8>,
    pub key_data: Vec<u8>,
    pub fingerprint_raw_id: Option<u32>,
    pub fingerprint_current_index: Option<u32>,
    pub fingerprint_device_indexes: Vec<u32>,
    pub timestamp: i64,
}

/// Everything read from the directory.
#[derive(Clone, Debug)]
pub struct AuthState {
    pub dir: PathBuf,
    pub creds: Creds,
    /// One-time pre-keys still unused: id and pair.
    pub pre_keys: BTreeMap<u32, KeyPair>,
    /// libsignal-node session records (their JSON, as written) by Baileys' address
    /// (`user[_domain].device`). Kept as bytes: the order of a record's chains matters.
    pub sessions: BTreeMap<String, Vec<u8>>,
    /// Identity keys of the devices talked to (32 bytes), by Baileys' address.
    pub identities: BTreeMap<String, [u8; 32]>,
    /// Sender-key records (libsignal-node's JSON) by Baileys' name, `<group>--<user[_domain]>--<device>`.
    pub sender_keys: BTreeMap<String, Vec<u8>>,
    pub app_state_keys: Vec<AppStateKey>,
    /// Phone user -> LID user, from `lid-mapping-<pn>.json`.
    pub lid_mappings: BTreeMap<String, String>,
    /// Files of a kind this reader does not take over, by kind (`tctoken`, `device-list`...):
    /// said in the report, never silently dropped.
    pub skipped: BTreeMap<String, usize>,
    /// Records that could not be read (a file Baileys was writing when it was stopped is
    /// truncated; it writes in place): each costs one contact a new session, which WhatsApp
    /// sets up by itself, where refusing the import would cost a new link. Named in the report.
    pub damaged: Vec<String>,
}

/// Reads a Baileys auth directory. Refuses a partial or damaged one before anything is built.
pub fn read(dir: &Path) -> Result<AuthState, ReadError> {
    let creds_path = dir.join("creds.json");
    if !creds_path.is_file() {
        return Err(ReadError::NoCreds(dir.to_owned()));
    }
    let creds_json = read_json(&creds_path)?;
    let creds = creds(dir, &creds_path, &creds_json)?;
    let mut state = AuthState {
        dir: dir.to_owned(),
        creds,
        pre_keys: BTreeMap::new(),
        sessions: BTreeMap::new(),
        identities: BTreeMap::new(),
        sender_keys: BTreeMap::new(),
        app_state_keys: Vec::new(),
        lid_mappings: BTreeMap::new(),
        skipped: BTreeMap::new(),
        damaged: Vec::new(),
    };
    let entries = std::fs::read_dir(dir).map_err(|source| ReadError::Io { file: dir.to_owned(), source })?;
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    for name in names {
        let Some(stem) = name.strip_suffix(".json") else { continue };
        if stem == "creds" {
            continue;
        }
        let path = dir.join(&name);
        let id = decode_name(stem);
        if let Err(e) = read_entry(&mut state, &path, &id) {
            match e {
                ReadError::Corrupt { file, what } => state.damaged.push(format!("{}: {what}", file.display())),
                other => return Err(other),
            }
        }
    }
    Ok(state)
}

/// One key file into `state`.
fn read_entry(state: &mut AuthState, path: &Path, id: &str) -> Result<(), ReadError> {
    // Longest prefixes first: `sender-key-memory-` before `sender-key-`.
    if let Some(n) = id.strip_prefix("pre-key-") {
        let n: u32 = n.parse().map_err(|_| corrupt(path, "the pre-key id is not a number"))?;
        let v = read_json(path)?;
        state.pre_keys.insert(n, key_pair(path, &v, "pre-key")?);
    } else if let Some(addr) = id.strip_prefix("session-") {
        let bytes = read_bytes(path)?;
        // Checked as JSON now: a damaged record is set aside before anything is built.
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|e| corrupt(path, format!("not valid JSON ({e})")))?;
        state.sessions.insert(addr.to_owned(), bytes);
    } else if let Some(addr) = id.strip_prefix("identity-key-") {
        let v = read_json(path)?;
        state.identities.insert(addr.to_owned(), public_key(path, &v, "identity key")?);
    } else if id.starts_with("sender-key-memory-") {
        *state.skipped.entry("sender-key-memory".to_owned()).or_default() += 1;
    } else if let Some(name) = id.strip_prefix("sender-key-") {
        // A Buffer holding libsignal-node's own JSON of the record.
        let v = read_json(path)?;
        let inner = bytes(&v).ok_or_else(|| corrupt(path, "the sender key is not binary data"))?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&inner)
            .map_err(|e| corrupt(path, format!("the sender key is not valid JSON ({e})")))?;
        state.sender_keys.insert(name.to_owned(), inner);
    } else if let Some(key_id) = id.strip_prefix("app-state-sync-key-") {
        let v = read_json(path)?;
        state.app_state_keys.push(app_state_key(path, key_id, &v)?);
    } else if let Some(user) = id.strip_prefix("lid-mapping-") {
        if !user.ends_with("_reverse")
            && let Value::String(lid) = read_json(path)?
        {
            state.lid_mappings.insert(user.to_owned(), lid);
        }
    } else {
        let kind = id.rsplit_once('-').map_or(id, |(k, _)| k);
        let kind = kind
            .split('-')
            .take_while(|p| !p.chars().next().is_some_and(|c| c.is_ascii_digit()))
            .collect::<Vec<_>>()
            .join("-");
        *state.skipped.entry(kind).or_default() += 1;
    }
    Ok(())
}

/// Baileys' file names: `/` is written `__` and `:` is written `-`. Only the `__` is
/// undone: a `-` is ambiguous, and the ids that matter here contain none.
fn decode_name(stem: &str) -> String {
    stem.replace("__", "/")
}

fn corrupt(file: &Path, what: impl Into<String>) -> ReadError {
    ReadError::Corrupt { file: file.to_owned(), what: what.into() }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(|source| ReadError::Io { file: path.to_owned(), source })
}

fn read_json(path: &Path) -> Result<Value, ReadError> {
    serde_json::from_slice(&read_bytes(path)?).map_err(|e| corrupt(path, format!("not valid JSON ({e})")))
}

/// A binary value: Baileys' `{"type":"Buffer","data":...}` (base64, or an array of bytes in
/// older versions) or a plain base64 string.
pub(crate) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => B64.decode(s).ok(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Buffer") => match o.get("data")? {
            Value::String(s) => B64.decode(s).ok(),
            Value::Array(a) => a.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok())).collect(),
            _ => None,
        },
        // A Uint8Array serialized as an object of its indexes (older Baileys versions).
        Value::Object(o) if !o.is_empty() && o.keys().all(|k| k.parse::<usize>().is_ok()) => {
            let mut out = vec![0u8; o.len()];
            for (k, v) in o {
                *out.get_mut(k.parse::<usize>().ok()?)? = v.as_u64().and_then(|b| u8::try_from(b).ok())?;
            }
            Some(out)
        }
        _ => None,
    }
}

fn field<'a>(file: &Path, v: &'a Value, name: &str) -> Result<&'a Value, ReadError> {
    v.get(name).filter(|x| !x.is_null()).ok_or_else(|| corrupt(file, format!("`{name}` is missing")))
}

fn fixed<const N: usize>(file: &Path, v: &Value, what: &str) -> Result<[u8; N], ReadError> {
    let b = bytes(v).ok_or_else(|| corrupt(file, format!("`{what}` is not binary data")))?;
    b.as_slice().try_into().map_err(|_| corrupt(file, format!("`{what}` is {} bytes, not {N}", b.len())))
}

/// A public key of 32 bytes, or 33 with libsignal's 0x05 type prefix.
fn public_key(file: &Path, v: &Value, what: &str) -> Result<[u8; 32], ReadError> {
    let b = bytes(v).ok_or_else(|| corrupt(file, format!("`{what}` is not binary data")))?;
    let raw = match b.as_slice() {
        [0x05, rest @ ..] if rest.len() == 32 => rest,
        other => other,
    };
    raw.try_into().map_err(|_| corrupt(file, format!("`{what}` is {} bytes, not a 32-byte public key", b.len())))
}

fn key_pair(file: &Path, v: &Value, what: &str) -> Result<KeyPair, ReadError> {
    Ok(KeyPair {
        private: fixed::<32>(file, field(file, v, "private")?, &format!("{what}.private"))?,
        public: public_key(file, field(file, v, "public")?, &format!("{what}.public"))?,
    })
}

fn number(file: &Path, v: &Value, name: &str) -> Result<u32, ReadError> {
    let n = field(file, v, name)?;
    n.as_u64()
        .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| corrupt(file, format!("`{name}` is not a number")))
}

fn creds(dir: &Path, file: &Path, v: &Value) -> Result<Creds, ReadError> {
    // A bridge that never finished linking keeps keys but no identity: nothing to take over.
    let (Some(me), Some(account)) = (v.get("me").filter(|m| !m.is_null()), v.get("account").filter(|a| !a.is_null()))
    else {
        return Err(ReadError::NotLinked(dir.to_owned()));
    };
    let me_id = me.get("id").and_then(Value::as_str).ok_or_else(|| corrupt(file, "`me.id` is missing"))?.to_owned();
    let spk = field(file, v, "signedPreKey")?;
    let adv = field(file, v, "advSecretKey")?;
    let adv_secret_key = match adv {
        Value::String(s) if s.is_empty() => return Err(corrupt(file, "`advSecretKey` is empty")),
        other => fixed::<32>(file, other, "advSecretKey")?,
    };
    let account = Account {
        details: bytes(field(file, account, "details")?)
            .ok_or_else(|| corrupt(file, "`account.details` is not binary"))?,
        account_signature_key: account.get("accountSignatureKey").and_then(bytes),
        account_signature: bytes(field(file, account, "accountSignature")?)
            .ok_or_else(|| corrupt(file, "`account.accountSignature` is not binary"))?,
        device_signature: bytes(field(file, account, "deviceSignature")?)
            .ok_or_else(|| corrupt(file, "`account.deviceSignature` is not binary"))?,
    };
    Ok(Creds {
        noise_key: key_pair(file, field(file, v, "noiseKey")?, "noiseKey")?,
        identity_key: key_pair(file, field(file, v, "signedIdentityKey")?, "signedIdentityKey")?,
        signed_pre_key: key_pair(file, field(file, spk, "keyPair")?, "signedPreKey.keyPair")?,
        signed_pre_key_id: number(file, spk, "keyId")?,
        signed_pre_key_signature: fixed::<64>(file, field(file, spk, "signature")?, "signedPreKey.signature")?,
        registration_id: number(file, v, "registrationId")?,
        adv_secret_key,
        me_id,
        me_lid: me.get("lid").and_then(Value::as_str).map(str::to_owned),
        push_name: me.get("name").and_then(Value::as_str).map(str::to_owned),
        account,
        platform: v.get("platform").and_then(Value::as_str).map(str::to_owned),
        next_pre_key_id: number(file, v, "nextPreKeyId").unwrap_or(1),
        first_unuploaded_pre_key_id: number(file, v, "firstUnuploadedPreKeyId").unwrap_or(1),
        routing_info: v.get("routingInfo").and_then(bytes),
        last_prop_hash: v.get("lastPropHash").and_then(Value::as_str).map(str::to_owned),
    })
}

fn app_state_key(file: &Path, key_id: &str, v: &Value) -> Result<AppStateKey, ReadError> {
    let key_id = B64.decode(key_id).map_err(|_| corrupt(file, "the key id in the file name is not base64"))?;
    let fp = v.get("fingerprint");
    let u = |name: &str| fp.and_then(|f| f.get(name)).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    Ok(AppStateKey {
        key_id,
        key_data: bytes(field(file, v, "keyData")?).ok_or_else(|| corrupt(file, "`keyData` is not binary"))?,
        fingerprint_raw_id: u("rawId"),
        fingerprint_current_index: u("currentIndex"),
        fingerprint_device_indexes: fp
            .and_then(|f| f.get("deviceIndexes"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok())).collect())
            .unwrap_or_default(),
        timestamp: v
            .get("timestamp")
            .and_then(|t| t.as_i64().or_else(|| t.as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(0),
    })
}
