#!/usr/bin/env bash
# bench/mobile.sh — throughput of a node embedded in an app (libplanetary_lan on a TUN
# descriptor the app opened, as on Android: no offload, one packet per system call) beside the
# daemon between the same namespaces, in one run (so the ratio is what to compare).
#
# Usage (as root, from anywhere): bench/mobile.sh
# Environment: DURATION=10 (seconds per iperf3 run), MTU=1280 (both TUNs).
#
# Topology (namespaces made here, deleted at exit):
#   app ══ veth 10.78.0.1/.2 ══ srv
# srv runs meshd and iperf3 -s. app runs, in turn, tests/mobile/tun_ping.c linked with the
# library (fd mode) and meshd itself, each running iperf3 -c to srv's overlay address.
set -uo pipefail

DURATION=${DURATION:-10}
MTU=${MTU:-1280}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG="plm$$"
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
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

((EUID == 0)) || die "must run as root"
command -v iperf3 >/dev/null || apt-get install -y -qq iperf3 >/dev/null || die "iperf3 missing"
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null || die "jq missing"
(cd "$ROOT" && cargo build --release -q -p meshd -p meshctl -p mobile-ffi) || die "build failed"
BIN=$ROOT/target/release
gcc -O2 -Wall -I "$ROOT/mobile-ffi/include" "$ROOT/tests/mobile/tun_ping.c" -L "$BIN" \
    -Wl,-rpath,"$BIN" -lplanetary_lan -o "$WORK/tun_ping" || die "gcc failed"

for n in app srv; do ip netns add "$TAG-$n" && NSS+=("$TAG-$n") && ip -n "$TAG-$n" link set lo up; done
ip -n "$TAG-app" link add v0 type veth peer name v0 netns "$TAG-srv"
ip -n "$TAG-app" addr add 10.78.0.1/24 dev v0 && ip -n "$TAG-app" link set v0 up
ip -n "$TAG-srv" addr add 10.78.0.2/24 dev v0 && ip -n "$TAG-srv" link set v0 up

daemon() { # side peers
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
mtu = $MTU
CFG
    ip netns exec "$TAG-$1" "$BIN/meshd" --config "$d/meshd.toml" >"$d/log" 2>&1 &
    PIDS+=($!)
    timeout 10 bash -c "until '$BIN/meshctl' --socket '$d/admin.sock' self >/dev/null 2>&1; do sleep 0.2; done" ||
        die "meshd $1 did not start: $(tail -3 "$d/log")"
}
daemon srv ''
SRV=$("$BIN/meshctl" --socket "$WORK/srv/admin.sock" self --json | jq -r .address)
ip netns exec "$TAG-srv" iperf3 -s -D -p 5201 --logfile "$WORK/iperf-s.log" || die "iperf3 -s"

client() { # streams -> iperf3 client command line printing Mbit/s
    echo "iperf3 -6 -c $SRV -p 5201 -t $DURATION -P $1 -J | jq -r '.end.sum_received.bits_per_second / 1e6 | floor' > $WORK/result"
}
app_run() { # streams
    local cfg
    cfg=$(jq -cn --arg d "$WORK/app/state" --arg m "$MTU" \
        '{state_dir: $d, listen: ["udp://0.0.0.0:7820"], peers: ["udp://10.78.0.2:7820"], log_level: "warn", tun: {mtu: ($m|tonumber)}}')
    mkdir -p "$WORK/app"
    ip netns exec "$TAG-app" timeout $((DURATION + 60)) "$WORK/tun_ping" "$cfg" "$SRV" "$(client "$1")" \
        >"$WORK/app.log" 2>&1 || die "app run failed: $(tail -5 "$WORK/app.log")"
    cat "$WORK/result"
}
daemon_run() { # streams
    ip netns exec "$TAG-app" timeout $((DURATION + 30)) bash -c "$(client "$1")" || die "iperf3 failed"
    cat "$WORK/result"
}

log "app library on a TUN descriptor, one stream"; a1=$(app_run 1)
log "app library on a TUN descriptor, -P 4"; a4=$(app_run 4)
daemon app '"udp://10.78.0.2:7820"'
timeout 15 bash -c "until ip netns exec $TAG-app ping -c1 -W1 $SRV >/dev/null 2>&1; do sleep 0.3; done" ||
    die "the daemon cannot reach srv"
log "daemon, one stream"; d1=$(daemon_run 1)
log "daemon, -P 4"; d4=$(daemon_run 4)
printf '\n| app side (MTU %s) | TCP 1 stream (Mbit/s) | TCP -P 4 (Mbit/s) |\n|---|---:|---:|\n' "$MTU"
printf '| libplanetary_lan on a TUN descriptor (no offload) | %s | %s |\n' "$a1" "$a4"
printf '| meshd daemon (TUN offload) | %s | %s |\n' "$d1" "$d4"
awk -v a="$a1" -v d="$d1" 'BEGIN { if (d > 0) printf "\nratio app / daemon, one stream: %.2f\n", a / d }'
