//! One chat's worker: messages in journal order, text debounced into one question.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use std::path::PathBuf;

use hermes_core::config::{MediaConfig, WhatsAppConfig};
use hermes_core::identity::Jid;
use hermes_store::{Db, Inbound};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;

use crate::admit::{self, Admitted};
use crate::answer;
use crate::dispatch::MAX_FAILURES;
use crate::{Messenger, Model, Options, Speech};

/// Debounce never holds a message longer than this, however chatty the sender.
const DEBOUNCE_CAP: Duration = Duration::from_secs(2);
/// A worker with nothing to do for this long ends; the next message starts a new one.
pub(crate) const WORKER_IDLE: Duration = Duration::from_secs(300);
/// After a store error, a row waits this long before it is tried again.
pub(crate) const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// A journal row: its sequence number and the message. Boxed: a worker's channel allocates its
/// slots 32 at a time, at once, and keeps them for the worker's life; inline, a message made
/// that 17 KB per chat (heaptrack of the soak), boxed it is half a KB.
pub(crate) type Row = (i64, Box<Inbound>);

/// What every worker shares.
pub(crate) struct Shared {
    pub(crate) db: Db,
    /// What a reload replaces; each message is decided and answered with one version of it.
    settings: RwLock<Arc<Live>>,
    pub(crate) messenger: Arc<dyn Messenger>,
    pub(crate) history_window: usize,
    pub(crate) permits: Semaphore,
    pub(crate) outbox_wake: Arc<Notify>,
    /// Told when the agent answered a turn (which may have scheduled a job).
    pub(crate) turn_done: Notify,
    /// Rows handed to a worker and not known to be handled yet.
    in_flight: Mutex<HashSet<i64>>,
    /// When a warning about a sender was last logged.
    pub(crate) warned: Mutex<HashMap<Jid, std::time::Instant>>,
    pub(crate) media: MediaConfig,
    pub(crate) speech: Speech,
    pub(crate) voice: Option<Arc<dyn crate::Speak>>,
    pub(crate) home: PathBuf,
    pub(crate) user_home: Option<PathBuf>,
    pub(crate) parser: crate::parse::Parser,
    pub(crate) service: Arc<crate::service::ServiceState>,
    /// Media work (download, decode, transcription) at once, across chats.
    pub(crate) media_permits: Semaphore,
    /// Failed download attempts of a message, for the few a passing failure gets.
    attempts: Mutex<HashMap<i64, u32>>,
    /// Waiting rows whose handling this process began (an attempt counted in the journal),
    /// so that one ending without harm takes its attempt back.
    attempted: Mutex<HashSet<i64>>,
}

/// The settings in force: what `SettingsHandle::replace` puts in force while the gateway runs.
pub(crate) struct Live {
    pub(crate) config: WhatsAppConfig,
    pub(crate) model: Option<Arc<dyn Model>>,
    pub(crate) system_prompt: String,
    pub(crate) model_label: String,
    pub(crate) hermes: Option<crate::HermesSettings>,
    pub(crate) debounce: Duration,
}

impl Live {
    pub(crate) fn new(s: crate::Settings) -> Live {
        let debounce = Duration::try_from_secs_f64(s.config.text_batch_delay_seconds.value.max(0.0))
            .unwrap_or_default()
            .min(DEBOUNCE_CAP);
        Live {
            config: s.config,
            model: s.model,
            system_prompt: s.system_prompt,
            model_label: s.model_label,
            hermes: s.hermes,
            debounce,
        }
    }
}

impl Shared {
    pub(crate) fn new(opts: &Options, outbox_wake: Arc<Notify>) -> Shared {
        let settings = crate::Settings {
            config: opts.config.clone(),
            model: opts.model.clone(),
            system_prompt: opts.system_prompt.clone(),
            model_label: opts.model_label.clone(),
            hermes: opts.hermes.clone(),
        };
        Shared {
            db: opts.db.clone(),
            settings: RwLock::new(Arc::new(Live::new(settings))),
            messenger: opts.messenger.clone(),
            history_window: opts.history_window,
            permits: Semaphore::new(opts.max_parallel.max(1)),
            outbox_wake,
            turn_done: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            warned: Mutex::new(HashMap::new()),
            media: opts.media.clone(),
            speech: opts.speech.clone(),
            voice: opts.voice.clone(),
            home: opts.home.clone(),
            user_home: opts.user_home.clone(),
            parser: opts.parser.clone(),
            service: opts.service.clone(),
            media_permits: Semaphore::new(2),
            attempts: Mutex::new(HashMap::new()),
            attempted: Mutex::new(HashSet::new()),
        }
    }

    /// The settings in force now.
    pub(crate) fn live(&self) -> Arc<Live> {
        self.settings.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the settings; messages already being answered finish with the old ones.
    pub(crate) fn replace(&self, settings: crate::Settings) {
        *self.settings.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Live::new(settings));
    }

    /// Counts a failed attempt at a message's media; how many so far.
    pub(crate) fn attempt(&self, seq: i64) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = attempts.entry(seq).or_insert(0);
        *n += 1;
        *n
    }

    pub(crate) fn forget_attempts(&self, seq: i64) {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq);
    }

    /// Takes a row for a worker; `false` when one already has it.
    pub(crate) fn take(&self, seq: i64) -> bool {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).insert(seq)
    }

    /// Which of `seqs` no worker has.
    pub(crate) fn not_taken(&self, seqs: &[i64]) -> Vec<i64> {
        let in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        seqs.iter().copied().filter(|s| !in_flight.contains(s)).collect()
    }

    /// Forgets rows a journal read no longer shows waiting (handled, or parked, before the
    /// read): `waiting` is what it showed, and rows past `beyond` it did not look at.
    pub(crate) fn forget_handled(&self, waiting: &HashSet<i64>, beyond: Option<i64>) {
        let still = |s: &i64| waiting.contains(s) || beyond.is_some_and(|last| *s > last);
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).retain(still);
        self.attempted.lock().unwrap_or_else(PoisonError::into_inner).retain(still);
    }

    /// Counts an attempt at a waiting message in the journal before its work starts; how many
    /// earlier ones never ended (the process died on it).
    pub(crate) async fn begin_attempt(&self, seq: i64) -> Result<u32, hermes_store::StoreError> {
        let before = self.db.call(move |s| s.begin_attempt(seq)).await?;
        self.attempted.lock().unwrap_or_else(PoisonError::into_inner).insert(seq);
        Ok(before)
    }

    /// Rows whose handling ended without harm and without an answer (the model unreachable, a
    /// commit refused): their attempts are taken back, and the dispatcher may hand them out
    /// again.
    pub(crate) async fn retry_later(&self, seqs: &[i64]) {
        self.end_attempts(seqs).await;
        self.release(seqs);
    }

    /// Takes back every attempt this process counted and has not seen end: what the gateway
    /// stopping interrupts was not the message's doing.
    pub(crate) async fn end_all_attempts(&self) {
        let all: Vec<i64> = self.attempted.lock().unwrap_or_else(PoisonError::into_inner).iter().copied().collect();
        self.end_attempts(&all).await;
    }

    async fn end_attempts(&self, seqs: &[i64]) {
        let ours: Vec<i64> = {
            let mut attempted = self.attempted.lock().unwrap_or_else(PoisonError::into_inner);
            seqs.iter().copied().filter(|s| attempted.remove(s)).collect()
        };
        if ours.is_empty() {
            return;
        }
        if let Err(e) = self.db.call(move |s| s.end_attempts(&ours)).await {
            // Only a poison count one too high: the message is given up a try early.
            tracing::warn!(error = %e, "cannot take back an attempt at a message");
        }
    }

    /// Rows the dispatcher may hand out again: their handling failed (nothing was committed),
    /// or they were parked, or a worker ended with them unread. Rows handled for good are not
    /// released here: the dispatcher forgets them once a journal read no longer shows them
    /// waiting, so a read taken before the commit cannot hand them out a second time.
    pub(crate) fn release(&self, seqs: &[i64]) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        for s in seqs {
            in_flight.remove(s);
        }
    }
}

/// Text waiting for the debounce to end (or one media message, answered at once).
pub(crate) struct Batch {
    pub(crate) chat: Jid,
    pub(crate) seqs: Vec<i64>,
    /// What admission made of each message (its mention stripped...), in `seqs` order.
    pub(crate) texts: Vec<String>,
    /// Each message's text as journaled, to see whether an edit changed it since.
    pub(crate) raw: Vec<Option<String>>,
    /// The line before each message's text when it quotes another (`quote::prefix`).
    pub(crate) quotes: Vec<Option<String>>,
    /// In a group, what was said there since the agent's last turn, not addressed to it.
    pub(crate) context: Option<String>,
    /// Pictures for the model, and what it reads instead if it refuses them.
    pub(crate) images: Vec<String>,
    pub(crate) without_images: String,
    /// Sent before the answer.
    pub(crate) notices: Vec<String>,
    /// The question was a voice note: the answer may be spoken too.
    pub(crate) spoken: bool,
    /// Who wrote it (a batch has one sender), and their other form when known.
    pub(crate) sender: Option<Jid>,
    pub(crate) sender_alt: Option<Jid>,
    /// Text read from the journal, read again just before asking (edits, deletes); media
    /// batches carry what was prepared from the download instead.
    pub(crate) refresh: bool,
    first: Instant,
    last: Instant,
}

impl Batch {
    fn new(chat: Jid) -> Batch {
        let now = Instant::now();
        Batch {
            chat,
            seqs: Vec::new(),
            texts: Vec::new(),
            raw: Vec::new(),
            quotes: Vec::new(),
            context: None,
            images: Vec::new(),
            without_images: String::new(),
            notices: Vec::new(),
            spoken: false,
            sender: None,
            sender_alt: None,
            refresh: true,
            first: now,
            last: now,
        }
    }
}

impl Batch {
    /// A quiet period after the last message, never past the cap after the first.
    fn due(&self, debounce: Duration) -> Instant {
        (self.last + debounce).min(self.first + DEBOUNCE_CAP)
    }
}

/// The rows a worker is handling right now, for the dispatcher to know which message a
/// panic was about.
pub(crate) type Busy = Arc<Mutex<Vec<i64>>>;

fn set_busy(busy: &Busy, seqs: &[i64]) {
    let mut b = busy.lock().unwrap_or_else(PoisonError::into_inner);
    b.clear();
    b.extend_from_slice(seqs);
}

/// Answers the batch waiting, if any.
async fn flush(shared: &Shared, busy: &Busy, batch: &mut Option<Batch>) {
    if let Some(b) = batch.take() {
        set_busy(busy, &b.seqs);
        Box::pin(answer::answer(shared, &b)).await;
    }
}

/// One chat, in order. Returns when idle; what arrived meanwhile goes back to the dispatcher.
///
/// What it awaits while deciding, preparing media and answering is boxed: this future is what
/// a worker keeps for as long as it lives, idle included (up to [`WORKER_IDLE`] after its
/// chat's last message), so it holds none of them inline.
pub(crate) async fn chat_worker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Row>, busy: Busy) {
    let mut batch: Option<Batch> = None;
    loop {
        let next = match batch.as_ref().map(|b| b.due(shared.live().debounce)) {
            // Cancel-safe: a row not received stays in the channel.
            Some(at) => tokio::select! {
                r = rx.recv() => r,
                () = tokio::time::sleep_until(at) => None,
            },
            None => match tokio::time::timeout(WORKER_IDLE, rx.recv()).await {
                Ok(Some(r)) => Some(r),
                _ => {
                    // Closed first, so nothing more arrives; what arrived meanwhile goes back
                    // to the dispatcher, which hands it to a new worker.
                    rx.close();
                    while let Ok((seq, _)) = rx.try_recv() {
                        shared.release(&[seq]);
                    }
                    return;
                }
            },
        };
        let Some((seq, row)) = next else {
            flush(&shared, &busy, &mut batch).await;
            continue;
        };
        set_busy(&busy, &[seq]);
        // Counted in the journal before anything is done with it: a message that ends the
        // process (an abort, the OOM killer, a panic) is given up after a few starts, whatever
        // killed it, and the chat goes on.
        let tries = match shared.begin_attempt(seq).await {
            Ok(tries) => tries,
            Err(hermes_store::StoreError::NotWaiting(_)) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot count an attempt at a journaled message; it will be tried again");
                tokio::time::sleep(RETRY_AFTER_ERROR).await;
                shared.release(&[seq]);
                continue;
            }
        };
        // Deciding it ended the process too: given up without a word to the sender, whom
        // admission did not get to judge.
        if tries > MAX_FAILURES {
            Box::pin(give_up(&shared, seq, &row, tries, false)).await;
            continue;
        }
        let admitted = Box::pin(admit::admit(&shared, seq, &row)).await;
        if tries == MAX_FAILURES && matches!(admitted, Ok(Some(_))) {
            flush(&shared, &busy, &mut batch).await;
            Box::pin(give_up(&shared, seq, &row, tries, true)).await;
            continue;
        }
        match admitted {
            // Media is answered at once, as Hermes does: after the text before it.
            Ok(Some(Admitted::Text(text))) if let Some(media) = &row.media => {
                flush(&shared, &busy, &mut batch).await;
                set_busy(&busy, &[seq]);
                // Waited for here, so the chat's later messages stay behind it, in order.
                let prepared = loop {
                    match Box::pin(crate::media::prepare(&shared, seq, &row, media, &text)).await {
                        Ok(p) => break p,
                        Err(crate::media::Later::NotConnected) => {
                            let mut connected = shared.messenger.connected();
                            if connected.wait_for(|c| *c).await.is_err() {
                                tokio::time::sleep(RETRY_AFTER_ERROR).await;
                            }
                        }
                        Err(crate::media::Later::Transient) => tokio::time::sleep(RETRY_AFTER_ERROR).await,
                    }
                };
                // Kept for a later reply that quotes this one.
                let read_as = prepared.text.clone();
                if let Err(e) = shared.db.call(move |s| s.set_read_as(seq, &read_as)).await {
                    tracing::debug!(error = %e, "cannot keep what a media message was read as");
                }
                let mut b = Batch::new(row.chat.clone());
                b.seqs.push(seq);
                b.texts.push(hermes_core::quote::with_prefix(
                    crate::quote::prefix(&shared, &row).as_deref(),
                    &prepared.text,
                ));
                b.images = prepared.images;
                b.without_images = prepared.without_images;
                b.notices = prepared.notices;
                b.spoken = media.kind.is_speech();
                b.refresh = false;
                b.sender = Some(row.sender.clone());
                b.sender_alt = row.sender_alt.clone();
                batch = Some(b);
                flush(&shared, &busy, &mut batch).await;
            }
            Ok(Some(Admitted::Text(text))) => {
                let b = push_text(&shared, &busy, &mut batch, seq, &row, text).await;
                if b.seqs.len() == 1 {
                    b.context = crate::quote::group_context(&shared, &row.chat, seq);
                }
                let quote = Box::pin(crate::quote::prefix_and_image(&shared, &row)).await;
                let (prefix, image) = quote.map_or((None, None), |(p, i)| (Some(p), i));
                b.quotes.push(prefix);
                // A quoted picture goes to the model with the question about it.
                b.images.extend(image);
                if shared.live().debounce.is_zero() {
                    flush(&shared, &busy, &mut batch).await;
                }
            }
            // Hermes Agent knows commands of its own (its skills): what hermes does not know
            // is the agent's to answer.
            Ok(Some(Admitted::Command(hermes_core::command::Command::Unknown(_))))
                if shared.live().hermes.is_some() && row.media.is_none() =>
            {
                let text = row.text.as_deref().unwrap_or_default().trim().to_owned();
                let b = push_text(&shared, &busy, &mut batch, seq, &row, text).await;
                b.quotes.push(crate::quote::prefix(&shared, &row));
            }
            Ok(Some(Admitted::Command(cmd))) => {
                flush(&shared, &busy, &mut batch).await;
                set_busy(&busy, &[seq]);
                Box::pin(answer::run_command(&shared, seq, &row, cmd)).await;
            }
            Ok(Some(Admitted::Unreadable)) => {
                flush(&shared, &busy, &mut batch).await;
                set_busy(&busy, &[seq]);
                Box::pin(answer::tell(&shared, seq, &row.chat, hermes_core::admission::unreadable_reply())).await;
            }
            Ok(None) => {}
            // Decided already by another handling (see `StoreError::NotWaiting`): nothing to do.
            Err(hermes_store::StoreError::NotWaiting(_)) => tracing::debug!("a message was already handled"),
            Err(e) => {
                tracing::error!(error = %e, "cannot handle a journaled message; it will be tried again");
                tokio::time::sleep(RETRY_AFTER_ERROR).await;
                shared.retry_later(&[seq]).await;
            }
        }
        set_busy(&busy, batch.as_ref().map_or(&[][..], |b| &b.seqs));
    }
}

/// Adds a text message to the batch waiting, and returns it: a batch has one sender, so in a
/// group another member's message first has the one waiting answered.
async fn push_text<'b>(
    shared: &Shared,
    busy: &Busy,
    batch: &'b mut Option<Batch>,
    seq: i64,
    row: &hermes_store::Inbound,
    text: String,
) -> &'b mut Batch {
    if batch.as_ref().is_some_and(|b| b.sender.as_ref() != Some(&row.sender)) {
        flush(shared, busy, batch).await;
    }
    let b = batch.get_or_insert_with(|| Batch::new(row.chat.clone()));
    b.sender = Some(row.sender.clone());
    b.sender_alt = row.sender_alt.clone();
    b.seqs.push(seq);
    b.texts.push(text);
    b.raw.push(row.text.clone());
    b.last = Instant::now();
    b
}

/// A message whose handling ended the process [`MAX_FAILURES`] times is recorded as a drop
/// (`failed`) and, when its sender is answered at all (`tell`), told so, once: one poisonous
/// message must not keep its chat, or the gateway, from answering.
async fn give_up(shared: &Shared, seq: i64, row: &hermes_store::Inbound, tries: u32, tell: bool) {
    let dropped = hermes_store::Dropped {
        at: hermes_store::clock::now(),
        chat: row.chat.clone(),
        sender: row.sender.clone(),
        sender_forms: vec![row.sender.clone()],
        rule: hermes_core::admission::DropRule::Failed,
        nearest: None,
        hint: Some(format!(
            "handling this message ended the gateway {tries} times (a crash, or a limit such as memory: the gateway's \
             log says which), so hermes gave up on it"
        )),
    };
    let note = tell.then(|| (shared.messenger.new_message_id(), hermes_core::admission::given_up_reply().to_owned()));
    let settled = hermes_store::Settlement { learned: None, outcome: hermes_store::Outcome::GivenUp { dropped, note } };
    match shared.db.call(move |s| s.settle(seq, &settled)).await {
        Ok(()) => {
            tracing::error!(
                tries,
                "gave up on a message that keeps ending the gateway; it is in `hermes whatsapp drops`"
            );
            shared.outbox_wake.notify_one();
        }
        Err(e) => tracing::error!(error = %e, "cannot record a message hermes keeps failing on"),
    }
}
