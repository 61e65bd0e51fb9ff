//! Checks on the BPF C sources that need no kernel.

use std::fs;
use std::path::Path;

/// `bpf_probe_read_kernel_str()` returns the number of bytes copied (NUL included) on
/// success, not 0: testing it with `!` treats every success as a failure. That once hid
/// the helper name ("ftp") of every connection that had one.
#[test]
fn str_reads_are_not_tested_as_zero_on_success() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bpf");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h")) {
            continue;
        }
        let text: String = fs::read_to_string(&path)
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for helper in [
            "bpf_probe_read_kernel_str(",
            "bpf_probe_read_user_str(",
            "bpf_probe_read_str(",
        ] {
            assert!(
                !text.contains(&format!("!{helper}")),
                "{}: `!{helper}...)` is true only on failure-free zero-length reads; \
                 test `> 0` for success",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no BPF sources in {}", dir.display());
}
