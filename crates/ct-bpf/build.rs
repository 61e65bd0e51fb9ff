//! Compiles the BPF program with clang through libbpf-cargo and generates its skeleton;
//! exports the headers other tracers' BPF programs include (`ct_fill.h`, `ct_event.h`).
use std::env;
use std::fs;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/ct.bpf.c";

/// What a BPF program of another crate needs to call `ct_fill()`: the function and the
/// record, what they include, and the minimal CO-RE kernel types they are written
/// against (a program may use its own vmlinux.h instead).
const PUBLIC_HEADERS: [&str; 4] = ["ct_fill.h", "ct_event.h", "ct_pcap.h", "ct_vmlinux.h"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    SkeletonBuilder::new()
        .source(SRC)
        .obj(out.join("ct.bpf.o"))
        .clang_args(["-I", "src/bpf", "-Wall", "-Werror"])
        .build_and_generate(out.join("ct.skel.rs"))
        .unwrap_or_else(|e| {
            panic!(
                "compiling {SRC} failed: {e:#}\n(is clang installed? scripts/install-deps.sh; \
                 clang's own messages: scripts/bpf-check.sh)"
            )
        });

    // A copy beside the build's other outputs, so that dependents get the headers of
    // exactly this build (`links = "ct_bpf"`: cargo passes the directory to their build
    // scripts as DEP_CT_BPF_INCLUDE), wherever the crate's sources live.
    let include = out.join("include");
    fs::create_dir_all(&include).unwrap_or_else(|e| panic!("creating {}: {e}", include.display()));
    for header in PUBLIC_HEADERS {
        let from = PathBuf::from("src/bpf").join(header);
        fs::copy(&from, include.join(header))
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), include.display()));
    }
    println!("cargo:include={}", include.display());
    println!("cargo:rerun-if-changed=src/bpf");
}
