#!/usr/bin/env bash
# Kernel cost per probe hit (against an empty program on the same tracepoint) and
# end-to-end collection cost (against writing the same bytes with large writes), then
# the user-space cost stage by stage (pipeline), in
# network namespaces created and removed by the run. Needs root. Prints Markdown tables;
# copy them into benches/README.md with the machine and date.
# --steps: first, where the nanoseconds of a reported hit go (one step left out at a time).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p ct-benches --bin kernel_cost --bin end_to_end --bin pipeline
cargo build --release -q -p ct-cli
target/release/kernel_cost "$@"
echo
target/release/end_to_end target/release/ct-cli
echo
target/release/pipeline
