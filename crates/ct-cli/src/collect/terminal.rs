//! What `collect` says on stderr while it runs: the live status line and the rate limit
//! of repeated reports.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use super::{Stats, DECODE_ERRORS_PER_SECOND};

/// The live status line on a terminal's stderr.
pub(super) struct Status {
    enabled: bool,
    shown: bool,
}

impl Status {
    pub(super) fn new(enabled: bool) -> Self {
        Status {
            enabled,
            shown: false,
        }
    }

    pub(super) fn show(&mut self, elapsed: Duration, stats: Stats, lost: u64) {
        if !self.enabled {
            return;
        }
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Kct-cli: {:.1} s: {} events ({} with conntrack), {lost} lost",
            elapsed.as_secs_f64(),
            stats.events,
            stats.with_ct,
        );
        if stats.decode_errors > 0 {
            let _ = write!(err, ", {} undecodable", stats.decode_errors);
        }
        let _ = err.flush();
        self.shown = true;
    }

    pub(super) fn clear(&mut self) {
        if self.shown {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }
}

/// Lets a few reports through per second and counts the rest.
#[derive(Debug, Default)]
pub(super) struct RateLimit {
    window: Option<Instant>,
    shown: u32,
    suppressed: u64,
}

impl RateLimit {
    pub(super) fn allow(&mut self, now: Instant) -> bool {
        if self
            .window
            .is_none_or(|w| now - w >= Duration::from_secs(1))
        {
            self.window = Some(now);
            self.shown = 0;
        }
        if self.shown < DECODE_ERRORS_PER_SECOND {
            self.shown += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// The count of reports held back, once their second is over.
    pub(super) fn take_suppressed(&mut self, now: Instant) -> Option<u64> {
        let over = self
            .window
            .is_some_and(|w| now - w >= Duration::from_secs(1));
        (self.suppressed > 0 && over).then(|| std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_holds_back() {
        let mut r = RateLimit::default();
        let t = Instant::now();
        let shown = (0..12).filter(|_| r.allow(t)).count();
        assert_eq!(shown, DECODE_ERRORS_PER_SECOND as usize);
        assert_eq!(r.take_suppressed(t), None);
        let later = t + Duration::from_secs(1);
        assert_eq!(r.take_suppressed(later), Some(7));
        assert!(r.allow(later));
    }
}
