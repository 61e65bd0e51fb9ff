//! Compiles the BPF program with clang through libbpf-cargo and generates its skeleton.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/ct.bpf.c";

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
    println!("cargo:rerun-if-changed=src/bpf");
}
