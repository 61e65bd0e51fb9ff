//! pcapng output for ct-trace events, for Wireshark, tshark and anything else that reads
//! pcapng (the format of the IETF draft "PCAP Next Generation (pcapng) Capture File
//! Format").
//!
//! Each event whose packet section has header bytes ([`Packet::headers`]) and an IP
//! header becomes one Enhanced Packet Block:
//!
//! - link type `LINKTYPE_RAW` (101): the bytes start at the network header, as the probe
//!   copied them;
//! - captured length: the bytes copied (cut to the IP packet's length when the copy ran
//!   past its end, into a link-layer trailer);
//! - original length: the IP packet's length from its header (IPv4 total length, IPv6
//!   payload length plus 40), not `skb->len`, which counts the link-layer header at some
//!   probes and not at others; `skb->len` where the header says 0 (a GSO packet over
//!   64 KiB);
//! - timestamp: the event's, in nanoseconds (`if_tsresol` 9), plus the writer's clock
//!   offset;
//! - comment (`opt_comment`): the event in the single-line text layout (probe, drop
//!   reason or nftables verdict, packet, ct_state, status, tuples, zone, mark, labels), so
//!   that `tshark -Y 'frame.comment contains "ct_state NEW"'` selects by conntrack state.
//!
//! One Interface Description Block per network device seen (network namespace, index and
//! name), written before its first packet: `if_name` is the device name,
//! `if_description` says `ifindex N netns M`. An event with an index but no name (an
//! nftables verdict) goes with the device of that index already seen, if any.
//!
//! Events without an IP header, or without header bytes, are counted
//! ([`PcapngStats`]), not written.

#![deny(missing_docs)]

use std::collections::HashMap;
use std::io::{self, Write};

use ct_core::{write_event, Event, FixedStr, Layout, Packet};

/// `LINKTYPE_RAW`: raw IPv4 or IPv6, told apart by the version nibble.
pub const LINKTYPE_RAW: u16 = 101;

const SECTION_HEADER_BLOCK: u32 = 0x0A0D_0D0A;
const INTERFACE_DESCRIPTION_BLOCK: u32 = 0x0000_0001;
const ENHANCED_PACKET_BLOCK: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END_OF_OPTIONS: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USER_APPLICATION: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
/// `if_tsresol` value: timestamps in units of 10^-9 s.
const NANOSECONDS: u8 = 9;

/// The longest option value the 16-bit option length allows.
const MAX_OPTION_LEN: usize = u16::MAX as usize;

/// What the writer was asked to write and did not, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcapngStats {
    /// Enhanced Packet Blocks written.
    pub packets: u64,
    /// Events whose packet section has no IP header (or no packet section at all).
    pub no_ip_header: u64,
    /// Events with an IP header but without the bytes it was parsed from (collected
    /// without keeping them, or read from a file written without `--raw-headers`).
    pub no_header_bytes: u64,
}

impl PcapngStats {
    /// Events not written, for either reason.
    pub fn skipped(&self) -> u64 {
        self.no_ip_header + self.no_header_bytes
    }
}

/// What [`PcapngWriter::write`] did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// One Enhanced Packet Block (and, for a new device, its interface block first).
    Written,
    /// Not written: the event has no IP header.
    NoIpHeader,
    /// Not written: the event has an IP header but not the bytes it was parsed from.
    NoHeaderBytes,
}

/// Settings of a capture file.
#[derive(Debug, Clone, Default)]
pub struct PcapngOptions {
    /// The writing program, for the section header's `shb_userappl` (`ct-cli 0.1.0`).
    pub application: Option<String>,
    /// Nanoseconds added to every event timestamp. Events carry `CLOCK_MONOTONIC`
    /// (time since boot); a collector that knows the boot's wall-clock time adds it here so
    /// that Wireshark shows dates. 0 writes the timestamps as they are.
    pub clock_offset_ns: i64,
}

/// Which device an interface block stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct InterfaceKey {
    netns: Option<u32>,
    ifindex: Option<u32>,
    ifname: Option<FixedStr>,
}

/// Writes events as a pcapng capture. See the [crate docs](crate).
///
/// Each block reaches `out` in one `write_all` call, so a writer that keeps whole writes
/// (ct-cli's output file) can cut a capture after its last complete block.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
    options: PcapngOptions,
    interfaces: HashMap<InterfaceKey, u32>,
    stats: PcapngStats,
    /// Reused for each block.
    block: Vec<u8>,
    /// Reused for each comment.
    comment: String,
}

impl<W: Write> PcapngWriter<W> {
    /// Starts a capture: writes the section header block.
    pub fn new(out: W, options: PcapngOptions) -> io::Result<Self> {
        let mut writer = PcapngWriter {
            out,
            options,
            interfaces: HashMap::new(),
            stats: PcapngStats::default(),
            block: Vec::with_capacity(512),
            comment: String::with_capacity(512),
        };
        writer.write_section_header()?;
        Ok(writer)
    }

    /// Writes `event` as a packet if it has an IP header and its bytes; counts it
    /// otherwise.
    pub fn write(&mut self, event: &Event) -> io::Result<Outcome> {
        let Some(packet) = event.packet.as_ref().filter(|p| p.ip.is_some()) else {
            self.stats.no_ip_header += 1;
            return Ok(Outcome::NoIpHeader);
        };
        let Some(headers) = packet.headers.as_ref() else {
            self.stats.no_header_bytes += 1;
            return Ok(Outcome::NoHeaderBytes);
        };
        let interface = self.interface(event, packet)?;
        let original_len = original_len(packet);
        let bytes = headers.as_bytes();
        let captured = &bytes[..bytes.len().min(original_len as usize)];
        let timestamp = self.timestamp(event.timestamp.unwrap_or(0));

        self.comment.clear();
        // Writing into a String cannot fail.
        let _ = write_event(&mut self.comment, event, Layout::SingleLine, 0);

        let mut block = std::mem::take(&mut self.block);
        block.clear();
        begin_block(&mut block, ENHANCED_PACKET_BLOCK);
        put_u32(&mut block, interface);
        put_u32(&mut block, (timestamp >> 32) as u32);
        put_u32(&mut block, timestamp as u32);
        put_u32(&mut block, captured.len() as u32);
        put_u32(&mut block, original_len);
        put_padded(&mut block, captured);
        put_option(&mut block, OPT_COMMENT, truncated(&self.comment).as_bytes());
        end_options(&mut block);
        let written = self.write_block(&mut block);
        self.block = block;
        written?;
        self.stats.packets += 1;
        Ok(Outcome::Written)
    }

    /// What was written and skipped so far.
    pub fn stats(&self) -> PcapngStats {
        self.stats
    }

    /// Flushes the writer the blocks go to.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer the blocks go to.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The writer the blocks go to, to change (writing to it directly breaks the capture).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// The writer the blocks went to (not flushed).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn timestamp(&self, event_ns: u64) -> u64 {
        let t = i128::from(event_ns) + i128::from(self.options.clock_offset_ns);
        t.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The interface id of the event's device, writing its description block first if it
    /// is the first packet seen on it.
    fn interface(&mut self, event: &Event, packet: &Packet) -> io::Result<u32> {
        let key = InterfaceKey {
            netns: event.netns,
            ifindex: packet.ifindex,
            ifname: packet.ifname,
        };
        if let Some(&id) = self.interfaces.get(&key) {
            return Ok(id);
        }
        // An event that knows the device's index but not its name (an nftables verdict)
        // goes with the named device of that index in that namespace, when one was seen.
        if key.ifname.is_none() && key.ifindex.is_some() {
            let named = self.interfaces.iter().find(|(k, _)| {
                k.netns == key.netns && k.ifindex == key.ifindex && k.ifname.is_some()
            });
            if let Some((_, &id)) = named {
                return Ok(id);
            }
        }
        let id = self.interfaces.len() as u32;
        let name = match (&key.ifname, key.ifindex) {
            (Some(name), _) if !name.as_str().is_empty() => name.as_str().to_owned(),
            (_, Some(index)) => format!("if{index}"),
            (_, None) => "unknown".to_owned(),
        };
        let mut description = match key.ifindex {
            Some(index) => format!("ifindex {index}"),
            None => "no device".to_owned(),
        };
        if let Some(netns) = key.netns {
            description.push_str(&format!(" netns {netns}"));
        }

        let mut block = Vec::with_capacity(64);
        begin_block(&mut block, INTERFACE_DESCRIPTION_BLOCK);
        block.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        block.extend_from_slice(&0u16.to_le_bytes()); // reserved
        put_u32(&mut block, 0); // snaplen: no limit declared
        put_option(&mut block, IF_NAME, truncated(&name).as_bytes());
        put_option(&mut block, IF_DESCRIPTION, description.as_bytes());
        put_option(&mut block, IF_TSRESOL, &[NANOSECONDS]);
        end_options(&mut block);
        self.write_block(&mut block)?;
        self.interfaces.insert(key, id);
        Ok(id)
    }

    fn write_section_header(&mut self) -> io::Result<()> {
        let mut block = Vec::with_capacity(64);
        begin_block(&mut block, SECTION_HEADER_BLOCK);
        put_u32(&mut block, BYTE_ORDER_MAGIC);
        block.extend_from_slice(&1u16.to_le_bytes()); // major version
        block.extend_from_slice(&0u16.to_le_bytes()); // minor version
        block.extend_from_slice(&(-1i64).to_le_bytes()); // section length: not given
        if let Some(application) = &self.options.application {
            put_option(
                &mut block,
                SHB_USER_APPLICATION,
                truncated(application).as_bytes(),
            );
            end_options(&mut block);
        }
        self.write_block(&mut block)
    }

    /// Fills in the block's two length fields and writes it in one call.
    fn write_block(&mut self, block: &mut Vec<u8>) -> io::Result<()> {
        let total = block.len() as u32 + 4;
        block[4..8].copy_from_slice(&total.to_le_bytes());
        put_u32(block, total);
        self.out.write_all(block)
    }
}

/// The IP packet's length from its header, or `skb->len` where the header says 0.
fn original_len(packet: &Packet) -> u32 {
    match packet.ip {
        Some(ip) if ip.len > 0 => u32::from(ip.len),
        _ => packet.len,
    }
}

/// `text` cut to what an option can hold, at a character boundary.
fn truncated(text: &str) -> &str {
    if text.len() <= MAX_OPTION_LEN {
        return text;
    }
    let mut end = MAX_OPTION_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Every field is written little-endian, as the byte-order magic says.
fn put_u32(block: &mut Vec<u8>, value: u32) {
    block.extend_from_slice(&value.to_le_bytes());
}

/// Block type and a placeholder for the total length ([`PcapngWriter::write_block`]).
fn begin_block(block: &mut Vec<u8>, kind: u32) {
    put_u32(block, kind);
    put_u32(block, 0);
}

/// `bytes` and zeros up to the next multiple of 4.
fn put_padded(block: &mut Vec<u8>, bytes: &[u8]) {
    block.extend_from_slice(bytes);
    block.resize(block.len() + (4 - bytes.len() % 4) % 4, 0);
}

/// One option; `value` is at most [`MAX_OPTION_LEN`] bytes.
fn put_option(block: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = &value[..value.len().min(MAX_OPTION_LEN)];
    block.extend_from_slice(&code.to_le_bytes());
    block.extend_from_slice(&(value.len() as u16).to_le_bytes());
    put_padded(block, value);
}

fn end_options(block: &mut Vec<u8>) {
    block.extend_from_slice(&OPT_END_OF_OPTIONS.to_le_bytes());
    block.extend_from_slice(&0u16.to_le_bytes());
}

#[cfg(test)]
mod tests;
