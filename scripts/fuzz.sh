#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 30) and fails if any of
# them finds a crash, a panic, a timeout or runs out of memory.
#
#   scripts/fuzz.sh            # 30 s per target (what CI runs)
#   scripts/fuzz.sh 1800       # the longer run (see README, Development)
#   scripts/fuzz.sh 60 read_events packet_filter   # only some targets
#
# Installs cargo-fuzz when missing. The toolchain is stable, so the nightly flags cargo-fuzz
# needs are allowed with RUSTC_BOOTSTRAP=1. AddressSanitizer is used when it builds here,
# else the targets are built without a sanitizer (CT_FUZZ_SANITIZER=none|address forces
# one). Corpora grow in fuzz/corpus/<target> (seeded from fixtures/ and fuzz/seeds/ and the
# regression inputs in fixtures/fuzz/<target>/); crashes are saved in
# fuzz/artifacts/<target>/: add each as a regression test with its input under
# fixtures/fuzz/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD

seconds=${1:-30}
shift || true
whole_seconds fuzz.sh "$seconds"

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
target_dir=${CT_FUZZ_TARGET_DIR:-$root/fuzz/target}

cd fuzz
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

sanitizer=${CT_FUZZ_SANITIZER:-}
if [ -z "$sanitizer" ]; then
    if cargo fuzz build --target-dir "$target_dir" --sanitizer address >/tmp/ct-fuzz-build.$$ 2>&1; then
        sanitizer=address
    else
        echo "fuzz.sh: the AddressSanitizer build failed here; fuzzing without a sanitizer:" >&2
        tail -n 5 /tmp/ct-fuzz-build.$$ >&2
        sanitizer=none
    fi
    rm -f /tmp/ct-fuzz-build.$$
fi
cargo fuzz build --target-dir "$target_dir" --sanitizer "$sanitizer"

# Committed seeds for each target.
seeds_of() {
    case $1 in
    decode_raw) echo "$root/fixtures/raw" ;;
    read_events) echo "$root/fixtures/events $root/fixtures/seed" ;;
    nft_datagram) echo "$root/fixtures/nft" ;;
    esac
    [ -d "$root/fuzz/seeds/$1" ] && echo "$root/fuzz/seeds/$1"
    [ -d "$root/fixtures/fuzz/$1" ] && echo "$root/fixtures/fuzz/$1"
    true
}

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus=corpus/$t
    mkdir -p "$corpus" "artifacts/$t"
    for dir in $(seeds_of "$t"); do
        find "$dir" -maxdepth 1 -type f ! -name '*.md' -exec cp -n {} "$corpus/" \;
    done
    log=artifacts/$t/last-run.log
    echo "fuzz.sh: $t for ${seconds}s ($sanitizer sanitizer)" >&2
    status=0
    cargo fuzz run --target-dir "$target_dir" --sanitizer "$sanitizer" "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    units=$(find "$corpus" -type f | wc -l)
    if ((status != 0)); then
        failed+=("$t")
        summary+=("$t: FAILED (exit $status) after ${runs:-?} runs; see fuzz/$log")
        grep -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY|Test unit written' "$log" | head -n 8 >&2 || true
    else
        summary+=("$t: ok, ${runs:-?} runs in ${seconds}s, corpus $units inputs")
    fi
done

printf 'fuzz.sh: %s\n' "${summary[@]}" >&2
if ((${#failed[@]})); then
    echo "fuzz.sh: crashes in: ${failed[*]}; inputs are in fuzz/artifacts/<target>/" >&2
    exit 1
fi
