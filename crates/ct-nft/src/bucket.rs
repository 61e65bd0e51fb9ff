//! A token bucket: at most a burst at once, then a steady rate; the clock is the caller's,
//! so that tests can drive it.

use std::time::{Duration, Instant};

/// Allows `burst` takes at once and then one every `every`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    burst: u32,
    every: Duration,
    /// Whole tokens available at `since`.
    tokens: u32,
    /// When `tokens` was last brought up to date; `None` before the first take (the
    /// bucket starts full).
    since: Option<Instant>,
}

impl TokenBucket {
    pub(crate) fn new(burst: u32, every: Duration) -> Self {
        TokenBucket {
            burst,
            every,
            tokens: burst,
            since: None,
        }
    }

    /// Takes a token at `now`: `false` when none is left. A `now` earlier than the last
    /// one adds nothing.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let since = *self.since.get_or_insert(now);
        if !self.every.is_zero() && now > since {
            let elapsed = now.duration_since(since);
            let earned = elapsed.as_nanos() / self.every.as_nanos();
            if earned > 0 {
                let earned = u32::try_from(earned).unwrap_or(u32::MAX);
                self.tokens = self.tokens.saturating_add(earned).min(self.burst);
                // Below the burst, the part of an interval not yet earned counts toward
                // the next token (`earned` is then under the burst: no overflow).
                self.since = Some(if self.tokens == self.burst {
                    now
                } else {
                    since + self.every * earned
                });
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, Duration::from_millis(100));
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0));
        assert!(!bucket.take(t0 + Duration::from_millis(99)));
        assert!(bucket.take(t0 + Duration::from_millis(100)));
        assert!(!bucket.take(t0 + Duration::from_millis(150)));
        // The 50 ms already waited count toward the next token.
        assert!(bucket.take(t0 + Duration::from_millis(200)));
        // A long pause refills to the burst, no further.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }

    #[test]
    fn at_most_the_rate_over_a_long_run() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(4, Duration::from_millis(125));
        // Ten seconds of a take every millisecond.
        let taken = (0..10_000u64)
            .filter(|&ms| bucket.take(t0 + Duration::from_millis(ms)))
            .count();
        // The burst, then eight a second (the first 10 s give 79 more: 9.999 s / 125 ms).
        assert_eq!(taken, 4 + 79);
    }

    #[test]
    fn time_going_back_earns_nothing() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut bucket = TokenBucket::new(1, Duration::from_millis(100));
        assert!(bucket.take(t0));
        assert!(!bucket.take(t0 - Duration::from_millis(500)));
        assert!(!bucket.take(t0 + Duration::from_millis(50)));
    }
}
