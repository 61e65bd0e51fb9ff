//! `collect --follow`: a filter on pre-NAT values keeps its packets through NAT, typed as
//! users of the reference tool type it (no --netns: every namespace, one filter on the
//! address and port the client uses).
//!
//! The lab's router DNATs `10.0.1.1:8080` to the server's `10.0.2.2:80` and masquerades
//! towards the server ([`ROUTER_NAT`]), with conntrack accounting on: `conntrack -L`'s
//! packet counts of the connection are the witness of how many packets crossed the
//! router in each direction.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ct_core::{Event, PacketL4};
use ct_lab::{CtEntry, Node, CLIENT4, ROUTER_C4, ROUTER_S4, SERVER4};
use support::*;

const RECEIVE: &str = "net:netif_receive_skb";
const XMIT: &str = "net:net_dev_start_xmit";

/// What one TCP exchange through the DNAT looked like to `collect -f 'tcp port 8080'
/// --follow WHAT`.
struct Run {
    events: Vec<Event>,
    /// The router's entry for the exchange, `conntrack -L` right after it.
    entry: CtEntry,
    sport: u16,
}

fn exchange(follow: &str, scratch_name: &str) -> Option<Run> {
    let k = KernelLab::with_nat(scratch_name)?;
    k.lab
        .sysctl(Node::Router, &["net.netfilter.nf_conntrack_acct=1"])
        .expect("conntrack accounting in the router");
    let out = k.scratch.path("events.jsonl");
    let mut collect = start_collect(&[
        "-o",
        out.to_str().unwrap(),
        "-f",
        "tcp port 8080",
        "--follow",
        follow,
        "-p",
        &format!("tp:{RECEIVE}"),
        "-p",
        &format!("tp:{XMIT}"),
    ]);
    collect.wait_ready();
    let sport = k
        .lab
        .tcp_exchange(SERVER4.into(), 80, ROUTER_C4.into(), 8080)
        .expect("TCP through the DNAT");
    let entry = k
        .lab
        .conntrack_entries(Node::Router)
        .expect("conntrack -L")
        .into_iter()
        .find(|e| e.proto == 6 && e.orig.sport == Some(sport) && e.orig.dport == Some(8080))
        .expect("the router's entry of the exchange");
    collect.stop_cleanly();
    let events = read_file(&out);
    Some(Run {
        events,
        entry,
        sport,
    })
}

/// `packets=N` of each direction in a `conntrack -L` line with accounting on.
fn packet_counts(entry: &CtEntry) -> (u64, u64) {
    let counts: Vec<u64> = entry
        .line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("packets="))
        .map(|n| n.parse().expect("a packet count"))
        .collect();
    assert_eq!(counts.len(), 2, "no accounting in {}", entry.line);
    (counts[0], counts[1])
}

fn probe(e: &Event) -> &str {
    e.probe.as_ref().map_or("", |p| &p.name)
}

fn ifname(e: &Event) -> &str {
    e.packet
        .as_ref()
        .and_then(|p| p.ifname.as_ref())
        .map_or("", |n| n.as_str())
}

/// (source, source port, destination, destination port) of a TCP event.
fn tcp(e: &Event) -> Option<(IpAddr, u16, IpAddr, u16)> {
    let p = e.packet.as_ref()?;
    let ip = p.ip?;
    match p.l4? {
        PacketL4::Tcp { sport, dport, .. } => Some((ip.src, sport, ip.dst, dport)),
        _ => None,
    }
}

fn packet_id(e: &Event) -> u64 {
    e.tracking.expect("tracking ids are on").skb
}

/// The events at `probe` on `dev` whose TCP header is `src:sport > dst:dport`.
fn at<'a>(
    run: &'a Run,
    probe_name: &str,
    dev: &str,
    flow: (IpAddr, u16, IpAddr, u16),
) -> Vec<&'a Event> {
    run.events
        .iter()
        .filter(|e| probe(e) == probe_name && ifname(e) == dev && tcp(e) == Some(flow))
        .collect()
}

fn dump(run: &Run) -> String {
    let mut s = format!("conntrack: {}\n", run.entry.line);
    for e in &run.events {
        s.push_str(&format!(
            "  {} {:<4} {:?} id {:x}\n",
            probe(e),
            ifname(e),
            tcp(e),
            packet_id(e)
        ));
    }
    s
}

#[test]
fn a_pre_nat_filter_follows_each_packet_through_the_dnat() {
    let Some(run) = exchange("packet", "follow-packet") else {
        return;
    };
    let d = dump(&run);
    let (orig_packets, reply_packets) = packet_counts(&run.entry);
    let client = IpAddr::from(CLIENT4);
    let masq = run.entry.reply.dport.expect("the masquerade port");
    // The client's packets as they enter the router (the filter matches them there) and
    // as they leave it after DNAT and masquerade (it no longer does).
    let entering = at(
        &run,
        RECEIVE,
        "rc",
        (client, run.sport, ROUTER_C4.into(), 8080),
    );
    let leaving = at(
        &run,
        XMIT,
        "rs",
        (ROUTER_S4.into(), masq, SERVER4.into(), 80),
    );
    assert_eq!(
        entering.len() as u64,
        orig_packets,
        "every request entering the router is reported\n{d}"
    );
    assert_eq!(
        leaving.len() as u64,
        orig_packets,
        "every request is followed out of the router after DNAT\n{d}"
    );
    // One packet, one tracking id, on both sides of the NAT.
    let ids_in: BTreeSet<u64> = entering.iter().map(|e| packet_id(e)).collect();
    let ids_out: BTreeSet<u64> = leaving.iter().map(|e| packet_id(e)).collect();
    assert_eq!(ids_in.len() as u64, orig_packets, "{d}");
    assert_eq!(ids_in, ids_out, "{d}");
    // The server's side of the same packets: received on s0, still followed.
    let at_server = at(
        &run,
        RECEIVE,
        "s0",
        (ROUTER_S4.into(), masq, SERVER4.into(), 80),
    );
    assert_eq!(at_server.len() as u64, orig_packets, "{d}");
    // Replies are selected where they carry port 8080 again: leaving the router towards
    // the client after un-NAT, as many as conntrack counted.
    let replies_out = at(
        &run,
        XMIT,
        "rc",
        (ROUTER_C4.into(), 8080, client, run.sport),
    );
    assert_eq!(replies_out.len() as u64, reply_packets, "{d}");
    // Following a packet does not follow its connection: the backend's replies before
    // un-NAT are not reported.
    let backend_replies = run
        .events
        .iter()
        .filter(|e| {
            tcp(e).is_some_and(|(src, sport, ..)| src == IpAddr::from(SERVER4) && sport == 80)
        })
        .count();
    assert_eq!(backend_replies, 0, "{d}");
}

#[test]
fn follow_none_judges_every_hit_alone() {
    let Some(run) = exchange("none", "follow-none") else {
        return;
    };
    let d = dump(&run);
    let (orig_packets, _) = packet_counts(&run.entry);
    let entering = at(
        &run,
        RECEIVE,
        "rc",
        (CLIENT4.into(), run.sport, ROUTER_C4.into(), 8080),
    );
    assert_eq!(entering.len() as u64, orig_packets, "{d}");
    assert!(
        run.events
            .iter()
            .all(|e| tcp(e).is_some_and(|(_, sport, _, dport)| sport == 8080 || dport == 8080)),
        "every event matches the filter itself\n{d}"
    );
}

#[test]
fn follow_conn_shows_the_backend_replies_before_un_nat() {
    let Some(run) = exchange("conn", "follow-conn") else {
        return;
    };
    let d = dump(&run);
    let (orig_packets, reply_packets) = packet_counts(&run.entry);
    let masq = run.entry.reply.dport.expect("the masquerade port");
    // The backend's replies as they are on the wire between server and router: from
    // 10.0.2.2:80 to the router's masquerade address. Neither matches the filter, and no
    // packet carries the connection there (the server tracks nothing, the router has not
    // seen them yet when they arrive).
    let backend = (IpAddr::from(SERVER4), 80, IpAddr::from(ROUTER_S4), masq);
    let sent = at(&run, XMIT, "s0", backend);
    let arriving = at(&run, RECEIVE, "rs", backend);
    assert_eq!(sent.len() as u64, reply_packets, "{d}");
    assert_eq!(arriving.len() as u64, reply_packets, "{d}");
    // The requests after DNAT, as with --follow packet.
    let leaving = at(
        &run,
        XMIT,
        "rs",
        (ROUTER_S4.into(), masq, SERVER4.into(), 80),
    );
    assert_eq!(leaving.len() as u64, orig_packets, "{d}");
    // And as the server receives them: after NAT, carrying no entry (the server tracks
    // nothing), in neither of the entry's tuples as they are (the inverse of its reply
    // tuple), and not matching the filter: found through the connection all the same.
    let at_server = at(
        &run,
        RECEIVE,
        "s0",
        (ROUTER_S4.into(), masq, SERVER4.into(), 80),
    );
    assert_eq!(at_server.len() as u64, orig_packets, "{d}");
    // Each reply is one packet from the server to the client: one tracking id for its
    // hits before and after un-NAT.
    let mut hits_per_id: BTreeMap<u64, usize> = BTreeMap::new();
    for e in sent.iter().chain(&arriving) {
        *hits_per_id.entry(packet_id(e)).or_default() += 1;
    }
    let replies_out = at(
        &run,
        XMIT,
        "rc",
        (ROUTER_C4.into(), 8080, CLIENT4.into(), run.sport),
    );
    for e in &replies_out {
        *hits_per_id.entry(packet_id(e)).or_default() += 1;
    }
    assert_eq!(hits_per_id.len() as u64, reply_packets, "{d}");
    assert!(
        hits_per_id.values().all(|&n| n == 3),
        "{hits_per_id:?}\n{d}"
    );
}
