#!/usr/bin/env bash
# The published crates (ct-core, ct-pcap, ct-bpf, ct-nft, ct-pcapng, ct-cli) package, and
# build from their packages alone, as a registry user would get them.
#
# 1. `cargo package --no-verify` of the six: cargo's own checks (what `cargo publish
#    --dry-run` runs before its build: metadata, a version on every path dependency,
#    the `include` lists); the .crate files land in target/package/. ct-lab, benches,
#    examples/own-tracer and fuzz have `publish = false`.
# 2. The build cargo's verification would do, once: ct-cli, built from its unpacked .crate
#    with every ct-* dependency taken from the unpacked .crate of the same set (not from
#    the source tree), so each package is compiled exactly once. `cargo publish
#    --workspace --dry-run` with verification compiles the lower crates two or three times
#    each (as a path package of its own, then as a registry dependency of the others).
#    The workspace's target directory is shared, so third-party crates the suite built are
#    not built again.
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
cargo package --no-verify --allow-dirty --locked "${crates[@]/#/-p}"

# Outside the repository: cargo must not take the unpacked crates for workspace members.
unpacked=$(mktemp -d /tmp/ct-package-check.XXXXXX)
trap 'rm -rf "$unpacked"' EXIT
patches=()
for c in "${crates[@]}"; do
    crate="target/package/$c-$version.crate"
    [ -f "$crate" ] || { echo "package-check: $crate was not packaged" >&2; exit 1; }
    tar -xzf "$crate" -C "$unpacked"
    patches+=(--config "patch.crates-io.$c.path=\"$unpacked/$c-$version\"")
done
# The packaged lock file names ct-* as registry crates: the patches replace those entries,
# every other crate keeps the version the workspace's Cargo.lock pins.
# Each ct-* crate must come from its package, none from the source tree.
cargo build --manifest-path "$unpacked/ct-cli-$version/Cargo.toml" \
    --target-dir "$repo/target" "${patches[@]}" --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
unpacked, names = sys.argv[1], set(sys.argv[2:])
built = {}
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and "manifest_path" in m:
        name = m["target"]["name"].replace("_", "-")
        if name in names:
            built[name] = m["manifest_path"]
for name in sorted(names):
    path = built.get(name)
    if path is None or not path.startswith(unpacked + "/"):
        sys.exit("package-check: " + name + " was not built from its package: " + str(path))
' "$unpacked" "${crates[@]}"
echo "package-check: ${crates[*]} packaged and built from their packages in $(($(date +%s) - start)) s"
