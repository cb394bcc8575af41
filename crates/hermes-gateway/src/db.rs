//! The pipeline's one path to SQLite: blocking calls on the blocking pool, never on the
//! async workers' threads.

use std::sync::{Arc, Mutex};

use hermes_store::{Store, StoreError};

#[derive(Clone)]
pub(crate) struct Db {
    store: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    pub(crate) fn new(store: Store) -> Db {
        Db { store: Arc::new(Mutex::new(store)) }
    }

    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut store)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}
