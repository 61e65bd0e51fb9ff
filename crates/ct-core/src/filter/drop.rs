//! Drop filters: drops only, and drop reasons.

use super::OptionValueError;

/// Drop filters (`--drops`, `--drop-reason NAME[,NAME]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropFilter {
    /// Only drops ([`Event::is_drop`](crate::Event::is_drop)).
    pub only_drops: bool,
    /// Only drops with one of these reasons (implies `only_drops`): names as events carry
    /// them, upper case, without the `SKB_DROP_REASON_` prefix ([`DropFilter::parse_reasons`]
    /// normalizes them).
    pub reasons: Option<Vec<String>>,
}

/// The prefix of the kernel's `enum skb_drop_reason` names, left out of events.
pub const DROP_REASON_PREFIX: &str = "SKB_DROP_REASON_";

impl DropFilter {
    /// Whether no drop filter is set.
    pub fn is_empty(&self) -> bool {
        !self.only_drops && self.reasons.is_none()
    }

    /// Parses `NETFILTER_DROP,no_socket,...`: any case, the `SKB_DROP_REASON_` prefix
    /// optional. Names are not checked here (a file may hold any); the collector checks
    /// them against the running kernel.
    pub fn parse_reasons(s: &str) -> Result<Vec<String>, OptionValueError> {
        s.split(',')
            .map(|w| {
                let w = w.trim().to_ascii_uppercase();
                let name = w.strip_prefix(DROP_REASON_PREFIX).unwrap_or(&w);
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(OptionValueError::DropReason(w));
                }
                Ok(name.to_owned())
            })
            .collect()
    }

    /// Evaluates on an event: with `reasons`, only drops carrying one of them match (a drop
    /// without a reason does not).
    pub fn matches(&self, event: &crate::Event) -> bool {
        if self.is_empty() {
            return true;
        }
        if !event.is_drop() {
            return false;
        }
        match &self.reasons {
            None => true,
            Some(reasons) => event
                .drop
                .as_ref()
                .and_then(|d| d.reason.as_deref())
                .is_some_and(|r| reasons.iter().any(|w| w == r)),
        }
    }
}
