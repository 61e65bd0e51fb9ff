//! The temporary trace table: `meta nftrace set 1` for the packets to trace, at the first
//! priority of the hooks every packet enters by (prerouting for received packets, output
//! for locally sent ones; the mark stays on the packet through the later hooks).
//!
//! Where the kernel has owner tables (Linux 5.12+), the table belongs to a long-lived
//! `nft -i` ([`OwnerSession`]) and disappears with it, however this process ends; elsewhere
//! (found by trying) it is a plain table, removed at stop or by the next run
//! ([`remove_stale_tables`]). Names: see [`TABLE_PREFIX`](crate::TABLE_PREFIX).

use std::path::Path;

use crate::mark::Conjunction;
use crate::nft_program::{NftProgram, NftRunError};
use crate::owner::OwnerSession;
use crate::table_name::{
    made_by_old_run, new_table_name, own_pid_namespace, parse_table_name, Judge, FIRST_PRIORITY,
    HOOKS,
};
use crate::NftError;

/// A trace table installed in the calling thread's network namespace; removed by
/// [`remove`](Self::remove), or when dropped (on the thread that installed it: it must run
/// in that namespace).
#[derive(Debug)]
pub struct TraceTable {
    name: String,
    /// `None` once removed.
    holder: Option<Holder>,
}

/// What keeps the table, and removes it.
#[derive(Debug)]
enum Holder {
    /// The owner table's `nft -i`: the table goes when it ends.
    Owner(OwnerSession),
    /// A plain table, deleted with this program.
    Plain(NftProgram),
}

impl TraceTable {
    /// Whether `table` is a trace table (this run's or another's, of any version).
    pub fn is_trace_table(table: &str) -> bool {
        parse_table_name(table).is_some()
    }

    /// Installs the table in one transaction under a new unpredictable name, marking the
    /// packets that match any of `rules` (every packet when `rules` is `None`). It is an
    /// owner table when the kernel has them.
    pub fn install(rules: Option<&[Conjunction]>) -> Result<TraceTable, NftError> {
        let program = NftProgram::system().map_err(|err| NftError::Install {
            table: crate::TABLE_PREFIX.to_owned(),
            reason: err.to_string(),
        })?;
        Self::install_with(&program, rules)
    }

    /// [`install`](Self::install) with `program`.
    pub fn install_with(
        program: &NftProgram,
        rules: Option<&[Conjunction]>,
    ) -> Result<TraceTable, NftError> {
        let name = new_table_name().map_err(|err| NftError::Install {
            table: crate::TABLE_PREFIX.to_owned(),
            reason: format!("cannot make its name (/proc/self/ns/pid, /dev/urandom): {err}"),
        })?;
        Self::install_named(program, name, rules)
    }

    /// Installs the table as `name`; fails when a table of that name exists.
    pub(crate) fn install_named(
        program: &NftProgram,
        name: String,
        rules: Option<&[Conjunction]>,
    ) -> Result<TraceTable, NftError> {
        let install_error = |reason: String| NftError::Install {
            table: name.clone(),
            reason,
        };
        let owned = table_commands(&name, true, rules).map_err(install_error)?;
        let owner_refused = match install_owned(program, &owned) {
            Ok(session) => {
                return Ok(TraceTable {
                    name,
                    holder: Some(Holder::Owner(session)),
                })
            }
            Err(err) => err,
        };
        // No owner tables here (before Linux 5.12, or an nft without `flags owner`): a
        // plain table, which the next run removes if this one is killed.
        let plain = table_commands(&name, false, rules).map_err(install_error)?;
        program
            .run(&["-f", "-"], Some(&(plain.join("\n") + "\n")))
            .map_err(|err| {
                install_error(format!(
                    "{err} (as an owner table, it failed too: {owner_refused})"
                ))
            })?;
        Ok(TraceTable {
            name,
            holder: Some(Holder::Plain(program.clone())),
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the table is an owner table (gone with its `nft -i` whatever happens).
    pub fn is_owned(&self) -> bool {
        matches!(self.holder, Some(Holder::Owner(_)))
    }

    /// Deletes the table.
    pub fn remove(mut self) -> Result<(), NftError> {
        self.remove_now()
    }

    fn remove_now(&mut self) -> Result<(), NftError> {
        let removed = match self.holder.take() {
            None => return Ok(()),
            Some(Holder::Owner(session)) => session.end(),
            Some(Holder::Plain(program)) => delete_table(&program, &self.name),
        };
        removed.map_err(|err| NftError::Remove {
            table: self.name.clone(),
            reason: err.to_string(),
        })
    }
}

impl Drop for TraceTable {
    fn drop(&mut self) {
        let _ = self.remove_now();
    }
}

/// Starts the owner session and creates the table through it.
fn install_owned(program: &NftProgram, commands: &[String]) -> Result<OwnerSession, NftRunError> {
    let mut session = OwnerSession::start(program)?;
    match session.run(&commands.join("; ")) {
        Ok(()) => Ok(session),
        Err(err) => {
            let _ = session.end();
            Err(err)
        }
    }
}

/// Deletes the trace tables of runs whose process is gone (killed before they could
/// clean up); returns their names. Which ones: see [`TABLE_PREFIX`](crate::TABLE_PREFIX).
pub fn remove_stale_tables() -> Result<Vec<String>, NftError> {
    let program = NftProgram::system().map_err(|err| NftError::List(err.to_string()))?;
    remove_stale_tables_with(&program)
}

/// [`remove_stale_tables`] with `program`.
pub fn remove_stale_tables_with(program: &NftProgram) -> Result<Vec<String>, NftError> {
    let listing = program
        .run(&["list", "tables", "inet"], None)
        .map_err(|err| NftError::List(err.to_string()))?;
    let judge = Judge {
        pid_namespace: own_pid_namespace().map_err(|err| {
            NftError::List(format!(
                "cannot tell this process's PID namespace (/proc/self/ns/pid): {err}"
            ))
        })?,
        pid: std::process::id(),
    };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let mut removed = Vec::new();
    for name in listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table inet "))
        .map(str::trim)
    {
        let Some(run) = parse_table_name(name) else {
            continue;
        };
        let shaped_as_old = || {
            program
                .run(&["-s", "list", "table", "inet", name], None)
                .is_ok_and(|table| made_by_old_run(&table))
        };
        if judge.is_stale(run, alive, shaped_as_old) {
            delete_table(program, name).map_err(|err| NftError::Remove {
                table: name.to_owned(),
                reason: err.to_string(),
            })?;
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

/// Whether the namespace `program` runs in has an nftables ruleset: a table of any family
/// other than a trace table (iptables-nft's tables count).
pub(crate) fn has_ruleset(program: &NftProgram) -> Result<bool, NftError> {
    let listing = program
        .run(&["list", "tables"], None)
        .map_err(|err| NftError::List(err.to_string()))?;
    let has = table_names(&listing).any(|name| !TraceTable::is_trace_table(name));
    Ok(has)
}

/// The names in `nft list tables` output (`table FAMILY NAME` lines).
fn table_names(listing: &str) -> impl Iterator<Item = &str> {
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("table "))
        .filter_map(|rest| rest.split_whitespace().nth(1))
}

fn delete_table(program: &NftProgram, name: &str) -> Result<(), NftRunError> {
    program
        .run(&["delete", "table", "inet", name], None)
        .map(drop)
}

/// The commands that install the table, one transaction whether joined by `; ` (one line
/// of `nft -i`) or by lines (`nft -f`). `create`: fails when the name exists, never adds
/// to someone else's table.
fn table_commands(
    name: &str,
    owned: bool,
    rules: Option<&[Conjunction]>,
) -> Result<Vec<String>, String> {
    let flags = if owned { " { flags owner; }" } else { "" };
    let mut commands = vec![format!("create table inet {name}{flags}")];
    for hook in HOOKS {
        commands.push(format!(
            "add chain inet {name} {hook} {{ type filter hook {hook} priority {FIRST_PRIORITY}; policy accept; }}"
        ));
    }
    let everything = [Conjunction::new()];
    for hook in HOOKS {
        for rule in rules.unwrap_or(&everything) {
            let matches: String = rule.iter().map(|m| format!("{m} ")).collect();
            if matches.contains(['\n', '\r']) {
                return Err(format!("a marking rule holds a line break: {matches:?}"));
            }
            commands.push(format!(
                "add rule inet {name} {hook} {matches}meta nftrace set 1"
            ));
        }
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commands_create_and_mark_at_the_first_priority_of_each_entry_hook() {
        let rules = vec![vec!["meta l4proto 6".to_owned(), "th dport 81".to_owned()]];
        let commands = table_commands("ct_trace_42", false, Some(&rules)).unwrap();
        assert_eq!(
            commands.join("\n"),
            "create table inet ct_trace_42\n\
             add chain inet ct_trace_42 prerouting { type filter hook prerouting priority -2147483648; policy accept; }\n\
             add chain inet ct_trace_42 output { type filter hook output priority -2147483648; policy accept; }\n\
             add rule inet ct_trace_42 prerouting meta l4proto 6 th dport 81 meta nftrace set 1\n\
             add rule inet ct_trace_42 output meta l4proto 6 th dport 81 meta nftrace set 1"
        );
        let owned = table_commands("t", true, None).unwrap();
        assert_eq!(owned[0], "create table inet t { flags owner; }");
        assert!(owned.contains(&"add rule inet t output meta nftrace set 1".to_owned()));
    }

    #[test]
    fn table_names_are_read_from_every_family() {
        let listing = "table ip nat\ntable inet ct_trace_x\ntable bridge b\n";
        assert_eq!(
            table_names(listing).collect::<Vec<_>>(),
            ["nat", "ct_trace_x", "b"]
        );
        assert_eq!(table_names("").count(), 0);
    }

    #[test]
    fn a_rule_with_a_line_break_is_refused() {
        let rules = vec![vec!["meta l4proto 6\nflush ruleset".to_owned()]];
        assert!(table_commands("t", true, Some(&rules)).is_err());
    }
}
