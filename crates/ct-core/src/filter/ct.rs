//! Conntrack filters: state, mark, zone, status bits, NAT.

use super::{parse_number, OptionValueError};
use crate::{CtEvent, CtState, CtStatus};

/// Conntrack filters; every one that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtFilter {
    /// Any of these states (`--ct-state new,established`).
    pub states: Option<Vec<CtState>>,
    /// `(value, mask)`: `mark & mask == value & mask` (`--ct-mark 0x2a/0xff`).
    pub mark: Option<(u32, u32)>,
    /// Zone id (`--ct-zone 7`).
    pub zone: Option<u16>,
    /// All of these status bits (`--ct-status src_nat,assured`).
    pub status: Option<CtStatus>,
    /// Any NAT (`--ct-nat`): SRC_NAT or DST_NAT.
    pub nat: bool,
}

impl CtFilter {
    /// Whether no conntrack filter is set.
    pub fn is_empty(&self) -> bool {
        *self == CtFilter::default()
    }

    /// Parses `new,established,...`.
    pub fn parse_states(s: &str) -> Result<Vec<CtState>, OptionValueError> {
        s.split(',')
            .map(|w| {
                w.trim()
                    .parse::<CtState>()
                    .map_err(|_| OptionValueError::CtState(w.to_owned()))
            })
            .collect()
    }

    /// Parses `V` or `V/MASK` (decimal or hex).
    pub fn parse_mark(s: &str) -> Result<(u32, u32), OptionValueError> {
        let num = |t: &str| {
            parse_number(t.trim())
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| OptionValueError::Mark(t.to_owned()))
        };
        match s.split_once('/') {
            Some((v, m)) => Ok((num(v)?, num(m)?)),
            None => Ok((num(s)?, u32::MAX)),
        }
    }

    /// Parses `src_nat,assured` (names of `CtStatus` bits, any case, `IPS_` optional).
    pub fn parse_status(s: &str) -> Result<CtStatus, OptionValueError> {
        s.split(',').try_fold(CtStatus::empty(), |acc, w| {
            CtStatus::from_bit_name(w).map(|b| acc | b).ok_or_else(|| {
                let names: Vec<&str> = CtStatus::all().iter_names().map(|(n, _)| n).collect();
                OptionValueError::StatusBit {
                    name: w.to_owned(),
                    known: names.join(", ").to_lowercase(),
                }
            })
        })
    }

    /// Evaluates on an event's ct section. A packet without conntrack data matches no
    /// set filter.
    pub fn matches(&self, ct: Option<&CtEvent>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(ct) = ct else {
            return false;
        };
        if let Some(states) = &self.states {
            if !states.contains(&ct.state) {
                return false;
            }
        }
        let needs_conn =
            self.mark.is_some() || self.zone.is_some() || self.status.is_some() || self.nat;
        if !needs_conn {
            return true;
        }
        let Some(base) = &ct.base else {
            return false;
        };
        if let Some((value, mask)) = self.mark {
            match base.mark {
                Some(m) if m & mask == value & mask => {}
                _ => return false,
            }
        }
        if let Some(zone) = self.zone {
            if base.zone_id != zone {
                return false;
            }
        }
        if let Some(bits) = self.status {
            if !base.ct_status.contains(bits) {
                return false;
            }
        }
        if self.nat && !base.ct_status.intersects(CtStatus::NAT_MASK) {
            return false;
        }
        true
    }
}
