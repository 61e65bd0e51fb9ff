//! Compiles the tracer's BPF program against the ct_fill.h / ct_event.h of the ct-bpf
//! crate this package links, and generates its skeleton.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/drops.bpf.c";

fn main() {
    // ct-bpf's build script exports the directory of its public headers
    // (`links = "ct_bpf"` + `cargo:include=DIR`); cargo hands it to its dependents' build
    // scripts as DEP_CT_BPF_INCLUDE.
    let include = env::var("DEP_CT_BPF_INCLUDE")
        .expect("DEP_CT_BPF_INCLUDE is not set: this package must depend on ct-bpf");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    SkeletonBuilder::new()
        .source(SRC)
        .obj(out.join("drops.bpf.o"))
        .clang_args(["-I", include.as_str(), "-Wall", "-Werror"])
        .build_and_generate(out.join("drops.skel.rs"))
        .unwrap_or_else(|e| panic!("compiling {SRC} with -I {include} failed: {e:#}"));
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed={include}");
}
