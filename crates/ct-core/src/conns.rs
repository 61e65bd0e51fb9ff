//! Follow a connection: one summary per conntrack entry over its life (`ct-cli conns`);
//! what it finds, and how it is printed, is documented on [`connections`].
//!
//! One file per job: `key` (which connection an event belongs to), `nat` (NAT from the
//! tuples), `fold` (events into [`Connections`]), `summary` (what it finds), `text` and
//! `json` (the two output forms).

use std::fmt;
use std::io;

use crate::output::{write_items, write_items_io};
use crate::Format;

mod fold;
mod json;
mod key;
mod nat;
mod stream;
mod summary;
#[cfg(test)]
mod tests;
mod text;

pub use fold::connections;
pub use key::ConnKey;
pub use nat::{Endpoint, Nat, NatChange};
pub use stream::ConnFolder;
pub use summary::{Connection, Connections, NftDrop, PacketCounts, ParentConn, Transition};
pub use text::write_duration;

/// The probe whose events are drops.
pub const DROP_PROBE: &str = "skb:kfree_skb";

/// Writes `conns` in `format`: the text layouts of [`connections`], or one JSON
/// object per connection and line, then the unattributed nftables drops, if any, as one
/// more entry. Every entry ends with a newline.
pub fn write_conns<W: fmt::Write + ?Sized>(
    w: &mut W,
    conns: &Connections,
    format: Format,
) -> fmt::Result {
    write_items(w, &conns.entries(), format)
}

/// [`write_conns`] into an [`io::Write`] (flushed at the end). Wrap files and pipes in a
/// `BufWriter`.
pub fn write_conns_io<W: io::Write>(out: W, conns: &Connections, format: Format) -> io::Result<()> {
    write_items_io(out, &conns.entries(), format)
}

/// One entry of the `conns` output: a connection, or the nftables drops no connection can
/// be charged with.
enum Entry<'a> {
    Conn(&'a Connection),
    Unattributed(&'a [NftDrop]),
}

impl Connections {
    /// The entries in output order: the connections, then the unattributed nft drops if any.
    fn entries(&self) -> Vec<Entry<'_>> {
        let unattributed = (!self.unattributed_nft_drops.is_empty())
            .then_some(Entry::Unattributed(&self.unattributed_nft_drops));
        self.conns
            .iter()
            .map(Entry::Conn)
            .chain(unattributed)
            .collect()
    }
}
