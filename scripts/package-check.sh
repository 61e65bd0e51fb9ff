#!/usr/bin/env bash
# The published crates (ct-core, ct-pcap, ct-bpf, ct-nft, ct-pcapng, ct-cli) package, and
# build from their packages alone, as a registry user would get them.
#
# 1. `cargo package --no-verify` of the six: cargo's own checks (what `cargo publish
#    --dry-run` runs before its build: metadata, a version on every path dependency,
#    the `include` lists); the .crate files land in target/package/. ct-lab, benches,
#    examples/own-tracer and fuzz have `publish = false`.
# 2. The build cargo's verification would do, once: the unpacked .crate files, outside the
#    repository, in a workspace of their own whose ct-* dependencies are patched to the
#    unpacked packages (not to the source tree), pinned by the repository's Cargo.lock;
#    ct-cli is built, and with it every ct-* crate, each compiled exactly once. (`cargo
#    publish --workspace --dry-run` with verification compiles the lower crates two or
#    three times each: as a path package of its own, then as a registry dependency of the
#    others.) The workspace's target directory is shared, so third-party crates the suite
#    built are not built again.
# 3. examples/own-tracer (not published, packaged here only) is built in the same
#    workspace: a crate whose BPF program includes ct_fill.h from the packaged ct-bpf
#    (DEP_CT_BPF_INCLUDE), as a tracer depending on the published crates would.
# Prints the seconds it took.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
start=$(date +%s)

crates=(ct-core ct-pcap ct-bpf ct-nft ct-pcapng ct-cli)
version=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ct-cli"))')

rm -f target/package/*.crate
cargo package --no-verify --allow-dirty --locked "${crates[@]/#/-p}" -p own-tracer

# Outside the repository: cargo must not take the unpacked crates for its members.
unpacked=$(mktemp -d /tmp/ct-package-check.XXXXXX)
trap 'rm -rf "$unpacked"' EXIT
{
    echo '[workspace]'
    echo 'resolver = "2"'
    echo "members = [\"ct-cli-$version\", \"own-tracer-$version\"]"
    echo '[patch.crates-io]'
} >"$unpacked/Cargo.toml"
for c in "${crates[@]}" own-tracer; do
    crate="target/package/$c-$version.crate"
    [ -f "$crate" ] || { echo "package-check: $crate was not packaged" >&2; exit 1; }
    # -m: the files get the current time, not the fixed one cargo writes into every
    # .crate; with the fixed time, cargo would take the artifacts of an earlier run
    # (same relative paths in the same shared target directory) as up to date.
    tar -xzmf "$crate" -C "$unpacked"
    rm -f "$unpacked/$c-$version/Cargo.lock"
    echo "$c = { path = \"$c-$version\" }" >>"$unpacked/Cargo.toml"
done
cp Cargo.lock "$unpacked/Cargo.lock"

# Every ct-* crate and own-tracer must have been built from its unpacked .crate.
cargo build --manifest-path "$unpacked/Cargo.toml" --workspace --target-dir "$repo/target" \
    --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
unpacked, names = sys.argv[1], set(sys.argv[2:])
built = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "manifest_path" in m:
        name = m["target"]["name"].replace("_", "-")
        if name in names:
            built.setdefault(name, set()).add(m["manifest_path"])
for name in sorted(names):
    paths = built.get(name, set())
    if len(paths) != 1 or not next(iter(paths)).startswith(unpacked + "/"):
        sys.exit("package-check: " + name + " was not built from its package alone: " + str(sorted(paths)))
' "$unpacked" "${crates[@]}" own-tracer
echo "package-check: ${crates[*]} packaged and built from their packages, own-tracer against them, in $(($(date +%s) - start)) s"
