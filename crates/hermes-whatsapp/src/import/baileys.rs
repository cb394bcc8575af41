//! Reading a Baileys multi-file auth state: the directory Hermes' Node bridge keeps its linked
//! device in (`useMultiFileAuthState`). Nothing here writes; the directory is never touched.
//!
//! One JSON file per key, named `<kind>-<id>.json` with `/` written `__` and `:` written `-`.
//! Binary values are `{"type":"Buffer","data":"<base64>"}` (Baileys' `BufferJSON`), or plain
//! base64 strings inside protobuf-derived objects (`account`). Every value is checked for its
//! length here, so that what reaches the store is either right or refused with its file named.
//!
//! Baileys writes only regular files, and small ones: a symbolic link, a FIFO or a directory
//! among them is refused by name before it is opened (a link to `/dev/zero` ran the import out
//! of memory, a FIFO hung it while it held the session lock), and nothing is read past
//! [`MAX_FILE_BYTES`] a file or [`MAX_STATE_BYTES`] in all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hermes_store::files::Refusal;
use serde_json::Value;

/// The most one file of an auth state may hold. `creds.json`, a pre-key, an identity or an
/// app-state key is well under 4 KiB; a session record grows with the chains and skipped
/// message keys it keeps (about 60 bytes a key) and is a few KiB, rarely hundreds. 4 MiB is a
/// wide margin over any of them and still bounds what one file can cost.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The most all the files read may hold together: everything read stays in memory until the
/// store is built. Tens of thousands of contacts' records fit; a directory over it is not
/// (only) a Baileys auth state.
pub const MAX_STATE_BYTES: u64 = 256 * 1024 * 1024;

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
    /// A file of the directory is a symbolic link, a FIFO, a device or a directory, or larger
    /// than [`MAX_FILE_BYTES`]: never followed, opened or read whole.
    #[error("{}", refused(.file, .refusal))]
    Refused { file: PathBuf, refusal: Refusal },
    /// The files read add up to more than [`MAX_STATE_BYTES`].
    #[error(
        "the key files in '{}' add up to more than {} MiB, far more than a Baileys auth state holds: check that it is \
         the session directory of Hermes' bridge (`--from DIR`)",
        .dir.display(),
        .cap / (1024 * 1024)
    )]
    TooMuch { dir: PathBuf, cap: u64 },
}

impl ReadError {
    /// A short name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::NoCreds(_) => "no_session",
            ReadError::NotLinked(_) => "not_linked",
            ReadError::Corrupt { .. } => "corrupt",
            ReadError::Io { .. } => "io",
            ReadError::Refused { refusal: Refusal::TooLarge { .. }, .. } | ReadError::TooMuch { .. } => "too_large",
            ReadError::Refused { .. } => "not_regular_file",
        }
    }
}

/// What is wrong with a refused file and what to do, the file named first.
fn refused(file: &Path, refusal: &Refusal) -> String {
    let file = file.display();
    match refusal {
        Refusal::Symlink => format!(
            "'{file}' is a symbolic link: an auth state holds only regular files; copy the real file in its place"
        ),
        Refusal::TooLarge { cap } => format!(
            "'{file}' is larger than {} KiB, more than any file of a Baileys auth state holds: move it out of the \
             directory and import again (a session file moved out costs that contact a new session, which WhatsApp \
             sets up by itself)",
            cap / 1024
        ),
        other => format!(
            "'{file}' {other}: an auth state holds only regular files; move it out of the directory, or copy the real \
             file in its place"
        ),
    }
}

/// Reads the directory's files within the caps, counting what was read.
#[derive(Debug)]
struct Budget {
    dir: PathBuf,
    file_cap: u64,
    total_cap: u64,
    read: u64,
}

impl Budget {
    fn bytes(&mut self, path: &Path) -> Result<Vec<u8>, ReadError> {
        let failed = |e: std::io::Error| match hermes_store::files::refusal(&e) {
            Some(refusal) => ReadError::Refused { file: path.to_owned(), refusal },
            None => ReadError::Io { file: path.to_owned(), source: e },
        };
        let bytes = hermes_store::files::read_regular_capped(path, self.file_cap).map_err(failed)?;
        self.read = self.read.saturating_add(bytes.len() as u64);
        if self.read > self.total_cap {
            return Err(ReadError::TooMuch { dir: self.dir.clone(), cap: self.total_cap });
        }
        Ok(bytes)
    }

    fn json(&mut self, path: &Path) -> Result<Value, ReadError> {
        serde_json::from_slice(&self.bytes(path)?).map_err(|e| corrupt(path, format!("not valid JSON ({e})")))
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
    read_within(dir, MAX_FILE_BYTES, MAX_STATE_BYTES)
}

fn read_within(dir: &Path, file_cap: u64, total_cap: u64) -> Result<AuthState, ReadError> {
    let mut budget = Budget { dir: dir.to_owned(), file_cap, total_cap, read: 0 };
    let creds_path = dir.join("creds.json");
    // Looked at, not followed: anything but a regular file is refused by the read, by name.
    if let Err(e) = std::fs::symlink_metadata(&creds_path)
        && matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory)
    {
        return Err(ReadError::NoCreds(dir.to_owned()));
    }
    let creds_json = budget.json(&creds_path)?;
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
    let listing = |source| ReadError::Io { file: dir.to_owned(), source };
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !name.ends_with(".json") || name == "creds.json" {
            continue;
        }
        // The listing's own type, never the target's: a link or a FIFO is named before
        // anything is opened.
        let file_type = entry.file_type().map_err(|source| ReadError::Io { file: entry.path(), source })?;
        if let Some(refusal) = Refusal::of_type(file_type) {
            return Err(ReadError::Refused { file: entry.path(), refusal });
        }
        names.push(name);
    }
    names.sort();
    for name in names {
        let Some(stem) = name.strip_suffix(".json") else { continue };
        let path = dir.join(&name);
        let id = decode_name(stem);
        if let Err(e) = read_entry(&mut state, &path, &id, &mut budget) {
            match e {
                ReadError::Corrupt { file, what } => state.damaged.push(format!("{}: {what}", file.display())),
                other => return Err(other),
            }
        }
    }
    Ok(state)
}

/// One key file into `state`.
fn read_entry(state: &mut AuthState, path: &Path, id: &str, budget: &mut Budget) -> Result<(), ReadError> {
    // Longest prefixes first: `sender-key-memory-` before `sender-key-`.
    if let Some(n) = id.strip_prefix("pre-key-") {
        let n: u32 = n.parse().map_err(|_| corrupt(path, "the pre-key id is not a number"))?;
        let v = budget.json(path)?;
        state.pre_keys.insert(n, key_pair(path, &v, "pre-key")?);
    } else if let Some(addr) = id.strip_prefix("session-") {
        let bytes = budget.bytes(path)?;
        // Checked as JSON now: a damaged record is set aside before anything is built.
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(|e| corrupt(path, format!("not valid JSON ({e})")))?;
        state.sessions.insert(addr.to_owned(), bytes);
    } else if let Some(addr) = id.strip_prefix("identity-key-") {
        let v = budget.json(path)?;
        state.identities.insert(addr.to_owned(), public_key(path, &v, "identity key")?);
    } else if id.starts_with("sender-key-memory-") {
        *state.skipped.entry("sender-key-memory".to_owned()).or_default() += 1;
    } else if let Some(name) = id.strip_prefix("sender-key-") {
        // A Buffer holding libsignal-node's own JSON of the record.
        let v = budget.json(path)?;
        let inner = bytes(&v).ok_or_else(|| corrupt(path, "the sender key is not binary data"))?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&inner)
            .map_err(|e| corrupt(path, format!("the sender key is not valid JSON ({e})")))?;
        state.sender_keys.insert(name.to_owned(), inner);
    } else if let Some(key_id) = id.strip_prefix("app-state-sync-key-") {
        let v = budget.json(path)?;
        state.app_state_keys.push(app_state_key(path, key_id, &v)?);
    } else if let Some(user) = id.strip_prefix("lid-mapping-") {
        if !user.ends_with("_reverse")
            && let Value::String(lid) = budget.json(path)?
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

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(n: usize) -> Value {
        serde_json::json!({"type": "Buffer", "data": B64.encode(vec![7u8; n])})
    }

    fn pair() -> Value {
        serde_json::json!({"private": buffer(32), "public": buffer(32)})
    }

    /// A linked device's `creds.json`, every value of the right length (not real keys: reading
    /// checks lengths, building checks keys).
    fn creds_json() -> String {
        serde_json::json!({
            "noiseKey": pair(),
            "signedIdentityKey": pair(),
            "signedPreKey": {"keyPair": pair(), "keyId": 1, "signature": buffer(64)},
            "registrationId": 1234,
            "advSecretKey": B64.encode([1u8; 32]),
            "me": {"id": "15551234567:3@s.whatsapp.net", "name": "Ada"},
            "account": {
                "details": buffer(16),
                "accountSignatureKey": buffer(32),
                "accountSignature": buffer(64),
                "deviceSignature": buffer(64)
            }
        })
        .to_string()
    }

    /// A directory as Baileys writes it: `creds.json` and one pre-key.
    fn auth_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("creds.json"), creds_json()).expect("creds");
        std::fs::write(dir.path().join("pre-key-1.json"), pair().to_string()).expect("pre-key");
        dir
    }

    /// Runs `f` on a thread of its own and fails the test if it has not returned within a
    /// minute: what is tested is that it does not block (a thread blocked on a FIFO stays
    /// behind, and ends with the test process).
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60)).expect("returned instead of blocking")
    }

    fn read_soon(dir: &Path) -> Result<AuthState, ReadError> {
        let dir = dir.to_owned();
        within_a_minute(move || read(&dir))
    }

    fn mkfifo(path: &Path) {
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, mode, 0).expect("mkfifo");
    }

    /// Issue 25: a key file linked to `/dev/zero` ran `hermes whatsapp import` out of memory.
    #[test]
    fn issue_25_a_key_file_that_is_a_link_is_refused_by_name() {
        let dir = auth_dir();
        let state = read_soon(dir.path()).expect("a directory as Baileys writes it");
        assert_eq!(state.pre_keys.len(), 1);
        let zero = dir.path().join("pre-key-2.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
        let e = read_soon(dir.path()).expect_err("a link to /dev/zero");
        assert_eq!(e.kind(), "not_regular_file");
        assert_eq!(
            e.to_string(),
            format!(
                "'{}' is a symbolic link: an auth state holds only regular files; copy the real file in its place",
                zero.display()
            )
        );
        // `creds.json` too, even linked to a real file.
        std::fs::remove_file(&zero).expect("rm");
        let real = dir.path().join("creds.real");
        std::fs::rename(dir.path().join("creds.json"), &real).expect("move");
        std::os::unix::fs::symlink(&real, dir.path().join("creds.json")).expect("symlink");
        let e = read_soon(dir.path()).expect_err("a linked creds.json");
        assert!(
            matches!(&e, ReadError::Refused { file, refusal: Refusal::Symlink } if file.ends_with("creds.json")),
            "{e}"
        );
    }

    /// Issue 25: a FIFO among the key files hung the import while it held the session lock.
    #[test]
    fn issue_25_a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = auth_dir();
        let fifo = dir.path().join("session-15550001111.0.json");
        mkfifo(&fifo);
        let e = read_soon(dir.path()).expect_err("a FIFO");
        assert_eq!(e.kind(), "not_regular_file");
        let named = format!("'{}' is a FIFO (named pipe), not a regular file", fifo.display());
        assert!(e.to_string().starts_with(&named), "{e}");
        std::fs::remove_file(&fifo).expect("rm");
        let creds = dir.path().join("creds.json");
        std::fs::remove_file(&creds).expect("rm");
        mkfifo(&creds);
        let e = read_soon(dir.path()).expect_err("a FIFO as creds.json");
        assert!(matches!(&e, ReadError::Refused { refusal: Refusal::NotRegular(_), .. }), "{e}");
    }

    /// Issue 25: nothing bounded what was read, a file or the whole directory.
    #[test]
    fn issue_25_files_past_the_caps_and_directories_are_refused() {
        let dir = auth_dir();
        let big = dir.path().join("session-15550001111.0.json");
        // Sparse: as large as it says without writing it.
        std::fs::File::create(&big).expect("create").set_len(MAX_FILE_BYTES + 1).expect("grow");
        let e = read_soon(dir.path()).expect_err("over the cap of a file");
        assert_eq!(e.kind(), "too_large");
        assert!(e.to_string().contains("is larger than 4096 KiB"), "{e}");
        std::fs::remove_file(&big).expect("rm");

        // All together: `creds.json` fits, the pre-key after it does not.
        let creds = std::fs::metadata(dir.path().join("creds.json")).expect("creds").len();
        let e = read_within(dir.path(), MAX_FILE_BYTES, creds).expect_err("over the cap of the whole");
        assert!(matches!(e, ReadError::TooMuch { .. }), "{e}");
        assert_eq!(e.kind(), "too_large");
        read_within(dir.path(), MAX_FILE_BYTES, creds + 1024).expect("within both caps");

        std::fs::create_dir(dir.path().join("pre-key-3.json")).expect("mkdir");
        let e = read_soon(dir.path()).expect_err("a directory");
        assert!(e.to_string().contains("pre-key-3.json' is a directory, not a regular file"), "{e}");
    }

    /// Issue 25: `hermes gateway`, `status` and the wizard ask whether a bridge session is
    /// there; they read `creds.json` as the import does.
    #[test]
    fn issue_25_a_bridge_session_is_seen_only_in_a_regular_creds_file() {
        let dir = auth_dir();
        let seen = |dir: &Path| {
            let dir = dir.to_owned();
            within_a_minute(move || crate::import::bridge_session(&dir))
        };
        assert!(seen(dir.path()));
        let creds = dir.path().join("creds.json");
        std::fs::remove_file(&creds).expect("rm");
        std::os::unix::fs::symlink("/dev/zero", &creds).expect("symlink");
        assert!(!seen(dir.path()));
        std::fs::remove_file(&creds).expect("rm");
        mkfifo(&creds);
        assert!(!seen(dir.path()));
    }
}
