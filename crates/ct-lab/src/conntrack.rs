//! `conntrack -L -o extended` output, parsed: the independent witness the lab compares
//! collected events with.
//!
//! A line looks like
//!
//! ```text
//! ipv4     2 tcp      6 117 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=40000 dport=8080 \
//!     src=10.0.2.2 dst=10.0.2.1 sport=80 dport=40000 [ASSURED] mark=42 zone=5 use=1 \
//!     helper=ftp labels=bit1,bit70
//! ```
//!
//! The first `src=` starts the original tuple, the second the reply tuple; `[UNREPLIED]`
//! and `[ASSURED]` are status flags.

use std::net::IpAddr;

use ct_core::{CtConnEvent, CtTuple, IpVersion};

/// One direction of a conntrack entry as conntrack-tools prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntryTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_id: Option<u16>,
    /// SCTP verification tag, when conntrack-tools prints it.
    pub vtag: Option<u32>,
}

/// One conntrack entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub l3: IpVersion,
    /// IP protocol number (6, 17, 1, 58, 132, 253, ...).
    pub proto: u8,
    /// conntrack-tools' protocol name (`tcp`, `unknown`, ...).
    pub proto_name: String,
    /// Seconds left.
    pub timeout: u32,
    /// TCP/SCTP state name (`ESTABLISHED`, `TIME_WAIT`, `COOKIE_WAIT`, ...).
    pub state: Option<String>,
    pub orig: CtEntryTuple,
    pub reply: CtEntryTuple,
    /// `[UNREPLIED]`: the entry has not seen a reply (no SEEN_REPLY status bit).
    pub unreplied: bool,
    /// `[ASSURED]`.
    pub assured: bool,
    /// `[OFFLOAD]` / `[HW_OFFLOAD]`.
    pub offload: bool,
    pub hw_offload: bool,
    pub mark: Option<u32>,
    /// `zone=`: a zone for both directions.
    pub zone: Option<u16>,
    /// `zone-orig=`: original direction only.
    pub zone_orig: Option<u16>,
    /// `zone-reply=`: reply direction only.
    pub zone_reply: Option<u16>,
    /// Label bits, when labels were printed (as `bitN` names or numbers).
    pub labels: Option<u128>,
    pub helper: Option<String>,
    pub use_count: Option<u32>,
    /// The line as printed.
    pub line: String,
}

impl CtEntry {
    /// The SEEN_REPLY status bit.
    pub fn seen_reply(&self) -> bool {
        !self.unreplied
    }

    /// Whether `conn`'s original and reply tuples are this entry's: layer 3, protocol,
    /// addresses, ports and ICMP type/code/id.
    pub fn matches(&self, conn: &CtConnEvent) -> bool {
        conn.orig.ip.version == self.l3
            && conn.orig.proto.number() == self.proto
            && self.orig.matches(&conn.orig)
            && self.reply.matches(&conn.reply)
    }
}

impl CtEntryTuple {
    /// A tuple not filled in yet (the parser sets the fields it finds).
    fn unset() -> Self {
        CtEntryTuple {
            src: IpAddr::from([0u8; 4]),
            dst: IpAddr::from([0u8; 4]),
            sport: None,
            dport: None,
            icmp_type: None,
            icmp_code: None,
            icmp_id: None,
            vtag: None,
        }
    }

    /// Whether the event tuple has these addresses and protocol identifiers.
    pub fn matches(&self, t: &CtTuple) -> bool {
        if t.ip.src != self.src || t.ip.dst != self.dst {
            return false;
        }
        if let Some((sport, dport)) = t.proto.ports() {
            return self.sport == Some(sport) && self.dport == Some(dport);
        }
        match t.proto.icmp() {
            Some((icmp_type, code, id)) => {
                self.icmp_type == Some(icmp_type)
                    && self.icmp_code == Some(code)
                    && self.icmp_id == Some(id)
            }
            // Any other protocol: conntrack prints neither ports nor ICMP fields.
            None => self.sport.is_none() && self.icmp_type.is_none(),
        }
    }
}

#[derive(Default)]
struct TupleBuilder {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    icmp_id: Option<u16>,
    vtag: Option<u32>,
}

impl TupleBuilder {
    fn build(self) -> Option<CtEntryTuple> {
        Some(CtEntryTuple {
            src: self.src?,
            dst: self.dst?,
            sport: self.sport,
            dport: self.dport,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            icmp_id: self.icmp_id,
            vtag: self.vtag,
        })
    }

    /// Takes a tuple key; `false` if `key` is not one.
    fn take(&mut self, key: &str, value: &str) -> bool {
        match key {
            "src" => self.src = value.parse().ok(),
            "dst" => self.dst = value.parse().ok(),
            "sport" => self.sport = value.parse().ok(),
            "dport" => self.dport = value.parse().ok(),
            "type" => self.icmp_type = value.parse().ok(),
            "code" => self.icmp_code = value.parse().ok(),
            "id" => self.icmp_id = value.parse().ok(),
            "vtag" => self.vtag = parse_u32(value),
            _ => return false,
        }
        true
    }
}

fn parse_u32(v: &str) -> Option<u32> {
    match v.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Label names: `bitN` (the lab's connlabel.conf) or a plain bit number.
fn parse_labels(v: &str) -> Option<u128> {
    let mut bits = 0u128;
    for name in v.split(',').filter(|n| !n.is_empty()) {
        let n: u32 = name.strip_prefix("bit").unwrap_or(name).parse().ok()?;
        bits |= 1u128.checked_shl(n)?;
    }
    Some(bits)
}

/// Parses every entry line of `conntrack -L -o extended[,labels]` output; other lines
/// (the summary, label map warnings) are ignored.
pub fn parse_conntrack(text: &str) -> Vec<CtEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<CtEntry> {
    let mut tokens = line.split_whitespace();
    let l3 = match tokens.next()? {
        "ipv4" => IpVersion::V4,
        "ipv6" => IpVersion::V6,
        _ => return None,
    };
    let _l3num: u8 = tokens.next()?.parse().ok()?;
    let proto_name = tokens.next()?.to_owned();
    let proto: u8 = tokens.next()?.parse().ok()?;
    let timeout: u32 = tokens.next()?.parse().ok()?;
    let mut entry = CtEntry {
        l3,
        proto,
        proto_name,
        timeout,
        state: None,
        orig: CtEntryTuple::unset(),
        reply: CtEntryTuple::unset(),
        unreplied: false,
        assured: false,
        offload: false,
        hw_offload: false,
        mark: None,
        zone: None,
        zone_orig: None,
        zone_reply: None,
        labels: None,
        helper: None,
        use_count: None,
        line: line.to_owned(),
    };
    // 0: before the original tuple, 1: original, 2: reply, 3: after the reply tuple.
    let mut phase = 0;
    let (mut orig, mut reply) = (TupleBuilder::default(), TupleBuilder::default());
    for tok in tokens {
        if let Some(flag) = tok.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            match flag {
                "UNREPLIED" => entry.unreplied = true,
                "ASSURED" => entry.assured = true,
                "OFFLOAD" => entry.offload = true,
                "HW_OFFLOAD" => entry.hw_offload = true,
                _ => {}
            }
            if phase == 2 {
                phase = 3;
            }
            continue;
        }
        let Some((key, value)) = tok.split_once('=') else {
            if phase == 0 {
                entry.state = Some(tok.to_owned());
            }
            continue;
        };
        if key == "src" {
            phase = match phase {
                0 => 1,
                1 => 2,
                other => other,
            };
        }
        let tuple_key = match phase {
            1 => orig.take(key, value),
            2 => reply.take(key, value),
            _ => false,
        };
        if tuple_key {
            continue;
        }
        if phase == 2 {
            phase = 3;
        }
        match key {
            "mark" => entry.mark = parse_u32(value),
            "zone" => entry.zone = value.parse().ok(),
            "zone-orig" => entry.zone_orig = value.parse().ok(),
            "zone-reply" => entry.zone_reply = value.parse().ok(),
            "labels" => entry.labels = parse_labels(value),
            "helper" => entry.helper = Some(value.to_owned()),
            "use" => entry.use_count = value.parse().ok(),
            _ => {}
        }
    }
    entry.orig = orig.build()?;
    entry.reply = reply.build()?;
    Some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ct_core::{CtIp, CtProto};

    #[test]
    fn parses_tcp_with_flags_zone_mark_labels_helper() {
        let text = "ipv4     2 tcp      6 117 TIME_WAIT src=10.0.1.2 dst=10.0.1.1 sport=40000 \
                    dport=8080 src=10.0.2.2 dst=10.0.2.1 sport=80 dport=40000 [ASSURED] \
                    mark=42 zone=5 use=1 helper=ftp labels=bit5,bit70\n\
                    conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n";
        let e = parse_conntrack(text);
        assert_eq!(e.len(), 1);
        let e = &e[0];
        assert_eq!(e.l3, IpVersion::V4);
        assert_eq!((e.proto, e.proto_name.as_str()), (6, "tcp"));
        assert_eq!(e.state.as_deref(), Some("TIME_WAIT"));
        assert_eq!(e.orig.sport, Some(40000));
        assert_eq!(e.reply.src, "10.0.2.2".parse::<IpAddr>().unwrap());
        assert!(e.assured && !e.unreplied);
        assert_eq!(e.mark, Some(42));
        assert_eq!(e.zone, Some(5));
        assert_eq!(e.helper.as_deref(), Some("ftp"));
        assert_eq!(e.labels, Some((1 << 5) | (1 << 70)));
        assert_eq!(e.use_count, Some(1));
    }

    #[test]
    fn parses_icmp_ids_and_unreplied() {
        let text = "ipv4     2 icmp     1 29 src=10.0.1.2 dst=10.0.2.2 type=8 code=0 id=19770 \
                    [UNREPLIED] src=10.0.2.2 dst=10.0.2.1 type=0 code=0 id=19770 mark=0 use=1";
        let e = &parse_conntrack(text)[0];
        assert!(e.unreplied && !e.seen_reply());
        assert_eq!(
            (e.orig.icmp_type, e.orig.icmp_code, e.orig.icmp_id),
            (Some(8), Some(0), Some(19770))
        );
        assert_eq!(e.reply.icmp_type, Some(0));
        assert_eq!(e.reply.dst, "10.0.2.1".parse::<IpAddr>().unwrap());
        let conn = CtConnEvent {
            zone_id: 0,
            zone_dir: ct_core::ZoneDir::None,
            orig: CtTuple {
                ip: CtIp::new("10.0.1.2".parse().unwrap(), "10.0.2.2".parse().unwrap()),
                proto: CtProto::Icmp {
                    icmp_type: 8,
                    code: 0,
                    id: 19770,
                },
            },
            reply: CtTuple {
                ip: CtIp::new("10.0.2.2".parse().unwrap(), "10.0.2.1".parse().unwrap()),
                proto: CtProto::Icmp {
                    icmp_type: 0,
                    code: 0,
                    id: 19770,
                },
            },
            tcp_state: None,
            mark: None,
            labels: None,
            ct_status: Default::default(),
            sctp_state: None,
            helper: None,
            timeout: None,
        };
        assert!(e.matches(&conn));
        let mut other = conn.clone();
        other.reply.ip.dst = "10.0.2.9".parse().unwrap();
        assert!(!e.matches(&other));
    }

    #[test]
    fn parses_ipv6_generic_and_orig_zone() {
        let text = "ipv6     10 unknown  253 599 src=fd00:1::2 dst=fd00:2::2 src=fd00:2::2 \
                    dst=fd00:1::2 mark=0 zone-orig=7 use=1\n\
                    ipv4     2 sctp     132 209 ESTABLISHED src=10.0.1.2 dst=10.0.2.2 \
                    sport=5000 dport=6000 vtag=305419896 src=10.0.2.2 dst=10.0.1.2 sport=6000 \
                    dport=5000 vtag=2271560481 [ASSURED] mark=0 use=1";
        let e = parse_conntrack(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].l3, IpVersion::V6);
        assert_eq!(e[0].proto, 253);
        assert_eq!(e[0].zone_orig, Some(7));
        assert_eq!(e[0].zone, None);
        assert_eq!(e[0].orig.sport, None);
        assert_eq!(e[1].state.as_deref(), Some("ESTABLISHED"));
        assert_eq!(e[1].orig.vtag, Some(305419896));
        assert_eq!(e[1].reply.vtag, Some(2271560481));
        assert!(e[1].assured);
    }

    #[test]
    fn ignores_noise() {
        assert!(parse_conntrack("nfct_labelmap_new: No such file or directory\n\n").is_empty());
        assert_eq!(parse_labels("bit0,bit127"), Some(1 | (1 << 127)));
        assert_eq!(parse_labels("bit128"), None);
    }
}
