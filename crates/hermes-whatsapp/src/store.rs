//! What the session directory holds: a linked device, or why not.
//!
//! Hermes counted an empty `creds.json` as linked and restarted against it forever. Here
//! "linked" means whatsapp-rust's store opens and holds a device with an account id and the
//! phone's signature over it; anything else is reported for what it is.

use std::path::Path;
use std::sync::Arc;

use whatsapp_rust::store::SqliteStore;
use whatsapp_rust::store::persistence_manager::PersistenceManager;

/// The store's file name inside the session directory.
pub const STORE_FILE: &str = "whatsapp.db";

/// The linked account, as the store names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedAccount {
    /// Phone number, digits only.
    pub phone: String,
    /// LID user part, when WhatsApp sent one.
    pub lid: Option<String>,
    /// Push name, when known.
    pub name: Option<String>,
    /// This device's number among the account's devices.
    pub device: u16,
}

/// What was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreState {
    /// No session directory or no store file in it.
    Missing,
    /// The store file exists but is empty (an interrupted first run).
    Empty,
    /// The file is not a readable store: truncated, corrupt, or something else.
    Corrupt(String),
    /// A store with no linked device in it (linking never finished).
    NotLinked,
    Linked(LinkedAccount),
}

impl StoreState {
    pub fn is_linked(&self) -> bool {
        matches!(self, StoreState::Linked(_))
    }
}

/// `Missing` or `Empty` when there is no store to open at `file`.
fn absent(file: &Path) -> Option<StoreState> {
    match std::fs::metadata(file) {
        Err(_) => Some(StoreState::Missing),
        Ok(m) if m.len() == 0 => Some(StoreState::Empty),
        Ok(_) => None,
    }
}

/// Like [`inspect`], but changes nothing in the session at all: the store is copied with
/// SQLite's `VACUUM INTO` over a read-only connection (a consistent snapshot, even while the
/// gateway writes), and the copy, in a private temporary directory, is what gets opened,
/// migrated and read. For `status`, `doctor` and `explain`.
pub async fn inspect_read_only(session_dir: &Path) -> StoreState {
    let file = session_dir.join(STORE_FILE);
    if let Some(state) = absent(&file) {
        return state;
    }
    let copy = match tempfile::Builder::new().prefix("hermes-inspect-").tempdir() {
        Ok(d) => d,
        Err(e) => return StoreState::Corrupt(format!("cannot make a temporary copy to read: {e}")),
    };
    let snapshot = copy.path().join(STORE_FILE);
    let copied = tokio::task::spawn_blocking({
        let (file, snapshot) = (file.clone(), snapshot.clone());
        move || -> Result<(), rusqlite::Error> {
            let conn = hermes_store::files::open_sqlite_read_only(&file)?;
            let target = snapshot.to_str().ok_or(rusqlite::Error::InvalidPath(snapshot.clone()))?;
            conn.execute("VACUUM INTO ?1", [target])?;
            Ok(())
        }
    })
    .await;
    match copied {
        Ok(Ok(())) => inspect(copy.path()).await,
        Ok(Err(e)) => StoreState::Corrupt(e.to_string()),
        Err(e) => StoreState::Corrupt(e.to_string()),
    }
}

/// Opens the store read-and-verify. Never creates anything where nothing is.
pub async fn inspect(session_dir: &Path) -> StoreState {
    let file = session_dir.join(STORE_FILE);
    if let Some(state) = absent(&file) {
        return state;
    }
    let Some(url) = file.to_str() else { return StoreState::Corrupt("the path is not valid UTF-8".into()) };
    let store = match SqliteStore::new(url).await {
        Ok(s) => s,
        Err(e) => return StoreState::Corrupt(e.to_string()),
    };
    let pm = match PersistenceManager::new(Arc::new(store)).await {
        Ok(pm) => pm,
        Err(e) => return StoreState::Corrupt(e.to_string()),
    };
    let device = pm.get_device_snapshot();
    match (&device.pn, &device.account) {
        (Some(pn), Some(_)) => StoreState::Linked(LinkedAccount {
            phone: pn.user.to_string(),
            lid: device.lid.as_ref().map(|l| l.user.to_string()),
            name: Some(device.push_name.clone()).filter(|n| !n.is_empty()),
            device: pn.device,
        }),
        _ => StoreState::NotLinked,
    }
}

#[cfg(test)]
mod tests {
    /// The SQLite linked in plans a statement once, for whatsapp-rust's connections too, which
    /// hermes does not open itself: `.cargo/config.toml` builds it with the query planner
    /// stability guarantee on by default. Without it, each of the store's `.first()` reads (a
    /// bound `LIMIT ?`) was planned again on every use.
    #[test]
    fn the_linked_sqlite_keeps_statement_plans_by_default() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let used: i64 =
            conn.query_row("SELECT sqlite_compileoption_used('ENABLE_QPSG')", [], |r| r.get(0)).expect("query");
        assert_eq!(used, 1, "build with LIBSQLITE3_FLAGS=SQLITE_ENABLE_QPSG (.cargo/config.toml)");
    }
}
