//! The lab's cases (issue 5): ruleset + traffic, run with the collector attached to the
//! router's namespace, and `conntrack -L` read in the router right after the traffic.
//! Shared by `lab_cases.rs` (which asserts) and `capture.rs` (which writes fixtures).
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

use ct_core::Layout;
use ct_core::{CtConnEvent, CtState, PacketL4, Render};
use ct_lab::{Capture, Captured, CtEntry, Lab, Node, CLIENT4, ROUTER_C4, SERVER4, SERVER6};

pub const XMIT: &str = "net:net_dev_start_xmit";
pub const KFREE: &str = "skb:kfree_skb";
pub const CONSUME: &str = "skb:consume_skb";
pub const RECEIVE: &str = "net:netif_receive_skb";

/// What one case produced.
#[derive(Debug)]
pub struct Run {
    /// Every record from the router's namespace, in time order.
    pub events: Vec<Captured>,
    /// `conntrack -L` in the router, read right after the traffic.
    pub table: Vec<CtEntry>,
}

impl Run {
    /// Events of one probe that carry a ct section.
    pub fn at<'a>(&'a self, probe: &'a str) -> impl Iterator<Item = &'a Captured> + 'a {
        self.events
            .iter()
            .filter(move |e| e.probe() == probe && e.ct().is_some())
    }

    /// Events of one probe whose connection's original tuple has protocol `proto`.
    pub fn conn_events<'a>(
        &'a self,
        probe: &'a str,
        proto: u8,
    ) -> impl Iterator<Item = &'a Captured> + 'a {
        self.at(probe)
            .filter(move |e| e.base().is_some_and(|b| b.orig.proto.number() == proto))
    }

    /// The table entry with `conn`'s tuples.
    pub fn entry_for(&self, conn: &CtConnEvent) -> Option<&CtEntry> {
        self.table.iter().find(|e| e.matches(conn))
    }

    /// The issue's rule: every reported connection (and parent) has its original and
    /// reply tuples in the router's table.
    pub fn assert_conns_in_table(&self) {
        let mut checked = 0;
        for e in &self.events {
            let Some(ct) = e.ct() else { continue };
            for conn in ct.base.iter().chain(ct.parent.iter()) {
                assert!(
                    self.entry_for(conn).is_some(),
                    "connection reported at {} not in conntrack -L:\n  {}\n{}",
                    e.probe(),
                    e.event.ct.as_ref().unwrap().display(Layout::SingleLine),
                    self.dump()
                );
                checked += 1;
            }
        }
        assert!(
            checked > 0,
            "no connection was reported at all\n{}",
            self.dump()
        );
    }

    /// Everything, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::from("events:\n");
        for e in &self.events {
            let _ = write!(s, "  {:<24} {:<3} ", e.probe(), e.ifname().unwrap_or("-"));
            match e.ct() {
                Some(ct) => {
                    let _ = writeln!(s, "{}", ct.display(Layout::SingleLine));
                }
                None => {
                    let l4 = e.event.packet.as_ref().and_then(|p| p.l4);
                    let _ = writeln!(s, "(no ct) {l4:?}");
                }
            }
        }
        s.push_str("conntrack -L:\n");
        for t in &self.table {
            let _ = writeln!(s, "  {}", t.line);
        }
        s
    }
}

/// Builds a lab, loads `ruleset` in the router, attaches the collector to the router's
/// namespace, runs `traffic`, reads the table and collects the events.
pub fn run<T>(ruleset: &str, traffic: impl FnOnce(&Lab) -> T) -> (Run, T) {
    let lab = Lab::new().expect("building the lab");
    lab.router_nft(ruleset).expect("loading the ruleset");
    let capture = Capture::start(lab.netns_inode(Node::Router)).expect("starting the collector");
    let out = traffic(&lab);
    let table = lab.conntrack_entries(Node::Router).expect("conntrack -L");
    let events = capture.finish(Duration::from_millis(300));
    (Run { events, table }, out)
}

/// The packet's transport ports, from the captured header.
pub fn udp_ports(e: &Captured) -> Option<(u16, u16)> {
    match e.event.packet.as_ref()?.l4? {
        PacketL4::Udp { sport, dport } => Some((sport, dport)),
        _ => None,
    }
}

/// `count` datagrams from the client to a UDP server on the server's `port`, each
/// answered; the client's source port.
pub fn udp_exchange(lab: &Lab, port: u16, count: u32) -> u16 {
    lab.udp_exchange(SERVER4.into(), port, SERVER4.into(), port, count)
        .expect("udp exchange")
}

pub fn state(e: &Captured) -> CtState {
    e.ct().expect("ct section").state
}

// ---------------------------------------------------------------------------------------

pub const MASQUERADE: &str = r#"
table ip lab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new,established,related counter
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "rs" masquerade
    }
}
"#;

/// Case 1: three echo requests client -> server through masquerade; one to the router.
pub fn icmp_masquerade() -> (Run, Vec<CtEntry>) {
    run(MASQUERADE, |lab| {
        let out = lab.ping(Node::Client, SERVER4.into(), 3).expect("ping");
        assert!(
            out.success(),
            "ping through the router failed: {}",
            out.stdout
        );
        let src_nat = lab
            .conntrack(Node::Router, &["--src-nat"])
            .expect("conntrack --src-nat");
        let local = lab
            .ping(Node::Client, ROUTER_C4.into(), 1)
            .expect("ping router");
        assert!(
            local.success(),
            "ping to the router failed: {}",
            local.stdout
        );
        src_nat
    })
}

pub const DNAT_SNAT: &str = r#"
table ip lab {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "rc" tcp dport 8080 dnat to 10.0.2.2:80
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "rs" masquerade
    }
}
"#;

/// Case 2: a TCP connection to the router's 8080, DNATed to the server's 80, masqueraded.
pub fn tcp_dnat_snat() -> (Run, (u16, Vec<CtEntry>)) {
    run(DNAT_SNAT, |lab| {
        let sport = lab
            .tcp_exchange(SERVER4.into(), 80, ROUTER_C4.into(), 8080)
            .expect("tcp through DNAT");
        let both = lab
            .conntrack(Node::Router, &["--src-nat", "--dst-nat"])
            .expect("conntrack --src-nat --dst-nat");
        (sport, both)
    })
}

pub const ZONE_MARK_LABELS: &str = r#"
table inet lab {
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        ct zone set 5
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct mark set 0x2a
        ct label set 5
        ct label set 70
    }
}
"#;

/// Case 3: two UDP exchanges in zone 5 (both directions), marked 42, labels 5 and 70.
pub fn udp_zone_mark_labels() -> (Run, u16) {
    run(ZONE_MARK_LABELS, |lab| udp_exchange(lab, 5300, 2))
}

pub const ORIG_ZONE: &str = r#"
table inet lab {
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        iifname "rc" ct original zone set 7
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new counter
    }
}
"#;

/// Case 4: a UDP exchange whose original direction is in zone 7.
pub fn udp_orig_zone() -> (Run, u16) {
    run(ORIG_ZONE, |lab| udp_exchange(lab, 5301, 1))
}

pub const FTP_HELPER: &str = r#"
table ip lab {
    ct helper ftp-std {
        type "ftp" protocol tcp
    }
    chain prerouting {
        type filter hook prerouting priority filter; policy accept;
        tcp dport 21 ct helper set "ftp-std"
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state related counter
    }
}
"#;

/// Case 5: an FTP session (PASV) through the kernel's ftp helper.
pub fn ftp_related() -> (Run, u16) {
    run(FTP_HELPER, |lab| {
        let mut server = lab
            .ftp_server(Node::Server, SERVER4.into(), 21)
            .expect("ftp server");
        let sport = lab
            .ftp_client(Node::Client, SERVER4.into(), 21)
            .expect("ftp client");
        server
            .finish(Duration::from_secs(5))
            .expect("ftp server end");
        sport
    })
}

pub const TRACK_ALL: &str = r#"
table inet lab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new,established,related counter
    }
}
"#;

/// Case 6: UDP to a closed port; the server's port unreachable comes back.
pub fn icmp_error_related() -> (Run, u16) {
    run(TRACK_ALL, |lab| {
        let client = lab
            .udp_client(Node::Client, SERVER4.into(), 9, 1, Duration::from_secs(2))
            .expect("udp client");
        assert_eq!(client.outcomes, ["refused"]);
        client.sport
    })
}

pub const NOTRACK: &str = r#"
table inet lab {
    chain prerouting {
        type filter hook prerouting priority raw; policy accept;
        udp dport 7777 notrack
        udp sport 7777 notrack
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new,established,untracked counter
    }
}
"#;

/// Case 7: UDP on port 7777 is not tracked; UDP on 5300 is, for contrast.
pub fn notrack() -> (Run, (u16, u16)) {
    run(NOTRACK, |lab| {
        (udp_exchange(lab, 7777, 1), udp_exchange(lab, 5300, 1))
    })
}

/// Case 8a: TCP over IPv6.
pub fn ipv6_tcp() -> (Run, u16) {
    run(TRACK_ALL, |lab| {
        lab.tcp_exchange(SERVER6.into(), 8080, SERVER6.into(), 8080)
            .expect("tcp over IPv6")
    })
}

/// Case 8b: ICMPv6 echo.
pub fn icmpv6_echo() -> (Run, ()) {
    run(TRACK_ALL, |lab| {
        let out = lab.ping(Node::Client, SERVER6.into(), 2).expect("ping -6");
        assert!(out.success(), "ping -6 failed: {}", out.stdout);
    })
}

pub const SCTP_SPORT: u16 = 5000;
pub const SCTP_DPORT: u16 = 6000;
pub const SCTP_TAG: u32 = 0x1122_3344;

/// Case 9a: a hand-made SCTP handshake (INIT, INIT-ACK, COOKIE-ECHO, COOKIE-ACK).
pub fn sctp() -> (Run, ct_lab::SctpHandshake) {
    run(TRACK_ALL, |lab| {
        let mut server = lab
            .sctp_server(Node::Server, CLIENT4.into())
            .expect("sctp server");
        let tags = lab
            .sctp_handshake(
                Node::Client,
                SERVER4.into(),
                SCTP_SPORT,
                SCTP_DPORT,
                SCTP_TAG,
            )
            .expect("sctp handshake");
        server
            .finish(Duration::from_secs(5))
            .expect("sctp server end");
        tags
    })
}

/// Case 9b: one packet of IP protocol 253 each way.
pub fn generic_proto() -> (Run, ()) {
    run(TRACK_ALL, |lab| {
        let mut server = lab
            .raw_server(Node::Server, 253, CLIENT4.into())
            .expect("raw server");
        lab.raw_exchange(Node::Client, 253, SERVER4.into())
            .expect("raw exchange");
        server
            .finish(Duration::from_secs(5))
            .expect("raw server end");
    })
}

pub const DROP_ESTABLISHED_ECHO: &str = r#"
table ip lab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        icmp type echo-request ct state established drop
    }
}
"#;

/// Case 10: echo requests after the first are ESTABLISHED and dropped in forward.
pub fn drop_established() -> (Run, ()) {
    run(DROP_ESTABLISHED_ECHO, |lab| {
        let out = lab.ping(Node::Client, SERVER4.into(), 3).expect("ping");
        assert!(
            out.stdout.contains("3 packets transmitted, 1 received"),
            "expected only the first echo to pass: {}",
            out.stdout
        );
    })
}
