//! The pipeline in-process: a real store in a temporary directory, a fake connection and a
//! fake model, and tokio's paused clock, so debounce, idle workers, backoff and retries run
//! in no time and always the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hermes_agent::{AgentError, Message, Speaker};
use hermes_core::admission::DropRule;
use hermes_core::config::{Inputs, resolve};
use hermes_core::identity::{Account, Jid, MessageId, PhoneNumber};
use hermes_core::media::outbound::{OutMedia, Uploaded};
use hermes_store::{Db, Inbound};
use tokio::sync::{Notify, watch};

use crate::{Messenger, Model, Options, Pipeline, SendError};

pub(crate) const ALICE: &str = "15551234567@s.whatsapp.net";
const BOB: &str = "4915112345678@s.whatsapp.net";
/// Long enough for anything the pipeline does on a paused clock; a hang fails, never passes.
const WAIT: Duration = Duration::from_secs(3600);

pub(crate) fn j(s: &str) -> Jid {
    Jid::parse(s).expect("a JID")
}

/// What the fake connection was asked to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sent {
    pub(crate) chat: Jid,
    pub(crate) text: String,
    pub(crate) id: MessageId,
}

#[derive(Default)]
pub(crate) struct FakeMessenger {
    sent: Mutex<Vec<Sent>>,
    sent_changed: Notify,
    connected: Arc<watch::Sender<bool>>,
    /// Sends refused before the next one goes through.
    refuse: AtomicUsize,
    attempts: AtomicUsize,
    phones: Mutex<HashMap<Jid, Jid>>,
    ids: AtomicUsize,
}

impl FakeMessenger {
    fn new() -> Arc<FakeMessenger> {
        let m = FakeMessenger::default();
        m.connected.send_replace(true);
        Arc::new(m)
    }

    pub(crate) fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("not poisoned").clone()
    }

    /// Waits until `n` messages were sent, and returns them.
    pub(crate) async fn wait_sent(&self, n: usize) -> Vec<Sent> {
        tokio::time::timeout(WAIT, async {
            loop {
                let changed = self.sent_changed.notified();
                let sent = self.sent();
                if sent.len() >= n {
                    return sent;
                }
                changed.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} message(s) were not sent: {:?}", self.sent()))
    }
}

#[async_trait]
impl Messenger for FakeMessenger {
    async fn send_text(&self, chat: &Jid, text: &str, id: &MessageId) -> Result<(), SendError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if !*self.connected.borrow() {
            return Err(SendError::NotConnected);
        }
        if self.refuse.load(Ordering::SeqCst) > 0 {
            self.refuse.fetch_sub(1, Ordering::SeqCst);
            return Err(SendError::Failed("refused by the fake".into()));
        }
        self.sent.lock().expect("not poisoned").push(Sent { chat: chat.clone(), text: text.into(), id: id.clone() });
        self.sent_changed.notify_waiters();
        Ok(())
    }

    async fn typing(&self, _chat: &Jid, _on: bool) {}

    async fn mark_read(&self, _chat: &Jid, _sender: &Jid, _ids: &[MessageId]) {}

    async fn phone_of(&self, lid: &Jid) -> Option<Jid> {
        self.phones.lock().expect("not poisoned").get(lid).cloned()
    }

    fn account(&self) -> Option<Account> {
        Some(Account { phone: Some(PhoneNumber::from_digits("15550000000").expect("valid")), lid: None })
    }

    fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    fn new_message_id(&self) -> MessageId {
        MessageId::new(format!("OUT{}", self.ids.fetch_add(1, Ordering::SeqCst)))
    }

    async fn download(&self, _: &crate::Fetch<'_>, _: &std::path::Path, _: u64) -> Result<u64, crate::MediaError> {
        Err(crate::MediaError::Failed("the fake messenger has no media".into()))
    }

    async fn upload(&self, _: &OutMedia) -> Result<Uploaded, SendError> {
        Err(SendError::Failed("the fake messenger has no media".into()))
    }

    async fn send_media(&self, _: &Jid, _: &OutMedia, _: &MessageId) -> Result<(), SendError> {
        Err(SendError::Failed("the fake messenger has no media".into()))
    }
}

/// Answers "re: <the last user message>"; panics on "boom"; can fail locally first; can
/// hang, to see that stopping the pipeline cancels what it does.
#[derive(Default)]
struct FakeModel {
    asked: Mutex<Vec<String>>,
    local_failures: AtomicUsize,
    hang: AtomicBool,
    /// Set when a hanging call's future is dropped.
    cancelled: Arc<AtomicBool>,
}

impl FakeModel {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("not poisoned").clone()
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Model for FakeModel {
    async fn complete(&self, messages: &[Message]) -> Result<String, AgentError> {
        let last = messages.last().expect("a question");
        assert_eq!(last.role, Speaker::User);
        self.asked.lock().expect("not poisoned").push(last.content.clone());
        if self.hang.load(Ordering::SeqCst) {
            let _guard = SetOnDrop(self.cancelled.clone());
            return std::future::pending().await;
        }
        if self.local_failures.load(Ordering::SeqCst) > 0 {
            self.local_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(AgentError::Local("out of file descriptors".into()));
        }
        assert!(last.content != "boom", "the fake model was told to fail on this");
        Ok(format!("re: {}", last.content))
    }
}

/// A pipeline's options as the harness starts it: a bot for two allowed numbers.
fn options(
    dir: &std::path::Path,
    yaml: &str,
    db: &Db,
    messenger: Arc<FakeMessenger>,
    model: Arc<FakeModel>,
    wake: Arc<Notify>,
) -> Options {
    let mut inputs = Inputs::default();
    inputs.env.insert("WHATSAPP_MODE".into(), "bot".into());
    inputs.env.insert("WHATSAPP_ALLOWED_USERS".into(), "15551234567,4915112345678".into());
    inputs.yaml = Some(yaml);
    let resolved = resolve(&inputs);
    assert!(!resolved.has_errors(), "{:?}", resolved.diagnostics);
    Options {
        config: resolved.config.whatsapp,
        model: Some(model),
        system_prompt: "be brief".into(),
        model_label: "fake".into(),
        hermes: None,
        db: db.clone(),
        state_dir: dir.join("state"),
        messenger,
        wake,
        history_window: 10,
        max_parallel: 4,
        chunk_gap: Duration::from_millis(300),
        media: resolved.config.media,
        speech: crate::Speech::Off,
        voice: None,
        listen: None,
        service: Arc::new(crate::service::ServiceState::new()),
        home: dir.to_owned(),
        user_home: None,
        // No media in these tests: a parser that is never started.
        parser: crate::parse::Parser::new("/nonexistent/hermes".into(), Vec::new()),
    }
}

/// A text message from `from`, as journaled.
pub(crate) fn inbound(from: &str, id: &str, text: &str) -> Inbound {
    Inbound::text(j(from), j(from), MessageId::new(id), 1_795_000_000, text)
}

pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) db: Db,
    pub(crate) wake: Arc<Notify>,
    pub(crate) messenger: Arc<FakeMessenger>,
    model: Arc<FakeModel>,
    pub(crate) pipeline: Pipeline,
    service: Arc<crate::service::ServiceState>,
}

impl Harness {
    async fn start(yaml: &str) -> Harness {
        Harness::with(yaml, FakeModel::default()).await
    }

    async fn with(yaml: &str, model: FakeModel) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("hermes.db")).expect("open");
        let (wake, messenger, model) = (Arc::new(Notify::new()), FakeMessenger::new(), Arc::new(model));
        let opts = options(dir.path(), yaml, &db, messenger.clone(), model.clone(), wake.clone());
        let service = opts.service.clone();
        let pipeline = Pipeline::start(opts).await.expect("start");
        Harness { _dir: dir, db, wake, messenger, model, pipeline, service }
    }

    /// With Hermes Agent's API server as the agent; `prepare` runs on the store first (as a
    /// process that died left it).
    pub(crate) async fn with_hermes_after(
        yaml: &str,
        hermes: crate::HermesSettings,
        prepare: impl FnOnce(&mut hermes_store::Store) -> Result<(), hermes_store::StoreError> + Send + 'static,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("hermes.db")).expect("open");
        db.call(prepare).await.expect("prepare the store");
        let (wake, messenger, model) = (Arc::new(Notify::new()), FakeMessenger::new(), Arc::new(FakeModel::default()));
        let mut opts = options(dir.path(), yaml, &db, messenger.clone(), model.clone(), wake.clone());
        opts.hermes = Some(hermes);
        let service = opts.service.clone();
        let pipeline = Pipeline::start(opts).await.expect("start");
        Harness { _dir: dir, db, wake, messenger, model, pipeline, service }
    }

    pub(crate) async fn with_hermes(yaml: &str, hermes: crate::HermesSettings) -> Harness {
        Harness::with_hermes_after(yaml, hermes, |_| Ok(())).await
    }

    /// As the journal hook does: kept, then the pipeline woken.
    pub(crate) async fn receive(&self, from: &str, id: &str, text: &str) {
        let m = inbound(from, id, text);
        self.db.call(move |s| s.journal(&[m])).await.expect("journal");
        self.wake.notify_one();
    }

    async fn drops(&self) -> Vec<hermes_store::Dropped> {
        self.db.call(|s| s.drops_since(0)).await.expect("drops")
    }

    async fn waiting(&self) -> i64 {
        self.db.call(|s| s.pending_count()).await.expect("count")
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_text_is_one_question_and_one_answer() {
    let h = Harness::start("whatsapp:\n  text_batch_delay_seconds: 1\n").await;
    h.receive(ALICE, "A1", "hello").await;
    h.receive(ALICE, "A2", "are you there?").await;
    let sent = h.messenger.wait_sent(1).await;
    assert_eq!(h.model.asked(), ["hello\nare you there?"]);
    assert_eq!(sent[0], Sent { chat: j(ALICE), text: "re: hello\nare you there?".into(), id: MessageId::new("OUT0") });
    assert_eq!(h.waiting().await, 0, "both messages are answered");
    // Nothing more comes, however long we wait.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.messenger.sent().len(), 1);
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn chats_are_answered_in_parallel_and_a_worker_left_idle_is_replaced() {
    let h = Harness::start("").await;
    h.receive(ALICE, "A1", "one").await;
    h.receive(BOB, "B1", "two").await;
    let sent = h.messenger.wait_sent(2).await;
    let mut texts: Vec<&str> = sent.iter().map(|s| s.text.as_str()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["re: one", "re: two"]);
    // Past the idle timeout the workers end; the next message starts a new one.
    tokio::time::sleep(crate::worker::WORKER_IDLE * 2).await;
    h.receive(ALICE, "A2", "three").await;
    assert_eq!(h.messenger.wait_sent(3).await[2].text, "re: three");
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_stranger_is_dropped_with_a_ledger_row_and_never_asked_about() {
    let h = Harness::start("").await;
    h.receive("33612345678@s.whatsapp.net", "S1", "hi").await;
    h.receive(ALICE, "A1", "after the stranger").await;
    h.messenger.wait_sent(1).await;
    let drops = h.drops().await;
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!(drops[0].rule.as_str(), "not_allowlisted");
    assert_eq!(h.model.asked(), ["after the stranger"]);
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lid_sender_whose_number_the_client_knows_is_admitted_and_the_mapping_kept() {
    let h = Harness::start("").await;
    let lid = j("98765432109876@lid");
    h.messenger.phones.lock().expect("not poisoned").insert(lid.clone(), j(ALICE));
    h.receive("98765432109876@lid", "L1", "from my lid").await;
    assert_eq!(h.messenger.wait_sent(1).await[0].chat, lid);
    let alias = h.db.call(move |s| s.alias_of(&j("98765432109876@lid"))).await.expect("alias");
    assert_eq!(alias, Some(j(ALICE)));
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_local_shortage_keeps_the_message_waiting_and_asks_again() {
    let model = FakeModel::default();
    model.local_failures.store(2, Ordering::SeqCst);
    let h = Harness::with("", model).await;
    h.receive(ALICE, "A1", "still there?").await;
    let sent = h.messenger.wait_sent(1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "re: still there?", "never 'the model is not reachable'");
    assert_eq!(h.model.asked().len(), 3);
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_send_is_retried_with_backoff_under_the_same_id() {
    let h = Harness::start("").await;
    h.messenger.refuse.store(3, Ordering::SeqCst);
    h.receive(ALICE, "A1", "hello").await;
    let sent = h.messenger.wait_sent(1).await;
    assert_eq!(h.messenger.attempts.load(Ordering::SeqCst), 4);
    assert_eq!(sent[0].id, "OUT0", "one id, chosen before the first attempt");
    h.pipeline.stop().await;
}

#[tokio::test(start_paused = true)]
async fn replies_wait_for_the_connection() {
    let h = Harness::start("").await;
    h.messenger.connected.send_replace(false);
    h.receive(ALICE, "A1", "hello").await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(h.messenger.sent().is_empty());
    let queued = h.db.call(|s| s.unsent_count()).await.expect("count");
    assert_eq!(queued, 1, "answered and committed, waiting to be sent");
    h.messenger.connected.send_replace(true);
    assert_eq!(h.messenger.wait_sent(1).await[0].text, "re: hello");
    h.pipeline.stop().await;
}

/// Issue 12: a panic in a worker left the dispatcher dead and the gateway silent. Now the
/// message is tried again, given up on after three failures with a ledger row, and the chat
/// (and every other chat) goes on being answered.
#[tokio::test(start_paused = true)]
async fn a_message_that_makes_hermes_panic_is_given_up_and_the_chat_goes_on() {
    let h = Harness::start("").await;
    h.receive(ALICE, "A1", "boom").await;
    h.receive(BOB, "B1", "unrelated").await;
    assert_eq!(h.messenger.wait_sent(1).await[0].text, "re: unrelated");
    let given_up = tokio::time::timeout(WAIT, async {
        loop {
            let drops = h.drops().await;
            if let Some(d) = drops.into_iter().find(|d| d.rule == DropRule::Failed) {
                return d;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
    .expect("the poisonous message is given up on");
    assert_eq!(given_up.sender, j(ALICE));
    assert_eq!(h.model.asked().iter().filter(|q| *q == "boom").count(), crate::dispatch::MAX_FAILURES as usize);
    // Its sender is told, once.
    let sent = h.messenger.wait_sent(2).await;
    assert_eq!(sent[1].text, hermes_core::admission::given_up_reply());
    h.receive(ALICE, "A2", "and now?").await;
    assert_eq!(h.messenger.wait_sent(3).await[2].text, "re: and now?");
    assert_eq!(h.waiting().await, 0);
    h.pipeline.stop().await;
}

/// Issue 12: chat workers were detached tasks that outlived the pipeline.
#[tokio::test(start_paused = true)]
async fn stopping_the_pipeline_cancels_its_workers() {
    let model = FakeModel::default();
    model.hang.store(true, Ordering::SeqCst);
    let cancelled = model.cancelled.clone();
    let h = Harness::with("", model).await;
    h.receive(ALICE, "A1", "take your time").await;
    tokio::time::timeout(WAIT, async {
        while h.model.asked().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the model is asked");
    assert!(!cancelled.load(Ordering::SeqCst));
    h.pipeline.stop().await;
    assert!(cancelled.load(Ordering::SeqCst), "the worker's call was cancelled with the pipeline");
    // Nothing was committed: the message waits for the next start.
    assert_eq!(h.db.call(|s| s.pending_count()).await.expect("count"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_whose_loop_dies_says_so() {
    let mut h = Harness::start("").await;
    // Nothing wrong: `failed` does not resolve.
    assert!(tokio::time::timeout(Duration::from_secs(60), h.pipeline.failed()).await.is_err());
    h.pipeline.tasks.spawn(async { panic!("a loop broke") });
    let why = tokio::time::timeout(WAIT, h.pipeline.failed()).await.expect("reported");
    assert!(why.contains("a loop broke"), "{why}");
    h.pipeline.stop().await;
}

/// The status line of a plain HTTP/1.1 GET.
async fn http_status(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http_exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: gw\r\n{auth}Connection: close\r\n\r\n")).await
}

/// The status line of a plain HTTP/1.1 form POST.
async fn http_post(addr: std::net::SocketAddr, path: &str, form: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    http_exchange(addr, &request).await
}

/// Sends `request` whole on a new connection; the status line of the answer.
async fn http_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out.lines().next().unwrap_or_default().to_owned()
}

/// Issue 25, hole 2: any local process reaches 127.0.0.1, and the pairing page links the
/// gateway to whoever asks first: on loopback too, only the probes go without the token.
#[tokio::test]
async fn the_page_pairing_and_metrics_need_the_token_on_loopback_too_and_the_probes_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("hermes.db")).expect("open");
    let bound = crate::service::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let (addr, token) = (bound.addr, bound.token.clone());
    assert_eq!(token.len(), 32, "a random token, on loopback too");
    let service = Arc::new(crate::service::ServiceState::new());
    let mut requests = service.take_pair_requests().expect("requests");
    tokio::spawn(crate::service::serve(bound, db, FakeMessenger::new(), service.clone()));
    for path in ["/", "/metrics", "/pairing.json", "/metrics?token=wrong"] {
        assert!(http_status(addr, path, None).await.contains(" 401 "), "{path}");
    }
    assert!(http_status(addr, &format!("/metrics?token={token}"), None).await.contains(" 200 "));
    assert!(http_status(addr, "/", Some(&token)).await.contains(" 200 "));
    assert!(http_status(addr, "/healthz", None).await.contains(" 200 "));
    assert!(http_status(addr, "/readyz", None).await.contains(" 503 "), "not linked yet");
    // A neighbour's `POST /pair` with its own number (no Origin: not a browser) is refused and
    // starts nothing, while the link needs a person.
    service.set_link(&hermes_core::link::LinkState::NotLinked, 0);
    let posted = http_post(addr, "/pair", "kind=code&phone=15550001111").await;
    assert!(posted.contains(" 401 "), "{posted}");
    assert!(requests.try_recv().is_err(), "no link attempt was started");
    let posted = http_post(addr, &format!("/pair?token={token}"), "kind=code&phone=15550001111").await;
    assert!(posted.contains(" 303 "), "{posted}");
    assert_eq!(requests.try_recv().ok(), Some(crate::service::PairRequest::Code { phone: "15550001111".into() }));
}

/// Issue 25, hole 7: half-sent requests, more of them than the listener serves at once, were
/// all held open and `/healthz` stopped answering. Now each gets a header deadline, the
/// listener serves a bounded number at once, and the probe answers once the deadline passes.
#[tokio::test]
async fn half_sent_requests_are_cut_off_and_the_probe_answers_again() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("hermes.db")).expect("open");
    let bound = crate::service::bind("127.0.0.1:0".parse().expect("addr")).await.expect("bind");
    let addr = bound.addr;
    tokio::spawn(crate::service::serve(bound, db, FakeMessenger::new(), Arc::new(crate::service::ServiceState::new())));
    let mut held = Vec::new();
    for _ in 0..(crate::service::MAX_CONNECTIONS + 40) {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("write");
        held.push(s);
    }
    let answered = tokio::time::timeout(Duration::from_secs(60), http_status(addr, "/healthz", None)).await;
    assert!(answered.expect("the probe answers while half-sent requests wait").contains(" 200 "));
    // The first of them was cut off at its deadline: the server closed it.
    let mut first = held.swap_remove(0);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), first.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a half-sent request is closed at its header deadline");
}

/// A worker lives on for minutes after its chat's last message (`WORKER_IDLE`), as its future
/// and its channel: what an idle one keeps, times every chat active within those minutes, is
/// what a busy gateway keeps for nothing. The channel allocates its slots 32 at a time, at
/// once: with messages inline that was 17 KB per chat (heaptrack of the soak).
#[tokio::test]
async fn a_chat_worker_keeps_little_while_it_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("hermes.db")).expect("open");
    let model = Arc::new(FakeModel::default());
    let wake = Arc::new(Notify::new());
    let opts = options(dir.path(), "whatsapp: {}\n", &db, FakeMessenger::new(), model, wake.clone());
    let shared = Arc::new(crate::worker::Shared::new(&opts, wake));
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = crate::worker::chat_worker(shared, rx, crate::worker::Busy::default());
    let future = std::mem::size_of_val(&worker);
    let slots = 32 * std::mem::size_of::<crate::worker::Row>();
    eprintln!("a chat worker: its future {future} bytes, its channel's first slots {slots} bytes");
    assert!(future <= 4096, "a chat worker's future is {future} bytes: something it awaits is no longer boxed");
    assert!(slots <= 1024, "a chat worker's channel keeps {slots} bytes of slots: a row is no longer boxed");
}

/// Issue 27: the outbound governor holds a chat that writes faster than its pace, in the
/// outbox, while other chats go on; nothing is dropped.
#[tokio::test(start_paused = true)]
async fn a_chat_over_its_pace_waits_while_others_go_on() {
    let h = Harness::start("whatsapp:\n  chat_send_per_minute: 2\n  send_per_minute: 0\n").await;
    let t0 = tokio::time::Instant::now();
    h.receive(ALICE, "A1", "one").await;
    h.messenger.wait_sent(1).await;
    h.receive(ALICE, "A2", "two").await;
    // Alice's second answer is held (one a burst, two a minute); Bob is not held by it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.receive(BOB, "B1", "three").await;
    let sent = h.messenger.wait_sent(3).await;
    let texts: Vec<&str> = sent.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["re: one", "re: three", "re: two"]);
    assert!(t0.elapsed() >= Duration::from_secs(30), "held about half a minute: {:?}", t0.elapsed());
    let held = h.service.metrics.encode();
    assert!(held.contains("hermes_sends_held_total{kind=\"per_chat\"}"), "{held}");
    h.pipeline.stop().await;
}

/// Issue 27: the reply-loop breaker: when the agent has answered a chat `loop_turns` times
/// within the window (another bot answering it, most likely), the next message pauses the chat
/// instead of being answered, and is traced as a `paused` drop.
#[tokio::test(start_paused = true)]
async fn a_reply_loop_is_broken_by_pausing_the_chat() {
    let h = Harness::start("whatsapp:\n  loop_turns: 3\n  loop_minutes: 5\n  text_batch_delay_seconds: 0\n").await;
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        h.receive(ALICE, &format!("A{i}"), text).await;
        h.messenger.wait_sent(i + 1).await;
    }
    h.receive(ALICE, "A3", "four").await;
    tokio::time::timeout(WAIT, async {
        while h.drops().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a drop");
    let drops = h.drops().await;
    assert_eq!(drops[0].rule.as_str(), "paused");
    assert!(drops[0].hint.as_deref().is_some_and(|hint| hint.contains("another bot")), "{drops:?}");
    // Still paused for the next message; another chat is answered.
    h.receive(ALICE, "A4", "five").await;
    h.receive(BOB, "B1", "hello").await;
    let sent = h.messenger.wait_sent(4).await;
    assert_eq!(sent[3].text, "re: hello");
    assert_eq!(h.model.asked(), ["one", "two", "three", "hello"]);
    h.pipeline.stop().await;
}
