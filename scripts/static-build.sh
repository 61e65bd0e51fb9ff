#!/usr/bin/env bash
# Builds a fully static release ct-cli and prints its path on stdout (the build log goes
# to stderr), so `CT_STATIC_BIN=$(scripts/static-build.sh)` works.
#
# How: ct-cli's `static` feature links libbpf (vendored by libbpf-sys), libelf and zlib
# statically, from the libelf.a and libz.a that libelf-dev and zlib1g-dev install; glibc
# goes in through `-C target-feature=+crt-static` (libc.a from libc6-dev). The explicit
# --target keeps crt-static away from build scripts and proc-macros, which stay ordinary
# host binaries. The result is a static-pie executable: no interpreter, no shared library.
# Fails unless the binary is static.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh >&2
export PATH="$HOME/.cargo/bin:$PATH"

target=$(rustc -vV | sed -n 's/^host: //p')
case "$target" in
    *-linux-gnu*) ;;
    *)
        echo "static-build: host target $target is not a glibc Linux target" >&2
        exit 1
        ;;
esac

# libbpf-sys links `static=elf` and `static=z` and looks for them on this path.
libelf=$(cc -print-file-name=libelf.a)
libz=$(cc -print-file-name=libz.a)
for lib in "$libelf" "$libz"; do
    [ -f "$lib" ] || {
        echo "static-build: no $(basename "$lib") (libelf-dev and zlib1g-dev provide them)" >&2
        exit 1
    }
done
LIBBPF_SYS_LIBRARY_PATH="$(dirname "$(realpath "$libelf")"):$(dirname "$(realpath "$libz")")"
export LIBBPF_SYS_LIBRARY_PATH

RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release --locked -p ct-cli --features static --target "$target" >&2

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$target/release/ct-cli"

# Static: no program interpreter and no shared library needed.
headers=$(readelf -lW "$bin")
dynamic=$(readelf -dW "$bin")
if grep -q 'INTERP' <<<"$headers" || grep -q '(NEEDED)' <<<"$dynamic"; then
    echo "static-build: $bin is not static:" >&2
    grep -E 'INTERP|interpreter' <<<"$headers" >&2 || true
    grep '(NEEDED)' <<<"$dynamic" >&2 || true
    exit 1
fi
echo "static-build: $bin is static ($(du -h "$bin" | cut -f1))" >&2
echo "$bin"
