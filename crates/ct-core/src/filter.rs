//! Filters: one language, one parser, two evaluators.
//!
//! - [`PacketFilter`]: a pcap-filter subset (`tcp port 443`, `host 10.0.0.1`,
//!   `src net 10.0.0.0/8 and not icmp`). It evaluates on an event's packet section here,
//!   and compiles to a [`Program`] of tests with forward jumps, which the BPF program runs
//!   on the packet before an event is reserved (`ct-bpf` checks that it fits there).
//! - [`CtFilter`]: conntrack state, mark, zone, status bits, NAT.
//! - [`DropFilter`]: drops only, and drop reasons (`--drops`, `--drop-reason`).
//!
//! The compiled program has its own interpreter ([`Program::matches`]) so tests can hold
//! the AST evaluator, the compiled form and the kernel to the same decisions.

//! One file per job: `lexer` and `parser` read the packet filter language into the
//! tree of `packet`, which evaluates it; `compile` turns the tree into the kernel's form;
//! `ct` and `drop` are the conntrack and drop filters, `event` puts them together.

mod compile;
mod ct;
mod drop;
mod error;
mod event;
mod follow;
mod lexer;
mod packet;
mod parser;
#[cfg(test)]
mod tests;

pub use compile::{Insn, Program, Target};
pub use ct::CtFilter;
pub use drop::{DropFilter, DROP_REASON_PREFIX};
pub use error::{FilterError, OptionValueError};
pub use event::EventFilter;
pub use follow::Follow;
pub use packet::{Dir, Expr, PacketFilter, PacketView, Test};

pub use parser::parse_number;
