#!/usr/bin/env bash
# Soak test (root): connection churn through the ct-lab NAT router (200 new TCP and UDP
# flows a second, client -> DNAT + masquerade -> server) for SECONDS (default 600) while
# `ct-cli collect -o FILE --netns <router>` writes every packet the router sees.
# Prints ct-cli's RSS and open descriptors at start and end, and fails if the RSS grows by
# more than 8 MiB, the descriptors change, any event is lost, or the file and the summary
# disagree. The test suite runs the same test for 30 s.
#
#   scripts/soak.sh          # 10 minutes
#   scripts/soak.sh 3600     # an hour
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
seconds=${1:-600}
whole_seconds soak.sh "$seconds"
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CT_SOAK_SECONDS=$seconds CT_REQUIRE_KERNEL_TESTS=1
exec cargo test --release --locked -p ct-cli --test soak -- --nocapture
