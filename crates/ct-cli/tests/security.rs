//! No kernel address reaches any output. A real capture of lab traffic (TCP through DNAT
//! and masquerade, UDP, ICMP) is written in every format ct-cli has (the JSON events file,
//! the live multi-line print, and print/sort/conns in multiline, singleline and JSON), and
//! every byte is scanned for what a kernel pointer looks like. The scanner is tested on
//! planted pointers first, so a leak cannot go unseen.

mod support;

use ct_lab::{Node, ROUTER_C4, SERVER4};
use support::*;

/// Lowest kernel address on x86-64 and arm64 (48-bit): the direct map, vmalloc, vmemmap
/// and the kernel image all lie at or above it.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// Every token of `text` that looks like a kernel address: 16 hex digits (with or without
/// `0x`) at or above [`KERNEL_START`], `0xffff` and 12 more hex digits, a decimal number in
/// `KERNEL_START..=u64::MAX`, or a negative decimal that is such an address read as i64.
fn kernel_addresses(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let token = &text[start..i];
        let negative = start > 0 && bytes[start - 1] == b'-';
        if token.bytes().all(|b| b.is_ascii_digit()) {
            let Ok(n) = token.parse::<u128>() else {
                continue;
            };
            let leak = if negative {
                // An address printed as a signed 64-bit number.
                n > u128::from(u32::MAX) && n <= u128::from(u64::MAX - KERNEL_START + 1)
            } else {
                n >= u128::from(KERNEL_START) && n <= u128::from(u64::MAX)
            };
            if leak {
                found.push(format!("{}{token}", if negative { "-" } else { "" }));
            }
            continue;
        }
        let lower = token.to_ascii_lowercase();
        let (prefixed, hex) = match lower.strip_prefix("0x") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let value = u64::from_str_radix(hex, 16).unwrap();
        if value >= KERNEL_START || (prefixed && hex.starts_with("ffff")) {
            found.push(token.to_owned());
        }
    }
    found
}

/// The scanner finds a pointer in every form it could take in our outputs, and nothing in
/// what the outputs legitimately hold.
#[test]
fn the_scanner_finds_planted_pointers() {
    let pointer: u64 = 0xffff_8880_1234_5678;
    let signed = (pointer as i64).to_string();
    let planted = [
        format!(r#"{{"tracking":{{"skb":{pointer}}}}}"#),
        format!(r#"{{"tracking":{{"conn":{signed}}}}}"#),
        format!("1 [ping] 2 [tp] net:net_dev_start_xmit #skb {pointer:x} conn 1"),
        format!("conn {pointer:#x}"),
        "mark 0xFFFFC90000ABCDEF".to_owned(),
        "id ffffea0001234567 seen".to_owned(),
        "kernel text 0xffffffff81000000".to_owned(),
        format!("a,{},b", u64::MAX),
    ];
    for text in &planted {
        assert_eq!(kernel_addresses(text).len(), 1, "missed in {text:?}");
    }
    let clean = [
        // Ids are 63-bit hashes, timestamps nanoseconds since boot, netns inodes 32-bit.
        r#"{"timestamp":537287597314,"netns":4026532177,"tracking":{"skb":9223372036854775807,"conn":4299790193049649417}}"#,
        "#skb 7fffffffffffffff conn 3bab2e8caeee4643 netns 4026532177",
        "labels 0x0000000000000002 mark 0xffffffff timeout 30s",
        "fd00:1::2 > ::ffff:10.0.0.1 len 84 id 35662 -1 -4294967295",
        "00:11:22:33:44:55 ffff8 ffff88801234567",
    ];
    for text in clean {
        assert!(
            kernel_addresses(text).is_empty(),
            "{text:?}: {:?}",
            kernel_addresses(text)
        );
    }
}

#[test]
fn no_output_format_holds_a_kernel_address() {
    let Some(nat) = KernelLab::with_nat("security") else {
        return;
    };
    let file = nat.scratch.path("events.json");
    let mut collect = collect_to(
        &file,
        &nat.router_netns(),
        &["--print", "--format", "multiline"],
    );
    collect.wait_ready();

    nat.lab
        .tcp_exchange(SERVER4.into(), 80, ROUTER_C4.into(), 8080)
        .expect("tcp through DNAT");
    nat.lab
        .udp_exchange(SERVER4.into(), 53, ROUTER_C4.into(), 5353, 3)
        .expect("udp through DNAT");
    let ping = nat.lab.ping(Node::Client, SERVER4.into(), 3).expect("ping");
    assert!(ping.success());
    let (live, stderr) = collect.stop_cleanly();

    let events = read_file(&file);
    let with_ids = events
        .iter()
        .filter(|e| e.tracking.is_some_and(|t| t.conn.is_some()))
        .count();
    assert!(
        with_ids >= 20,
        "the capture holds connection ids to scan: {with_ids} of {}",
        events.len()
    );

    let path = file.to_str().unwrap();
    let mut outputs = vec![
        (
            "events file (JSON Lines)".to_owned(),
            std::fs::read_to_string(&file).unwrap(),
        ),
        ("collect --print (multiline)".to_owned(), live),
        ("collect stderr".to_owned(), stderr.join("\n")),
    ];
    for command in ["print", "sort", "conns"] {
        for format in ["multiline", "singleline", "json"] {
            outputs.push((
                format!("{command} --format {format}"),
                ct_cli_ok(&[command, "--format", format, path]),
            ));
        }
    }
    let mut scanned = 0;
    for (what, text) in &outputs {
        assert!(!text.is_empty(), "{what} is empty");
        let leaks = kernel_addresses(text);
        assert!(leaks.is_empty(), "{what} shows kernel addresses: {leaks:?}");
        scanned += text.len();
    }
    eprintln!(
        "measured: {} events ({with_ids} with connection ids) in {} outputs, {scanned} bytes \
         scanned, no kernel address",
        events.len(),
        outputs.len()
    );
}
