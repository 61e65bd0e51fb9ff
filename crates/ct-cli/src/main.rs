//! ct-cli: show what netfilter conntrack knows about every packet at an eBPF probe.
//!
//! The binary only wires `ct_bpf` (probes, collector, checks) to `ct_core` (events, JSON
//! Lines, text layouts); see `ct-cli --help` for the commands and exit codes.

// The argument doc comments are clap's help text, written for the terminal (`[:MASK]`,
// `[FIELD...]`), not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod cli;
mod collect;
mod command;
mod docs;
mod exit;
mod filter;
mod nft;
mod output;
mod pcap;
mod print;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // Usage errors exit with code 2 (exit::USAGE), --help and --version with 0.
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Collect(args) => collect::run(args),
        Command::Print(args) => print::run(args),
        Command::Sort(args) => print::sort(args),
        Command::Conns(args) => print::conns(args),
        Command::Pcap(args) => pcap::run(args),
        Command::Check => Ok(check()),
        Command::Completions { shell } => docs::completions(*shell),
        Command::Man { command } => docs::man(command.as_deref()),
    };
    result.unwrap_or_else(|err| exit::report(&err))
}

/// `ct-cli check`: the prerequisite report; exit 0 when collection can run, 4 otherwise.
fn check() -> ExitCode {
    let mut report = ct_bpf::check();
    report.items.push(ct_nft::check());
    println!("{report}");
    if report.ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::PREREQUISITES)
    }
}
