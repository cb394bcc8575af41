//! The fence on a real store in a temporary directory: with the fence tripped every write the
//! wrapper forwards is refused and the disk keeps what it had, read back both through the store
//! and beside it; with the fence open writes go through; a write the disk refuses trips it.
//!
//! What keeps this exhaustive: `fence.rs` is read here, and each method it forwards must be
//! listed below as a write (fenced, and watched) or a read (not fenced); each listed write is
//! called by `write`, which has no arm for a name it does not know. A method whatsapp-rust adds
//! with a default body and the wrapper does not forward cannot pass the fence: a default can only
//! reach the disk through the wrapper's own methods. A method it adds without one does not build.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::reporting_token::MESSAGE_SECRET_SIZE;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::*;
use whatsapp_rust::store::SqliteStore;

use super::{Fence, FencedStore};

/// The writes the wrapper forwards, by their names in whatsapp-rust's store traits.
const WRITES: &[&str] = &[
    "put_identity",
    "put_identities_batch",
    "delete_identity",
    "put_session",
    "put_sessions_batch",
    "delete_session",
    "store_prekey",
    "store_prekeys_batch",
    "mark_prekeys_uploaded",
    "remove_prekey",
    "store_signed_prekey",
    "remove_signed_prekey",
    "put_sender_key",
    "put_sender_keys_batch",
    "delete_sender_key",
    "set_sync_key",
    "set_version",
    "put_mutation_macs",
    "delete_mutation_macs",
    "clear_mutation_macs",
    "set_sender_key_status",
    "clear_sender_key_devices",
    "delete_sender_key_device_rows",
    "clear_all_sender_key_devices",
    "put_lid_mapping",
    "put_lid_mappings",
    "save_base_key",
    "delete_base_key",
    "update_device_list",
    "update_device_lists",
    "delete_devices",
    "put_group_metadata",
    "delete_group_metadata",
    "put_tc_token",
    "delete_tc_token",
    "delete_expired_tc_tokens",
    "touch_tc_token_sender_timestamp",
    "store_received_tc_token",
    "store_sent_message",
    "take_sent_message",
    "delete_expired_sent_messages",
    "store_pending_inbound",
    "delete_pending_inbound",
    "delete_expired_pending_inbound",
    "store_pending_inbound_batch",
    "delete_pending_inbound_batch",
    "save",
    "create",
    "snapshot_db",
    "put_msg_secret",
    "put_msg_secrets",
    "delete_expired_msg_secrets",
];

/// The one read behind the fence: it decides whether a redelivery is acknowledged.
const FENCED_READS: &[&str] = &["get_pending_inbound"];

/// The reads, which pass the fence: they change nothing.
const READS: &[&str] = &[
    "load_identity",
    "get_session",
    "has_session",
    "has_signal_state_for_user",
    "load_prekey",
    "load_prekeys_batch",
    "get_max_prekey_id",
    "load_signed_prekey",
    "load_all_signed_prekeys",
    "get_sender_key",
    "get_sync_key",
    "get_version",
    "get_mutation_mac",
    "get_mutation_macs",
    "get_latest_sync_key_id",
    "get_sender_key_devices",
    "get_lid_mapping",
    "get_pn_mapping",
    "get_all_lid_mappings",
    "has_same_base_key",
    "get_devices",
    "get_group_metadata",
    "get_tc_token",
    "get_all_tc_token_jids",
    "load",
    "exists",
    "resource_report",
    "get_msg_secret",
    "get_msg_secret_with_ts",
];

/// What the seed wrote, and what a write would write.
const SEEDED: &[u8] = b"seeded";
const WRITTEN: &[u8] = b"written";

// Keys the seed wrote, and keys only a write would.
const ADDRESS: &str = "15551234567.0";
const NEW_ADDRESS: &str = "4915112345678.0";
const CHAT: &str = "15551234567@s.whatsapp.net";
const SENDER: &str = "15551234567@s.whatsapp.net";
const MSG: &str = "3EB0000000000000000001";
const NEW_MSG: &str = "3EB0000000000000000002";
const GROUP: &str = "120363021033254949@g.us";
const NEW_GROUP: &str = "120363021033254950@g.us";
const DEVICE: &str = "15551234567:2@s.whatsapp.net";
const NEW_DEVICE: &str = "15551234567:3@s.whatsapp.net";
const LID: &str = "100000012345678";
const NEW_LID: &str = "100000012345679";
const USER: &str = "15551234567";
const NEW_USER: &str = "4915112345678";
const COLLECTION: &str = "regular";
const KEY_ID: &[u8] = b"seeded-key";
const NEW_KEY_ID: &[u8] = b"written-key";

#[test]
fn every_method_the_wrapper_forwards_is_listed_and_every_write_is_fenced() {
    let forwarded = forwarded();
    for (name, body) in &forwarded {
        // Without whitespace, so however rustfmt lays a call out, it reads the same.
        let body: String = body.split_whitespace().collect();
        let inner = format!("self.inner.{name}(");
        assert!(body.contains(&inner), "fence.rs: `{name}` does not forward to the inner store's `{name}`");
        if WRITES.contains(name) {
            assert!(
                body.contains("self.fence.check()?"),
                "fence.rs: the write `{name}` goes past the fence: call `self.fence.check()?` first"
            );
            assert!(
                body.contains(&format!("self.fence.watch({inner}")),
                "fence.rs: the write `{name}` does not trip the fence when it fails: wrap it in `self.fence.watch(..)`"
            );
        } else if FENCED_READS.contains(name) {
            assert!(body.contains("self.fence.check()?"), "fence.rs: `{name}` must fail once the fence is tripped");
        } else if READS.contains(name) {
            assert!(!body.contains("self.fence."), "fence.rs: `{name}` is listed as a read but uses the fence");
        } else {
            panic!(
                "fence.rs forwards `{name}`, which fence/tests.rs does not know: list it in WRITES (and call it in \
                 `write`) if it changes the store, in READS if it does not"
            );
        }
    }
    for listed in WRITES.iter().chain(FENCED_READS).chain(READS) {
        assert!(
            forwarded.iter().any(|(name, _)| name == listed),
            "`{listed}` is listed in fence/tests.rs but fence.rs does not forward it"
        );
    }
}

#[tokio::test]
async fn a_tripped_fence_refuses_every_write_and_the_disk_keeps_what_it_had() {
    let session = Session::open().await;
    let device_key = session.seed().await;
    let before = session.disk();
    session.fence.trip("a write failed");

    for name in WRITES {
        let refused = write(&session.fenced, name).await;
        assert!(is_fenced(&refused), "`{name}` with the fence tripped: {refused:?}");
        assert_eq!(session.disk(), before, "`{name}` reached the disk with the fence tripped");
    }
    // The seeded message is there, but a redelivery must not be acknowledged as its duplicate.
    let lookup = session.fenced.get_pending_inbound(CHAT, SENDER, MSG).await;
    assert!(is_fenced(&lookup), "a pending-message lookup with the fence tripped: {lookup:?}");
    // Reads pass.
    let read = session.fenced.get_session(ADDRESS).await.expect("a read through a tripped fence");
    assert_eq!(read.as_deref(), Some(SEEDED));

    session.seed_is_intact(device_key).await;
}

#[tokio::test]
async fn an_open_fence_lets_writes_through() {
    let session = Session::open().await;
    session.fenced.put_session(NEW_ADDRESS, WRITTEN).await.expect("a write through an open fence");
    let kept = session.inner.get_session(NEW_ADDRESS).await.expect("read the store");
    assert_eq!(kept.as_deref(), Some(WRITTEN), "the write reached the store");

    session.fenced.store_pending_inbound(CHAT, SENDER, NEW_MSG, WRITTEN).await.expect("a write through an open fence");
    let pending = session.fenced.get_pending_inbound(CHAT, SENDER, NEW_MSG).await.expect("a lookup");
    assert_eq!(pending.as_deref(), Some(WRITTEN), "a lookup through an open fence finds the message");
    assert!(!session.fence.is_tripped());
}

/// Each write, as `write` calls it, goes through to the store when the fence is open: the
/// refusals above are the fence's, not the store's own answer to what it was asked.
#[tokio::test]
async fn every_write_goes_through_an_open_fence() {
    let session = Session::open().await;
    // First: the device row is what the rest write beside (a LID mapping refers to it).
    write(&session.fenced, "create").await.expect("`create` through an open fence");
    for name in WRITES.iter().filter(|name| **name != "create") {
        if let Err(e) = write(&session.fenced, name).await {
            panic!("`{name}` through an open fence: {e:?}");
        }
    }
    assert!(!session.fence.is_tripped(), "no write failed: {:?}", session.fence.why());
}

/// A write the disk refuses trips the fence: the supervisor is woken (once), and nothing more
/// is written, even once the disk takes writes again. A full disk is stood in for by a trigger
/// that refuses new sessions with SQLite's own words for it.
#[tokio::test]
async fn a_write_the_disk_refuses_trips_the_fence_for_good() {
    let session = Session::open().await;
    let sql = rusqlite::Connection::open(&session.db).expect("open the store beside the client");
    sql.execute_batch(
        "CREATE TRIGGER disk_full BEFORE INSERT ON sessions
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .expect("make the store refuse new sessions");

    let failed = session.fenced.put_session(ADDRESS, SEEDED).await;
    assert!(failed.is_err() && !is_fenced(&failed), "the store's own refusal comes through: {failed:?}");
    assert!(session.fence.is_tripped(), "a failed write trips the fence");
    let why = session.fence.why();
    assert!(why.as_deref().is_some_and(|why| why.contains("could not be written")), "{why:?}");
    let woken = std::pin::pin!(session.notify.notified());
    assert!(woken.enable(), "the supervisor is woken when the fence trips");

    // Room again: the store takes writes, the fence does not.
    sql.execute_batch("DROP TRIGGER disk_full;").expect("let the store take sessions again");
    session.inner.put_identity(ADDRESS, [1u8; 32]).await.expect("the store itself takes writes again");
    let refused = session.fenced.put_session(ADDRESS, WRITTEN).await;
    assert!(is_fenced(&refused), "a write after the trip: {refused:?}");
    let session_row = session.inner.get_session(ADDRESS).await.expect("read the store");
    assert_eq!(session_row, None, "nothing reached the disk after the trip");

    // A failure of a write already under way changes nothing and wakes nobody.
    session.fence.trip("a later failure");
    let again = std::pin::pin!(session.notify.notified());
    assert!(!again.enable(), "the supervisor is woken once");
    assert_eq!(session.fence.why(), why, "the first reason is kept");
}

/// A real store in a temporary directory, behind a fence, and the same store without it.
struct Session {
    db: PathBuf,
    inner: SqliteStore,
    fence: Arc<Fence>,
    notify: Arc<tokio::sync::Notify>,
    fenced: FencedStore,
    // Last: removed once the store's connections are closed.
    dir: tempfile::TempDir,
}

/// What is on disk: every row of every table, as text, and the files beside the store.
#[derive(Debug, PartialEq)]
struct Disk {
    rows: Vec<String>,
    files: Vec<String>,
}

impl Session {
    async fn open() -> Session {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join(crate::store::STORE_FILE);
        let inner = SqliteStore::new(db.to_str().expect("a UTF-8 path")).await.expect("open the store");
        let notify = Arc::new(tokio::sync::Notify::new());
        let fence = Fence::new(notify.clone());
        let fenced = FencedStore::new(inner.clone(), fence.clone(), None);
        Session { db, inner, fence, notify, fenced, dir }
    }

    /// A row wherever a write could add, change or remove one, written past the fence. The
    /// device's key, to know it again.
    async fn seed(&self) -> [u8; 32] {
        let s = &self.inner;
        s.create().await.expect("seed the device");
        s.put_identity(ADDRESS, [1u8; 32]).await.expect("seed an identity");
        s.put_session(ADDRESS, SEEDED).await.expect("seed a session");
        s.store_prekey(1, SEEDED, false).await.expect("seed a pre-key");
        s.store_signed_prekey(1, SEEDED).await.expect("seed a signed pre-key");
        s.put_sender_key(ADDRESS, SEEDED).await.expect("seed a sender key");
        s.set_sync_key(KEY_ID, sync_key()).await.expect("seed a sync key");
        s.set_version(COLLECTION, version(1)).await.expect("seed a version");
        s.put_mutation_macs(COLLECTION, 1, &[mac(1)]).await.expect("seed a mutation MAC");
        s.set_sender_key_status(GROUP, &[(DEVICE, true)]).await.expect("seed a sender key status");
        s.put_lid_mapping(&lid_mapping(LID)).await.expect("seed a LID mapping");
        s.save_base_key(ADDRESS, MSG, SEEDED).await.expect("seed a base key");
        s.update_device_list(device_list(USER)).await.expect("seed a device list");
        s.put_group_metadata(GROUP, SEEDED).await.expect("seed group metadata");
        s.put_tc_token(ADDRESS, &tc_token(SEEDED, 1)).await.expect("seed a token");
        s.store_sent_message(CHAT, MSG, SEEDED).await.expect("seed a sent message");
        s.store_pending_inbound(CHAT, SENDER, MSG, SEEDED).await.expect("seed a pending message");
        s.put_msg_secrets(vec![msg_secret(MSG, 1)]).await.expect("seed a message secret");
        s.load().await.expect("read the device").expect("the seeded device").adv_secret_key
    }

    /// What the seed wrote, read back through the store, and nothing a write would have added.
    /// Last in a test: a sent message is read by taking it.
    async fn seed_is_intact(&self, device_key: [u8; 32]) {
        let s = &self.inner;
        let device = s.load().await.expect("read").expect("the seeded device");
        assert_eq!(device.adv_secret_key, device_key, "the device");
        assert_eq!(s.load_identity(ADDRESS).await.expect("read"), Some([1u8; 32]));
        assert_eq!(s.load_identity(NEW_ADDRESS).await.expect("read"), None);
        assert_eq!(s.get_session(ADDRESS).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.get_session(NEW_ADDRESS).await.expect("read"), None);
        assert_eq!(s.load_prekey(1).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.load_prekey(2).await.expect("read"), None);
        assert_eq!(s.get_max_prekey_id().await.expect("read"), 1);
        assert_eq!(s.load_signed_prekey(1).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.load_signed_prekey(2).await.expect("read"), None);
        assert_eq!(s.get_sender_key(ADDRESS).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.get_sender_key(NEW_ADDRESS).await.expect("read"), None);
        assert!(s.get_sync_key(KEY_ID).await.expect("read").is_some());
        assert!(s.get_sync_key(NEW_KEY_ID).await.expect("read").is_none());
        assert_eq!(s.get_version(COLLECTION).await.expect("read").version, 1);
        assert!(s.get_mutation_mac(COLLECTION, &[1u8; 32]).await.expect("read").is_some());
        assert!(s.get_mutation_mac(COLLECTION, &[2u8; 32]).await.expect("read").is_none());
        assert_eq!(s.get_sender_key_devices(GROUP).await.expect("read"), vec![(DEVICE.to_owned(), true)]);
        assert!(s.get_lid_mapping(LID).await.expect("read").is_some());
        assert!(s.get_lid_mapping(NEW_LID).await.expect("read").is_none());
        assert!(s.has_same_base_key(ADDRESS, MSG, SEEDED).await.expect("read"));
        assert!(!s.has_same_base_key(NEW_ADDRESS, MSG, WRITTEN).await.expect("read"));
        assert!(s.get_devices(USER).await.expect("read").is_some());
        assert!(s.get_devices(NEW_USER).await.expect("read").is_none());
        assert_eq!(s.get_group_metadata(GROUP).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.get_group_metadata(NEW_GROUP).await.expect("read"), None);
        let token = s.get_tc_token(ADDRESS).await.expect("read").expect("the seeded token");
        assert_eq!((token.token.as_slice(), token.token_timestamp, token.sender_timestamp), (SEEDED, 1, Some(1)));
        assert!(s.get_tc_token(NEW_ADDRESS).await.expect("read").is_none());
        assert_eq!(s.get_pending_inbound(CHAT, SENDER, MSG).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.get_pending_inbound(CHAT, SENDER, NEW_MSG).await.expect("read"), None);
        assert!(s.get_msg_secret(CHAT, SENDER, MSG).await.expect("read").is_some());
        assert!(s.get_msg_secret(CHAT, SENDER, NEW_MSG).await.expect("read").is_none());
        assert_eq!(s.take_sent_message(CHAT, MSG).await.expect("read").as_deref(), Some(SEEDED));
        assert_eq!(s.take_sent_message(CHAT, NEW_MSG).await.expect("read"), None);
    }

    /// Read beside the client, as another process would: what a write that got through would
    /// have changed, whether or not the store's own reads show it (a pre-key's upload mark, a
    /// snapshot file).
    fn disk(&self) -> Disk {
        let sql = rusqlite::Connection::open(&self.db).expect("open the store beside the client");
        let mut list =
            sql.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").expect("list the tables");
        let tables: Vec<String> = list
            .query_map([], |row| row.get(0))
            .expect("list the tables")
            .collect::<rusqlite::Result<_>>()
            .expect("read the table names");
        let mut rows = Vec::new();
        for table in &tables {
            let mut select = sql.prepare(&format!("SELECT * FROM \"{table}\"")).expect("read a table");
            let columns = select.column_count();
            let read = select
                .query_map([], |row| {
                    (0..columns).map(|i| row.get::<_, rusqlite::types::Value>(i)).collect::<rusqlite::Result<Vec<_>>>()
                })
                .expect("read a table");
            for row in read {
                rows.push(format!("{table}: {:?}", row.expect("read a row")));
            }
        }
        rows.sort();
        let mut files: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("list the session directory")
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            // The write-ahead log and its index come and go with connections; what they hold
            // is in `rows`.
            .filter(|name| !name.ends_with("-wal") && !name.ends_with("-shm"))
            .collect();
        files.sort();
        Disk { rows, files }
    }
}

/// Calls the write `name` through `store` with what would change the seeded disk if it got
/// through: a key written anew, or a seeded row changed or removed.
async fn write(store: &FencedStore, name: &str) -> Result<()> {
    let address = || Arc::<str>::from(NEW_ADDRESS);
    let written = || Bytes::from_static(WRITTEN);
    match name {
        "put_identity" => store.put_identity(NEW_ADDRESS, [2u8; 32]).await,
        "put_identities_batch" => store.put_identities_batch(&[(address(), [2u8; 32])]).await,
        "delete_identity" => store.delete_identity(ADDRESS).await,
        "put_session" => store.put_session(NEW_ADDRESS, WRITTEN).await,
        "put_sessions_batch" => store.put_sessions_batch(&[(address(), written())]).await,
        "delete_session" => store.delete_session(ADDRESS).await,
        "store_prekey" => store.store_prekey(2, WRITTEN, false).await,
        "store_prekeys_batch" => store.store_prekeys_batch(&[(2u32, written())], false).await,
        "mark_prekeys_uploaded" => store.mark_prekeys_uploaded(&[1u32]).await,
        "remove_prekey" => store.remove_prekey(1).await,
        "store_signed_prekey" => store.store_signed_prekey(2, WRITTEN).await,
        "remove_signed_prekey" => store.remove_signed_prekey(1).await,
        "put_sender_key" => store.put_sender_key(NEW_ADDRESS, WRITTEN).await,
        "put_sender_keys_batch" => store.put_sender_keys_batch(&[(address(), written())]).await,
        "delete_sender_key" => store.delete_sender_key(ADDRESS).await,
        "set_sync_key" => store.set_sync_key(NEW_KEY_ID, sync_key()).await,
        "set_version" => store.set_version(COLLECTION, version(2)).await,
        "put_mutation_macs" => store.put_mutation_macs(COLLECTION, 2, &[mac(2)]).await,
        "delete_mutation_macs" => store.delete_mutation_macs(COLLECTION, &[vec![1u8; 32]]).await,
        "clear_mutation_macs" => store.clear_mutation_macs(COLLECTION).await,
        "set_sender_key_status" => store.set_sender_key_status(GROUP, &[(NEW_DEVICE, false)]).await,
        "clear_sender_key_devices" => store.clear_sender_key_devices(GROUP).await,
        "delete_sender_key_device_rows" => store.delete_sender_key_device_rows(&[DEVICE]).await,
        "clear_all_sender_key_devices" => store.clear_all_sender_key_devices().await,
        "put_lid_mapping" => store.put_lid_mapping(&lid_mapping(NEW_LID)).await,
        "put_lid_mappings" => store.put_lid_mappings(&[lid_mapping(NEW_LID)]).await,
        "save_base_key" => store.save_base_key(NEW_ADDRESS, MSG, WRITTEN).await,
        "delete_base_key" => store.delete_base_key(ADDRESS, MSG).await,
        "update_device_list" => store.update_device_list(device_list(NEW_USER)).await,
        "update_device_lists" => store.update_device_lists(vec![device_list(NEW_USER)]).await,
        "delete_devices" => store.delete_devices(USER).await,
        "put_group_metadata" => store.put_group_metadata(NEW_GROUP, WRITTEN).await,
        "delete_group_metadata" => store.delete_group_metadata(GROUP).await,
        "put_tc_token" => store.put_tc_token(NEW_ADDRESS, &tc_token(WRITTEN, 2)).await,
        "delete_tc_token" => store.delete_tc_token(ADDRESS).await,
        "delete_expired_tc_tokens" => store.delete_expired_tc_tokens(i64::MAX, i64::MAX).await.map(drop),
        "touch_tc_token_sender_timestamp" => store.touch_tc_token_sender_timestamp(ADDRESS, 2).await,
        "store_received_tc_token" => store.store_received_tc_token(ADDRESS, WRITTEN, 2).await,
        "store_sent_message" => store.store_sent_message(CHAT, NEW_MSG, WRITTEN).await,
        "take_sent_message" => store.take_sent_message(CHAT, MSG).await.map(drop),
        "delete_expired_sent_messages" => store.delete_expired_sent_messages(i64::MAX).await.map(drop),
        "store_pending_inbound" => store.store_pending_inbound(CHAT, SENDER, NEW_MSG, WRITTEN).await,
        "delete_pending_inbound" => store.delete_pending_inbound(CHAT, SENDER, MSG).await,
        "delete_expired_pending_inbound" => store.delete_expired_pending_inbound(i64::MAX).await.map(drop),
        "store_pending_inbound_batch" => {
            let row = PendingInboundRow { chat: CHAT, sender: SENDER, id: NEW_MSG, message: WRITTEN };
            store.store_pending_inbound_batch(&[row]).await
        }
        "delete_pending_inbound_batch" => {
            let key = PendingInboundKey { chat: CHAT, sender: SENDER, id: MSG };
            store.delete_pending_inbound_batch(&[key]).await
        }
        "save" => store.save(&wacore::store::Device::new()).await,
        "create" => store.create().await.map(drop),
        "snapshot_db" => store.snapshot_db("fenced", Some(WRITTEN)).await,
        "put_msg_secret" => store.put_msg_secret(CHAT, SENDER, NEW_MSG, &[2u8; MESSAGE_SECRET_SIZE]).await,
        "put_msg_secrets" => store.put_msg_secrets(vec![msg_secret(NEW_MSG, 0)]).await.map(drop),
        "delete_expired_msg_secrets" => store.delete_expired_msg_secrets(i64::MAX).await.map(drop),
        other => panic!("no call for the write `{other}`: add one to `write` in fence/tests.rs"),
    }
}

/// The methods `fence.rs` forwards, each with its text up to the next one.
fn forwarded() -> Vec<(&'static str, &'static str)> {
    const SOURCE: &str = include_str!("../fence.rs");
    SOURCE
        .split("async fn ")
        .skip(1)
        .map(|method| (method.split_once('(').map_or(method, |(name, _)| name), method))
        .collect()
}

/// Whether `result` is the fence's refusal rather than the store's own answer.
fn is_fenced<T>(result: &Result<T>) -> bool {
    matches!(result, Err(StoreError::Io(e)) if e.to_string().contains("fenced"))
}

fn sync_key() -> AppStateSyncKey {
    // The store reads back only a 32-byte key.
    AppStateSyncKey { key_data: vec![7; 32], fingerprint: vec![8; 4], timestamp: 1 }
}

fn version(version: u64) -> HashState {
    HashState { version, ..HashState::default() }
}

fn mac(n: u8) -> AppStateMutationMAC {
    AppStateMutationMAC { index_mac: vec![n; 32], value_mac: vec![n; 32] }
}

fn lid_mapping(lid: &str) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.to_owned(),
        phone_number: USER.to_owned(),
        created_at: 1,
        updated_at: 1,
        learning_source: "usync".to_owned(),
    }
}

fn device_list(user: &str) -> DeviceListRecord {
    DeviceListRecord {
        user: user.to_owned(),
        devices: vec![DeviceInfo::new(0, None)],
        timestamp: 1,
        phash: None,
        raw_id: None,
    }
}

fn tc_token(token: &[u8], at: i64) -> TcTokenEntry {
    TcTokenEntry { token: token.to_vec(), token_timestamp: at, sender_timestamp: Some(at) }
}

fn msg_secret(id: &str, expires_at: i64) -> MsgSecretEntry {
    MsgSecretEntry {
        chat: Arc::from(CHAT),
        sender: Arc::from(SENDER),
        msg_id: Arc::from(id),
        secret: [1; MESSAGE_SECRET_SIZE],
        expires_at,
        message_ts: 0,
    }
}
