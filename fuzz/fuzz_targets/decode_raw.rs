//! Raw ring-buffer records from an untrusted source: `decode_ct` and `Decoder::decode`
//! must give an event or a `DecodeError`, never panic, and agree on the ct section. A decoded event
//! must also survive what ct-cli does with it next: JSON Lines out and back in unchanged,
//! and both text layouts.
#![no_main]

use std::sync::OnceLock;

use ct_bpf::{decode_ct, Decoder, DropReasons};
use ct_core::{read_events, write_event_json, Layout, ProbeInfo, ProbeKind, Render};
use libfuzzer_sys::fuzz_target;

fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| {
        Decoder::new(vec![
            ProbeInfo {
                kind: ProbeKind::Tp,
                name: "net:net_dev_start_xmit".into(),
            },
            ProbeInfo {
                kind: ProbeKind::Kp,
                name: "ip_forward".into(),
            },
            ProbeInfo {
                kind: ProbeKind::Kr,
                name: "skb_clone".into(),
            },
        ])
        .with_drop_reasons(Some(DropReasons::from_enumerators([
            ("SKB_CONSUMED", 1),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_NETFILTER_DROP", 12),
        ])))
    })
}

fuzz_target!(|data: &[u8]| {
    let ct = decode_ct(data);
    let event = match (&ct, decoder().decode(data)) {
        (Ok(_), Ok(event)) => event,
        // Decoder::decode checks more (the probe id first, the drop flags): it may refuse
        // what the ct section alone passes, or for another reason, never take what the ct
        // section alone refuses.
        (_, Err(_)) => return,
        (Err(a), Ok(b)) => panic!("decode_ct refused ({a}) what Decoder::decode took: {b:?}"),
    };
    assert_eq!(event.ct.as_ref(), ct.as_ref().ok().and_then(Option::as_ref));

    let mut line = Vec::new();
    write_event_json(&event, &mut line).expect("a decoded event serializes");
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let back: Vec<_> = read_events(&line[..]).collect();
    assert_eq!(back.len(), 1);
    match &back[0] {
        Ok(read) => assert_eq!(read, &event, "JSON round trip"),
        Err(e) => panic!(
            "a decoded event does not read back: {e}\n{}",
            String::from_utf8_lossy(&line)
        ),
    }
    for layout in [Layout::MultiLine, Layout::SingleLine] {
        let _ = event.display(layout).to_string();
    }
});
