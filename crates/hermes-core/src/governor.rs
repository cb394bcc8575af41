//! The outbound governor: how fast the account may send, so that WhatsApp never takes it for
//! a spammer. Every message (replies, `hermes send`, reminders, notes) passes two token buckets,
//! the chat's and the account's: a burst goes out at once, a flood is spread out at the
//! buckets' rate. A message held waits in the outbox (never dropped); the sender goes on with
//! other chats meanwhile. No I/O: the caller passes the time and draws the jitter.
//!
//! The defaults keep well inside what a personal account is trusted with: a person's quick
//! back-and-forth is never held (a burst of 10 to one chat, 30 across chats), and nothing
//! sustained goes faster than 20 messages a minute to one chat or 60 a minute in all.

use std::collections::HashMap;
use std::time::Duration;

/// The buckets' sizes and rates (`per_minute` 0: no limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    pub account_per_minute: u32,
    pub account_burst: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { chat_per_minute: 20, chat_burst: 10, account_per_minute: 60, account_burst: 30 }
    }
}

/// Which limit holds a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Chat,
    Account,
}

impl Held {
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Chat => "per_chat",
            Held::Account => "per_account",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    /// Seconds, on the caller's clock.
    at: f64,
}

impl Bucket {
    fn full(cap: f64, now: f64) -> Bucket {
        Bucket { tokens: cap, at: now }
    }

    /// Refills to `now`; the wait until one token is there (zero when it is).
    fn wait(&mut self, now: f64, per_sec: f64, cap: f64) -> f64 {
        self.tokens = (self.tokens + (now - self.at).max(0.0) * per_sec).min(cap);
        self.at = now;
        if self.tokens >= 1.0 { 0.0 } else { (1.0 - self.tokens) / per_sec }
    }
}

/// The buckets of one account.
#[derive(Debug)]
pub struct Governor {
    limits: Limits,
    account: Option<Bucket>,
    chats: HashMap<String, Bucket>,
}

/// Chats remembered at most; full buckets (idle chats) are forgotten first.
const MAX_CHATS: usize = 4096;

impl Governor {
    pub fn new(limits: Limits) -> Governor {
        Governor { limits, account: None, chats: HashMap::new() }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a message to `chat` may go at `now` (seconds): `Ok` takes a token from both
    /// buckets; `Err` says which limit holds it and for how long (nothing taken).
    pub fn admit(&mut self, chat: &str, now: f64) -> Result<(), (Held, Duration)> {
        let l = self.limits;
        let rate = |per_minute: u32| f64::from(per_minute) / 60.0;
        let chat_wait = if l.chat_per_minute == 0 {
            0.0
        } else {
            let cap = f64::from(l.chat_burst.max(1));
            if self.chats.len() >= MAX_CHATS && !self.chats.contains_key(chat) {
                self.forget_idle(now);
            }
            let b = self.chats.entry(chat.to_owned()).or_insert_with(|| Bucket::full(cap, now));
            b.wait(now, rate(l.chat_per_minute), cap)
        };
        let account_wait = if l.account_per_minute == 0 {
            0.0
        } else {
            let cap = f64::from(l.account_burst.max(1));
            let b = self.account.get_or_insert_with(|| Bucket::full(cap, now));
            b.wait(now, rate(l.account_per_minute), cap)
        };
        if chat_wait > 0.0 || account_wait > 0.0 {
            let (held, wait) =
                if chat_wait >= account_wait { (Held::Chat, chat_wait) } else { (Held::Account, account_wait) };
            return Err((held, Duration::from_secs_f64(wait)));
        }
        if let Some(b) = self.chats.get_mut(chat) {
            b.tokens -= 1.0;
        }
        if let Some(b) = self.account.as_mut() {
            b.tokens -= 1.0;
        }
        Ok(())
    }

    fn forget_idle(&mut self, now: f64) {
        let (per_sec, cap) = (f64::from(self.limits.chat_per_minute) / 60.0, f64::from(self.limits.chat_burst.max(1)));
        self.chats.retain(|_, b| b.tokens + (now - b.at) * per_sec < cap);
        if self.chats.len() >= MAX_CHATS {
            self.chats.clear();
        }
    }
}

/// A hold's wait with jitter added (up to a quarter more, `unit` in 0..1), so that held sends
/// do not go out on a machine's beat.
pub fn jittered(wait: Duration, unit: f64) -> Duration {
    wait.mul_f64(1.0 + 0.25 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_and_a_flood_is_spread_out() {
        let mut g =
            Governor::new(Limits { chat_per_minute: 20, chat_burst: 3, account_per_minute: 600, account_burst: 100 });
        for _ in 0..3 {
            assert_eq!(g.admit("a", 0.0), Ok(()));
        }
        let (held, wait) = g.admit("a", 0.0).expect_err("the fourth waits");
        assert_eq!(held, Held::Chat);
        assert!((wait.as_secs_f64() - 3.0).abs() < 1e-9, "{wait:?}");
        // Another chat is not held by this one.
        assert_eq!(g.admit("b", 0.0), Ok(()));
        // Three seconds later one more may go.
        assert_eq!(g.admit("a", 3.0), Ok(()));
        assert!(g.admit("a", 3.0).is_err());
    }

    #[test]
    fn the_account_limit_holds_every_chat() {
        let mut g =
            Governor::new(Limits { chat_per_minute: 0, chat_burst: 1, account_per_minute: 60, account_burst: 2 });
        assert_eq!(g.admit("a", 0.0), Ok(()));
        assert_eq!(g.admit("b", 0.0), Ok(()));
        let (held, wait) = g.admit("c", 0.0).expect_err("held");
        assert_eq!(held, Held::Account);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9);
        assert_eq!(g.admit("c", 1.0), Ok(()));
    }

    #[test]
    fn no_limit_holds_nothing_and_jitter_only_adds() {
        let mut g =
            Governor::new(Limits { chat_per_minute: 0, chat_burst: 0, account_per_minute: 0, account_burst: 0 });
        for i in 0..1000 {
            assert_eq!(g.admit("a", f64::from(i) * 1e-6), Ok(()));
        }
        let w = Duration::from_secs(4);
        assert_eq!(jittered(w, 0.0), w);
        assert_eq!(jittered(w, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn idle_chats_are_forgotten_when_many() {
        let mut g = Governor::new(Limits::default());
        for i in 0..MAX_CHATS + 10 {
            assert_eq!(g.admit(&format!("chat{i}"), i as f64 * 60.0), Ok(()));
        }
        assert!(g.chats.len() <= MAX_CHATS);
    }
}
