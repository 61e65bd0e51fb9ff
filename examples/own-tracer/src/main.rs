//! `own-tracer`: a drop monitor with a BPF program of its own (`src/bpf/drops.bpf.c`)
//! that embeds ct-trace's conntrack record in its events. The kernel side calls
//! `ct_fill_skb()` from ct-bpf's `ct_fill.h`; this side decodes the record with
//! [`ct_bpf::decode_ct`] and prints it with ct-core.
//!
//! ```text
//! own-tracer [--netns NAME|PATH|INODE] [--json]
//! ```
//!
//! Every packet dropped (`skb:kfree_skb`) that conntrack had seen, in the network namespace
//! given (all when none), until SIGINT or SIGTERM. `--json` prints JSON Lines, else the
//! multi-line text layout. Needs root (or CAP_BPF and CAP_PERFMON).
use std::io::Write;
use std::mem::{offset_of, size_of, MaybeUninit};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ct_core::{DropInfo, Event, Layout, Packet, ProbeInfo, ProbeKind, Render};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

#[allow(
    dead_code,
    clippy::all,
    missing_debug_implementations,
    missing_docs,
    unused_imports
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/drops.skel.rs"));
}

use skel::types::own_event;

/// Where ct-trace's record sits in our event, as the compiler laid the event out (the
/// skeleton's `own_event` is generated from the object's BTF).
const CT_AT: usize = offset_of!(own_event, ct);
const EVENT_SIZE: usize = size_of::<own_event>();
// The record as this crate's ct-bpf knows it is what the program reserves room for.
const _: () = assert!(EVENT_SIZE - CT_AT >= ct_bpf::RAW_EVENT_SIZE);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("own-tracer: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Options {
    netns: u32,
    json: bool,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        netns: 0,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--netns" => {
                let spec = args.next().ok_or("--netns needs a namespace")?;
                options.netns = ct_bpf::netns_inode(&spec).map_err(|e| e.to_string())?;
            }
            _ => {
                return Err(format!(
                "unknown argument {arg:?}; usage: own-tracer [--netns NAME|PATH|INODE] [--json]"
            ))
            }
        }
    }
    Ok(options)
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }

    let mut object = MaybeUninit::uninit();
    let mut open = skel::DropsSkelBuilder::default().open(&mut object)?;
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or("the object has no .rodata")?;
    rodata.own_netns = options.netns;
    // Without CONFIG_HZ the decoder leaves timeouts out rather than guess.
    rodata.own_hz = ct_bpf::kernel_hz().unwrap_or(0);
    let mut skel = open.load()?;
    skel.attach()?;
    eprintln!("own-tracer: attached to skb:kfree_skb; collecting");

    let probe = ProbeInfo {
        kind: ProbeKind::Tp,
        name: "skb:kfree_skb".into(),
    };
    let mut out = std::io::stdout().lock();
    let mut failed: Option<std::io::Error> = None;
    let mut ring = libbpf_rs::RingBufferBuilder::new();
    ring.add(&skel.maps.own_events, |bytes: &[u8]| {
        let event = match to_event(bytes, &probe) {
            Ok(event) => event,
            Err(e) => {
                eprintln!("own-tracer: {e}");
                return 0;
            }
        };
        let written = if options.json {
            ct_core::write_event_json(&event, &mut out)
        } else {
            writeln!(out, "{}\n", event.display(Layout::MultiLine))
        };
        match written.and_then(|()| out.flush()) {
            Ok(()) => 0,
            Err(e) => {
                failed = Some(e);
                -1
            }
        }
    })?;
    let ring = ring.build()?;
    while !stop.load(Ordering::Relaxed) {
        match ring.poll(Duration::from_millis(100)) {
            Ok(()) => {}
            // A signal interrupts the wait; the loop then sees the flag.
            Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    drop(ring);
    match failed {
        Some(e) => Err(format!("writing events: {e}").into()),
        None => Ok(()),
    }
}

/// One of our events as a ct-core event: our fields, and the ct section ct-bpf decodes
/// from the record inside it.
fn to_event(bytes: &[u8], probe: &ProbeInfo) -> Result<Event, String> {
    if bytes.len() < EVENT_SIZE {
        return Err(format!(
            "event of {} bytes, expected {EVENT_SIZE}",
            bytes.len()
        ));
    }
    let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
    let ts = u64::from_ne_bytes(bytes[..8].try_into().unwrap_or_default());
    let ct = ct_bpf::decode_ct(&bytes[CT_AT..]).map_err(|e| e.to_string())?;
    let netns = word(offset_of!(own_event, netns));
    let ifindex = word(offset_of!(own_event, ifindex));
    Ok(Event {
        timestamp: Some(ts),
        probe: Some(probe.clone()),
        netns: (netns != 0).then_some(netns),
        packet: Some(Packet {
            ifindex: (ifindex != 0).then_some(ifindex),
            len: word(offset_of!(own_event, len)),
            ..Default::default()
        }),
        drop: Some(DropInfo { reason: None }),
        ct,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> ProbeInfo {
        ProbeInfo {
            kind: ProbeKind::Tp,
            name: "skb:kfree_skb".into(),
        }
    }

    /// An event as the program writes it: our fields, the record at the compiler's offset.
    fn event_bytes(record: &ct_bpf::RawCtEvent) -> Vec<u8> {
        let mut bytes = vec![0u8; EVENT_SIZE];
        bytes[offset_of!(own_event, ifindex)..][..4].copy_from_slice(&7u32.to_ne_bytes());
        bytes[CT_AT..CT_AT + ct_bpf::RAW_EVENT_SIZE].copy_from_slice(record.as_bytes());
        bytes
    }

    #[test]
    fn a_record_of_this_version_decodes() {
        let event = to_event(&event_bytes(&ct_bpf::RawCtEvent::default()), &probe()).unwrap();
        assert_eq!(event.packet.unwrap().ifindex, Some(7));
        assert_eq!(event.ct, None, "an empty record has no conntrack data");
    }

    /// A program built against other headers than the ct-bpf linked here: refused with
    /// the decoder's error, never misread.
    #[test]
    fn a_record_of_another_version_is_refused() {
        let record = ct_bpf::RawCtEvent {
            version: ct_bpf::RECORD_VERSION + 1,
            ..Default::default()
        };
        let err = to_event(&event_bytes(&record), &probe()).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "record layout version {}, but this library reads version {}",
                ct_bpf::RECORD_VERSION + 1,
                ct_bpf::RECORD_VERSION
            )),
            "{err}"
        );
        assert!(to_event(&[0; 8], &probe()).is_err());
    }
}
