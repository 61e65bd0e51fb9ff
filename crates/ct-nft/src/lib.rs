//! nftables verdicts for ct-trace, read from nftables' own tracing, so that no kprobe is
//! needed: packets carrying the `nftrace` mark make the kernel report, for every rule
//! that decides something, an `NFT_MSG_TRACE` message to the `NFNLGRP_NFTRACE` netlink
//! group (what `nft monitor trace` prints).
//!
//! - [`NftTracer`] reads those messages in one network namespace, on a thread of its own,
//!   and optionally installs a temporary trace table that marks the packets to trace
//!   ([`Marking::Table`]); it removes the table when stopped or dropped. Where the kernel
//!   has owner tables (5.12+) the table also goes when the process ends in any other way;
//!   elsewhere the next run removes tables left by killed runs when it starts.
//! - [`NetnsTracers`] does the same in every network namespace: a reader per namespace
//!   (the trace group only reports the namespace a socket was opened in), those that
//!   exist at start and those found later ([`RESCAN_EVERY`], at most
//!   [`MAX_TRACED_NETNS`]); each step carries its namespace's inode. With
//!   [`Marking::TableWithRuleset`] a namespace gets the trace table only once it has an
//!   nftables ruleset of its own.
//! - Every `nft` run goes through [`NftProgram`]: by absolute path, in a clean
//!   environment, under a timeout.
//! - [`Joiner`] joins each step to the BPF events of the same packet (tracking ids) and
//!   turns it into a [`ct_core::Event`] with an `nft` section.
//! - [`mark_rules`] writes a packet filter as the table's marking rules.

mod bucket;
mod check;
mod counts;
mod devices;
#[cfg(test)]
mod fake_nft;
mod hook_packet;
mod join;
#[cfg(test)]
mod kernel_tests;
mod mark;
mod message;
mod netns;
mod netns_tracers;
mod nft_program;
mod owner;
mod rules;
mod socket;
mod step;
mod table;
mod table_name;
mod tracer;

pub use check::check;
pub use counts::{TracerCounters, TracerCounts};
pub use join::{Joiner, MAX_PACKET_KEYS, MAX_TRACE_IDS, MAX_WAITING_STEPS, WAIT_FOR_PACKET};
pub use mark::{mark_rules, Conjunction, MAX_MARK_RULES};
pub use message::{parse_datagram, parse_trace, MessageError, TraceMessage};
pub use netns::find_netns;
pub use netns_tracers::{NetnsTracers, MAX_TRACED_NETNS, RESCAN_EVERY};
pub use nft_program::{NftProgram, NftRunError, CLEAN_PATH, NFT_DIRS, NFT_PROGRAM, NFT_TIMEOUT};
pub use rules::{is_plain_identifier, parse_listing, RuleTexts};
pub use step::TraceStep;
pub use table::{remove_stale_tables, remove_stale_tables_with, TraceTable};
pub use table_name::{new_table_name, parse_table_name, TableRun, TABLE_PREFIX};
pub use tracer::{Marking, NetnsChange, NftTracer, Started, TracerEvent, QUEUE_STEPS};

use std::io;
use std::path::PathBuf;

/// What went wrong with nftables tracing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NftError {
    #[error("cannot enter network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "network namespace inode {0}: no /var/run/netns/NAME or /proc/PID/ns/net names it; \
         give its path or `ip netns` name to trace its nftables rules"
    )]
    NetnsNotFound(u32),
    #[error(
        "cannot listen to nftables traces (netlink group NFNLGRP_NFTRACE): {0}; this needs \
         root (CAP_NET_ADMIN) and nf_tables (modprobe nf_tables)"
    )]
    Listen(#[source] io::Error),
    #[error("reading nftables traces failed: {0}")]
    Receive(#[source] io::Error),
    #[error("cannot install the trace table {table}: {reason}")]
    Install { table: String, reason: String },
    #[error("cannot remove the trace table {table}: {reason}; remove it with `nft delete table inet {table}`")]
    Remove { table: String, reason: String },
    #[error("cannot list the nftables tables: {0}")]
    List(String),
    #[error("the nftables trace thread ended unexpectedly")]
    ThreadGone,
}
