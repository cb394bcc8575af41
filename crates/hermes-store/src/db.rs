//! The running gateway's one owner of its database: the journal hook, the pipeline and the
//! control endpoint all hold a clone of one [`Db`], so there is one connection, one lock and
//! one order of writes.

use std::sync::{Arc, Mutex, PoisonError};

use crate::{Store, StoreError};

/// A shared [`Store`], used from async code. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    store: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    pub fn new(store: Store) -> Db {
        Db { store: Arc::new(Mutex::new(store)) }
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
}
