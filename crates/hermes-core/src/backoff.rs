//! The one backoff of hermes: exponential with full jitter, for reconnecting to WhatsApp,
//! asking the model again and sending a reply again.
//!
//! Full jitter (a uniform delay up to the exponential step) spreads the retries of many
//! clients, or many chats, instead of lining them up. The caller draws the random `unit`:
//! nothing here reads a random number generator.

use std::time::Duration;

/// Exponential backoff: `base`, doubled per failure, never above `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the delay after the first failure.
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The longest delay after `failures` failures in a row (0 = the first retry).
    pub fn ceiling(&self, failures: u32) -> Duration {
        self.base.saturating_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX)).min(self.cap)
    }

    /// Full jitter: uniformly in `[0, ceiling(failures)]`, `unit` being in `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        self.ceiling(failures).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(60) };
        let ceilings: Vec<u128> = (0..10).map(|f| b.ceiling(f).as_millis()).collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
        assert_eq!(b.ceiling(u32::MAX), b.cap);
    }

    proptest! {
        #[test]
        fn a_delay_is_never_above_its_ceiling(failures in 0u32..100, unit in -1.0f64..2.0) {
            let b = Backoff { base: Duration::from_secs(1), cap: Duration::from_secs(60) };
            prop_assert!(b.delay(failures, unit) <= b.ceiling(failures));
        }
    }
}
