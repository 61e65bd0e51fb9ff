//! The temporary trace table: `meta nftrace set 1` for the packets to trace, at the first
//! priority of the hooks every packet enters by (prerouting for received packets, output
//! for locally sent ones; the mark stays on the packet through the later hooks).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::mark::Conjunction;
use crate::rules::NFT_PROGRAM;
use crate::NftError;

/// Name prefix of trace tables; the process id follows, so that a run can tell a table
/// left by a killed run (its process is gone) from one of a run still going.
pub const TABLE_PREFIX: &str = "ct_trace_";

/// Lowest priority value: the chain runs before any other at its hook.
const FIRST_PRIORITY: i32 = i32::MIN;

/// The hooks the trace table marks at.
const HOOKS: [&str; 2] = ["prerouting", "output"];

/// A trace table installed in the calling thread's network namespace; removed by
/// [`remove`](Self::remove) (not on drop: it must run in that namespace).
#[derive(Debug)]
pub struct TraceTable {
    name: String,
}

impl TraceTable {
    /// The name of this process's table.
    pub fn own_name() -> String {
        format!("{TABLE_PREFIX}{}", std::process::id())
    }

    /// Whether `table` is a trace table (this run's or another's).
    pub fn is_trace_table(table: &str) -> bool {
        table
            .strip_prefix(TABLE_PREFIX)
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Installs the table in one transaction, marking the packets that match any of `rules`
    /// (every packet when `rules` is `None`).
    pub fn install(rules: Option<&[Conjunction]>) -> Result<TraceTable, NftError> {
        let name = Self::own_name();
        let script = table_script(&name, rules);
        run_nft(&["-f", "-"], Some(&script)).map_err(|reason| NftError::Install {
            table: name.clone(),
            reason,
        })?;
        Ok(TraceTable { name })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the table.
    pub fn remove(self) -> Result<(), NftError> {
        delete_table(&self.name)
    }
}

/// Deletes the trace tables of runs whose process is gone (killed before they could
/// clean up); returns their names.
pub fn remove_stale_tables() -> Result<Vec<String>, NftError> {
    let listing = run_nft(&["list", "tables", "inet"], None).map_err(NftError::List)?;
    let mut removed = Vec::new();
    for table in stale_tables(&listing, |pid| Path::new(&format!("/proc/{pid}")).exists()) {
        delete_table(&table)?;
        removed.push(table);
    }
    Ok(removed)
}

/// The trace tables in an `nft list tables` listing whose process is not alive.
fn stale_tables(listing: &str, alive: impl Fn(u32) -> bool) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table inet "))
        .map(str::trim)
        .filter(|name| TraceTable::is_trace_table(name))
        .filter(|name| {
            let pid = name[TABLE_PREFIX.len()..].parse().unwrap_or(0);
            pid != std::process::id() && !alive(pid)
        })
        .map(str::to_owned)
        .collect()
}

fn delete_table(name: &str) -> Result<(), NftError> {
    run_nft(&["delete", "table", "inet", name], None)
        .map(drop)
        .map_err(|reason| NftError::Remove {
            table: name.to_owned(),
            reason,
        })
}

fn table_script(name: &str, rules: Option<&[Conjunction]>) -> String {
    let mut script = format!("table inet {name} {{\n");
    for hook in HOOKS {
        script.push_str(&format!(
            "  chain {hook} {{ type filter hook {hook} priority {FIRST_PRIORITY}; policy accept; }}\n"
        ));
    }
    script.push_str("}\n");
    let everything = [Conjunction::new()];
    for hook in HOOKS {
        for rule in rules.unwrap_or(&everything) {
            let matches: String = rule.iter().map(|m| format!("{m} ")).collect();
            script.push_str(&format!(
                "add rule inet {name} {hook} {matches}meta nftrace set 1\n"
            ));
        }
    }
    script
}

/// Runs `nft` with `args`, feeding it `stdin`; its stdout, or why it failed.
fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(NFT_PROGRAM)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {NFT_PROGRAM}: {e} (install the nftables package)"))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("writing to {NFT_PROGRAM}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {NFT_PROGRAM}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{NFT_PROGRAM} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_marks_at_the_first_priority_of_each_entry_hook() {
        let rules = vec![vec!["meta l4proto 6".to_owned(), "th dport 81".to_owned()]];
        let script = table_script("ct_trace_42", Some(&rules));
        assert_eq!(
            script,
            "table inet ct_trace_42 {\n  \
             chain prerouting { type filter hook prerouting priority -2147483648; policy accept; }\n  \
             chain output { type filter hook output priority -2147483648; policy accept; }\n}\n\
             add rule inet ct_trace_42 prerouting meta l4proto 6 th dport 81 meta nftrace set 1\n\
             add rule inet ct_trace_42 output meta l4proto 6 th dport 81 meta nftrace set 1\n"
        );
        assert!(table_script("t", None).contains("add rule inet t output meta nftrace set 1\n"));
    }

    #[test]
    fn stale_tables_are_those_of_gone_processes() {
        let listing = "table inet filter\ntable inet ct_trace_100\ntable inet ct_trace_200\n\
                       table inet ct_trace_x\ntable ip ct_trace_300\n";
        assert_eq!(stale_tables(listing, |pid| pid == 200), ["ct_trace_100"]);
    }
}
