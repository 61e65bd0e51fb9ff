#!/usr/bin/env bash
# One command on a fresh Debian 12 machine (as root): installs what is missing, builds
# ct-cli, builds a small network in namespaces, sends TCP, UDP and ICMP through it, shows
# what ct-cli collects on the router, then removes everything it created.
#
#   client ──veth── router ──veth── server
#   10.231.1.2      10.231.1.1      10.231.2.2
#                   10.231.2.1
#
# The router forwards with nftables: a stateful filter (ct state) and masquerade towards the
# server, so the server sees the router's address and conntrack shows the NAT. Every address
# exists only inside the three namespaces this script creates; nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (sudo $0): it creates network namespaces and loads BPF programs" >&2
    exit 1
fi

scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "demo: building ct-cli (release)" >&2
cargo build --release -p ct-cli
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/ct-cli"

echo "demo: checking this kernel" >&2
"$bin" check

# ---------------------------------------------------------------------------------------
# Topology (removed on exit, whatever happens)

tag="ctdemo-$$"
client="$tag-client" router="$tag-router" server="$tag-server"
work="$(mktemp -d "/tmp/$tag.XXXXXX")"
pids=()

cleanup() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for ns in "$client" "$router" "$server"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

echo "demo: creating namespaces $client, $router, $server" >&2
for ns in "$client" "$router" "$server"; do
    ip netns add "$ns"
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
done
ip -n "$client" link add eth0 type veth peer name c0 netns "$router"
ip -n "$server" link add eth0 type veth peer name s0 netns "$router"

ip -n "$client" addr add 10.231.1.2/24 dev eth0
ip -n "$client" link set eth0 up
ip -n "$client" route add default via 10.231.1.1

ip -n "$router" addr add 10.231.1.1/24 dev c0
ip -n "$router" addr add 10.231.2.1/24 dev s0
ip -n "$router" link set c0 up
ip -n "$router" link set s0 up
in_ns "$router" sysctl -qw net.ipv4.ip_forward=1

# The server has no route back to the client's network: replies only work through NAT.
ip -n "$server" addr add 10.231.2.2/24 dev eth0
ip -n "$server" link set eth0 up

in_ns "$router" nft -f - <<'EOF'
table inet demo_filter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "c0" oifname "s0" ct state new accept
    }
}
table ip demo_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat;
        oifname "s0" masquerade
    }
}
EOF

# Servers: HTTP on TCP 8080, a UDP echo on 5353.
in_ns "$server" python3 -m http.server 8080 --bind 10.231.2.2 --directory "$work" \
    >"$work/http.log" 2>&1 &
pids+=($!)
in_ns "$server" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.231.2.2", 5353))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
' >"$work/udp.log" 2>&1 &
pids+=($!)

for _ in $(seq 50); do
    if in_ns "$server" python3 -c '
import socket
socket.create_connection(("10.231.2.2", 8080), timeout=0.2).close()' 2>/dev/null; then
        break
    fi
    sleep 0.1
done

# ---------------------------------------------------------------------------------------
# Collect on the router while the client talks to the server

events="$work/events.json"
echo >&2
echo "demo: \$ ct-cli collect --netns /var/run/netns/$router --duration 30s -o events.json" >&2
"$bin" collect --netns "/var/run/netns/$router" --duration 30s -o "$events" \
    2>"$work/collect.err" &
collect=$!
pids+=("$collect")

for _ in $(seq 300); do
    grep -q '; collecting$' "$work/collect.err" && break
    if ! kill -0 "$collect" 2>/dev/null; then
        cat "$work/collect.err" >&2
        exit 1
    fi
    sleep 0.1
done
cat "$work/collect.err" >&2

echo "demo: client: ping -c 2 10.231.2.2" >&2
in_ns "$client" ping -n -q -c 2 -i 0.2 -W 2 10.231.2.2 >/dev/null
echo "demo: client: HTTP GET http://10.231.2.2:8080/" >&2
in_ns "$client" python3 -c '
import urllib.request
with urllib.request.urlopen("http://10.231.2.2:8080/", timeout=5) as r:
    r.read()'
echo "demo: client: UDP datagram to 10.231.2.2:5353 and its echo" >&2
in_ns "$client" python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"hello conntrack", ("10.231.2.2", 5353))
s.recvfrom(2048)'
sleep 0.5

# Ctrl-C for ct-cli: it writes every event read, detaches and prints its summary.
kill -INT "$collect"
wait "$collect"
tail -n +2 "$work/collect.err" >&2

echo >&2
echo "demo: conntrack's own view on the router (conntrack -L):" >&2
in_ns "$router" conntrack -L 2>/dev/null || true

echo >&2
echo "demo: \$ ct-cli print events.json   (the events, as collected)" >&2
"$bin" print "$events"

echo >&2
echo "demo: forwarded packets leave with the NAT in place (packet source 10.231.2.1) while" >&2
echo "demo: conntrack's original tuple keeps the client's 10.231.1.2; packets arriving at" >&2
echo "demo: netif_receive_skb have not met conntrack yet, so they have no ct section." >&2
echo "demo: removing the namespaces" >&2
