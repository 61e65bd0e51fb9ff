#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test ct-trace:
# the BPF toolchain (clang), libbpf's build needs (libelf, zlib, pkg-config; their static
# archives and glibc's libc.a, with readelf from binutils, for scripts/static-build.sh), the
# tools the kernel tests drive (nftables, conntrack-tools, iproute2, ping, python3, bpftool,
# setpriv/runuser from util-linux), a C++ compiler for cargo-fuzz's libFuzzer, tshark (the
# pcapng tests read what `collect -w` and `ct-cli pcap` write with it), man (the man page
# test renders `ct-cli man` with it), zsh and fish (the completion tests load
# `ct-cli completions` in them), libpcap (tcpdump's filter compiler; with libdbus's archive
# for the static build) and tcpdump (the filter tests hold ct-cli to it).
set -euo pipefail

packages=(
    clang llvm gcc libc6-dev make pkg-config libelf-dev zlib1g-dev binutils
    nftables conntrack iproute2 iputils-ping python3 procps util-linux bpftool g++
    libpcap-dev libdbus-1-dev tcpdump tshark man-db zsh fish
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "install-deps: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    # wireshark-common asks whether non-root users may capture (a setuid dumpcap); answer
    # no, so that the install asks nothing and changes no privileges.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "install-deps: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
}
