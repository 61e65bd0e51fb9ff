//! The ct section: what netfilter connection tracking knows about one packet.
//!
//! Field names and the JSON shape follow the ct event section reference; the types mirror
//! the kernel's (`enum ip_conntrack_info`, `enum ip_conntrack_status`,
//! `enum tcp_conntrack`, `struct nf_conntrack_zone`) without depending on the kernel.

use std::fmt;
use std::net::IpAddr;

use bitflags::bitflags;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FixedStr;

/// Conntrack information for one packet: its ctinfo state, the connection it belongs to
/// and, for RELATED flows, the connection that expected it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtEvent {
    /// The packet's ctinfo.
    pub state: CtState,
    /// `None` only for UNTRACKED packets: the kernel attaches no connection to them.
    pub base: Option<CtConnEvent>,
    /// The master connection of a RELATED flow (e.g. the FTP control connection).
    pub parent: Option<CtConnEvent>,
}

impl CtEvent {
    /// The event of an untracked packet (`notrack`): a state and nothing else.
    pub fn untracked() -> Self {
        CtEvent {
            state: CtState::Untracked,
            base: None,
            parent: None,
        }
    }
}

/// The packet's relation to its connection (`enum ip_conntrack_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::EnumString, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE", ascii_case_insensitive)]
pub enum CtState {
    /// `IP_CT_ESTABLISHED`: a packet of an established connection, original direction.
    Established,
    /// `IP_CT_RELATED`: the first packet of a connection an existing one expected.
    Related,
    /// `IP_CT_NEW`: a packet of a connection not yet seen in both directions, original direction.
    New,
    /// `IP_CT_ESTABLISHED_REPLY`: reply direction.
    Reply,
    /// `IP_CT_RELATED_REPLY`: a related connection, reply direction.
    RelatedReply,
    /// `IP_CT_UNTRACKED`: the packet is not tracked (`notrack`).
    Untracked,
}

impl CtState {
    /// Maps the kernel's ctinfo (the low 3 bits of `skb->_nfct`).
    ///
    /// `IP_CT_NEW_REPLY` (5) is never set by the kernel and 6 is unused: both give `None`.
    pub fn from_ctinfo(ctinfo: u8) -> Option<Self> {
        Some(match ctinfo {
            0 => CtState::Established,
            1 => CtState::Related,
            2 => CtState::New,
            3 => CtState::Reply,
            4 => CtState::RelatedReply,
            7 => CtState::Untracked,
            _ => return None,
        })
    }

    /// The kernel's ctinfo value for this state.
    pub fn ctinfo(self) -> u8 {
        match self {
            CtState::Established => 0,
            CtState::Related => 1,
            CtState::New => 2,
            CtState::Reply => 3,
            CtState::RelatedReply => 4,
            CtState::Untracked => 7,
        }
    }
}

/// One conntrack entry (`struct nf_conn`) as seen when the packet passed the probe.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtConnEvent {
    /// Conntrack zone id.
    #[serde(default)]
    pub zone_id: u16,
    /// Which directions the zone applies to.
    #[serde(default)]
    pub zone_dir: ZoneDir,
    /// The tuple of the original direction.
    pub orig: CtTuple,
    /// The tuple replies are expected with (NAT shows as its difference from `orig`).
    pub reply: CtTuple,
    /// TCP conntrack state; `None` for other protocols.
    #[serialize_always]
    pub tcp_state: Option<TcpState>,
    /// Conntrack mark; `None` when the kernel has no `CONFIG_NF_CONNTRACK_MARK`.
    #[serialize_always]
    pub mark: Option<u32>,
    /// 128-bit conntrack labels; `None` when the connection carries no labels extension.
    #[serde(default, with = "labels_hex")]
    #[serialize_always]
    pub labels: Option<u128>,
    /// Status bits (`enum ip_conntrack_status`).
    #[serde(default)]
    pub ct_status: CtStatus,
    /// SCTP conntrack state; written only for SCTP connections.
    pub sctp_state: Option<SctpState>,
    /// Name of the conntrack helper attached to the connection (e.g. `ftp`).
    pub helper: Option<FixedStr>,
    /// Seconds until the entry times out, when known.
    pub timeout: Option<u32>,
}

impl CtConnEvent {
    /// A template attached by a CT target before lookup (`ct zone set`, `ct helper set`
    /// in a prerouting/output chain of lower priority than conntrack): it carries settings
    /// but no tuples, which are then meaningless.
    pub fn is_template(&self) -> bool {
        self.ct_status.contains(CtStatus::TEMPLATE)
    }
}

/// Which direction(s) a conntrack zone applies to (`struct nf_conntrack_zone.dir`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::Display, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "lowercase")]
pub enum ZoneDir {
    /// No zone information (kernel without zones, or no direction bit set).
    #[default]
    None,
    /// Zone applies to the original direction only (`ct original zone set`).
    Original,
    /// Zone applies to the reply direction only.
    Reply,
    /// Zone applies to both directions (the kernel's `NF_CT_DEFAULT_ZONE_DIR`).
    Default,
}

impl ZoneDir {
    /// Maps the kernel's direction bits (`NF_CT_ZONE_DIR_ORIG` = 1, `NF_CT_ZONE_DIR_REPL` = 2).
    pub fn from_kernel_bits(dir: u8) -> Self {
        match dir & 3 {
            1 => ZoneDir::Original,
            2 => ZoneDir::Reply,
            3 => ZoneDir::Default,
            _ => ZoneDir::None,
        }
    }
}

/// One direction of a connection: addresses and protocol identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CtTuple {
    /// Addresses.
    pub ip: CtIp,
    /// Protocol and its fields.
    pub proto: CtProto,
}

/// The layer-3 part of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CtIp {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Address family.
    pub version: IpVersion,
}

impl CtIp {
    /// Builds the layer-3 part, deriving `version` from the addresses.
    pub fn new(src: IpAddr, dst: IpAddr) -> Self {
        let version = IpVersion::of(src);
        CtIp { src, dst, version }
    }
}

/// An IP version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::Display, strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpVersion {
    /// The version of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => IpVersion::V4,
            IpAddr::V6(_) => IpVersion::V6,
        }
    }
}

/// The layer-4 part of a tuple. Every protocol is represented: those conntrack knows
/// specific fields for get them, anything else keeps its protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CtProto {
    /// TCP.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP.
    Icmp {
        /// ICMP type.
        #[serde(rename = "type")]
        icmp_type: u8,
        /// ICMP code.
        code: u8,
        /// Echo id.
        id: u16,
    },
    /// ICMPv6.
    Icmpv6 {
        /// ICMPv6 type.
        #[serde(rename = "type")]
        icmp_type: u8,
        /// ICMPv6 code.
        code: u8,
        /// Echo id.
        id: u16,
    },
    /// SCTP.
    Sctp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Verification tag conntrack expects for packets in this direction.
        vtag: u32,
    },
    /// Any other protocol (GRE, UDPLite, DCCP, ...), by IP protocol number.
    Generic {
        /// IP protocol number.
        proto: u8,
    },
}

impl CtProto {
    /// The IP protocol number.
    pub fn number(&self) -> u8 {
        match self {
            CtProto::Tcp { .. } => 6,
            CtProto::Udp { .. } => 17,
            CtProto::Icmp { .. } => 1,
            CtProto::Icmpv6 { .. } => 58,
            CtProto::Sctp { .. } => 132,
            CtProto::Generic { proto } => *proto,
        }
    }

    /// Source and destination ports, for protocols that have them.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            CtProto::Tcp { sport, dport }
            | CtProto::Udp { sport, dport }
            | CtProto::Sctp { sport, dport, .. } => Some((sport, dport)),
            _ => None,
        }
    }

    /// Type, code and echo id, for ICMP and ICMPv6.
    pub fn icmp(&self) -> Option<(u8, u8, u16)> {
        match *self {
            CtProto::Icmp {
                icmp_type,
                code,
                id,
            }
            | CtProto::Icmpv6 {
                icmp_type,
                code,
                id,
            } => Some((icmp_type, code, id)),
            _ => None,
        }
    }
}

/// Declares a kernel enum whose values we name, keeping values this version does not know.
///
/// JSON writes a known value as its kernel name and an unknown one as its number; reading
/// accepts both, so nothing a newer kernel reports is lost on a round trip.
macro_rules! kernel_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:literal => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(#[doc = concat!("The kernel's `", $text, "` (", stringify!($value), ").")] $variant,)*
            /// A value this version does not name, kept as the kernel reported it.
            Unknown(u8),
        }

        impl $name {
            /// Every named value, in kernel order.
            pub const KNOWN: &'static [$name] = &[$($name::$variant,)*];

            /// The value for the kernel's number.
            pub fn from_raw(raw: u8) -> Self {
                match raw {
                    $($value => $name::$variant,)*
                    other => $name::Unknown(other),
                }
            }

            /// The kernel's number.
            pub fn raw(self) -> u8 {
                match self {
                    $($name::$variant => $value,)*
                    $name::Unknown(v) => v,
                }
            }

            /// The kernel's name, or `None` for an unknown value.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $($name::$variant => Some($text),)*
                    $name::Unknown(_) => None,
                }
            }

            /// The value of a kernel name (`"TIME_WAIT"`).
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "UNKNOWN({})", self.raw()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.name() {
                    Some(n) => s.serialize_str(n),
                    None => s.serialize_u8(self.raw()),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a {} name or number", stringify!($name))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_name(v).ok_or_else(|| {
                            E::unknown_variant(v, &[$($text,)*])
                        })
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        u8::try_from(v)
                            .map($name::from_raw)
                            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        u8::try_from(v)
                            .map($name::from_raw)
                            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

kernel_enum! {
    /// TCP conntrack state (`enum tcp_conntrack`).
    TcpState {
        None = 0 => "NONE",
        SynSent = 1 => "SYN_SENT",
        SynRecv = 2 => "SYN_RECV",
        Established = 3 => "ESTABLISHED",
        FinWait = 4 => "FIN_WAIT",
        CloseWait = 5 => "CLOSE_WAIT",
        LastAck = 6 => "LAST_ACK",
        TimeWait = 7 => "TIME_WAIT",
        Close = 8 => "CLOSE",
        SynSent2 = 9 => "SYN_SENT2",
    }
}

kernel_enum! {
    /// SCTP conntrack state (`enum sctp_conntrack`).
    SctpState {
        None = 0 => "NONE",
        Closed = 1 => "CLOSED",
        CookieWait = 2 => "COOKIE_WAIT",
        CookieEchoed = 3 => "COOKIE_ECHOED",
        Established = 4 => "ESTABLISHED",
        ShutdownSent = 5 => "SHUTDOWN_SENT",
        ShutdownRecd = 6 => "SHUTDOWN_RECD",
        ShutdownAckSent = 7 => "SHUTDOWN_ACK_SENT",
        HeartbeatSent = 8 => "HEARTBEAT_SENT",
    }
}

bitflags! {
    /// Connection status bits (`enum ip_conntrack_status`). Bits this version does not
    /// name are kept (`from_bits_retain`) and printed in hex.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct CtStatus: u32 {
        /// An expected connection (RELATED to its master).
        const EXPECTED = 1 << 0;
        /// Packets were seen in both directions.
        const SEEN_REPLY = 1 << 1;
        /// Not to be evicted early (reply seen, or TCP established).
        const ASSURED = 1 << 2;
        /// In the conntrack table (the first packet left the stack).
        const CONFIRMED = 1 << 3;
        /// Source NAT was set up.
        const SRC_NAT = 1 << 4;
        /// Destination NAT was set up.
        const DST_NAT = 1 << 5;
        /// TCP sequence numbers are adjusted (a helper changed payload length).
        const SEQ_ADJUST = 1 << 6;
        /// The source NAT step ran.
        const SRC_NAT_DONE = 1 << 7;
        /// The destination NAT step ran.
        const DST_NAT_DONE = 1 << 8;
        /// Being removed.
        const DYING = 1 << 9;
        /// The timeout does not change.
        const FIXED_TIMEOUT = 1 << 10;
        /// A template (the CT target's settings), not a connection.
        const TEMPLATE = 1 << 11;
        /// Lost a NAT clash and was merged into another entry.
        const NAT_CLASH = 1 << 12;
        /// Has a helper attached.
        const HELPER = 1 << 13;
        /// Offloaded to the flow table.
        const OFFLOAD = 1 << 14;
        /// Offloaded to hardware.
        const HW_OFFLOAD = 1 << 15;
    }
}

impl CtStatus {
    /// Either NAT direction was requested.
    pub const NAT_MASK: CtStatus = CtStatus::SRC_NAT.union(CtStatus::DST_NAT);

    /// Looks a bit up by its name, case-insensitively, with or without the `IPS_` prefix
    /// (`src_nat`, `SRC_NAT`, `IPS_SRC_NAT`).
    pub fn from_bit_name(name: &str) -> Option<CtStatus> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("IPS_").unwrap_or(&upper);
        CtStatus::from_name(bare)
    }
}

/// `EXPECTED|SEEN_REPLY|...`, with unknown bits as one trailing hex number; `0` when empty.
impl fmt::Display for CtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("0");
        }
        let mut first = true;
        for (name, _) in self.iter_names() {
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            first = false;
        }
        let unknown = self.bits() & !CtStatus::all().bits();
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
        }
        Ok(())
    }
}

/// JSON writes the status as the kernel's plain integer (`"ct_status": 394`).
impl Serialize for CtStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.bits())
    }
}

impl<'de> Deserialize<'de> for CtStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u32::deserialize(d).map(CtStatus::from_bits_retain)
    }
}

/// Labels as `"0x"` + at least 16 hex digits (`"0x0000000000000001"`), all 32 when the
/// upper 64 bits are used. Reading accepts any `0x` hex number up to 128 bits.
pub mod labels_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::labels::{format_labels_json, parse_labels};

    /// Writes labels as `"0x"` and hex digits, or `null`.
    pub fn serialize<S: Serializer>(labels: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match labels {
            Some(v) => s.serialize_str(format_labels_json(*v).as_str()),
            None => s.serialize_none(),
        }
    }

    /// Reads labels from `"0x"` and hex digits, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        let text: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        text.map(|t| parse_labels(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctinfo_round_trip() {
        for ctinfo in 0..=7u8 {
            if let Some(state) = CtState::from_ctinfo(ctinfo) {
                assert_eq!(state.ctinfo(), ctinfo);
            }
        }
        assert_eq!(CtState::from_ctinfo(5), None);
        assert_eq!(CtState::from_ctinfo(2), Some(CtState::New));
    }

    #[test]
    fn state_names() {
        assert_eq!(CtState::RelatedReply.to_string(), "RELATED_REPLY");
        assert_eq!(
            serde_json::to_string(&CtState::RelatedReply).unwrap(),
            "\"related_reply\""
        );
    }

    #[test]
    fn status_display_keeps_unknown_bits() {
        let s = CtStatus::from_bits_retain(394);
        assert_eq!(
            s.to_string(),
            "SEEN_REPLY|CONFIRMED|SRC_NAT_DONE|DST_NAT_DONE"
        );
        let s = CtStatus::from_bits_retain(0x8 | 0x1_0000);
        assert_eq!(s.to_string(), "CONFIRMED|0x10000");
        assert_eq!(CtStatus::empty().to_string(), "0");
        assert_eq!(
            CtStatus::from_bit_name("ips_src_nat"),
            Some(CtStatus::SRC_NAT)
        );
    }

    #[test]
    fn tcp_state_unknown_round_trips() {
        let s = TcpState::from_raw(12);
        assert_eq!(s, TcpState::Unknown(12));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "12");
        assert_eq!(serde_json::from_str::<TcpState>(&json).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<TcpState>("\"TIME_WAIT\"").unwrap(),
            TcpState::TimeWait
        );
        assert!(serde_json::from_str::<TcpState>("\"BOGUS\"").is_err());
    }
}
