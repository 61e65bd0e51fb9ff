//! `NFT_MSG_TRACE` messages: the netlink framing and the trace attributes
//! (`enum nft_trace_attributes` in `<linux/netfilter/nf_tables.h>`).

use ct_core::{NftFamily, NftTraceKind, NftVerdict};

/// `NFNL_SUBSYS_NFTABLES`: the subsystem byte of nftables' message types.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_TRACE` in `enum nf_tables_msg_types`.
const NFT_MSG_TRACE: u16 = 17;
/// `NLMSG_ERROR`, `NLMSG_DONE`, `NLMSG_OVERRUN`: control messages, skipped.
const NLMSG_MIN_TYPE: u16 = 0x10;

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
/// `NLA_F_NESTED | NLA_F_NET_BYTEORDER` are flags, not part of the attribute type.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_MARK: u16 = 14;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;

const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_TRACETYPE_POLICY: u32 = 1;
const NFT_TRACETYPE_RETURN: u32 = 2;
const NFT_TRACETYPE_RULE: u32 = 3;

/// `NFPROTO_*` values (table families and the protocol a trace step processed).
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_ARP: u8 = 3;
pub const NFPROTO_NETDEV: u8 = 5;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

/// `NF_*` verdicts (`<linux/netfilter.h>`) and nftables' own (`enum nft_verdicts`).
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NF_STOLEN: i32 = 2;
const NF_QUEUE: i32 = 3;
const NF_REPEAT: i32 = 4;
/// The verdict proper is the low byte; `NF_QUEUE` and `NF_DROP_ERR` carry data above it.
const NF_VERDICT_MASK: i32 = 0xff;
const NFT_CONTINUE: i32 = -1;
const NFT_BREAK: i32 = -2;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;

/// One trace message as the kernel sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceMessage {
    /// The table's family (`nfgenmsg.nfgen_family`).
    pub family: NftFamily,
    pub table: String,
    pub chain: String,
    pub kind: NftTraceKind,
    pub handle: Option<u64>,
    pub verdict: NftVerdict,
    /// Target chain of `jump` and `goto`.
    pub target: Option<String>,
    /// The kernel's pseudo-id of the packet: the same in every message about one packet
    /// (a keyed hash; it cannot be computed from anything a BPF program sees).
    pub id: u32,
    /// The protocol the hook processed (`NFPROTO_IPV4`, `NFPROTO_IPV6`, ...).
    pub nfproto: Option<u8>,
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    pub mark: Option<u32>,
    /// The network header, then the transport header, as far as the kernel copied them
    /// (at most 40 and 20 bytes).
    pub network_header: Vec<u8>,
    pub transport_header: Vec<u8>,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("netlink message truncated: {0}")]
    Truncated(&'static str),
    #[error("trace message without {0}")]
    Missing(&'static str),
    #[error("trace message with an unknown {what} {value}")]
    Unknown { what: &'static str, value: i64 },
}

/// Splits one datagram into its netlink messages and reads the trace messages among them;
/// other nftables messages and control messages are skipped (they are not traces).
pub fn parse_datagram(buf: &[u8]) -> Vec<Result<TraceMessage, MessageError>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || len > rest.len() {
            out.push(Err(MessageError::Truncated("message length")));
            break;
        }
        let body = &rest[NLMSG_HDRLEN..len];
        if kind >= NLMSG_MIN_TYPE && kind == (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE) {
            out.push(parse_trace(body));
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterates over the attributes in `buf`: (type without flags, payload).
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), MessageError>> {
    std::iter::from_fn(move || {
        if buf.len() < NLA_HDRLEN {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > buf.len() {
            buf = &[];
            return Some(Err(MessageError::Truncated("attribute length")));
        }
        let payload = &buf[NLA_HDRLEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some(Ok((kind, payload)))
    })
}

fn be32(payload: &[u8], what: &'static str) -> Result<u32, MessageError> {
    Ok(u32::from_be_bytes(
        payload
            .get(..4)
            .ok_or(MessageError::Truncated(what))?
            .try_into()
            .expect("4 bytes"),
    ))
}

fn string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// Reads the body of an `NFT_MSG_TRACE` message (after the netlink header).
pub fn parse_trace(body: &[u8]) -> Result<TraceMessage, MessageError> {
    if body.len() < NFGENMSG_LEN {
        return Err(MessageError::Truncated("nfgenmsg"));
    }
    let family = family(body[0])?;
    let mut table = None;
    let mut chain = None;
    let mut kind = None;
    let mut handle = None;
    let mut verdict_code = None;
    let mut target = None;
    let mut policy = None;
    let mut msg = TraceMessage {
        family,
        table: String::new(),
        chain: String::new(),
        kind: NftTraceKind::Rule,
        handle: None,
        verdict: NftVerdict::Continue,
        target: None,
        id: 0,
        nfproto: None,
        iif: None,
        oif: None,
        mark: None,
        network_header: Vec::new(),
        transport_header: Vec::new(),
    };
    let mut id = None;
    for attr in attributes(&body[NFGENMSG_LEN..]) {
        let (attr, payload) = attr?;
        match attr {
            NFTA_TRACE_TABLE => table = Some(string(payload)),
            NFTA_TRACE_CHAIN => chain = Some(string(payload)),
            NFTA_TRACE_RULE_HANDLE => {
                let bytes = payload
                    .get(..8)
                    .ok_or(MessageError::Truncated("rule handle"))?;
                handle = Some(u64::from_be_bytes(bytes.try_into().expect("8 bytes")));
            }
            NFTA_TRACE_TYPE => kind = Some(be32(payload, "trace type")?),
            NFTA_TRACE_VERDICT => {
                for nested in attributes(payload) {
                    match nested? {
                        (NFTA_VERDICT_CODE, p) => verdict_code = Some(be32(p, "verdict")? as i32),
                        (NFTA_VERDICT_CHAIN, p) => target = Some(string(p)),
                        _ => {}
                    }
                }
            }
            NFTA_TRACE_ID => id = Some(be32(payload, "trace id")?),
            NFTA_TRACE_NETWORK_HEADER => msg.network_header = payload.to_vec(),
            NFTA_TRACE_TRANSPORT_HEADER => msg.transport_header = payload.to_vec(),
            NFTA_TRACE_IIF => msg.iif = Some(be32(payload, "iif")?),
            NFTA_TRACE_OIF => msg.oif = Some(be32(payload, "oif")?),
            NFTA_TRACE_MARK => msg.mark = Some(be32(payload, "mark")?),
            NFTA_TRACE_NFPROTO => msg.nfproto = Some(be32(payload, "nfproto")? as u8),
            NFTA_TRACE_POLICY => policy = Some(be32(payload, "policy")? as i32),
            _ => {}
        }
    }
    msg.table = table.ok_or(MessageError::Missing("table"))?;
    msg.chain = chain.ok_or(MessageError::Missing("chain"))?;
    msg.id = id.ok_or(MessageError::Missing("id"))?;
    msg.kind = match kind.ok_or(MessageError::Missing("type"))? {
        NFT_TRACETYPE_POLICY => NftTraceKind::Policy,
        NFT_TRACETYPE_RETURN => NftTraceKind::Return,
        NFT_TRACETYPE_RULE => NftTraceKind::Rule,
        other => {
            return Err(MessageError::Unknown {
                what: "trace type",
                value: other.into(),
            })
        }
    };
    // A policy step carries the policy; some kernels add the verdict too.
    let code = match msg.kind {
        NftTraceKind::Policy => policy.or(verdict_code),
        _ => verdict_code,
    }
    .ok_or(MessageError::Missing("verdict"))?;
    msg.verdict = verdict(code)?;
    msg.handle = (msg.kind == NftTraceKind::Rule).then_some(handle).flatten();
    msg.target = matches!(msg.verdict, NftVerdict::Jump | NftVerdict::Goto)
        .then_some(target)
        .flatten();
    Ok(msg)
}

fn family(nfproto: u8) -> Result<NftFamily, MessageError> {
    Ok(match nfproto {
        NFPROTO_INET => NftFamily::Inet,
        NFPROTO_IPV4 => NftFamily::Ip,
        NFPROTO_IPV6 => NftFamily::Ip6,
        NFPROTO_ARP => NftFamily::Arp,
        NFPROTO_NETDEV => NftFamily::Netdev,
        NFPROTO_BRIDGE => NftFamily::Bridge,
        other => {
            return Err(MessageError::Unknown {
                what: "family",
                value: other.into(),
            })
        }
    })
}

fn verdict(code: i32) -> Result<NftVerdict, MessageError> {
    Ok(match code {
        NFT_CONTINUE => NftVerdict::Continue,
        NFT_BREAK => NftVerdict::Break,
        NFT_JUMP => NftVerdict::Jump,
        NFT_GOTO => NftVerdict::Goto,
        NFT_RETURN => NftVerdict::Return,
        c if c >= 0 => match c & NF_VERDICT_MASK {
            NF_DROP => NftVerdict::Drop,
            NF_ACCEPT => NftVerdict::Accept,
            NF_STOLEN => NftVerdict::Stolen,
            NF_QUEUE => NftVerdict::Queue,
            NF_REPEAT => NftVerdict::Repeat,
            _ => {
                return Err(MessageError::Unknown {
                    what: "verdict",
                    value: code.into(),
                })
            }
        },
        _ => {
            return Err(MessageError::Unknown {
                what: "verdict",
                value: code.into(),
            })
        }
    })
}

#[cfg(test)]
pub(crate) mod tests;
