//! A spawner for whatsapp-rust that keeps every task a client starts, so that all of them can
//! be ended, and waited for, on the process's one runtime.
//!
//! whatsapp-rust spawns through the [`Runtime`] its client is built with, and leaves tasks
//! behind when the client stops (the post-login pre-key upload, background queries). The
//! linking client's must not outlive the link (see [`crate::linking`]): given this spawner, its
//! tasks stay in a [`JoinSet`] that [`TrackedRuntime::shutdown`] aborts and drains.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinSet;
use wacore::runtime::{AbortHandle, Runtime};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Spawns on the tokio runtime it was made on and keeps every task until
/// [`TrackedRuntime::shutdown`]. Clones share the tasks.
#[derive(Clone, Debug)]
pub(crate) struct TrackedRuntime(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    handle: Handle,
    /// `None` once shut down: whatever is spawned after that is dropped unrun.
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl TrackedRuntime {
    /// On the runtime this is called from. Panics outside of one, as `tokio::spawn` does.
    pub(crate) fn current() -> TrackedRuntime {
        TrackedRuntime(Arc::new(Inner { handle: Handle::current(), tasks: Mutex::new(Some(JoinSet::new())) }))
    }

    /// Aborts every task and returns once each has ended. A blocking closure that is already
    /// running cannot be stopped, so it is waited for. Nothing spawned from now on runs.
    pub(crate) async fn shutdown(&self) {
        let tasks = self.0.tasks.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut tasks) = tasks {
            tasks.shutdown().await;
        }
    }

    /// Starts a task with `start` unless this was shut down, in which case `start` (and the
    /// work it holds) is dropped and `None` returned.
    fn track(
        &self,
        start: impl FnOnce(&mut JoinSet<()>, &Handle) -> tokio::task::AbortHandle,
    ) -> Option<tokio::task::AbortHandle> {
        let mut tasks = self.0.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(set) = tasks.as_mut() else {
            // Outside the lock: dropping a client's future may spawn again, which locks.
            drop(tasks);
            drop(start);
            return None;
        };
        // A finished task stays in the set until it is joined, and a client starts many
        // short ones over a long connection.
        while set.try_join_next().is_some() {}
        Some(start(set, &self.0.handle))
    }
}

impl Runtime for TrackedRuntime {
    fn spawn(&self, future: BoxFuture) -> AbortHandle {
        match self.track(|set, handle| set.spawn_on(future, handle)) {
            // Dropping whatsapp-rust's handle aborts the task, as with its own tokio runtime.
            Some(task) => AbortHandle::new(move || task.abort()),
            None => AbortHandle::noop(),
        }
    }

    fn spawn_detached(&self, future: BoxFuture) {
        // Dropping tokio's handle leaves the task running (and tracked).
        let _ = self.track(|set, handle| set.spawn_on(future, handle));
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send + 'static>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let closure = move || {
            f();
            let _ = done_tx.send(());
        };
        // Not run (shut down) or panicked: `done_tx` is dropped, which ends the wait as well.
        let _ = self.track(|set, handle| set.spawn_blocking_on(closure, handle));
        Box::pin(async move {
            let _ = done_rx.await;
        })
    }

    fn yield_now(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        // A multi-thread runtime: other tasks run on other workers meanwhile.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Bounds every wait below, so that a broken shutdown fails instead of hanging.
    const HANG: Duration = Duration::from_secs(10);

    /// A future that never ends and drops `dropped` when it is dropped.
    fn pending_until_dropped(dropped: oneshot::Sender<()>) -> BoxFuture {
        Box::pin(async move {
            let _dropped = dropped;
            std::future::pending::<()>().await;
        })
    }

    #[tokio::test]
    async fn shutdown_ends_every_task_and_nothing_spawned_later_runs() {
        let rt = TrackedRuntime::current();
        let (dropped_tx, mut dropped_rx) = oneshot::channel();
        rt.spawn_detached(pending_until_dropped(dropped_tx));
        tokio::time::timeout(HANG, rt.shutdown()).await.expect("shutdown ends");
        // Shutdown returned only after the task's future was dropped.
        assert!(matches!(dropped_rx.try_recv(), Err(oneshot::error::TryRecvError::Closed)));

        let (ran_tx, ran_rx) = oneshot::channel();
        rt.spawn_detached(Box::pin(async move {
            let _ = ran_tx.send(());
        }));
        let handle = rt.spawn(Box::pin(async {}));
        handle.detach();
        let ran = tokio::time::timeout(HANG, ran_rx).await.expect("the refused future is dropped");
        assert!(ran.is_err(), "a task spawned after the shutdown ran");
    }

    /// whatsapp-rust cancels a task by dropping the handle `spawn` returned.
    #[tokio::test]
    async fn dropping_the_handle_aborts_the_task() {
        let rt = TrackedRuntime::current();
        let (dropped_tx, dropped_rx) = oneshot::channel();
        let handle = rt.spawn(pending_until_dropped(dropped_tx));
        drop(handle);
        let ended = tokio::time::timeout(HANG, dropped_rx).await.expect("the task is aborted");
        assert!(ended.is_err(), "the task's future was dropped, never completed");
    }

    /// A store write already under way in a blocking closure cannot be aborted: shutdown
    /// waits for it, so it cannot land after the caller moved on.
    #[tokio::test]
    async fn shutdown_waits_for_a_running_blocking_closure() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let rt = TrackedRuntime::current();
        let (started_tx, started_rx) = oneshot::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let done = rt.spawn_blocking(Box::new({
            let finished = finished.clone();
            move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
                finished.store(true, Ordering::SeqCst);
            }
        }));
        tokio::time::timeout(HANG, started_rx).await.expect("the closure starts").expect("the closure runs");

        let mut shutdown = std::pin::pin!(rt.shutdown());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(shutdown.as_mut().poll(&mut cx).is_pending(), "shutdown did not wait for the running closure");
        release_tx.send(()).expect("the closure waits for its release");
        tokio::time::timeout(HANG, shutdown).await.expect("shutdown ends once the closure did");
        assert!(finished.load(Ordering::SeqCst));
        tokio::time::timeout(HANG, done).await.expect("the caller's wait ends too");
    }
}
