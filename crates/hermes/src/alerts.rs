//! Delivering alerts (`hermes_core::alert` decides when): a webhook gets the alert POSTed as
//! JSON, a command gets it on stdin (run without a shell). Each runs in the background; the
//! gateway waits for them, briefly, before it exits, so the alert about why it stopped is out.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hermes_core::alert::Alerter;
use hermes_core::link::LinkState;
use tokio::task::JoinSet;

const TIMEOUT: Duration = Duration::from_secs(15);

/// A handle shared by what raises alerts (the link's states, linking, the watchdog).
#[derive(Clone)]
pub struct Alerts(Arc<Inner>);

struct Inner {
    alerter: Mutex<Alerter>,
    webhook: Option<String>,
    command: Option<Vec<String>>,
    /// The listener's page, where a link that needs a person is made again.
    page: std::sync::OnceLock<String>,
    sending: Mutex<JoinSet<()>>,
}

impl Alerts {
    /// From the configuration; a command that cannot be split into words is reported now.
    pub fn new(webhook: Option<String>, command: Option<&str>) -> anyhow::Result<Alerts> {
        let command = match command {
            Some(c) => Some(shell_words::split(c).map_err(|e| {
                anyhow::anyhow!("HERMES_ALERT_COMMAND '{c}' cannot be split into words ({e}): check its quotes")
            })?)
            .filter(|w: &Vec<String>| !w.is_empty()),
            None => None,
        };
        Ok(Alerts(Arc::new(Inner {
            alerter: Mutex::new(Alerter::default()),
            webhook,
            command,
            page: std::sync::OnceLock::new(),
            sending: Mutex::new(JoinSet::new()),
        })))
    }

    /// With a listener, a session that needs a new link is linked on its page, at this URL.
    pub fn set_page_url(&self, url: String) {
        let _ = self.0.page.set(url);
    }

    /// The link entered `state`: alerts if it needs a person (once per change). `better_fix`
    /// replaces the state's own when the gateway knows more (a volume smaller than the reserve).
    pub fn on_state(&self, state: &LinkState, now: i64, account: Option<String>, better_fix: Option<&str>) {
        let Some(alert) = self.0.alerter.lock().unwrap_or_else(PoisonError::into_inner).on_state(state) else { return };
        let fix = match self.0.page.get() {
            Some(url) if state.kind().needs_link() => hermes_core::link::relink_on_page(url),
            _ => better_fix.unwrap_or(alert.fix).to_owned(),
        };
        tracing::warn!(state = alert.state, "the WhatsApp link needs you: {}; {fix}", alert.reason);
        let body = serde_json::json!({
            "state": alert.state, "reason": alert.reason, "fix": fix, "account": account, "since": now,
        });
        self.deliver(body);
    }

    /// Linking from the page met WhatsApp's request for a passkey: a person must act.
    pub fn passkey_required(&self, fix: &str, now: i64) {
        tracing::warn!(state = "passkey_required", "the WhatsApp link needs you: {fix}");
        self.deliver(serde_json::json!({
            "state": "passkey_required",
            "reason": "WhatsApp asks for this account's passkey to link the gateway",
            "fix": fix, "account": null, "since": now,
        }));
    }

    /// The gateway has not answered for a while (`hermes_core::alert::Watchdog`).
    pub fn not_answering(&self, alert: &hermes_core::alert::Stuck, now: i64, account: Option<String>) {
        tracing::warn!(state = "not_answering", "the gateway needs you: {}; {}", alert.reason, alert.fix);
        self.deliver(serde_json::json!({
            "state": "not_answering", "reason": alert.reason, "fix": alert.fix, "account": account, "since": now,
        }));
    }

    fn deliver(&self, body: serde_json::Value) {
        let mut sending = self.0.sending.lock().unwrap_or_else(PoisonError::into_inner);
        // Those delivered already are let go of: a gateway runs for months.
        while sending.try_join_next().is_some() {}
        if let Some(url) = self.0.webhook.clone() {
            let body = body.clone();
            sending.spawn(async move {
                let client = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default();
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => tracing::info!("alert delivered to the webhook"),
                    Ok(r) => tracing::error!(status = r.status().as_u16(), url = %hermes_core::redact::redact_url(&url), "the alert webhook refused the alert"),
                    Err(e) => tracing::error!(error = %e.without_url(), url = %hermes_core::redact::redact_url(&url), "the alert webhook cannot be reached"),
                }
            });
        }
        if let Some(argv) = self.0.command.clone() {
            sending.spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let run = async {
                    let mut child = tokio::process::Command::new(&argv[0])
                        .args(&argv[1..])
                        .stdin(std::process::Stdio::piped())
                        .kill_on_drop(true)
                        .spawn()?;
                    if let Some(mut stdin) = child.stdin.take() {
                        stdin.write_all(body.to_string().as_bytes()).await?;
                    }
                    child.wait().await
                };
                match tokio::time::timeout(TIMEOUT, run).await {
                    Ok(Ok(status)) if status.success() => tracing::info!("alert command ran"),
                    Ok(Ok(status)) => tracing::error!(%status, "the alert command failed"),
                    Ok(Err(e)) => tracing::error!(error = %e, command = %argv[0], "the alert command cannot be run"),
                    Err(_) => tracing::error!(command = %argv[0], "the alert command did not finish in time"),
                }
            });
        }
    }

    /// Waits (a little) for alerts still on their way.
    pub async fn flush(&self) {
        let mut sending = std::mem::take(&mut *self.0.sending.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = tokio::time::timeout(TIMEOUT, async { while sending.join_next().await.is_some() {} }).await;
    }
}
