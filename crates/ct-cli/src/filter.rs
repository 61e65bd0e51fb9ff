//! The filters on events files: `-f` in the address/port language on the events' fields,
//! or, for a tcpdump expression beyond it, libpcap's program run on the header bytes that
//! events collected with `--raw-headers` carry.

use ct_bpf::PcapFilter;
use ct_core::filter::EventFilter;
use ct_core::Event;
use ct_pcap::LinkType;

use crate::cli::FilterArgs;

/// The file commands' filter, counting what it could not decide.
pub struct FileFilter {
    fields: EventFilter,
    /// A tcpdump expression run on the events' header bytes (from the network header).
    bytes: Option<PcapFilter>,
    text: String,
    /// Events the bytes filter met without bytes: they do not match.
    without_bytes: u64,
    with_bytes: u64,
}

impl FileFilter {
    /// The filter of `args`.
    pub fn new(args: &FilterArgs) -> Self {
        let expr = args.filter.as_ref();
        let bytes = expr
            .filter(|f| f.events.is_err())
            .and_then(|f| f.pcap.clone().ok());
        FileFilter {
            fields: args.event_filter(),
            bytes,
            text: expr.map(|f| f.text.clone()).unwrap_or_default(),
            without_bytes: 0,
            with_bytes: 0,
        }
    }

    /// Whether no packet or conntrack filter is set: every event in scope is selected.
    pub fn selects_all(&self) -> bool {
        self.fields.selects_all() && self.bytes.is_none()
    }

    /// Whether `event` is of the kind `--drops` and `--drop-reason` ask for (judged on
    /// every event, as collect judges them on every hit).
    pub fn in_scope(&self, event: &Event) -> bool {
        self.fields.in_scope(event)
    }

    /// Whether `event` passes, judged on its own.
    pub fn matches(&mut self, event: &Event) -> bool {
        self.in_scope(event) && self.selects(event)
    }

    /// Whether the packet and conntrack filters select `event` (what `--follow` follows).
    pub fn selects(&mut self, event: &Event) -> bool {
        if !self.fields.selects(event) {
            return false;
        }
        let Some(filter) = &self.bytes else {
            return true;
        };
        let packet = event.packet.as_ref();
        let Some(headers) = packet.and_then(|p| p.headers.as_ref()) else {
            self.without_bytes += 1;
            return false;
        };
        self.with_bytes += 1;
        let wire_len = packet
            .and_then(|p| p.ip)
            .map_or(headers.as_bytes().len() as u32, |ip| u32::from(ip.len));
        filter.matches(LinkType::RawIp, headers.as_bytes(), wire_len)
    }

    /// What the filter could not decide, as an error when it decided nothing (no event
    /// carried bytes) or a note otherwise. `None` when every event was decided.
    pub fn undecided(&self) -> Option<Result<String, ct_bpf::Error>> {
        if self.without_bytes == 0 {
            return None;
        }
        let why = format!(
            "events collected without --raw-headers keep no packet bytes, and '{}' needs \
             them (files without bytes can be filtered on addresses, protocols and ports: \
             ip, ip6, tcp, udp, icmp, icmp6, sctp, proto, host, net, port, portrange, \
             and/or/not)",
            self.text
        );
        Some(if self.with_bytes == 0 {
            Err(ct_bpf::Error::Filter {
                filter: self.text.clone(),
                reason: why,
            })
        } else {
            Ok(format!(
                "ct-cli: {} events not matched: {why}",
                self.without_bytes
            ))
        })
    }
}
