use std::path::PathBuf;

use proptest::prelude::*;
use proptest::sample::select;
use strum::IntoEnumIterator;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/nft")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn only(datagram: &[u8]) -> TraceMessage {
    let mut messages = parse_datagram(datagram);
    assert_eq!(messages.len(), 1, "{messages:?}");
    messages.remove(0).unwrap()
}

#[test]
fn kernel_rule_drop() {
    let m = only(&fixture("rule-drop-6.18.bin"));
    assert_eq!(m.family, NftFamily::Inet);
    assert_eq!((m.table.as_str(), m.chain.as_str()), ("f", "in"));
    assert_eq!(
        (m.kind, m.handle, m.verdict),
        (NftTraceKind::Rule, Some(3), NftVerdict::Drop)
    );
    assert_eq!(m.target, None);
    assert_eq!(m.nfproto, Some(NFPROTO_IPV4));
    assert_eq!(m.iif, Some(5));
    // IPv4 header: 20 bytes, id 23651, 10.99.0.1 > 10.99.0.2; TCP: 40802 > 81.
    assert_eq!(m.network_header.len(), 20);
    assert_eq!(&m.network_header[4..6], &23651u16.to_be_bytes());
    assert_eq!(&m.network_header[12..20], &[10, 99, 0, 1, 10, 99, 0, 2]);
    assert_eq!(&m.transport_header[..4], &[0x9f, 0x62, 0, 81]);
}

#[test]
fn kernel_policy_and_continue() {
    let policy = only(&fixture("policy-accept-6.18.bin"));
    assert_eq!(
        (policy.table.as_str(), policy.chain.as_str()),
        ("t2", "pre")
    );
    assert_eq!(
        (policy.kind, policy.handle, policy.verdict),
        (NftTraceKind::Policy, None, NftVerdict::Accept)
    );
    let marking = only(&fixture("rule-continue-6.18.bin"));
    assert_eq!(
        (marking.kind, marking.handle, marking.verdict),
        (NftTraceKind::Rule, Some(2), NftVerdict::Continue)
    );
    // One packet: one trace id.
    assert_eq!(marking.id, policy.id);
}

#[test]
fn control_and_other_messages_are_skipped() {
    let mut datagram = fixture("policy-accept-6.18.bin");
    // An NLMSG_DONE in front (type 3), then an nftables NEWTABLE (0x0a00).
    let mut done = vec![0u8; 20];
    done[0] = 20;
    done[4] = 3;
    let mut newtable = done.clone();
    newtable[4..6].copy_from_slice(&0x0a00u16.to_ne_bytes());
    let mut all = done;
    all.extend(newtable);
    all.append(&mut datagram);
    let messages = parse_datagram(&all);
    assert_eq!(messages.len(), 1);
    assert!(messages[0].is_ok());
}

#[test]
fn a_message_without_its_table_is_refused() {
    let m = TraceMessage {
        table: String::new(),
        ..sample()
    };
    let mut bytes = encode(&m);
    // Rename the table attribute (type 1) to an unknown type (30).
    let at = find_attr(&bytes, NFTA_TRACE_TABLE).unwrap();
    bytes[at + 2] = 30;
    assert_eq!(
        parse_datagram(&bytes),
        [Err(MessageError::Missing("table"))]
    );
}

fn find_attr(msg: &[u8], kind: u16) -> Option<usize> {
    let mut at = NLMSG_HDRLEN + NFGENMSG_LEN;
    while at + NLA_HDRLEN <= msg.len() {
        let len = usize::from(u16::from_ne_bytes([msg[at], msg[at + 1]]));
        if u16::from_ne_bytes([msg[at + 2], msg[at + 3]]) == kind {
            return Some(at);
        }
        at += align4(len.max(NLA_HDRLEN));
    }
    None
}

/// A rule's drop in `inet f in`, as the join tests also start from.
pub(crate) fn sample() -> TraceMessage {
    TraceMessage {
        family: NftFamily::Inet,
        table: "f".into(),
        chain: "in".into(),
        kind: NftTraceKind::Rule,
        handle: Some(3),
        verdict: NftVerdict::Drop,
        target: None,
        id: 7,
        nfproto: Some(NFPROTO_IPV4),
        iif: Some(2),
        oif: None,
        mark: None,
        network_header: vec![0x45; 20],
        transport_header: vec![1; 20],
    }
}

/// Writes `m` as the kernel would (the test's model of `nf_tables_trace.c`).
fn encode(m: &TraceMessage) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        out.extend(len.to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend(payload);
        out.resize(align4(out.len()), 0);
    }
    fn cstr(s: &str) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        b
    }
    let family = match m.family {
        NftFamily::Inet => NFPROTO_INET,
        NftFamily::Ip => NFPROTO_IPV4,
        NftFamily::Ip6 => NFPROTO_IPV6,
        NftFamily::Arp => NFPROTO_ARP,
        NftFamily::Bridge => NFPROTO_BRIDGE,
        NftFamily::Netdev => NFPROTO_NETDEV,
    };
    let mut body = vec![family, 0, 0, 0];
    if let Some(p) = m.nfproto {
        attr(&mut body, NFTA_TRACE_NFPROTO, &u32::from(p).to_be_bytes());
    }
    let kind = match m.kind {
        NftTraceKind::Policy => NFT_TRACETYPE_POLICY,
        NftTraceKind::Return => NFT_TRACETYPE_RETURN,
        NftTraceKind::Rule => NFT_TRACETYPE_RULE,
    };
    attr(&mut body, NFTA_TRACE_TYPE, &kind.to_be_bytes());
    attr(&mut body, NFTA_TRACE_ID, &m.id.to_be_bytes());
    attr(&mut body, NFTA_TRACE_CHAIN, &cstr(&m.chain));
    attr(&mut body, NFTA_TRACE_TABLE, &cstr(&m.table));
    if let Some(h) = m.handle {
        attr(&mut body, NFTA_TRACE_RULE_HANDLE, &h.to_be_bytes());
    }
    let code: i32 = match m.verdict {
        NftVerdict::Accept => NF_ACCEPT,
        NftVerdict::Drop => NF_DROP,
        NftVerdict::Stolen => NF_STOLEN,
        NftVerdict::Queue => NF_QUEUE | 5 << 16,
        NftVerdict::Repeat => NF_REPEAT,
        NftVerdict::Continue => NFT_CONTINUE,
        NftVerdict::Break => NFT_BREAK,
        NftVerdict::Jump => NFT_JUMP,
        NftVerdict::Goto => NFT_GOTO,
        NftVerdict::Return => NFT_RETURN,
    };
    if m.kind == NftTraceKind::Policy {
        attr(&mut body, NFTA_TRACE_POLICY, &code.to_be_bytes());
    } else {
        let mut verdict = Vec::new();
        attr(&mut verdict, NFTA_VERDICT_CODE, &code.to_be_bytes());
        if let Some(t) = &m.target {
            attr(&mut verdict, NFTA_VERDICT_CHAIN, &cstr(t));
        }
        attr(&mut body, NFTA_TRACE_VERDICT | 0x8000, &verdict);
    }
    if let Some(i) = m.iif {
        attr(&mut body, NFTA_TRACE_IIF, &i.to_be_bytes());
    }
    if let Some(o) = m.oif {
        attr(&mut body, NFTA_TRACE_OIF, &o.to_be_bytes());
    }
    if let Some(mark) = m.mark {
        attr(&mut body, NFTA_TRACE_MARK, &mark.to_be_bytes());
    }
    if !m.network_header.is_empty() {
        attr(&mut body, NFTA_TRACE_NETWORK_HEADER, &m.network_header);
    }
    if !m.transport_header.is_empty() {
        attr(&mut body, NFTA_TRACE_TRANSPORT_HEADER, &m.transport_header);
    }
    let len = (NLMSG_HDRLEN + body.len()) as u32;
    let mut out = Vec::new();
    out.extend(len.to_ne_bytes());
    out.extend((NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE).to_ne_bytes());
    out.extend([0u8; 10]);
    out.extend(body);
    out
}

fn message() -> impl Strategy<Value = TraceMessage> {
    // Every value of each enum, so that a new one is covered without editing this.
    let family = select(NftFamily::iter().collect::<Vec<_>>());
    let kind = select(NftTraceKind::iter().collect::<Vec<_>>());
    let verdict = select(NftVerdict::iter().collect::<Vec<_>>());
    (
        (family, "[a-z_0-9]{1,20}", "[a-zA-Z_0-9-]{1,30}", kind),
        (any::<u64>(), verdict, "[a-z]{1,10}", any::<u32>()),
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
        ),
        (
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..20),
        ),
    )
        .prop_map(
            |(
                (family, table, chain, kind),
                (handle, verdict, target, id),
                (nfproto, iif, oif, mark),
                (net, transport),
            )| {
                // A chain's policy is accept or drop.
                let verdict = match (kind, verdict) {
                    (NftTraceKind::Policy, NftVerdict::Drop) => NftVerdict::Drop,
                    (NftTraceKind::Policy, _) => NftVerdict::Accept,
                    (_, verdict) => verdict,
                };
                TraceMessage {
                    family,
                    table,
                    chain,
                    kind,
                    handle: (kind == NftTraceKind::Rule).then_some(handle),
                    verdict,
                    target: matches!(verdict, NftVerdict::Jump | NftVerdict::Goto)
                        .then_some(target),
                    id,
                    nfproto,
                    iif,
                    oif,
                    mark,
                    network_header: net,
                    transport_header: transport,
                }
            },
        )
}

proptest! {
    #[test]
    fn messages_round_trip(m in message()) {
        let mut datagram = encode(&m);
        // Two messages in one datagram read as two.
        datagram.extend(encode(&m));
        let read = parse_datagram(&datagram);
        prop_assert_eq!(read, vec![Ok(m.clone()), Ok(m)]);
    }

    #[test]
    fn any_bytes_read_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_datagram(&bytes);
    }

    #[test]
    fn cut_messages_are_errors_not_panics(m in message(), cut in 1usize..200) {
        let mut datagram = encode(&m);
        let keep = datagram.len().saturating_sub(cut).max(NLMSG_HDRLEN);
        datagram.truncate(keep);
        // The header's length no longer fits: refused as a whole.
        for read in parse_datagram(&datagram) {
            prop_assert!(read.is_err() || keep == encode(&m).len());
        }
    }
}
