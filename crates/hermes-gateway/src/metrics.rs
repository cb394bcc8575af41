//! The gateway's Prometheus metrics (`GET /metrics`), counted where things happen. Names
//! follow Prometheus' conventions: `hermes_` first, `_total` for counters, base units
//! (`_seconds`). Nothing here carries a phone number or a word of a message.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Rule {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOutcome {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Cause {
    pub cause: String,
}

/// Every metric, registered once.
#[derive(Debug)]
pub struct Metrics {
    pub received: Counter,
    pub answered: Counter,
    pub dropped: Family<Rule, Counter>,
    pub sent: Counter,
    pub send_failures: Counter,
    /// Sends the governor held back for a while, by the limit that held them.
    pub sends_held: Family<Kind, Counter>,
    pub model_latency: Histogram,
    pub model_errors: Family<Kind, Counter>,
    pub media: Family<KindOutcome, Counter>,
    pub transcriptions: Family<Kind, Counter>,
    pub reconnects: Family<Cause, Counter>,
    pub link_state: Family<State, Gauge>,
    pub journal_waiting: Gauge,
    pub outbox_unsent: Gauge,
    pub oldest_waiting_seconds: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hermes");
        let received = Counter::default();
        let answered = Counter::default();
        let dropped = Family::<Rule, Counter>::default();
        let sent = Counter::default();
        let send_failures = Counter::default();
        let sends_held = Family::<Kind, Counter>::default();
        // 50 ms to about 2 minutes.
        let model_latency = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]);
        let model_errors = Family::<Kind, Counter>::default();
        let media = Family::<KindOutcome, Counter>::default();
        let transcriptions = Family::<Kind, Counter>::default();
        let reconnects = Family::<Cause, Counter>::default();
        let link_state = Family::<State, Gauge>::default();
        let (journal_waiting, outbox_unsent, oldest_waiting_seconds) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register("messages_received", "Messages taken from the journal to be decided", received.clone());
        registry.register(
            "messages_answered",
            "Messages answered (by the agent, a command or a fixed reply)",
            answered.clone(),
        );
        registry.register("messages_dropped", "Messages not answered, by the rule that dropped them", dropped.clone());
        registry.register("messages_sent", "Messages (text and files) WhatsApp accepted from the outbox", sent.clone());
        registry.register(
            "send_failures",
            "Send attempts WhatsApp refused (retried under the same id)",
            send_failures.clone(),
        );
        registry.register(
            "sends_held",
            "Sends held back by the outbound governor (kind: per_chat or per_account); they wait in the outbox",
            sends_held.clone(),
        );
        registry.register("model_request_duration_seconds", "Time the model took to answer", model_latency.clone());
        registry.register("model_errors", "Model requests that failed, by kind", model_errors.clone());
        registry.register("media", "Media handled, by kind and outcome", media.clone());
        registry.register("transcriptions", "Voice messages transcribed, by outcome", transcriptions.clone());
        registry.register("reconnects", "Reconnections, by the cause of the loss", reconnects.clone());
        registry.register("link_state", "1 for the link's current state", link_state.clone());
        registry.register("journal_waiting", "Journaled messages waiting to be handled", journal_waiting.clone());
        registry.register("outbox_unsent", "Outbox messages not sent yet", outbox_unsent.clone());
        registry.register(
            "oldest_waiting_message_age_seconds",
            "Age of the oldest journaled message still waiting",
            oldest_waiting_seconds.clone(),
        );
        Metrics {
            received,
            answered,
            dropped,
            sent,
            send_failures,
            sends_held,
            model_latency,
            model_errors,
            media,
            transcriptions,
            reconnects,
            link_state,
            journal_waiting,
            outbox_unsent,
            oldest_waiting_seconds,
            registry,
        }
    }

    /// The link entered `state`: its gauge is 1, every other 0.
    pub fn set_link_state(&self, state: &str) {
        // Besides the link's states, linking's own wait for a person (a passkey).
        for name in hermes_core::link::StateName::ALL.iter().map(|s| s.as_str()).chain(["passkey_required"]) {
            self.link_state.get_or_create(&State { state: name.to_owned() }).set(i64::from(name == state));
        }
    }

    pub fn drop(&self, rule: &str) {
        self.dropped.get_or_create(&Rule { rule: rule.to_owned() }).inc();
    }

    pub fn media(&self, kind: &str, outcome: &str) {
        self.media.get_or_create(&KindOutcome { kind: kind.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    pub fn transcription(&self, outcome: &str) {
        self.transcriptions.get_or_create(&Kind { kind: outcome.to_owned() }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
