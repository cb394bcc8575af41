//! The dispatcher: waiting journal rows to their chat's worker, in journal order; workers
//! tracked, so that stopping the pipeline stops them and a panic in one is seen.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use hermes_core::identity::Jid;
use tokio::sync::{Notify, mpsc};
use tokio::task::{Id, JoinError, JoinSet};

use crate::worker::{self, Busy, RETRY_AFTER_ERROR, Row, Shared};

/// Journal rows read at once.
const READ_BATCH: usize = 1024;
/// A message whose handling ended the process (or its worker, by a panic) this many times is
/// given up on, with a ledger row: one poisonous message must not keep its chat, or the
/// gateway, from answering. Counted in the journal (`inbox.attempts`), so a crash counts.
pub(crate) const MAX_FAILURES: u32 = 3;

struct Held {
    task: Id,
}

struct Worker {
    tx: mpsc::UnboundedSender<Row>,
    task: Id,
}

/// The dispatcher's own state: workers by chat and by task, and which worker holds which row.
struct Workers {
    by_chat: HashMap<Jid, Worker>,
    /// Chats whose worker closed its channel (idle, or failed) and has not been reaped yet:
    /// it may still give rows back, which must be answered before later ones, so the chat
    /// gets nothing until the worker's end is seen.
    closing: HashSet<Jid>,
    busy_of: HashMap<Id, Busy>,
    tasks: JoinSet<()>,
    /// Rows handed out, with the worker that has them.
    held: HashMap<i64, Held>,
}

/// Hands waiting journal rows to their chat's worker, forever. Dropping this future (the
/// pipeline stopping) drops the workers' `JoinSet`, which aborts them.
pub(crate) async fn dispatch(shared: Arc<Shared>, wake: Arc<Notify>) {
    let mut w = Workers {
        by_chat: HashMap::new(),
        closing: HashSet::new(),
        busy_of: HashMap::new(),
        tasks: JoinSet::new(),
        held: HashMap::new(),
    };
    loop {
        // The rows themselves only of what is not handed out yet: in a backlog, most of what
        // waits is being answered already, and this runs on every commit.
        let read = shared.db.read(|s| {
            let waiting = s.waiting(READ_BATCH)?;
            let rows = s.inbound(&shared.not_taken(&waiting))?;
            Ok((waiting, rows))
        });
        match read {
            Ok((waiting, rows)) => {
                // What this read no longer shows waiting was handled (or parked) before it.
                let beyond = (waiting.len() == READ_BATCH).then(|| waiting.last().copied().unwrap_or(0));
                let waiting: HashSet<i64> = waiting.into_iter().collect();
                shared.forget_handled(&waiting, beyond);
                let still = |s: &i64| waiting.contains(s) || beyond.is_some_and(|last| *s > last);
                w.held.retain(|s, _| still(s));
                for (seq, message) in rows {
                    if !w.closing.contains(&message.chat) && shared.take(seq) {
                        w.hand_out(&shared, (seq, Box::new(message)));
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the journal"),
        }
        // The wake-up holds a permit, so a message journaled while we worked is not missed;
        // the timeout is a safety net (and returns rows whose handling failed).
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(RETRY_AFTER_ERROR) => {}
            Some(ended) = w.tasks.join_next_with_id() => w.ended(&shared, ended),
        }
        while let Some(ended) = w.tasks.try_join_next_with_id() {
            w.ended(&shared, ended);
        }
    }
}

impl Workers {
    fn hand_out(&mut self, shared: &Arc<Shared>, row: Row) {
        let worker = match self.by_chat.get(&row.1.chat) {
            Some(w) => w,
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                let busy = Busy::new(Mutex::new(Vec::new()));
                let task = self.tasks.spawn(worker::chat_worker(shared.clone(), rx, busy.clone())).id();
                self.busy_of.insert(task, busy);
                self.by_chat.entry(row.1.chat.clone()).or_insert(Worker { tx, task })
            }
        };
        let (seq, held) = (row.0, Held { task: worker.task });
        match worker.tx.send(row) {
            Ok(()) => {
                self.held.insert(seq, held);
            }
            // The worker is ending (idle, or failed): the row goes back, and the chat waits
            // for that end, so rows the worker gives back are answered before this one.
            Err(mpsc::error::SendError((seq, row))) => {
                shared.release(&[seq]);
                self.closing.insert(row.chat);
            }
        }
    }

    /// A worker ended: idle (it released what it held) or panicked.
    fn ended(&mut self, shared: &Shared, ended: Result<(Id, ()), JoinError>) {
        let (id, panic) = match ended {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), e.try_into_panic().ok().map(crate::panic_message)),
        };
        let busy = self.busy_of.remove(&id);
        if let Some(chat) = self.by_chat.iter().find(|(_, w)| w.task == id).map(|(c, _)| c.clone()) {
            self.by_chat.remove(&chat);
            self.closing.remove(&chat);
        }
        let (Some(panic), Some(busy)) = (panic, busy) else { return };
        let busy = std::mem::take(&mut *busy.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        // What it was handling keeps the attempt the journal counted before the work began:
        // after MAX_FAILURES the worker that takes it next gives it up.
        tracing::error!(
            panic = %panic,
            messages = busy.len(),
            "hermes failed while handling a message (a bug: please report it with this log); it will be tried again"
        );
        let held: Vec<i64> = self.held.iter().filter(|(_, h)| h.task == id).map(|(s, _)| *s).collect();
        for seq in &held {
            self.held.remove(seq);
        }
        shared.release(&held);
    }
}
