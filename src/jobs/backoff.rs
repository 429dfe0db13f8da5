//! Exponential backoff with jitter between attempts of a failed job.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt (before jitter).
    pub base: Duration,
    /// Longest delay between two attempts.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The nominal delay after `attempt` (from 1) failed: base, 2×base, 4×base, … capped at `max`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay to wait: between half and all of the nominal delay ("equal jitter"),
    /// so that jobs that failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        let half = nominal / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_until_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.nominal(1), Duration::from_secs(2));
        assert_eq!(b.nominal(2), Duration::from_secs(4));
        assert_eq!(b.nominal(4), Duration::from_secs(16));
        assert_eq!(b.nominal(5), Duration::from_secs(30));
        assert_eq!(b.nominal(500), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        let b = Backoff {
            base: Duration::from_millis(800),
            max: Duration::from_secs(60),
        };
        let delays: Vec<_> = (0..200).map(|_| b.delay(3)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(1600) && *d <= Duration::from_millis(3200))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 10, "delays are spread out, not fixed");
    }
}
