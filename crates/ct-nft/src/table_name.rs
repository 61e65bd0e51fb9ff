//! Trace table names, and which tables a new run may remove as left by killed runs.
//!
//! A name is `ct_trace_<pid namespace inode>_<pid>_<16 random hex digits>`:
//! - the random part makes it unpredictable, so that nobody in the traced namespace can
//!   create a table of that name first for ct-cli to fill (it is installed with `create
//!   table`, which fails on an existing name anyway);
//! - the PID namespace says in which namespace the PID means something: a run removes
//!   only tables of its own PID namespace whose process is gone, never those of runs in
//!   other PID namespaces (a container's ct-cli), whose PIDs it cannot judge.
//!
//! Older runs named their table `ct_trace_<pid>`. Such a name says nothing of its PID
//! namespace, so a gone PID proves little; it is removed only when that PID is gone here
//! AND the table is exactly what those runs installed (the chains `prerouting` and
//! `output` at the first priority, every rule ending in `meta nftrace set 1`): a table of
//! that name a namespace owner made for themselves stays. What stays possible: an older
//! ct-cli still running in another PID namespace loses its table (it would have to be
//! tracing this very network namespace; new runs never have this problem).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

/// Name prefix of trace tables: `ct_trace_<pid namespace inode>_<pid>_<16 random hex
/// digits>` (`ct_trace_<pid>` from older versions). A run removes as stale only tables of
/// its own PID namespace whose process is gone, and old-form ones whose PID is gone and
/// that hold exactly what older runs installed (the reasons are in this module's source
/// documentation, `table_name.rs`).
pub const TABLE_PREFIX: &str = "ct_trace_";

/// The lowest priority value, the one the trace table's chains are at.
pub(crate) const FIRST_PRIORITY: i32 = i32::MIN;

/// The hooks the trace table marks at.
pub(crate) const HOOKS: [&str; 2] = ["prerouting", "output"];

/// What a trace table's name says about the run that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableRun {
    /// `ct_trace_<pidns>_<pid>_<random>`.
    Current { pid_namespace: u64, pid: u32 },
    /// `ct_trace_<pid>`, from runs before the PID namespace was in the name.
    Old { pid: u32 },
}

/// The run a trace table's name tells of; `None` for names that are not trace tables'.
pub fn parse_table_name(name: &str) -> Option<TableRun> {
    let rest = name.strip_prefix(TABLE_PREFIX)?;
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = rest.split('_').collect();
    match parts[..] {
        [pid] if decimal(pid) => Some(TableRun::Old {
            pid: pid.parse().ok()?,
        }),
        [pid_namespace, pid, random]
            if decimal(pid_namespace)
                && decimal(pid)
                && random.len() == 16
                && random.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some(TableRun::Current {
                pid_namespace: pid_namespace.parse().ok()?,
                pid: pid.parse().ok()?,
            })
        }
        _ => None,
    }
}

/// A new name for this process's table.
pub fn new_table_name() -> io::Result<String> {
    Ok(format_table_name(
        own_pid_namespace()?,
        std::process::id(),
        random_u64()?,
    ))
}

fn format_table_name(pid_namespace: u64, pid: u32, random: u64) -> String {
    format!("{TABLE_PREFIX}{pid_namespace}_{pid}_{random:016x}")
}

/// The inode of this process's PID namespace.
pub(crate) fn own_pid_namespace() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/pid")?.ino())
}

fn random_u64() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

/// This process, as stale-table judgement sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judge {
    pub(crate) pid_namespace: u64,
    pub(crate) pid: u32,
}

impl Judge {
    /// Whether the table of `run` is left by a killed run and may be removed: of this PID
    /// namespace and its process gone (`alive` tells, in this PID namespace); for old
    /// names also `made_by_old_run` (asked only then: it lists the table).
    pub(crate) fn is_stale(
        &self,
        run: TableRun,
        alive: impl Fn(u32) -> bool,
        made_by_old_run: impl FnOnce() -> bool,
    ) -> bool {
        match run {
            TableRun::Current { pid_namespace, pid } => {
                pid_namespace == self.pid_namespace && pid != self.pid && !alive(pid)
            }
            TableRun::Old { pid } => pid != self.pid && !alive(pid) && made_by_old_run(),
        }
    }
}

/// Whether an `nft -s list table inet NAME` listing is what older runs installed: only the
/// chains of [`HOOKS`] at [`FIRST_PRIORITY`], whose rules all set the trace mark.
pub(crate) fn made_by_old_run(listing: &str) -> bool {
    let mut chains = Vec::new();
    let mut lines = listing.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return false;
    };
    if !(first.starts_with("table inet ") && first.ends_with('{')) {
        return false;
    }
    for line in lines {
        let known = if let Some(chain) = line
            .strip_prefix("chain ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            chains.push(chain.to_owned());
            HOOKS.contains(&chain)
        } else {
            line == "}"
                || line.ends_with("meta nftrace set 1")
                || HOOKS.iter().any(|hook| {
                    line == format!(
                        "type filter hook {hook} priority {FIRST_PRIORITY}; policy accept;"
                    )
                })
        };
        if !known {
            return false;
        }
    }
    chains.sort_unstable();
    chains == ["output", "prerouting"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_pid_namespace_pid_and_random_part() {
        let name = format_table_name(4026531836, 42, 0xdead_beef);
        assert_eq!(name, "ct_trace_4026531836_42_00000000deadbeef");
        assert_eq!(
            parse_table_name(&name),
            Some(TableRun::Current {
                pid_namespace: 4026531836,
                pid: 42
            })
        );
        let own = new_table_name().unwrap();
        let Some(TableRun::Current { pid_namespace, pid }) = parse_table_name(&own) else {
            panic!("{own} does not parse");
        };
        assert_eq!(pid, std::process::id());
        assert_eq!(pid_namespace, own_pid_namespace().unwrap());
    }

    #[test]
    fn names_are_unpredictable() {
        let names: std::collections::HashSet<String> =
            (0..64).map(|_| new_table_name().unwrap()).collect();
        assert_eq!(names.len(), 64, "{names:?}");
    }

    #[test]
    fn old_names_and_other_tables() {
        assert_eq!(
            parse_table_name("ct_trace_100"),
            Some(TableRun::Old { pid: 100 })
        );
        for other in [
            "filter",
            "ct_trace_",
            "ct_trace_x",
            "ct_trace_1_2",
            "ct_trace_1_2_3",
            "ct_trace_1_2_00000000deadbeeg",
            "ct_trace_1_2_00000000deadbeef_4",
            "ct_trace_99999999999",
        ] {
            assert_eq!(parse_table_name(other), None, "{other}");
        }
    }

    const JUDGE: Judge = Judge {
        pid_namespace: 7,
        pid: 10,
    };

    #[test]
    fn only_gone_runs_of_the_same_pid_namespace_are_stale() {
        let alive = |pid| pid == 200;
        let never = || panic!("only old names are listed");
        let run = |pid_namespace, pid| TableRun::Current { pid_namespace, pid };
        assert!(JUDGE.is_stale(run(7, 100), alive, never));
        assert!(!JUDGE.is_stale(run(7, 200), alive, never), "alive");
        assert!(!JUDGE.is_stale(run(7, 10), alive, never), "our own");
        assert!(
            !JUDGE.is_stale(run(8, 100), alive, never),
            "another PID namespace: its PID 100 is not ours to judge"
        );
    }

    #[test]
    fn old_names_are_stale_only_when_gone_and_shaped_as_old_runs_made_them() {
        let alive = |pid| pid == 200;
        let old = |pid| TableRun::Old { pid };
        assert!(JUDGE.is_stale(old(100), alive, || true));
        assert!(!JUDGE.is_stale(old(100), alive, || false), "someone's own");
        assert!(!JUDGE.is_stale(old(200), alive, || true), "alive");
    }

    #[test]
    fn the_old_runs_table_shape() {
        let old = "table inet ct_trace_42 {\n\
            \tchain prerouting {\n\
            \t\ttype filter hook prerouting priority -2147483648; policy accept;\n\
            \t\tmeta l4proto icmp meta nftrace set 1\n\
            \t}\n\
            \tchain output {\n\
            \t\ttype filter hook output priority -2147483648; policy accept;\n\
            \t\tmeta l4proto icmp meta nftrace set 1\n\
            \t}\n\
            }\n";
        assert!(made_by_old_run(old));
        assert!(!made_by_old_run(&old.replace("nftrace set 1", "accept")));
        assert!(!made_by_old_run(&old.replace("-2147483648", "0")));
        assert!(!made_by_old_run(
            &old.replace("chain output", "chain forward")
        ));
        let one_chain: String = old
            .lines()
            .take(5)
            .chain(["}"])
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!made_by_old_run(&one_chain));
        assert!(!made_by_old_run(""));
    }
}
