//! What the trace reader refused or could not do, counted for the caller's summary: the
//! reader runs on its own thread, so the counts are shared atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// The reader's counters; [`NftTracer::counters`](crate::NftTracer::counters) hands out a
/// shared reference that stays valid after the tracer stops.
#[derive(Debug, Default)]
pub struct TracerCounters {
    not_from_kernel: AtomicU64,
    names_refused: AtomicU64,
    lookups_limited: AtomicU64,
    chain_ends: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracerCounts {
    /// Datagrams on the trace group sent by a process rather than the kernel, ignored.
    pub not_from_kernel: u64,
    /// Steps whose table or chain name is no plain nftables identifier: their rule text
    /// was not looked up (the name never reaches `nft`'s command line).
    pub names_refused: u64,
    /// Steps whose rule text was not looked up because `nft` had been run as often as
    /// the rate limit allows.
    pub lookups_limited: u64,
    /// Messages of the rule type without a rule: the kernel's note that a chain's rules
    /// ran out (before a base chain's policy, or back from a regular chain to its caller).
    /// They name no rule and decide nothing; `nft monitor trace` does not print them
    /// either, so they are counted, not written.
    pub chain_ends: u64,
}

impl TracerCounters {
    /// The counts now.
    pub fn snapshot(&self) -> TracerCounts {
        TracerCounts {
            not_from_kernel: self.not_from_kernel.load(Ordering::Relaxed),
            names_refused: self.names_refused.load(Ordering::Relaxed),
            lookups_limited: self.lookups_limited.load(Ordering::Relaxed),
            chain_ends: self.chain_ends.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_chain_end(&self) {
        self.chain_ends.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_not_from_kernel(&self) {
        self.not_from_kernel.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds rule-text look-ups skipped since a reader last published its counts (each
    /// reader keeps its own in its [`RuleTexts`](crate::RuleTexts); the readers of
    /// several namespaces share these counters).
    pub(crate) fn add_lookups(&self, names_refused: u64, lookups_limited: u64) {
        self.names_refused
            .fetch_add(names_refused, Ordering::Relaxed);
        self.lookups_limited
            .fetch_add(lookups_limited, Ordering::Relaxed);
    }
}
