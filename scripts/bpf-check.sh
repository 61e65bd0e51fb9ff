#!/usr/bin/env bash
# Compiles the BPF program with clang directly, printing clang's own diagnostics (the
# build script only reports that compilation failed).
set -euo pipefail
cd "$(dirname "$0")/../crates/ct-bpf"
headers=$(ls -d "$HOME"/.cargo/registry/src/*/libbpf-sys-*/libbpf/src 2>/dev/null | tail -n 1)
[ -n "$headers" ] || { echo "bpf-check: libbpf headers not found; run cargo build once" >&2; exit 1; }
inc=$(mktemp -d)
trap 'rm -rf "$inc"' EXIT
mkdir -p "$inc/bpf" && cp "$headers"/*.h "$inc/bpf/"
arch=$(uname -m | sed 's/x86_64/x86/; s/aarch64/arm64/')
clang -g -O2 -target bpf "-D__TARGET_ARCH_$arch" -I src/bpf -I "$inc" -Wall -Werror \
    -fno-stack-protector -c src/bpf/ct.bpf.c -o "$inc/ct.bpf.o"
echo "bpf-check: src/bpf/ct.bpf.c compiles"
