#!/usr/bin/env bash
# bench/znet.sh — container-to-container throughput across two nodes over a znet, beside the
# same two nodes over the plain overlay, in one run (so the ratio is what to compare).
#
# Usage (as root, from anywhere): bench/znet.sh
# Environment: DURATION=10 (seconds per iperf3 run), MESHD_BIN, MESHCTL_BIN (default
# target/release/{meshd,meshctl}; built if missing).
#
# Topology (everything inside namespaces made here and deleted at exit):
#   c1 ── router ns (znet) ── n1 ══ veth 10.79.0.1/.2 ══ n2 ── router ns (znet) ── c2
# Measured: iperf3 TCP, one stream and -P 4, c1 -> c2 (10.50.1.2 -> 10.50.2.2), then
# n1 -> n2 over the overlay addresses.
set -uo pipefail

DURATION=${DURATION:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MESHD_BIN=${MESHD_BIN:-$ROOT/target/release/meshd}
MESHCTL_BIN=${MESHCTL_BIN:-$ROOT/target/release/meshctl}
TAG="plz$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
PIDS=()
NSS=()

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
    # Router namespaces were mounted in the daemons' own mount namespaces: files only now.
    for f in "$WORK"/routers; do
        [[ -f $f ]] || continue
        while read -r r; do ip netns del "$r" 2>/dev/null; rm -f "/run/netns/$r"; done <"$f"
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

((EUID == 0)) || die "must run as root"
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null || die "iperf3 missing"
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null || die "jq missing"
if [[ ! -x $MESHD_BIN || ! -x $MESHCTL_BIN ]]; then
    (cd "$ROOT" && cargo build --release -q -p meshd -p meshctl) || die "build failed"
fi

mkns() { ip netns add "$1" && NSS+=("$1") && ip -n "$1" link set lo up; }
for n in n1 n2 c1 c2; do mkns "$TAG-$n" || die "netns"; done
ip -n "$TAG-n1" link add v0 type veth peer name v0 netns "$TAG-n2"
ip -n "$TAG-n1" addr add 10.79.0.1/24 dev v0 && ip -n "$TAG-n1" link set v0 up
ip -n "$TAG-n2" addr add 10.79.0.2/24 dev v0 && ip -n "$TAG-n2" link set v0 up

start() { # side peers
    local d="$WORK/$1"
    mkdir -p "$d/state"
    cat >"$d/meshd.toml" <<CFG
state_dir = "$d/state"
admin_socket = "$d/admin.sock"
listen = ["udp://0.0.0.0:7820"]
peers = [$2]
log_level = "warn"
[tun]
name = "msh$1"
CFG
    timeout $((4 * DURATION + 120)) ip netns exec "$TAG-$1" "$MESHD_BIN" --config "$d/meshd.toml" \
        >"$d/log" 2>&1 &
    PIDS+=($!)
}
ctl() { local side=$1; shift; "$MESHCTL_BIN" --socket "$WORK/$side/admin.sock" "$@"; }
start n1 '"udp://10.79.0.2:7820"'
start n2 ''
for s in n1 n2; do
    timeout 10 bash -c "until '$MESHCTL_BIN' --socket '$WORK/$s/admin.sock' self >/dev/null 2>&1; do sleep 0.2; done" ||
        die "meshd $s did not start: $(tail -3 "$WORK/$s/log")"
done
K2=$(ctl n2 self --json | jq -r .public_key)
A2=$(ctl n2 self --json | jq -r .address)
ctl n1 znet create bench --ipv4 10.50.0.0/16 --out "$WORK/m.toml" >/dev/null || die "znet create"
printf '\n[[members]]\nkey = "%s"\n' "$K2" >>"$WORK/m.toml"
ctl n1 znet join "$WORK/m.toml" >/dev/null || die "join n1"
ctl n2 znet join "$WORK/m.toml" >/dev/null || die "join n2"
for s in n1 n2; do ctl "$s" znet show bench --json | jq -r .router_netns >>"$WORK/routers"; done
ctl n1 znet attach bench --netns "$TAG-c1" >/dev/null || die "attach c1"
ctl n2 znet attach bench --netns "$TAG-c2" >/dev/null || die "attach c2"
timeout 15 bash -c "until ip netns exec $TAG-c1 ping -c1 -W1 10.50.2.2 >/dev/null 2>&1; do sleep 0.3; done" ||
    die "c1 cannot reach c2"
timeout 15 bash -c "until ip netns exec $TAG-n1 ping -c1 -W1 $A2 >/dev/null 2>&1; do sleep 0.3; done" ||
    die "n1 cannot reach n2"

iperf() { # client-ns server-ns addr streams
    ip netns exec "$2" timeout $((DURATION + 20)) iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
    sleep 0.5
    ip netns exec "$1" timeout $((DURATION + 20)) iperf3 -c "$3" -p 5201 -t "$DURATION" -P "$4" -J 2>/dev/null |
        jq -r '.end.sum_received.bits_per_second / 1e6 | floor'
    wait
}
log "znet, one stream"; z1=$(iperf "$TAG-c1" "$TAG-c2" 10.50.2.2 1)
log "znet, -P 4"; z4=$(iperf "$TAG-c1" "$TAG-c2" 10.50.2.2 4)
log "overlay, one stream"; o1=$(iperf "$TAG-n1" "$TAG-n2" "$A2" 1)
log "overlay, -P 4"; o4=$(iperf "$TAG-n1" "$TAG-n2" "$A2" 4)
printf '\n| path | TCP 1 stream (Mbit/s) | TCP -P 4 (Mbit/s) |\n|---|---:|---:|\n'
printf '| container to container over a znet | %s | %s |\n' "$z1" "$z4"
printf '| node to node over the overlay | %s | %s |\n' "$o1" "$o4"
