//! Probe specs (`-p`): parsing arbitrary text never panics, and a spec that parses prints
//! as text that parses back to the same spec (and prints the same again).
#![no_main]

use ct_bpf::ProbeSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<ProbeSpec>() {
        Ok(spec) => {
            let shown = spec.to_string();
            assert_eq!(shown, text.trim(), "Display gives the canonical form");
            let again: ProbeSpec = shown.parse().expect("Display output parses");
            assert_eq!(again, spec);
            assert_eq!(again.to_string(), shown);
            let info = spec.info();
            assert_eq!(info.kind, spec.kind());
            assert_eq!(&*info.name, spec.event_name());
        }
        Err(err) => {
            let _ = err.to_string();
        }
    }
});
