//! Names of the devices a trace step gives by index (`NFTA_TRACE_IIF`/`OIF`), read by the
//! reader thread in the traced network namespace as the step arrives, so that the name is
//! the one the index had there and then.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ct_core::FixedStr;

/// How long a name read is reused: devices are renamed or replaced rarely, and a flood of
/// steps should not cost a system call each.
const NAME_LIFETIME: Duration = Duration::from_secs(1);
/// Most indexes remembered; beyond, the cache starts over.
const MAX_NAMES: usize = 1024;

/// Reads device names by index in the calling thread's network namespace.
#[derive(Debug, Default)]
pub(crate) struct DeviceNames {
    /// Index -> name (`None`: no such device) and when it was read.
    cache: HashMap<u32, (Option<FixedStr>, Instant)>,
}

impl DeviceNames {
    /// The name of device `ifindex` now, if it exists.
    pub(crate) fn name(&mut self, ifindex: u32, now: Instant) -> Option<FixedStr> {
        if let Some((name, at)) = self.cache.get(&ifindex) {
            if now.saturating_duration_since(*at) < NAME_LIFETIME {
                return *name;
            }
        }
        if self.cache.len() >= MAX_NAMES {
            self.cache.clear();
        }
        let name = index_to_name(ifindex);
        self.cache.insert(ifindex, (name, now));
        name
    }
}

/// `if_indextoname(3)` in the calling thread's network namespace.
fn index_to_name(ifindex: u32) -> Option<FixedStr> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes the call may write, NUL included.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    (!name.is_null()).then(|| FixedStr::from_kernel(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_named_and_a_missing_index_is_not() {
        let mut names = DeviceNames::default();
        let now = Instant::now();
        // Index 1 is `lo` in every network namespace.
        assert_eq!(names.name(1, now).map(|n| n.to_string()), Some("lo".into()));
        assert_eq!(names.name(u32::MAX - 7, now), None);
        // Cached: the same answer without asking again.
        assert_eq!(names.cache.len(), 2);
        assert_eq!(names.name(1, now).map(|n| n.to_string()), Some("lo".into()));
    }
}
