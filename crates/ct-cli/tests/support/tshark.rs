//! Reading pcapng captures with stock tshark (from apt) and holding what it decodes to the
//! JSON packet sections of the same events. Included by path (`#[path]`) by the tests that
//! write captures.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use ct_core::{Event, IpVersion, Layout, PacketL4, Render};
use serde_json::Value;

/// The line tshark prints on stderr whenever it runs as root; not a warning about the file.
const ROOT_NOTICE: &str = "Running as user \"root\" and group \"root\". This could be dangerous.";

/// Whether tshark runs here; otherwise the kernel-test gate decides (skip, or fail under
/// CT_REQUIRE_KERNEL_TESTS=1).
pub fn available() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ct_lab::run_or_skip(if ok {
        Ok(())
    } else {
        Err("no tshark (scripts/install-deps.sh installs it)")
    })
}

/// The fields compared, in `-e` order.
const FIELDS: &[&str] = &[
    "frame.comment",
    "frame.interface_name",
    "frame.interface_description",
    "frame.time_epoch",
    "frame.cap_len",
    "frame.len",
    "ip.src",
    "ip.dst",
    "ip.ttl",
    "ip.dsfield",
    "ip.id",
    "ip.len",
    "ip.proto",
    "ip.flags.df",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hlim",
    "ipv6.tclass",
    "ipv6.flow",
    "ipv6.plen",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
    "sctp.srcport",
    "sctp.dstport",
];

/// One packet as tshark decoded it: the first value of each field it has.
#[derive(Debug)]
pub struct Decoded(serde_json::Map<String, Value>);

impl Decoded {
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field)?.as_array()?.first()?.as_str()
    }

    fn number(&self, field: &str) -> Option<u64> {
        let text = self.get(field)?;
        match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None if text == "True" => Some(1),
            None if text == "False" => Some(0),
            None => text.parse().ok(),
        }
    }
}

/// Runs tshark on `capture` with a display filter (empty: every packet), checking that it
/// said nothing on stderr but its root notice. Returns the decoded packets.
pub fn read(capture: &Path, filter: &str) -> Vec<Decoded> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(capture).args(["-T", "json"]);
    if !filter.is_empty() {
        cmd.args(["-Y", filter]);
    }
    for field in FIELDS {
        cmd.args(["-e", field]);
    }
    let out = cmd.output().expect("tshark runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != ROOT_NOTICE)
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark -r {}: {}\n{}",
        capture.display(),
        out.status,
        complaints.join("\n")
    );
    let packets: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tshark's JSON: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    packets
        .into_iter()
        .map(|p| match &p["_source"]["layers"] {
            Value::Object(fields) => Decoded(fields.clone()),
            other => panic!("no layers in {other}"),
        })
        .collect()
}

/// The packets tshark flags as malformed or with an expert error (a dissector that could
/// not make sense of them), with its messages. The DNS dissectors are off: the lab's UDP
/// flows use ports 53 and 5353 with payloads that are not DNS, which is no fault of the
/// capture.
pub fn malformed(capture: &Path) -> Vec<String> {
    let out = Command::new("tshark")
        .args([
            "-n",
            "--disable-protocol",
            "dns",
            "--disable-protocol",
            "mdns",
            "-r",
        ])
        .arg(capture)
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= 0x800000"])
        .args([
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
        ])
        .args(["-e", "frame.comment"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Compares what tshark decoded with the event's JSON packet section; `clock_offset_ns` is
/// what the writer added to the event's timestamp. Returns the differences, described.
pub fn differences(decoded: &Decoded, event: &Event, clock_offset_ns: i64) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut same = |what: &str, tshark: Option<String>, json: Option<String>| {
        if tshark != json {
            diffs.push(format!("{what}: tshark {tshark:?}, JSON {json:?}"));
        }
    };
    let packet = event.packet.as_ref().expect("a packet section");
    let ip = packet.ip.as_ref().expect("an ip section");
    let headers = packet.headers.as_ref().expect("header bytes").as_bytes();
    let num = |field: &str| decoded.number(field).map(|n| n.to_string());
    let text = |field: &str| decoded.get(field).map(str::to_owned);
    let s = |v: u64| Some(v.to_string());

    same(
        "comment",
        text("frame.comment"),
        Some(event.display(Layout::SingleLine).to_string()),
    );
    match &packet.ifname {
        Some(name) => same(
            "interface name",
            text("frame.interface_name"),
            Some(name.as_str().to_owned()),
        ),
        // Unnamed (an nftables verdict): the device of its index, whatever its name.
        None => same(
            "interface index",
            text("frame.interface_description")
                .and_then(|d| d.split(' ').nth(1).map(str::to_owned)),
            packet.ifindex.map(|i| i.to_string()),
        ),
    }
    let timestamp = decoded
        .get("frame.time_epoch")
        .map(|t| t.replace('.', "").trim_start_matches('0').to_owned());
    same(
        "time",
        timestamp,
        event
            .timestamp
            .map(|t| (i128::from(t) + i128::from(clock_offset_ns)).to_string()),
    );
    same(
        "captured length",
        num("frame.cap_len"),
        s(headers.len().min(usize::from(ip.len)) as u64),
    );
    same("original length", num("frame.len"), s(ip.len.into()));
    let addr = |field: &str| decoded.get(field).and_then(|a| a.parse::<IpAddr>().ok());
    let layer = match ip.version {
        IpVersion::V4 => "ip",
        IpVersion::V6 => "ipv6",
    };
    for (name, ours) in [("src", ip.src), ("dst", ip.dst)] {
        let theirs = addr(&format!("{layer}.{name}"));
        same(name, theirs.map(|a| a.to_string()), Some(ours.to_string()));
    }
    match ip.version {
        IpVersion::V4 => {
            same("ttl", num("ip.ttl"), s(ip.ttl.into()));
            same("tos", num("ip.dsfield"), s(ip.tos.into()));
            same("id", num("ip.id"), s(ip.id.into()));
            same("len", num("ip.len"), s(ip.len.into()));
            same("proto", num("ip.proto"), s(ip.proto.into()));
            same("df", num("ip.flags.df"), s(ip.df.into()));
            same("mf", num("ip.flags.mf"), s(ip.mf.into()));
            same("frag_off", num("ip.frag_offset"), s(ip.frag_off.into()));
        }
        IpVersion::V6 => {
            same("hop limit", num("ipv6.hlim"), s(ip.ttl.into()));
            same("traffic class", num("ipv6.tclass"), s(ip.tos.into()));
            same("flow label", num("ipv6.flow"), s(ip.id.into()));
            same(
                "len",
                num("ipv6.plen").map(|p| (p.parse::<u64>().unwrap() + 40).to_string()),
                s(ip.len.into()),
            );
        }
    }
    if let Some(l4) = packet.l4 {
        // tshark's layer and field names for the two flow fields of each protocol.
        let (layer, first, second) = match l4 {
            PacketL4::Tcp { .. } => ("tcp", "srcport", "dstport"),
            PacketL4::Udp { .. } => ("udp", "srcport", "dstport"),
            PacketL4::Sctp { .. } => ("sctp", "srcport", "dstport"),
            PacketL4::Icmp { .. } => ("icmp", "type", "code"),
            PacketL4::Icmpv6 { .. } => ("icmpv6", "type", "code"),
        };
        let (ours_first, ours_second, flags) = l4.flow_fields();
        for (field, ours) in [(first, ours_first), (second, ours_second)] {
            let name = format!("{layer}.{field}");
            same(&name, num(&name), s(ours.into()));
        }
        if layer == "tcp" {
            same(
                "tcp.flags",
                decoded.number("tcp.flags").map(|f| (f & 0xff).to_string()),
                s(flags.into()),
            );
        }
    }
    diffs
}

/// Checks every packet of `capture` against the events that should have become them
/// (those with an IP header and header bytes, in order).
pub fn assert_matches(capture: &Path, events: &[Event], clock_offset_ns: i64) {
    let expected: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.packet
                .as_ref()
                .is_some_and(|p| p.ip.is_some() && p.headers.is_some())
        })
        .collect();
    let decoded = read(capture, "");
    assert_eq!(
        decoded.len(),
        expected.len(),
        "tshark reads one packet per event with an IP header"
    );
    let mut failures = Vec::new();
    for (i, (d, e)) in decoded.iter().zip(&expected).enumerate() {
        let diffs = differences(d, e, clock_offset_ns);
        if !diffs.is_empty() {
            failures.push(format!("packet {}:\n  {}", i + 1, diffs.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let malformed = malformed(capture);
    assert!(
        malformed.is_empty(),
        "tshark finds malformed packets:\n{}",
        malformed.join("\n")
    );
}
