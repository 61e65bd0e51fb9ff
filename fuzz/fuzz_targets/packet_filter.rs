//! The `-f` packet filter: parsing arbitrary text never panics; a filter that parses
//! compiles, and the compiled program (what the BPF side runs)
//! decides exactly like the expression on packets made from the input and from the
//! filter's own addresses and ports.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ct_core::filter::{Dir, Expr, PacketFilter, PacketView, Test};
use ct_core::IpVersion;
use libfuzzer_sys::fuzz_target;

/// The filter text runs up to the first NUL byte; the 38 bytes after it, when there,
/// describe one more packet.
const VIEW_BYTES: usize = 38;

fn view_from(b: &[u8; VIEW_BYTES]) -> PacketView {
    let v6 = b[0] & 1 != 0;
    let (src, dst) = if v6 {
        let s: [u8; 16] = b[4..20].try_into().unwrap();
        let d: [u8; 16] = b[20..36].try_into().unwrap();
        (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(d)))
    } else {
        (
            IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])),
            IpAddr::V4(Ipv4Addr::new(b[8], b[9], b[10], b[11])),
        )
    };
    PacketView {
        version: (b[0] & 2 == 0).then_some(if v6 { IpVersion::V6 } else { IpVersion::V4 }),
        proto: b[1],
        src: Some(src),
        dst: Some(dst),
        ports: (b[0] & 4 == 0).then(|| {
            (
                u16::from_be_bytes([b[2], b[3]]),
                u16::from_be_bytes([b[36], b[37]]),
            )
        }),
    }
}

/// Addresses and ports the filter names, so that views hit its tests too.
fn collect(e: &Expr, addrs: &mut Vec<IpAddr>, ports: &mut Vec<u16>, protos: &mut Vec<u8>) {
    match e {
        Expr::Test(Test::Net { net, .. }) => {
            addrs.push(net.network());
            addrs.push(net.broadcast());
        }
        Expr::Test(Test::Port { lo, hi, .. }) => {
            ports.extend([*lo, *hi, lo.wrapping_sub(1), hi.wrapping_add(1)]);
        }
        Expr::Test(Test::Proto(p)) => protos.push(*p),
        Expr::Test(Test::L3(_)) => {}
        Expr::Not(a) => collect(a, addrs, ports, protos),
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect(a, addrs, ports, protos);
            collect(b, addrs, ports, protos);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let view_bytes = rest
        .get(..VIEW_BYTES)
        .map(|v| <[u8; VIEW_BYTES]>::try_from(v).unwrap());
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let filter = match PacketFilter::parse(text) {
        Ok(filter) => filter,
        Err(err) => {
            assert!(
                err.column >= 1 && err.column <= text.chars().count() + 1,
                "{err:?}"
            );
            let _ = err.to_string();
            return;
        }
    };
    assert_eq!(filter.to_string(), text);
    assert_eq!(text.parse::<PacketFilter>().as_ref(), Ok(&filter));
    let program = filter.compile();
    assert!(!program.insns.is_empty());
    for insn in &program.insns {
        if let Test::Net { dir, .. } | Test::Port { dir, .. } = insn.test {
            assert!(
                matches!(dir, Dir::Src | Dir::Dst),
                "split at compile time: {insn:?}"
            );
        }
    }

    let mut views = Vec::new();
    if let Some(b) = &view_bytes {
        views.push(view_from(b));
    }
    views.push(PacketView {
        version: None,
        proto: 0,
        src: None,
        dst: None,
        ports: None,
    });
    let (mut addrs, mut ports, mut protos) = (Vec::new(), Vec::new(), vec![6, 17, 1, 58, 132]);
    collect(&filter.expr, &mut addrs, &mut ports, &mut protos);
    addrs.truncate(8);
    ports.truncate(8);
    protos.truncate(8);
    if addrs.is_empty() {
        addrs.push(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    }
    if ports.is_empty() {
        ports.push(80);
    }
    for (i, &src) in addrs.iter().enumerate() {
        let dst = addrs[(i + 1) % addrs.len()];
        for &proto in &protos {
            for (j, &sport) in ports.iter().enumerate() {
                let dport = ports[(j + i) % ports.len()];
                views.push(PacketView {
                    version: Some(IpVersion::of(src)),
                    proto,
                    src: Some(src),
                    dst: Some(dst),
                    ports: matches!(proto, 6 | 17 | 132).then_some((sport, dport)),
                });
            }
        }
    }
    for view in &views {
        assert_eq!(
            program.matches(view),
            filter.expr.matches(view),
            "compiled and parsed forms of {text:?} disagree on {view:?}\n{program:#?}"
        );
    }
});
