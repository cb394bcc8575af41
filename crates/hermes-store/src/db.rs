//! The running gateway's one owner of its database: the journal hook, the pipeline and the
//! control endpoint all hold a clone of one [`Db`], so there is one writing connection, one
//! lock and one order of writes, and one reading connection for the message path's reads.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Store, StoreError};

/// A shared [`Store`], used from async code. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
    /// Reads of the message path, beside the writer: WAL readers do not wait for commits.
    reader: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (creating and migrating if needed) the database at `path`, with its writing and
    /// its reading connection.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let store = Store::open(path)?;
        let reader = Store::open_reader(path)?;
        Ok(Db { store: Arc::new(Mutex::new(store)), reader: Arc::new(Mutex::new(reader)) })
    }

    /// Runs `f` on the store on tokio's blocking pool: SQLite blocks (an fsync per commit),
    /// and must not stall the threads that keep the WhatsApp connection and the workers going.
    /// A panic in `f` is the caller's panic.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            // A panic under the lock left no transaction open (rusqlite rolls back on drop):
            // the store is as consistent as SQLite keeps it, so a poisoned lock is usable.
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Runs a read on the reading connection, on the calling thread. For the message path's
    /// short indexed reads (a chat's history, a message's facts, the next rows waiting): the
    /// trip to the blocking pool and back cost more than such a read, on every message
    /// (measured: about 60 µs each, five of them per message; bench/EXPERIMENTS.md). It never
    /// waits for the writer, whose commits go on beside it. It sees every commit that ended
    /// before it began.
    pub fn read<R>(&self, f: impl FnOnce(&Store) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        f(&reader)
    }
}
