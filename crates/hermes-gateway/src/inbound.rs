//! From the journal to a committed reply: the dispatcher and the per-chat workers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hermes_agent::{Agent, Message, Speaker};
use hermes_core::access::{self, Decision, DenyAction, Rule};
use hermes_core::budget;
use hermes_core::command::{self, Command};
use hermes_core::config::{Mode, WhatsAppConfig};
use hermes_core::format;
use hermes_core::identity::{Jid, UserId};
use hermes_core::mention;
use hermes_core::pairing::{self, Offer};
use hermes_store::{Code, Drop, Inbound, Reply, Role};
use hermes_whatsapp::messenger::{Messenger, new_message_id};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::db::Db;
use crate::{Options, now_secs};

/// How long a warning about one sender stays quiet after it was logged.
const WARN_EVERY: Duration = Duration::from_secs(600);
/// Debounce never holds a message longer than this, however chatty the sender.
const DEBOUNCE_CAP: Duration = Duration::from_secs(2);
/// A worker with nothing to do for this long ends; the next message starts a new one.
const WORKER_IDLE: Duration = Duration::from_secs(300);
/// Journal rows read at once by the dispatcher.
const READ_BATCH: usize = 1024;
/// After a store error, a row waits this long before it is tried again.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// What every worker shares.
pub(crate) struct Shared {
    db: Db,
    config: WhatsAppConfig,
    agent: Option<Agent>,
    system_prompt: String,
    model_label: String,
    messenger: Messenger,
    history_window: usize,
    debounce: Duration,
    permits: Semaphore,
    outbox_wake: Arc<Notify>,
    in_flight: Mutex<HashSet<i64>>,
    warned: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    pub(crate) fn new(opts: &Options, db: Db, outbox_wake: Arc<Notify>) -> Shared {
        let debounce = Duration::try_from_secs_f64(opts.config.text_batch_delay_seconds.value.max(0.0))
            .unwrap_or_default()
            .min(DEBOUNCE_CAP);
        Shared {
            db,
            config: opts.config.clone(),
            agent: opts.agent.clone(),
            system_prompt: opts.system_prompt.clone(),
            model_label: opts.model_label.clone(),
            messenger: opts.messenger.clone(),
            history_window: opts.history_window,
            debounce,
            permits: Semaphore::new(opts.max_parallel.max(1)),
            outbox_wake,
            in_flight: Mutex::new(HashSet::new()),
            warned: Mutex::new(HashMap::new()),
        }
    }

    /// Rows the dispatcher may hand out again: their handling failed (nothing was committed),
    /// or they were parked, or a worker ended with them unread. Rows handled for good are not
    /// released here: the dispatcher forgets them once a journal read no longer shows them
    /// waiting, so a read taken before the commit cannot hand them out a second time.
    fn release(&self, seqs: &[i64]) {
        let mut in_flight = self.in_flight.lock().expect("not poisoned");
        for s in seqs {
            in_flight.remove(s);
        }
    }
}

type Row = (i64, Inbound);

/// Hands waiting journal rows to their chat's worker, in journal order.
pub(crate) async fn dispatch(shared: Arc<Shared>, wake: Arc<Notify>) {
    let mut workers: HashMap<String, mpsc::UnboundedSender<Row>> = HashMap::new();
    loop {
        match shared.db.call(|s| s.pending(READ_BATCH)).await {
            Ok(rows) => {
                {
                    // What this read no longer shows waiting was handled (or parked) before it.
                    let waiting: HashSet<i64> = rows.iter().map(|(s, _)| *s).collect();
                    let beyond = (rows.len() == READ_BATCH).then(|| rows.last().map_or(0, |(s, _)| *s));
                    let mut in_flight = shared.in_flight.lock().expect("not poisoned");
                    in_flight.retain(|s| waiting.contains(s) || beyond.is_some_and(|last| *s > last));
                }
                for (seq, row) in rows {
                    if !shared.in_flight.lock().expect("not poisoned").insert(seq) {
                        continue;
                    }
                    let mut item = (seq, row);
                    // A worker that ended (idle) has closed its channel: start another.
                    loop {
                        let tx = workers.entry(item.1.chat.clone()).or_insert_with(|| {
                            let (tx, rx) = mpsc::unbounded_channel();
                            tokio::spawn(chat_worker(shared.clone(), rx));
                            tx
                        });
                        match tx.send(item) {
                            Ok(()) => break,
                            Err(mpsc::error::SendError(back)) => {
                                workers.remove(&back.1.chat);
                                item = back;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the journal"),
        }
        workers.retain(|_, tx| !tx.is_closed());
        // The wake-up holds a permit, so a message journaled while we worked is not missed;
        // the timeout is a safety net (and returns rows whose handling failed).
        let _ = tokio::time::timeout(RETRY_AFTER_ERROR, wake.notified()).await;
    }
}

/// Text waiting for the debounce to end.
struct Batch {
    chat: String,
    seqs: Vec<i64>,
    texts: Vec<String>,
    first: Instant,
    last: Instant,
}

impl Batch {
    /// A quiet period after the last message, never past the cap after the first.
    fn due(&self, debounce: Duration) -> Instant {
        (self.last + debounce).min(self.first + DEBOUNCE_CAP)
    }
}

/// One chat, in order.
async fn chat_worker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Row>) {
    let mut batch: Option<Batch> = None;
    loop {
        let next = match batch.as_ref().map(|b| b.due(shared.debounce)) {
            // Cancel-safe: a row not received stays in the channel.
            Some(at) => tokio::select! {
                r = rx.recv() => r,
                () = tokio::time::sleep_until(at.into()) => None,
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
            if let Some(b) = batch.take() {
                answer(&shared, &b).await;
            }
            continue;
        };
        match admit(&shared, seq, &row).await {
            Ok(Some(Admitted::Text(text))) => {
                let now = Instant::now();
                let b = batch.get_or_insert_with(|| Batch {
                    chat: row.chat.clone(),
                    seqs: Vec::new(),
                    texts: Vec::new(),
                    first: now,
                    last: now,
                });
                b.seqs.push(seq);
                b.texts.push(text);
                b.last = now;
                if shared.debounce.is_zero() {
                    let b = batch.take().expect("just filled");
                    answer(&shared, &b).await;
                }
            }
            Ok(Some(Admitted::Command(cmd))) => {
                if let Some(b) = batch.take() {
                    answer(&shared, &b).await;
                }
                run_command(&shared, seq, &row.chat, cmd).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot handle a journaled message; it will be tried again");
                tokio::time::sleep(RETRY_AFTER_ERROR).await;
                shared.release(&[seq]);
            }
        }
    }
}

enum Admitted {
    Text(String),
    Command(Command),
}

/// Decides one message: `Some` when the agent (or a command) should answer it; `None` when
/// it is handled already (dropped with a ledger row, parked, or not for us).
async fn admit(shared: &Shared, seq: i64, row: &Inbound) -> Result<Option<Admitted>, hermes_store::StoreError> {
    let cfg = &shared.config;
    // Our own replies come back to us in self-chat: never answer them.
    let (id, prefix) = (row.id.clone(), cfg.reply_prefix.value.clone());
    let ours = shared.db.call(move |s| s.delivery(&id)).await?.is_some();
    let echo = row.from_me
        && (ours || (!prefix.is_empty() && row.text.as_deref().is_some_and(|t| t.starts_with(prefix.trim_end()))));
    let text = row.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let (Some(text), false) = (text, echo) else {
        // Receipts of our sends, reactions, media and protocol messages carry no text.
        tracing::debug!(echo, "journaled message without text for the agent");
        shared.db.call(move |s| s.mark_done(&[seq])).await?;
        return Ok(None);
    };
    let (Ok(chat), Ok(sender)) = (Jid::parse(&row.chat), Jid::parse(&row.sender)) else {
        let d = drop_row(row, &[], "unrecognized_sender", None, Some("the sender's address is not a WhatsApp address"));
        shared.db.call(move |s| s.record_drop(Some(seq), &d)).await?;
        return Ok(None);
    };
    let aliases = aliases(shared, row, &sender).await?;
    let approvals: Vec<UserId> =
        shared.db.call(|s| s.approvals()).await?.iter().filter_map(|a| Jid::parse(&a.sender).ok()?.user_id()).collect();
    let own = shared.messenger.account();
    let ctx = access::Context { config: cfg, approvals: &approvals, own: own.as_ref() };
    let req = access::Request { chat: &chat, sender: &sender, aliases: &aliases, from_me: row.from_me };
    let decision = access::decide(&ctx, &req);
    if decision.is_allowed() {
        let mut text = text.to_owned();
        if chat.is_group() {
            let mentioned: Vec<Jid> = row.mentions.iter().filter_map(|m| Jid::parse(m).ok()).collect();
            let quoted = row.quoted.as_deref().and_then(|q| Jid::parse(q).ok());
            let addressing =
                mention::Addressing { chat: &chat, text: &text, mentioned: &mentioned, quoted: quoted.as_ref() };
            if let Err(hint) = mention::gate(cfg, own.as_ref(), &addressing) {
                // Group chatter not addressed to the agent: in the ledger, not worth a warning.
                tracing::debug!("group message not addressed to the agent");
                let d = drop_row(row, &aliases, "not_mentioned", None, Some(&hint));
                shared.db.call(move |s| s.record_drop(Some(seq), &d)).await?;
                return Ok(None);
            }
            text = mention::strip_own_mention(&text, own.as_ref());
        }
        if cfg.send_read_receipts.value {
            shared.messenger.mark_read(&row.chat, &row.sender, &[row.id.as_str()]).await;
        }
        return Ok(Some(match command::parse(&text) {
            Some(cmd) => Admitted::Command(cmd),
            None => Admitted::Text(text),
        }));
    }
    refuse(shared, seq, row, &chat, &sender, &aliases, &decision).await?;
    Ok(None)
}

/// Every known form of the sender besides the one it wrote from, learning the LID<->phone
/// mapping from the client when the journal has none.
async fn aliases(shared: &Shared, row: &Inbound, sender: &Jid) -> Result<Vec<UserId>, hermes_store::StoreError> {
    let mut forms: Vec<String> = row.sender_alt.iter().cloned().collect();
    let who = row.sender.clone();
    if let Some(known) = shared.db.call(move |s| s.alias_of(&who)).await? {
        forms.push(known);
    }
    if forms.is_empty()
        && sender.user_id().is_some_and(|u| u.phone().is_none())
        && let Some(phone) = shared.messenger.phone_of(&row.sender).await
    {
        let (lid, p, at) = (row.sender.clone(), phone.clone(), now_secs());
        shared.db.call(move |s| s.learn_alias(&lid, &p, at)).await?;
        forms.push(phone);
    }
    Ok(forms.iter().filter_map(|f| Jid::parse(f).ok()?.user_id()).collect())
}

fn drop_row(row: &Inbound, forms: &[UserId], rule: &str, nearest: Option<String>, hint: Option<&str>) -> Drop {
    let mut all: Vec<String> = vec![row.sender.clone()];
    all.extend(forms.iter().map(|f| f.to_jid().to_string()));
    all.dedup();
    Drop {
        at: now_secs(),
        chat: row.chat.clone(),
        sender: row.sender.clone(),
        sender_forms: all.join(","),
        rule: rule.to_owned(),
        nearest,
        hint: hint.map(str::to_owned),
    }
}

/// A refusal: the ledger, a warning a person can act on, and a pairing code when the policy
/// offers one.
async fn refuse(
    shared: &Shared,
    seq: i64,
    row: &Inbound,
    chat: &Jid,
    sender: &Jid,
    aliases: &[UserId],
    decision: &Decision,
) -> Result<(), hermes_store::StoreError> {
    let nearest = decision.nearest.first().map(|n| n.entry.raw.clone());
    let lid_only = sender.user_id().is_some_and(|u| u.phone().is_none()) && aliases.iter().all(|a| a.phone().is_none());
    // A LID sender may be refused only because its phone number is not known yet: park it,
    // and decide again when WhatsApp tells us the number.
    if lid_only && matches!(decision.rule, Rule::NotAllowlisted | Rule::OpenWithoutAllowAll) {
        let hint = format!(
            "{} wrote from a LID and WhatsApp has not said its phone number yet; the message will be decided \
             again when it does. To admit this sender now, add its LID: {}",
            row.sender,
            decision.fix.join(" ")
        );
        let d = drop_row(row, aliases, "lid_without_phone", nearest, Some(&hint));
        warn_once(shared, &row.sender, "lid_without_phone", &hint);
        shared.db.call(move |s| s.park(seq, &d)).await?;
        // A parked row comes back as waiting when its number is learned, maybe before any
        // journal read sees it parked: the dispatcher must be free to hand it out again.
        shared.release(&[seq]);
        return Ok(());
    }
    let mut hint = decision.hint.clone().unwrap_or_default();
    if !decision.fix.is_empty() {
        hint = format!("{hint}; to admit: {}", decision.fix.join(" "));
    }
    let offer_code = decision.on_deny == Some(DenyAction::OfferPairingCode)
        && !chat.is_group()
        && shared.config.mode.value == Mode::Bot;
    if offer_code {
        let now = now_secs();
        let codes = shared.db.call(move |s| s.codes_since(now - pairing::CODE_TTL_SECS)).await?;
        let offers: Vec<pairing::Pending> = codes
            .iter()
            .map(|c| pairing::Pending { code: c.code.clone(), sender: c.sender.clone(), created_at: c.created_at })
            .collect();
        let waiting = codes.iter().filter(|c| c.approved_at.is_none()).count();
        let mut forms: Vec<String> = aliases.iter().map(|a| a.to_jid().to_string()).collect();
        forms.push(row.sender.clone());
        let forms: Vec<&str> = forms.iter().map(String::as_str).collect();
        match pairing::offer(&offers, waiting, &forms, now, rand::random()) {
            Offer::Send(code) => {
                let hint = format!("sent pairing code {code}; to admit: hermes pairing approve whatsapp {code}");
                let d = drop_row(row, aliases, decision.rule.as_str(), nearest, Some(&hint));
                // The code itself is for `hermes pairing list`, never for a log others may read.
                warn_once(
                    shared,
                    &row.sender,
                    decision.rule.as_str(),
                    "sent a pairing code; see it with `hermes pairing list`, admit with `hermes pairing approve whatsapp CODE`",
                );
                let c = Code {
                    code: code.clone(),
                    sender: row.sender.clone(),
                    chat: row.chat.clone(),
                    created_at: now,
                    approved_at: None,
                };
                let message = (new_message_id(), pairing::message(&code));
                shared.db.call(move |s| s.offer_code(seq, &c, &d, &message)).await?;
                shared.outbox_wake.notify_one();
                return Ok(());
            }
            Offer::AlreadyOffered => hint = format!("{hint} (a pairing code was sent to this sender within the hour)"),
            Offer::TooManyPending => {
                hint =
                    format!("{hint} (no pairing code sent: {} codes already wait for approval)", pairing::MAX_PENDING);
            }
        }
    }
    let d = drop_row(row, aliases, decision.rule.as_str(), nearest, Some(&hint));
    // The account's own typing and status updates are not senders anyone needs to admit.
    if matches!(decision.rule, Rule::OwnMessage | Rule::Broadcast) {
        tracing::debug!(rule = decision.rule.as_str(), "message not for the agent");
    } else {
        warn_once(shared, &row.sender, decision.rule.as_str(), &hint);
    }
    shared.db.call(move |s| s.record_drop(Some(seq), &d)).await
}

/// One warning per sender per ten minutes: enough to be found, not enough to flood.
fn warn_once(shared: &Shared, sender: &str, rule: &str, hint: &str) {
    let now = Instant::now();
    let mut warned = shared.warned.lock().expect("not poisoned");
    if warned.get(sender).is_some_and(|t| now.duration_since(*t) < WARN_EVERY) {
        return;
    }
    if warned.len() > 10_000 {
        warned.retain(|_, t| now.duration_since(*t) < WARN_EVERY);
    }
    warned.insert(sender.to_owned(), now);
    tracing::warn!(sender, rule, "message dropped: {hint} (all drops: hermes whatsapp drops)");
}

/// Asks the agent about a batch and commits the answer.
async fn answer(shared: &Shared, batch: &Batch) {
    let (text, chat) = (batch.texts.join("\n"), batch.chat.as_str());
    let permit = shared.permits.acquire().await.expect("never closed");
    shared.messenger.typing(chat, true).await;
    let outcome = ask(shared, chat, &text).await;
    shared.messenger.typing(chat, false).await;
    hermes_whatsapp::crash::point("answered");
    let (reply, exchange) = match outcome {
        Ok(answer) => (answer.clone(), Some((text.clone(), answer))),
        Err(Unanswered::Tell(why)) => (why, None),
        // Nothing is committed: the messages stay waiting and are asked about again, so a
        // passing shortage here never becomes a final "the model is not reachable".
        Err(Unanswered::Later) => {
            // Other chats may ask meanwhile.
            drop(permit);
            tokio::time::sleep(RETRY_AFTER_ERROR).await;
            shared.release(&batch.seqs);
            return;
        }
    };
    commit(shared, chat, &batch.seqs, &reply, exchange).await;
}

/// Why there is no answer from the agent.
enum Unanswered {
    /// The sentence the user gets instead (the log says why).
    Tell(String),
    /// This machine could not ask (out of descriptors, memory): try again later, tell no one.
    Later,
}

/// The agent's answer, or why there is none.
async fn ask(shared: &Shared, chat: &str, text: &str) -> Result<String, Unanswered> {
    let Some(agent) = &shared.agent else {
        tracing::error!("no AI model is configured: set `model:` in config.yaml (and its API key in .env)");
        return Err(Unanswered::Tell(
            "Sorry, I can't answer: no AI model is configured for this gateway yet.".to_owned(),
        ));
    };
    let (c, window) = (chat.to_owned(), shared.history_window);
    let history = shared.db.call(move |s| s.history(&c, window)).await.unwrap_or_default();
    // Bounded input: one message, each turn of history, and the history as a whole.
    let cfg = &shared.config;
    let cap = |t: &str| budget::cap_message(t, usize::try_from(cfg.max_input_chars.value).unwrap_or(usize::MAX));
    let history: Vec<(Role, String)> = history.into_iter().map(|(role, content)| (role, cap(&content))).collect();
    let sizes: Vec<usize> = history.iter().map(|(_, content)| content.chars().count()).collect();
    let fit = budget::history_fits(&sizes, usize::try_from(cfg.max_history_chars.value).unwrap_or(usize::MAX));
    let mut messages = vec![Message::new(Speaker::System, shared.system_prompt.clone())];
    messages.extend(history.into_iter().skip(sizes.len() - fit).map(|(role, content)| {
        Message::new(if role == Role::User { Speaker::User } else { Speaker::Assistant }, content)
    }));
    messages.push(Message::new(Speaker::User, cap(text)));
    agent.complete(&messages).await.map_err(|e| {
        if e.is_local() {
            tracing::warn!(error = %e, "cannot ask the model now; the messages wait and are asked about again");
            return Unanswered::Later;
        }
        tracing::error!(error = %e, "the model did not answer; the sender is told");
        Unanswered::Tell(e.for_user().to_owned())
    })
}

async fn run_command(shared: &Shared, seq: i64, chat: &str, cmd: Command) {
    let reply = match cmd {
        Command::Reset => {
            let c = chat.to_owned();
            match shared.db.call(move |s| s.forget(&c)).await {
                Ok(_) => command::reset_done().to_owned(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot forget a chat's history");
                    "Sorry, I could not forget this conversation; please try again.".to_owned()
                }
            }
        }
        Command::Help => command::help().to_owned(),
        Command::Status => status(shared).await,
        Command::Unknown(name) => command::unknown(&name),
    };
    commit(shared, chat, &[seq], &reply, None).await;
}

async fn status(shared: &Shared) -> String {
    let (waiting, unsent) = shared.db.call(|s| Ok((s.pending_count()?, s.unsent_count()?))).await.unwrap_or((-1, -1));
    let link = if shared.messenger.is_connected() { "connected" } else { "reconnecting" };
    format!(
        "WhatsApp link: {link}\nModel: {}\nQueue: {} message(s) waiting, {} reply part(s) to send",
        shared.model_label,
        waiting.saturating_sub(1).max(0),
        unsent
    )
}

/// Formats, chunks and commits a reply with the messages it answers.
async fn commit(shared: &Shared, chat: &str, answers: &[i64], reply: &str, exchange: Option<(String, String)>) {
    let prefix = match shared.config.mode.value {
        Mode::SelfChat => shared.config.reply_prefix.value.clone(),
        Mode::Bot => String::new(),
    };
    let formatted = format::to_whatsapp(reply);
    let messages: Vec<(String, String)> = format::chunk(&formatted, format::budget(&prefix))
        .into_iter()
        .map(|part| (new_message_id(), format!("{prefix}{part}")))
        .collect();
    let (c, seqs) = (chat.to_owned(), answers.to_vec());
    let result = shared
        .db
        .call(move |s| {
            let exchange = exchange.as_ref().map(|(u, a)| (u.as_str(), a.as_str()));
            s.commit_reply(&Reply { chat: &c, answers: &seqs, exchange, messages: &messages, at: now_secs() })
        })
        .await;
    match result {
        Ok(()) => {
            hermes_whatsapp::crash::point("committed");
            shared.outbox_wake.notify_one();
        }
        // Not committed: the messages are still waiting and will be asked about again.
        Err(e) => {
            tracing::error!(error = %e, "cannot commit a reply; it will be tried again");
            shared.release(answers);
        }
    }
}
