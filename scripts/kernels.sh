#!/usr/bin/env bash
# The kernel matrix: Debian's stock kernels booted in virtme-ng VMs over this machine's own
# root filesystem (emulated: nested KVM does not work here), so the same binaries and
# tests run on the kernels people have.
#
#   scripts/kernels.sh list                      the matrix
#   scripts/kernels.sh tools                     install the VM tools and prove they run
#   scripts/kernels.sh prepare [KERNEL...]       fetch and unpack (once; cached)
#   scripts/kernels.sh run KERNEL -- CMD...      run CMD as root in a VM of KERNEL
#   scripts/kernels.sh test [KERNEL...]          the kernel test suites in a VM of each
#
# KERNEL is a name from the matrix (5.10, 6.1, 6.12) or `all` (the default for test).
# Kernels are fetched with apt from the mirror this machine's apt already uses, with only
# the suite changed, and kept in $CT_KERNEL_CACHE (default /var/cache/ct-trace/kernels).
# `test` builds the test binaries on the host first and runs them inside each VM with
# CT_REQUIRE_KERNEL_TESTS as set here (6.1 and 6.12 run a smoke set: SMOKE_TESTS below;
# CT_FULL_MATRIX=1 runs everything everywhere). VM_CPUS / VM_MEM size the VMs (2 / 2G);
# MATRIX_JOBS VMs run at once (2).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# name  suite  package (pinned: one download per machine; the newest of the same
# series is taken when the mirror no longer has it)
MATRIX=(
    "5.10 bullseye linux-image-5.10.0-32-amd64"
    "6.1 bookworm linux-image-6.1.0-50-amd64"
    "6.12 trixie linux-image-6.12.117+deb13-amd64"
)
# The pattern of each series, for that fallback.
series_pattern() {
    case "$1" in
    5.10) echo '^linux-image-5\.10\.0-[0-9]+-amd64$' ;;
    6.1) echo '^linux-image-6\.1\.0-[0-9]+-amd64$' ;;
    6.12) echo '^linux-image-6\.12\.[0-9]+\+deb13-amd64$' ;;
    esac
}

cache=${CT_KERNEL_CACHE:-/var/cache/ct-trace/kernels}
root="$cache/root" # unpacked packages: boot/vmlinuz-*, lib/modules/*

die() {
    echo "kernels.sh: $*" >&2
    exit 1
}

entry() {
    local e
    for e in "${MATRIX[@]}"; do
        set -- $e
        if [ "$1" = "$want" ]; then
            echo "$e"
            return
        fi
    done
    die "unknown kernel '$want'; the matrix: $(names)"
}
names() {
    local e
    for e in "${MATRIX[@]}"; do printf '%s ' "${e%% *}"; done
}

# virtme-ng lives in a virtualenv of its own: the system Python refuses `pip install`
# (externally managed), and a per-user Python may not put its scripts on PATH. Not under
# /var/cache, which the VMs cover with a tmpfs. Its bin/ goes on PATH for everything this
# script runs: `vng` starts the VM through `/bin/sh -c "virtme-run ..."`, which finds
# virtme-run on PATH only.
venv="$HOME/.local/share/ct-trace/virtme-ng"
vng="$venv/bin/vng"
export PATH="$venv/bin:$PATH"
# The virtme-ng release the matrix is proven with (a newer one may change its options).
VIRTME_NG_VERSION=1.42

# Installs what the VMs need and proves each piece runs; a piece that cannot be had ends the
# script at once with one line naming it (not each kernel failing in 0 s later).
install_tools() {
    local missing=() p
    for p in qemu-system-x86 kmod udev busybox-static python3-venv; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "kernels.sh: installing ${missing[*]}" >&2
        apt-get update -qq || die "apt-get update failed: cannot install ${missing[*]} for the kernel matrix"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
            die "cannot install ${missing[*]} (apt-get install failed): the kernel matrix needs them"
    fi
    if ! "$vng" --version >/dev/null 2>&1 || [ ! -x "$venv/bin/virtme-run" ]; then
        echo "kernels.sh: installing virtme-ng $VIRTME_NG_VERSION (PyPI) into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv" || die "cannot create a Python virtualenv in $venv for virtme-ng"
        "$venv/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION" ||
            die "cannot install virtme-ng $VIRTME_NG_VERSION from PyPI into $venv: the kernel matrix needs it"
    fi
    local tool
    for tool in vng virtme-run qemu-system-x86_64 busybox; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH after installing the matrix's tools"
    done
    "$vng" --version >/dev/null 2>&1 || die "$vng does not run: remove $venv and try again"
}

# The Debian mirror URIs this machine's apt uses: "main" for SUITE, "security" for
# SUITE-security. Read from its configuration, never written down here.
mirror_uri() {
    local kind=$1 f uri suites
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        # deb822 stanzas: pair each URIs line with the Suites line of its stanza.
        awk -v kind="$kind" '
            /^URIs:/ { uri = $2 }
            /^Suites:/ {
                for (i = 2; i <= NF; i++) {
                    sec = ($i ~ /-security$/)
                    if ((kind == "security" && sec) || (kind == "main" && !sec && $i !~ /-/)) {
                        print uri; exit
                    }
                }
            }' "$f"
    done | head -n1 | grep . && return
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        while read -r type uri suites _; do
            [ "$type" = deb ] || continue
            case "$suites" in
            *-security) [ "$kind" = security ] && { echo "$uri"; return; } ;;
            *-*) ;;
            *) [ "$kind" = main ] && { echo "$uri"; return; } ;;
            esac
        done < <(sed 's/\[[^]]*\]//' "$f")
    done
    return 1
}

prepare_one() {
    local name=$1 suite=$2 pkg=$3
    if ls "$root"/boot/vmlinuz-"${pkg#linux-image-}" >/dev/null 2>&1; then
        return
    fi
    # Already have another of the same series from an earlier fallback?
    if [ -e "$cache/$name.release" ] && [ -e "$root/boot/vmlinuz-$(cat "$cache/$name.release")" ]; then
        return
    fi
    local main sec apt_dir
    main=$(mirror_uri main) || die "no Debian mirror in this machine's apt configuration"
    sec=$(mirror_uri security) || sec=""
    apt_dir="$cache/apt-$suite"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/debs" "$root"
    {
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $main $suite main"
        [ -z "$sec" ] || echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec $suite-security main"
    } >"$apt_dir/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
    echo "kernels.sh: fetching the $suite package lists" >&2
    apt-get "${opts[@]}" update -qq >/dev/null
    if ! apt-cache "${opts[@]}" show "$pkg" >/dev/null 2>&1; then
        local newest
        newest=$(apt-cache "${opts[@]}" pkgnames linux-image- | grep -E "$(series_pattern "$name")" | sort -V | tail -n1)
        [ -n "$newest" ] || die "no $name kernel package in $suite"
        echo "kernels.sh: $pkg is gone from the mirror; using $newest" >&2
        pkg=$newest
    fi
    echo "kernels.sh: downloading $pkg" >&2
    (cd "$cache/debs" && apt-get "${opts[@]}" download -qq "$pkg" >/dev/null)
    local deb
    deb=$(ls -t "$cache/debs/${pkg}_"*.deb | head -n1)
    dpkg-deb -x "$deb" "$root"
    # trixie's packages put modules under usr/lib (merged /usr): one place for all.
    if [ -d "$root/usr/lib/modules" ]; then
        mkdir -p "$root/lib/modules"
        cp -a "$root/usr/lib/modules/." "$root/lib/modules/"
        rm -rf "$root/usr/lib/modules"
    fi
    echo "${pkg#linux-image-}" >"$cache/$name.release"
}

# The release (uname -r) of a prepared kernel.
release_of() {
    local want=$1 e
    e=$(entry)
    set -- $e
    if [ -e "$cache/$1.release" ]; then
        cat "$cache/$1.release"
    else
        echo "${3#linux-image-}"
    fi
}

prepare() {
    install_tools
    local want e
    for want in "$@"; do
        e=$(entry)
        prepare_one $e
    done
}

# run KERNEL CMD...: CMD runs as root in the VM, from the repository, with a PATH that
# finds cargo's and pip's tools and with CT_* variables passed on. Exit status is CMD's.
# A VM that has not started CMD within VM_BOOT_TIMEOUT seconds (default 480) is stopped
# and booted once more: an emulated 5.10 has been seen to hang at boot, idle, when
# another VM started beside it.
run_in_vm() {
    local rc=0
    run_in_vm_once "$@" || rc=$?
    if [ $rc -eq 125 ]; then
        echo "kernels.sh: booting the $1 VM again"
        rc=0
        run_in_vm_once "$@" || rc=$?
    fi
    return $rc
}

# One boot of run_in_vm; 125 when the VM never started CMD.
run_in_vm_once() {
    local want=$1
    shift
    local release kernel shared
    release=$(release_of "$want")
    kernel="$root/boot/vmlinuz-$release"
    [ -e "$kernel" ] || die "kernel $want is not prepared: scripts/kernels.sh prepare $want"
    shared=$(mktemp -d /tmp/ct-vm.XXXXXX)
    # The VM does not inherit the environment: the runner sets it up.
    {
        echo '#!/bin/bash'
        # The boot watch below waits for this file.
        echo "touch $(printf %q "$shared/started")"
        # The system's tools first: a per-user Python shim (pyenv) does not work there.
        echo "export PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin:$(printf %q "$HOME/.cargo/bin")"
        echo "export HOME=$(printf %q "$HOME")"
        env | grep -E '^(CT_[A-Z0-9_]*|RUST_BACKTRACE|RUST_LOG)=' | while IFS='=' read -r k v; do
            echo "export $k=$(printf %q "$v")"
        done
        echo "cd $(printf %q "$repo")"
        # bpffs is not mounted by virtme-ng; libbpf and the static-binary test use it.
        echo 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf'
        printf '%q ' "$@"
        echo
    } >"$shared/run"
    chmod +x "$shared/run"
    # Both streams through a pipe: virtme-ng reopens them, which truncates a log file.
    local rc=0 vm waited=0 boot_limit=${VM_BOOT_TIMEOUT:-480}
    set +e
    (
        timeout "${VM_TIMEOUT:-3600}" "$vng" -r "$kernel" --disable-kvm --cpus "${VM_CPUS:-2}" -m "${VM_MEM:-2G}" \
            --rodir="/lib/modules=$root/lib/modules" --rodir="/boot=$root/boot" --rwdir="$shared" \
            --exec "$shared/run" </dev/null 2>&1 | cat
        exit "${PIPESTATUS[0]}"
    ) &
    vm=$!
    while [ ! -e "$shared/started" ] && kill -0 "$vm" 2>/dev/null; do
        if [ "$waited" -ge "$boot_limit" ]; then
            echo "kernels.sh: the $want VM did not start its commands within $boot_limit s: stopping it"
            # QEMU's command line names the shared directory.
            pkill -TERM -f -- "path=$shared," || true
            wait "$vm"
            rm -rf "$shared"
            set -e
            return 125
        fi
        sleep 2
        waited=$((waited + 2))
    done
    wait "$vm"
    rc=$?
    set -e
    rm -rf "$shared"
    return $rc
}

# The kernel suites, run in one VM: the check before and after nf_conntrack is loaded,
# then each kernel test binary.
vm_suite() {
    local bins=$1 failed=0 out rc=0
    echo "== $(uname -r): ct-cli check with nf_conntrack not loaded"
    if grep -qw '^nf_conntrack' /proc/modules; then
        echo "nf_conntrack is already loaded: that check is skipped"
    else
        out=$("$CT_CLI" check 2>&1) || rc=$?
        echo "$out"
        if [ $rc -ne 4 ]; then
            echo "FAIL: check exited $rc, expected 4 (prerequisites missing)"
            failed=1
        elif ! grep -q 'modprobe nf_conntrack' <<<"$out"; then
            echo "FAIL: check does not say modprobe nf_conntrack"
            failed=1
        fi
    fi
    modprobe nf_conntrack
    # What the lab's rulesets and tools load on first use, loaded up front: under
    # emulation a first `nft -f` that pulls in NAT modules can outlast a lab command's
    # time limit.
    local m
    for m in nf_tables nft_ct nft_nat nft_masq nft_chain_nat nft_reject_inet nft_counter \
        nf_nat nf_conntrack_ftp nf_nat_ftp nf_conntrack_netlink nf_conntrack_ipv6 \
        nf_defrag_ipv6 veth; do
        modprobe -q "$m" 2>/dev/null || true
    done
    echo "== $(uname -r): ct-cli check"
    "$CT_CLI" check || { echo "FAIL: ct-cli check"; failed=1; }
    local name dir bin
    local began
    while read -r name dir bin; do
        echo "== $(uname -r): $name"
        began=$(date +%s)
        (cd "$dir" && "$bin" --test-threads="${CT_VM_TEST_THREADS:-2}") || { echo "FAIL: $name"; failed=1; }
        # Where the matrix's time goes (it decides what the quick mode leaves out).
        echo "== $(uname -r): $name took $(($(date +%s) - began)) s"
    done <"$bins"
    return $failed
}

# Test binaries the VMs run (crate:target): those that load the program or drive the lab.
VM_TESTS=(
    "ct-bpf:ct_bpf"
    "ct-bpf:verifier"
    "ct-lab:lab_cases"
    "ct-lab:filters"
    "ct-lab:tracking"
    "ct-lab:probe_types"
    "ct-lab:drops"
    "ct-lab:pcap_filters"
    "ct-cli:kernel"
    "ct-cli:static_binary"
    "ct-cli:default_probes"
    "ct-cli:nft"
    "ct-cli:nft_netns"
    "ct-cli:follow"
    "ct-cli:stopping"
    "ct-nft:ct_nft"
    "ct-nft:trace_senders"
    "own-tracer:kernel"
)

# Under emulation on a 2-core host each kernel's whole suite takes 25-35 minutes, and two
# VMs side by side take nearly twice as long each (they are CPU-bound). The oldest
# kernel runs all of it (the host, the newest, runs all of it too, in scripts/test.sh);
# SMOKE_KERNELS run what loads the program in every configuration and one lab case of
# each kind (the check, the verifier tests, probe types, tracking, the ct-cli kernel and
# default-probe tests, the trace senders and the embedded record), unless
# CT_FULL_MATRIX=1.
SMOKE_KERNELS=(6.1 6.12)
SMOKE_TESTS=(
    "ct-bpf:ct_bpf"
    "ct-bpf:verifier"
    "ct-lab:probe_types"
    "ct-lab:tracking"
    "ct-cli:kernel"
    "ct-cli:default_probes"
    "ct-nft:trace_senders"
    "own-tracer:kernel"
)
is_smoke() {
    local s
    [ "${CT_FULL_MATRIX:-0}" != 1 ] || return 1
    for s in "${SMOKE_KERNELS[@]}"; do [ "$s" != "$1" ] || return 0; done
    return 1
}

build_tests() {
    local list=$1
    scripts/install-deps.sh
    export PATH="$HOME/.cargo/bin:$PATH"
    cargo build --locked -p ct-cli >&2
    # The static binary the chroot test runs (built on the host like everything else).
    CT_STATIC_BIN=$(scripts/static-build.sh)
    export CT_STATIC_BIN
    cargo test --locked --no-run --message-format=json -p ct-bpf -p ct-lab -p ct-cli -p ct-nft -p own-tracer 2>/dev/null |
        python3 -c '
import json, os, sys
wanted = set(sys.argv[1:])
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    # crates/<package>/Cargo.toml, examples/<package>/Cargo.toml: every package here is
    # named after its directory
    name = os.path.basename(os.path.dirname(m["manifest_path"]))
    key = name + ":" + m["target"]["name"]
    if key in wanted:
        print(key, os.path.dirname(m["manifest_path"]), m["executable"])
' "${VM_TESTS[@]}" >"$list"
    local n
    n=$(wc -l <"$list")
    [ "$n" -eq "${#VM_TESTS[@]}" ] || die "found $n of ${#VM_TESTS[@]} test binaries: $(cat "$list")"
}

cmd=${1:-}
shift || true
case "$cmd" in
list)
    for e in "${MATRIX[@]}"; do
        set -- $e
        want=$1
        printf '%-6s %-10s %s\n' "$1" "$2" "$(release_of "$1")"
    done
    ;;
tools)
    install_tools
    echo "kernels.sh: tools ready: $("$vng" --version 2>&1 | head -n1), $(qemu-system-x86_64 --version | head -n1)"
    ;;
prepare)
    [ $# -gt 0 ] && [ "$1" != all ] || set -- $(names)
    prepare "$@"
    ;;
run)
    [ $# -ge 1 ] || die "usage: scripts/kernels.sh run KERNEL -- CMD..."
    k=$1
    shift
    [ "${1:-}" != "--" ] || shift
    [ $# -gt 0 ] || die "usage: scripts/kernels.sh run KERNEL -- CMD..."
    prepare "$k"
    run_in_vm "$k" "$@"
    ;;
test)
    [ $# -gt 0 ] && [ "$1" != all ] || set -- $(names)
    prepare "$@"
    list=$(mktemp /tmp/ct-vm-tests.XXXXXX)
    trap 'rm -f "$list"' EXIT
    build_tests "$list"
    export CT_CLI="$repo/target/debug/ct-cli"
    # Tests that load a collector per case run one case of each kind under emulation.
    export CT_QUICK_KERNEL_TESTS=1
    # Emulated VMs run lab commands several times slower than the host, with stalls of
    # seconds under load: every lab command gets three times its limit there.
    export CT_LAB_TIME_SCALE=${CT_LAB_TIME_SCALE:-3}
    # The VMs run side by side, MATRIX_JOBS at a time (default 2), the whole suites first:
    # the smoke kernels run one after the other beside the whole suite, which they slow
    # by less than they would take after it (two whole suites side by side gain nothing:
    # each VM is CPU-bound). Each VM's output is printed whole when it ends.
    logs=$(mktemp -d /tmp/ct-vm-logs.XXXXXX)
    trap 'rm -rf "$list" "$list.smoke" "$logs"' EXIT
    grep -E "^($(IFS='|'; echo "${SMOKE_TESTS[*]}")) " "$list" >"$list.smoke"
    order=()
    for k in "$@"; do is_smoke "$k" || order+=("$k"); done
    for k in "$@"; do ! is_smoke "$k" || order+=("$k"); done
    one_kernel() {
        local k=$1 start suite=$list
        start=$(date +%s)
        if is_smoke "$k"; then
            # See SMOKE_TESTS.
            suite=$list.smoke
        fi
        if run_in_vm "$k" scripts/kernels.sh vm-suite "$suite" >"$logs/$k.log" 2>&1; then
            echo "kernels.sh: $k ($(release_of "$k")): passed in $(($(date +%s) - start)) s" >>"$logs/$k.log"
        else
            echo "kernels.sh: $k ($(release_of "$k")): FAILED after $(($(date +%s) - start)) s" >>"$logs/$k.log"
            return 1
        fi
    }
    jobs_max=${MATRIX_JOBS:-2}
    declare -A kernel_of=()
    status=0
    # Waits for whichever VM ends first (the next one starts in its place) and prints its
    # output.
    report_next() {
        local done="" rc=0
        wait -n -p done "${!kernel_of[@]}" || rc=$?
        [ "$rc" -eq 0 ] || status=1
        cat "$logs/${kernel_of[$done]}.log"
        unset "kernel_of[$done]"
    }
    for k in "${order[@]}"; do
        if ((${#kernel_of[@]} >= jobs_max)); then
            report_next
        fi
        # Boots a minute apart: two emulated kernels booting at once compete for the
        # same two cores at their most demanding.
        ((${#kernel_of[@]} == 0)) || sleep "${MATRIX_STAGGER:-60}"
        one_kernel "$k" &
        kernel_of[$!]=$k
    done
    while ((${#kernel_of[@]})); do report_next; done
    exit $status
    ;;
vm-suite)
    # Inside a VM (used by `test`).
    vm_suite "$1"
    ;;
*)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    [ -z "$cmd" ] || exit 2
    ;;
esac
