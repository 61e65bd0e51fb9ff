#!/usr/bin/env bash
# Kernel cost per probe hit (against an empty program on the same tracepoint) and
# end-to-end collection cost, in network namespaces created and removed by the run.
# Needs root. Prints a Markdown table; copy it into benches/README.md with the date.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -q -p ct-benches --bin kernel_cost -p ct-cli
exec target/release/kernel_cost target/release/ct-cli
