#!/usr/bin/env bash
# bench/compare.sh — compare meshd against yggdrasil, nebula, boringtun and
# mycelium between two network namespaces on this machine, in one run, and
# print a table.
#
# Usage (as root, from anywhere):
#   bench/compare.sh [--only SYSTEM,...] [--build] [-h|--help]
#   ROUNDS=3 bench/compare.sh --only meshd,yggdrasil,nebula,boringtun,mycelium
#
# Systems (default: all but mycelium_quic, meshd_seal1 and meshd_seal2, in this order):
#   meshd meshd_policy meshd_tcp meshd_quic yggdrasil nebula boringtun mycelium
#   mycelium_quic meshd_seal1 meshd_seal2
#
# Environment:
#   DURATION=10             seconds per iperf3 run (two runs per system)
#   ROUNDS=1                run every selected system this many times, round by
#                           round; odd rounds in the order given, even rounds in
#                           reverse. With ROUNDS>1 a table per round, then the
#                           medians and the ratios of meshd to every other system
#   PING_COUNT=20           echo requests for the latency measurement
#   PING_INTERVAL=0.05      seconds between echo requests
#   LINK_TIMEOUT=20         seconds to wait for an overlay link to come up
#   MESHD_BUILD_TIMEOUT=1800  bound for `cargo build --release -p meshd -p meshctl`
#   MESHD_BIN, MESHCTL_BIN  default target/release/{meshd,meshctl}
#   IDLE_SMAPS_DIR          if set, /proc/PID/smaps of both daemons at the idle
#                           RSS measurement are saved there ($sys-a.smaps, -b)
#   BORINGTUN_BIN           default: boringtun-cli on PATH or in ~/.cargo/bin;
#                           if missing, `cargo install --locked boringtun-cli`
#                           (bounded by BORINGTUN_INSTALL_TIMEOUT=1800)
#   BORINGTUN_MTU=1420      MTU of the boringtun interfaces: what wg-quick sets
#                           (1500 - 80). boringtun-cli leaves its TUN at 1500,
#                           whose 1560-byte UDP packets the veth fragments;
#                           BORINGTUN_MTU=default keeps that
#   MYCELIUM_BIN            path of a `mycelium` binary (myceliumd, built from
#                           its source; see docs/BENCHMARKS.md). Not set: the
#                           mycelium rows are skipped with a message
#   DAEMON_CPUS=            if set, every meshd runs under `taskset -c DAEMON_CPUS`
#                           (e.g. 1, or 0,1); iperf3 and the other systems are not
#                           pinned
#   TUN_MTU=                if set, `ip link set mtu` on both overlay tuns of
#                           every system once the link is up (default: each
#                           daemon's own default MTU, which differ a lot)
#
# Topology, for every system in turn (never two systems at once):
#
#   netns plb<PID>-<sys>-a               netns plb<PID>-<sys>-b
#   veth 10.199.0.1/24  <---- veth ---->  veth 10.199.0.2/24
#   overlay tun (daemon A)               overlay tun (daemon B)
#
# The namespaces are created fresh for each system and deleted afterwards; no
# address is added outside them, and iperf3/ping only ever target the overlay
# address of the peer daemon inside namespace B.
#
# Measurements per system:
#   tcp1     iperf3 TCP, one stream, A -> B over the overlay (Mbit/s, receiver side)
#   tcp4     iperf3 TCP, -P 4 (Mbit/s, receiver side)
#   ping     average RTT of `ping -c PING_COUNT -i PING_INTERVAL` over the overlay (ms)
#   cpu/GB   utime+stime of BOTH daemons (from /proc/PID/stat), delta over the two
#            iperf3 runs, divided by the GB (1e9 bytes) received by iperf3
#   peakRSS  max VmHWM of the two daemons at the end (MiB)
#   idleRSS  max VmRSS of the two daemons right after the link came up (MiB)
#   mtu      MTU of the overlay tun device in namespace A (defaults, not tuned)
#
# meshd_tcp and meshd_quic are meshd with the link over tcp:// and quic://.
#
# boringtun is Cloudflare's userspace WireGuard (boringtun-cli, default 4
# threads): the per-packet cost of one encryption on a direct path. Its tun is
# made by boringtun-cli and configured with `wg` (wireguard-tools) over the UAPI
# socket; kernel WireGuard is not used.
#
# mycelium is ThreeFold's Rust overlay (myceliumd, TUN with GSO/GRO offload since
# 0.7.7): B listens, A peers to B over tcp:// (mycelium_quic: quic://), peer
# discovery off, no public peers, DNS off, APIs on 127.0.0.1 inside each namespace.
#
# meshd_policy is meshd with a circle policy on both daemons: 10,000 identities
# (overlay addresses) in 100 circles, 1,000 rules, defaults deny; A may send
# tcp/5201 and icmp, B may receive them, and the replies pass as tracked flows.

set -uo pipefail

# ---------------------------------------------------------------- settings --
DURATION=${DURATION:-10}
PING_COUNT=${PING_COUNT:-20}
PING_INTERVAL=${PING_INTERVAL:-0.05}
LINK_TIMEOUT=${LINK_TIMEOUT:-20}
MESHD_BUILD_TIMEOUT=${MESHD_BUILD_TIMEOUT:-1800}
TUN_MTU=${TUN_MTU:-}
ROUNDS=${ROUNDS:-1}
BORINGTUN_BIN=${BORINGTUN_BIN:-}
BORINGTUN_INSTALL_TIMEOUT=${BORINGTUN_INSTALL_TIMEOUT:-1800}
MYCELIUM_BIN=${MYCELIUM_BIN:-}
BORINGTUN_MTU=${BORINGTUN_MTU:-1420}

DEFAULT_SYSTEMS=(meshd meshd_policy meshd_tcp meshd_quic yggdrasil nebula boringtun mycelium)
ALL_SYSTEMS=("${DEFAULT_SYSTEMS[@]}" mycelium_quic meshd_seal1 meshd_seal2)
SYSTEMS=("${DEFAULT_SYSTEMS[@]}")
FORCE_BUILD=0

# Shared helpers; also sets REPO_ROOT, MESHD_BIN, MESHCTL_BIN (overridable from
# the environment), CLK_TCK, WORKDIR, CREATED_NS, STARTED_PIDS and WRAPPER_OF.
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 1

VETH_A=10.199.0.1
VETH_B=10.199.0.2
NEBULA_NET=10.198.0          # nebula overlay /24, only inside the namespaces
WG_NET=10.197.0              # boringtun overlay /24, only inside the namespaces
WG_PORT=51820
MYCELIUM_PORT=9651           # tcp and quic listen port of mycelium
IPERF_PORT=5201
# Upper bound on the lifetime of any daemon we start (seconds): every daemon
# runs under `timeout`, so nothing survives even if this script is SIGKILLed.
DAEMON_LIFETIME=$((2 * DURATION + LINK_TIMEOUT + 120))

TAG="plb$$"                  # unique prefix for namespaces and devices

# Per-system state, reset by reset_state.
NS_A="" NS_B="" PID_A="" PID_B="" ADDR_B="" TUN_A="" TUN_B="" REASON=""

# Results of the current round: RESULT[sys] = "tcp1 tcp4 ping cpu_per_gb
# peak_rss idle_rss mtu" or UNAVAILABLE[sys] = reason. Every round's are kept in
# ROUND_RESULT["round sys"] and ROUND_UNAVAILABLE["round sys"].
declare -A RESULT=() UNAVAILABLE=() ROUND_RESULT=() ROUND_UNAVAILABLE=()
# ROW_NOTE[sys]: "median of 2 of 3 rounds" when a system failed in some round.
declare -A ROW_NOTE=()

# ----------------------------------------------------------------- helpers --
# (log, die, fail, calc, in_ns, kill_pid, delete_ns, cleanup, spawn, alive,
# exit_status, cpu_ticks, status_kb, max, tail_log: see bench/lib.sh)
usage() { sed -n '2,/^# Topology/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ------------------------------------------------------------ dependencies --
ensure_deps() {
    ensure_base_deps
    # The systems under comparison: a failure here only disables that row.
    if want yggdrasil && ! command -v yggdrasil >/dev/null; then apt_install yggdrasil; fi
    if want nebula && ! command -v nebula >/dev/null; then apt_install nebula; fi
    if want boringtun; then
        # Only the `wg` tool: its recommends pull in a kernel image.
        command -v wg >/dev/null || apt_install --no-install-recommends wireguard-tools
        ensure_boringtun
    fi
}

# Find boringtun-cli (BORINGTUN_BIN, else PATH, else ~/.cargo/bin), or install
# it from crates.io with cargo (bounded). On failure BORINGTUN_MISSING says why
# and only the boringtun row is skipped.
BORINGTUN_MISSING=""
ensure_boringtun() {
    local cargo_bin="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
    if [[ -n $BORINGTUN_BIN ]]; then
        [[ -x $BORINGTUN_BIN ]] || BORINGTUN_MISSING="BORINGTUN_BIN=$BORINGTUN_BIN is not an executable"
        return 0
    fi
    if command -v boringtun-cli >/dev/null; then
        BORINGTUN_BIN=$(command -v boringtun-cli)
        return 0
    fi
    if [[ -x $cargo_bin/boringtun-cli ]]; then
        BORINGTUN_BIN=$cargo_bin/boringtun-cli
        return 0
    fi
    if ! command -v cargo >/dev/null; then
        BORINGTUN_MISSING="boringtun-cli not found and no cargo to install it (cargo install boringtun-cli, or set BORINGTUN_BIN)"
        return 0
    fi
    log "installing boringtun-cli from crates.io (cargo install --locked, bounded ${BORINGTUN_INSTALL_TIMEOUT}s)"
    if timeout "$BORINGTUN_INSTALL_TIMEOUT" cargo install --locked boringtun-cli \
        >"$WORKDIR/boringtun-install.log" 2>&1 && [[ -x $cargo_bin/boringtun-cli ]]; then
        BORINGTUN_BIN=$cargo_bin/boringtun-cli
    else
        BORINGTUN_MISSING="cargo install boringtun-cli failed: $(tail_log "$WORKDIR/boringtun-install.log")"
    fi
}

want() { local s; for s in "${SYSTEMS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

# ------------------------------------------------------------- namespaces --
reset_state() { NS_A="" NS_B="" PID_A="" PID_B="" ADDR_B="" TUN_A="" TUN_B="" REASON=""; }

# Two fresh namespaces joined by a veth pair (created directly inside them, so
# nothing is ever added to the root namespace).
setup_netns() {
    local sys=$1
    NS_A="$TAG-$sys-a" NS_B="$TAG-$sys-b"
    ip netns add "$NS_A" || return 1
    CREATED_NS+=("$NS_A")
    ip netns add "$NS_B" || return 1
    CREATED_NS+=("$NS_B")
    ip -n "$NS_A" link add veth0 type veth peer name veth0 netns "$NS_B" || return 1
    ip -n "$NS_A" addr add "$VETH_A/24" dev veth0
    ip -n "$NS_B" addr add "$VETH_B/24" dev veth0
    local ns
    for ns in "$NS_A" "$NS_B"; do
        ip -n "$ns" link set lo up
        ip -n "$ns" link set veth0 up
    done
    # Wait for the veth pair to pass traffic (IPv4, no DAD involved).
    timeout 10 bash -c "until ip netns exec '$NS_A' ping -c1 -W1 $VETH_B >/dev/null 2>&1; do sleep 0.2; done"
}

teardown() {
    local pid ns f
    for pid in "$PID_A" "$PID_B"; do [[ -n $pid ]] && kill_pid "$pid"; done
    for ns in "$NS_A" "$NS_B"; do [[ -n $ns ]] && delete_ns "$ns"; done
    for f in "${CREATED_FILES[@]}"; do [[ -e $f ]] && rm -f -- "$f"; done
}

# Wait (bounded) until ADDR answers a ping from NS_A, while both daemons live.
# On failure, fails with WHAT and the tail of daemon A's (or the dead one's) log.
wait_link() {
    local addr=$1 what=$2 loga=$3 logb=$4 deadline=$((SECONDS + LINK_TIMEOUT))
    while ((SECONDS < deadline)); do
        check_alive "$loga" "$logb" || return 1
        in_ns "$NS_A" timeout 3 ping -c1 -W1 "$addr" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    fail "$what: no reply within ${LINK_TIMEOUT}s: $(tail_log "$loga")"
}

# Fail if daemon A or B has exited (reason includes its status and log tail).
check_alive() {
    if ! alive "$PID_A"; then fail "daemon A $(exit_status "$PID_A"): $(tail_log "$1")"; return 1; fi
    if ! alive "$PID_B"; then fail "daemon B $(exit_status "$PID_B"): $(tail_log "$2")"; return 1; fi
}

# --------------------------------------------------------------- measuring --
# iperf3 client A -> B; prints "bits_per_second bytes" as seen by the receiver.
run_iperf() {
    local addr=$1 streams=$2 out
    out=$(in_ns "$NS_A" timeout $((DURATION + 30)) \
        iperf3 -c "$addr" -p "$IPERF_PORT" -t "$DURATION" -P "$streams" -J 2>/dev/null)
    jq -er '[.end.sum_received.bits_per_second, .end.sum_received.bytes] | @tsv' \
        <<<"$out" 2>/dev/null | tr '\t' ' '
}

# Common measurement once both daemons run and ADDR_B answers pings.
measure() {
    local sys=$1 idle_kb peak_kb ping_out ping_avg cpu0 cpu1 r1 r4 bps1 bytes1 bps4 bytes4 mtu
    local iperf_pid

    if [[ -n $TUN_MTU ]]; then
        if ! ip -n "$NS_A" link set dev "$TUN_A" mtu "$TUN_MTU" ||
            ! ip -n "$NS_B" link set dev "$TUN_B" mtu "$TUN_MTU"; then
            fail "could not set MTU $TUN_MTU on $TUN_A/$TUN_B"
            return 1
        fi
    fi

    # Idle RSS right after the link came up, before any bulk traffic.
    idle_kb=$(max "$(status_kb "$PID_A" VmRSS)" "$(status_kb "$PID_B" VmRSS)")
    if [[ -n ${IDLE_SMAPS_DIR:-} ]]; then
        mkdir -p "$IDLE_SMAPS_DIR"
        cat "/proc/$PID_A/smaps" >"$IDLE_SMAPS_DIR/$sys-a.smaps" 2>/dev/null || true
        cat "/proc/$PID_B/smaps" >"$IDLE_SMAPS_DIR/$sys-b.smaps" 2>/dev/null || true
    fi

    ping_out=$(in_ns "$NS_A" timeout $((PING_COUNT + 10)) \
        ping -q -c "$PING_COUNT" -i "$PING_INTERVAL" -W 2 "$ADDR_B" 2>&1)
    ping_avg=$(sed -n 's|^rtt .* = [^/]*/\([^/]*\)/.*|\1|p' <<<"$ping_out")
    [[ -n $ping_avg ]] || { fail "ping failed: $(tail -n1 <<<"$ping_out")"; return 1; }

    spawn iperf_pid "$NS_B" "$WORKDIR/$sys-iperf3-server.log" iperf3 -s -p "$IPERF_PORT" ||
        { fail "iperf3 server did not start"; return 1; }
    sleep 0.5

    cpu0=$(($(cpu_ticks "$PID_A") + $(cpu_ticks "$PID_B")))
    log "  iperf3 single stream, ${DURATION}s"
    r1=$(run_iperf "$ADDR_B" 1)
    log "  iperf3 -P 4, ${DURATION}s"
    r4=$(run_iperf "$ADDR_B" 4)
    if ! check_alive "$WORKDIR/$sys-a.log" "$WORKDIR/$sys-b.log"; then
        kill_pid "$iperf_pid"
        REASON="during iperf3: $REASON"
        return 1
    fi
    cpu1=$(($(cpu_ticks "$PID_A") + $(cpu_ticks "$PID_B")))
    peak_kb=$(max "$(status_kb "$PID_A" VmHWM)" "$(status_kb "$PID_B" VmHWM)")
    kill_pid "$iperf_pid"

    [[ -n $r1 && -n $r4 ]] || { fail "iperf3 failed (single: '${r1}', -P4: '${r4}')"; return 1; }
    read -r bps1 bytes1 <<<"$r1"
    read -r bps4 bytes4 <<<"$r4"
    # A link that passes pings but not full-size packets moves nothing.
    if awk -v a="$bytes1" -v b="$bytes4" 'BEGIN { exit !(a + 0 == 0 || b + 0 == 0) }'; then
        fail "iperf3 moved no data (single: $bytes1 bytes, -P 4: $bytes4 bytes) although pings passed"
        return 1
    fi
    mtu=$(tun_mtu_in_a) || mtu="?"

    RESULT[$sys]="$(calc "$bps1 / 1e6") $(calc "$bps4 / 1e6") $ping_avg \
$(calc "(($cpu1 - $cpu0) / $CLK_TCK) / (($bytes1 + $bytes4) / 1e9)") \
$(calc "$peak_kb / 1024") $(calc "$idle_kb / 1024") $mtu"
}

# The tun in namespace A lives in that namespace's sysfs; read it from there.
tun_mtu_in_a() { in_ns "$NS_A" cat "/sys/class/net/$TUN_A/mtu" 2>/dev/null; }

# ------------------------------------------------------------------ meshd ---
# Written to the meshd contract: TOML config, `meshd --config FILE` in the
# foreground, `meshctl --socket PATH self|peers --json` for state.
meshd_config() {
    local side=$1 peers=$2 dir="$WORKDIR/meshd-$1"
    mkdir -p "$dir/state"
    cat >"$dir/meshd.toml" <<EOF
identity_file = "$dir/identity.key"
state_dir = "$dir/state"
listen = ["${MESHD_LISTEN:-udp://0.0.0.0:7820}"]
peers = [$peers]
admin_socket = "$dir/admin.sock"
log_level = "info"
${POLICY_FILE:+policy_file = \"$POLICY_FILE\"}

[tun]
name = "msh$side$$"
${MESHD_SEAL_THREADS:+seal_threads = $MESHD_SEAL_THREADS}
EOF
    echo "$dir/meshd.toml"
}

# (mctl, wait_meshctl, ensure_meshd_built: see bench/lib.sh)

# A circle policy of 10,000 identities (random overlay addresses) in 100 circles
# and 1,000 rules that match neither daemon, then the rules the benchmark needs:
# side A may send tcp/5201 and icmp, side B may receive them; everything else is
# denied, so the replies in each direction pass only as tracked flows.
meshd_policy_file() {
    local side=$1 f="$WORKDIR/policy-$1.toml" g m r
    {
        echo '[defaults]'
        echo 'traffic = "deny"'
        echo 'outbound = "deny"'
        echo '[circles]'
        for ((g = 0; g < 100; g++)); do
            printf 'team%d = [' "$g"
            for ((m = 0; m < 100; m++)); do
                printf '"6%02x:%x:%x:%x:%x:%x:%x:%x", ' $((RANDOM % 256)) $RANDOM $RANDOM \
                    $RANDOM $RANDOM $RANDOM $RANDOM $((g * 100 + m))
            done
            echo ']'
        done
        for ((r = 0; r < 998; r++)); do
            printf '[[rules]]\naction = "%s"\n%s = "circle:team%d"\nports = ["tcp/%d", "udp/%d-%d"]\n' \
                "$( ((r % 3)) && echo traffic || echo outbound)" \
                "$( ((r % 7)) && echo allow || echo deny)" $((r % 100)) \
                $((1000 + r * 37 % 60000)) $((1000 + r * 37 % 60000)) $((1010 + r * 37 % 60000))
        done
        if [[ $side == A ]]; then
            printf '[[rules]]\naction = "outbound"\nallow = "any"\nports = ["tcp/%d", "icmp"]\n' "$IPERF_PORT"
        else
            printf '[[rules]]\naction = "traffic"\nallow = "any"\nports = ["tcp/%d", "icmp"]\n' "$IPERF_PORT"
        fi
        echo '[[rules]]'
        echo 'action = "traffic"'
        echo 'deny = "circle:team3"'
    } >"$f"
    echo "$f"
}

run_meshd_policy() {
    local pa pb
    if ! pa=$(meshd_policy_file A) || ! pb=$(meshd_policy_file B); then
        fail "cannot write the policies"
        return 1
    fi
    # meshd_config reads POLICY_FILE; A's and B's files differ, so each side's
    # config is written with its own.
    POLICY_FILE=$pa POLICY_B=$pb run_meshd meshd_policy
}

# meshd with its link over TCP (Noise framed on one TCP connection) or over QUIC
# (Noise in QUIC datagrams, TLS outside), instead of UDP.
run_meshd_tcp() {
    MESHD_LISTEN="tcp://0.0.0.0:7820" MESHD_PEER="tcp://$VETH_B:7820" run_meshd meshd_tcp
}

# meshd_seal1 and meshd_seal2: meshd with tun.seal_threads = 1 (the event loop encrypts
# alone) and 2 (a second thread shares each batch's encryptions); not in the default set.
run_meshd_seal1() { MESHD_SEAL_THREADS=1 run_meshd meshd_seal1; }
run_meshd_seal2() { MESHD_SEAL_THREADS=2 run_meshd meshd_seal2; }

run_meshd_quic() {
    MESHD_LISTEN="quic://0.0.0.0:7821" MESHD_PEER="quic://$VETH_B:7821" run_meshd meshd_quic
}

run_meshd() {
    local sys=${1:-meshd} cfg_a cfg_b sock_a sock_b self_b state deadline
    ensure_meshd_built || return 1
    cfg_a=$(meshd_config A "\"${MESHD_PEER:-udp://$VETH_B:7820}\"")
    cfg_b=$(POLICY_FILE=${POLICY_B:-${POLICY_FILE:-}} meshd_config B "")
    sock_a="$WORKDIR/meshd-A/admin.sock" sock_b="$WORKDIR/meshd-B/admin.sock"
    TUN_A="mshA$$" TUN_B="mshB$$"

    spawn PID_B "$NS_B" "$WORKDIR/$sys-b.log" ${DAEMON_CPUS:+taskset -c "$DAEMON_CPUS"} "$MESHD_BIN" --config "$cfg_b" ||
        { fail "meshd B did not start: $(tail_log "$WORKDIR/$sys-b.log")"; return 1; }
    spawn PID_A "$NS_A" "$WORKDIR/$sys-a.log" ${DAEMON_CPUS:+taskset -c "$DAEMON_CPUS"} "$MESHD_BIN" --config "$cfg_a" ||
        { fail "meshd A did not start: $(tail_log "$WORKDIR/$sys-a.log")"; return 1; }

    wait_meshctl "$NS_B" "$sock_b" "$PID_B" || { check_alive "$WORKDIR/$sys-a.log" "$WORKDIR/$sys-b.log" &&
        fail "'meshctl self' on B did not answer in ${LINK_TIMEOUT}s: $(tail_log "$WORKDIR/$sys-b.log")"; return 1; }
    wait_meshctl "$NS_A" "$sock_a" "$PID_A" || { check_alive "$WORKDIR/$sys-a.log" "$WORKDIR/$sys-b.log" &&
        fail "'meshctl self' on A did not answer in ${LINK_TIMEOUT}s: $(tail_log "$WORKDIR/$sys-a.log")"; return 1; }

    self_b=$(mctl "$NS_B" "$sock_b" self --json)
    ADDR_B=$(jq -er '.address' <<<"$self_b" 2>/dev/null) ||
        { fail "no .address in 'meshctl self --json': ${self_b:0:160}"; return 1; }
    log "  meshd B overlay address: $ADDR_B"

    # Bounded wait for the peer state to become "up" on A.
    deadline=$((SECONDS + LINK_TIMEOUT))
    state=""
    while ((SECONDS < deadline)); do
        check_alive "$WORKDIR/$sys-a.log" "$WORKDIR/$sys-b.log" || return 1
        state=$(mctl "$NS_A" "$sock_a" peers --json 2>/dev/null |
            jq -r '[.[] | .state] | join(",")' 2>/dev/null)
        [[ ,$state, == *,up,* ]] && break
        sleep 0.5
    done
    [[ ,$state, == *,up,* ]] ||
        { fail "peer never 'up' on A (states: '${state}'): $(tail_log "$WORKDIR/$sys-a.log")"; return 1; }

    wait_link "$ADDR_B" "peer up but no ping reply from $ADDR_B" \
        "$WORKDIR/$sys-a.log" "$WORKDIR/$sys-b.log" || return 1
    measure "$sys" || return 1

    # Informational: the daemon's own byte counters after the run.
    mctl "$NS_A" "$sock_a" peers --json 2>/dev/null |
        jq -r '.[] | "  A peer \(.address): state=\(.state) tx_bytes=\(.tx_bytes) rx_bytes=\(.rx_bytes)"' \
            >&2 2>/dev/null || true
}

# -------------------------------------------------------------- yggdrasil ---
# yggdrasil 0.4.x: JSON config from -genconf, multicast discovery disabled,
# admin socket disabled, B listens on its veth address, A peers to it via TCP.
# Note: with the default IfMTU 65535 yggdrasil clamps its tun to an MTU of
# ~53049, so TCP runs with huge segments; with TUN_MTU=1280 its throughput
# drops by an order of magnitude. Compare with that in mind.
ygg_config() {
    local side=$1 listen=$2 peers=$3 conf="$WORKDIR/ygg-$1.conf"
    yggdrasil -genconf -json | jq \
        --arg ifname "ygg$side$$" --argjson listen "$listen" --argjson peers "$peers" '
        .IfName = $ifname
        | .Listen = $listen
        | .Peers = $peers
        | .MulticastInterfaces = []
        | .AdminListen = "none"' >"$conf" || return 1
    echo "$conf"
}

run_yggdrasil() {
    local cfg_a cfg_b port=9443
    command -v yggdrasil >/dev/null || { fail "yggdrasil not installed"; return 1; }
    cfg_a=$(ygg_config A '[]' "[\"tcp://$VETH_B:$port\"]") || { fail "config generation failed"; return 1; }
    cfg_b=$(ygg_config B "[\"tcp://$VETH_B:$port\"]" '[]') || { fail "config generation failed"; return 1; }
    ADDR_B=$(yggdrasil -useconffile "$cfg_b" -address) || { fail "yggdrasil -address failed"; return 1; }
    TUN_A="yggA$$" TUN_B="yggB$$"
    log "  yggdrasil B overlay address: $ADDR_B"

    spawn PID_B "$NS_B" "$WORKDIR/yggdrasil-b.log" yggdrasil -useconffile "$cfg_b" -logto stdout ||
        { fail "yggdrasil B did not start: $(tail_log "$WORKDIR/yggdrasil-b.log")"; return 1; }
    spawn PID_A "$NS_A" "$WORKDIR/yggdrasil-a.log" yggdrasil -useconffile "$cfg_a" -logto stdout ||
        { fail "yggdrasil A did not start: $(tail_log "$WORKDIR/yggdrasil-a.log")"; return 1; }

    wait_link "$ADDR_B" "overlay ping to $ADDR_B" "$WORKDIR/yggdrasil-a.log" "$WORKDIR/yggdrasil-b.log" || return 1
    measure yggdrasil
}

# ----------------------------------------------------------------- nebula ---
# nebula 1.6: one CA, A is the lighthouse, B a host that knows A through
# static_host_map; default UDP port 4242, default tun MTU, allow-all firewall.
nebula_config() {
    local side=$1 lighthouse=$2 dir="$WORKDIR/nebula"
    cat >"$dir/$side.yml" <<EOF
pki:
  ca: $dir/ca.crt
  cert: $dir/$side.crt
  key: $dir/$side.key
static_host_map:
  "$NEBULA_NET.1": ["$VETH_A:4242"]
  "$NEBULA_NET.2": ["$VETH_B:4242"]
lighthouse:
  am_lighthouse: $lighthouse
  interval: 60
  hosts: $([[ $lighthouse == true ]] && echo '[]' || echo "[\"$NEBULA_NET.1\"]")
listen:
  host: 0.0.0.0
  port: 4242
punchy:
  punch: false
relay:
  am_relay: false
  use_relays: false
tun:
  disabled: false
  dev: neb$side$$
logging:
  level: info
  format: text
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
EOF
    echo "$dir/$side.yml"
}

run_nebula() {
    local dir="$WORKDIR/nebula" cfg_a cfg_b
    if ! command -v nebula >/dev/null || ! command -v nebula-cert >/dev/null; then
        fail "nebula/nebula-cert not installed"
        return 1
    fi
    # A fresh CA every time: nebula-cert refuses to overwrite one (ROUNDS>1).
    rm -rf -- "$dir"
    mkdir -p "$dir"
    (
        cd "$dir" &&
            nebula-cert ca -name "plb-bench-ca" -duration 24h &&
            nebula-cert sign -name A -ip "$NEBULA_NET.1/24" -out-crt A.crt -out-key A.key &&
            nebula-cert sign -name B -ip "$NEBULA_NET.2/24" -out-crt B.crt -out-key B.key
    ) >"$dir/certs.log" 2>&1 || { fail "nebula-cert failed: $(tail_log "$dir/certs.log")"; return 1; }
    cfg_a=$(nebula_config A true)
    cfg_b=$(nebula_config B false)
    ADDR_B="$NEBULA_NET.2"
    TUN_A="nebA$$" TUN_B="nebB$$"

    spawn PID_A "$NS_A" "$WORKDIR/nebula-a.log" nebula -config "$cfg_a" ||
        { fail "nebula A did not start: $(tail_log "$WORKDIR/nebula-a.log")"; return 1; }
    spawn PID_B "$NS_B" "$WORKDIR/nebula-b.log" nebula -config "$cfg_b" ||
        { fail "nebula B did not start: $(tail_log "$WORKDIR/nebula-b.log")"; return 1; }

    wait_link "$ADDR_B" "overlay ping to $ADDR_B" "$WORKDIR/nebula-a.log" "$WORKDIR/nebula-b.log" || return 1
    measure nebula
}

# -------------------------------------------------------------- boringtun ---
# boringtun-cli 0.7: one userspace WireGuard interface per namespace, made by
# `boringtun-cli --foreground` (a TUN and the UAPI socket
# /var/run/wireguard/NAME.sock), then keys, port and peer set with `wg set` over
# that socket and the address with `ip`. B listens on WG_PORT; A has B's veth
# address as endpoint and a 1 s keepalive so that the handshake starts at once.
# Default threads (4); the MTU wg-quick would set (BORINGTUN_MTU).
wg_iface_up() {
    local ns=$1 ifname=$2 addr=$3 key=$4 peer_pub=$5 endpoint=$6 sock deadline mtu=()
    sock="/var/run/wireguard/$ifname.sock"
    deadline=$((SECONDS + LINK_TIMEOUT))
    until [[ -S $sock ]]; do
        ((SECONDS < deadline)) || { fail "no UAPI socket $sock after ${LINK_TIMEOUT}s"; return 1; }
        check_alive "$WORKDIR/boringtun-a.log" "$WORKDIR/boringtun-b.log" || return 1
        sleep 0.2
    done
    local args=(set "$ifname" private-key "$key" listen-port "$WG_PORT"
        peer "$peer_pub" allowed-ips "$WG_NET.0/24")
    [[ -n $endpoint ]] && args+=(endpoint "$endpoint" persistent-keepalive 1)
    in_ns "$ns" timeout 5 wg "${args[@]}" >>"$WORKDIR/wg.log" 2>&1 ||
        { fail "wg set $ifname failed: $(tail_log "$WORKDIR/wg.log")"; return 1; }
    [[ $BORINGTUN_MTU == default ]] || mtu=(mtu "$BORINGTUN_MTU")
    if ! ip -n "$ns" addr add "$addr/24" dev "$ifname" || ! ip -n "$ns" link set "$ifname" "${mtu[@]}" up; then
        fail "could not configure $ifname"
        return 1
    fi
}

run_boringtun() {
    local dir="$WORKDIR/boringtun" pub_a pub_b
    [[ -z $BORINGTUN_MISSING ]] || { fail "$BORINGTUN_MISSING"; return 1; }
    [[ -n $BORINGTUN_BIN ]] || { fail "boringtun-cli not found"; return 1; }
    command -v wg >/dev/null || { fail "wg (wireguard-tools) not installed"; return 1; }
    mkdir -p "$dir"
    (umask 077 && wg genkey >"$dir/A.key" && wg genkey >"$dir/B.key") ||
        { fail "wg genkey failed"; return 1; }
    if ! pub_a=$(wg pubkey <"$dir/A.key") || ! pub_b=$(wg pubkey <"$dir/B.key"); then
        fail "wg pubkey failed"
        return 1
    fi
    TUN_A="wgA$$" TUN_B="wgB$$"
    ADDR_B="$WG_NET.2"
    # boringtun leaves its UAPI sockets behind when killed: removed by teardown/cleanup.
    CREATED_FILES+=("/var/run/wireguard/$TUN_A.sock" "/var/run/wireguard/$TUN_B.sock")

    spawn PID_B "$NS_B" "$WORKDIR/boringtun-b.log" "$BORINGTUN_BIN" --foreground \
        --disable-drop-privileges --log "$dir/B.out" "$TUN_B" ||
        { fail "boringtun B did not start: $(tail_log "$WORKDIR/boringtun-b.log")"; return 1; }
    spawn PID_A "$NS_A" "$WORKDIR/boringtun-a.log" "$BORINGTUN_BIN" --foreground \
        --disable-drop-privileges --log "$dir/A.out" "$TUN_A" ||
        { fail "boringtun A did not start: $(tail_log "$WORKDIR/boringtun-a.log")"; return 1; }

    wg_iface_up "$NS_B" "$TUN_B" "$WG_NET.2" "$dir/B.key" "$pub_a" "" || return 1
    wg_iface_up "$NS_A" "$TUN_A" "$WG_NET.1" "$dir/A.key" "$pub_b" "$VETH_B:$WG_PORT" || return 1

    wait_link "$ADDR_B" "overlay ping to $ADDR_B" "$WORKDIR/boringtun-a.log" "$WORKDIR/boringtun-b.log" || return 1
    measure boringtun
}

# --------------------------------------------------------------- mycelium ---
# myceliumd (the `mycelium` binary) from MYCELIUM_BIN: a key file per side
# (`generate-keys`), B's overlay address from `inspect --json`, and a config file
# per side (so that no mycelium.toml of this machine is read) with no peers but
# A's one, peer discovery off, DNS off, HTTP and JSON-RPC APIs on 127.0.0.1
# inside each namespace, no metrics. B only listens (tcp and quic on
# MYCELIUM_PORT); A peers to B over PROTO. Mycelium opens its TUN (MTU 1400)
# with IFF_VNET_HDR and TSO/USO offload by itself (since 0.7.7).
# Over quic:// on this 1500-byte veth, 0.7.10 drops every packet above ~1300
# bytes ("Failed to feed data packet to connection: datagram too large"): pings
# pass, TCP at the TUN's MTU 1400 does not (TUN_MTU=1280 makes it work).
run_mycelium() { run_mycelium_over mycelium tcp; }
run_mycelium_quic() { run_mycelium_over mycelium_quic quic; }

# mycelium_config SYS SIDE PEERS_TOML: write SIDE's config, print its path.
mycelium_config() {
    local dir="$WORKDIR/$1" side=$2 peers=$3
    cat >"$dir/$side.toml" <<EOF
peers = $peers
tcp_listen_port = $MYCELIUM_PORT
quic_listen_port = $MYCELIUM_PORT
disable_peer_discovery = true
enable_dns = false
api_addr = "127.0.0.1:8989"
jsonrpc_addr = "127.0.0.1:8990"
tun_name = "my$side$$"
EOF
    echo "$dir/$side.toml"
}

run_mycelium_over() {
    local sys=$1 proto=$2 dir="$WORKDIR/$1" side cfg_a cfg_b
    if [[ -z $MYCELIUM_BIN ]]; then
        fail "MYCELIUM_BIN not set (path of a mycelium binary built from its source, see docs/BENCHMARKS.md)"
        return 1
    fi
    [[ -x $MYCELIUM_BIN ]] || { fail "MYCELIUM_BIN=$MYCELIUM_BIN is not an executable"; return 1; }
    mkdir -p "$dir"
    cfg_a=$(mycelium_config "$sys" A "[\"$proto://$VETH_B:$MYCELIUM_PORT\"]")
    cfg_b=$(mycelium_config "$sys" B "[]")
    for side in A B; do
        timeout 10 "$MYCELIUM_BIN" --config-file "$dir/$side.toml" --key-file "$dir/$side.key" \
            generate-keys >>"$dir/keys.log" 2>&1 ||
            { fail "mycelium generate-keys failed: $(tail_log "$dir/keys.log")"; return 1; }
    done
    ADDR_B=$(timeout 10 "$MYCELIUM_BIN" --config-file "$cfg_b" --key-file "$dir/B.key" \
        inspect --json 2>>"$dir/keys.log" | jq -er '.address') ||
        { fail "no address from 'mycelium inspect --json': $(tail_log "$dir/keys.log")"; return 1; }
    log "  mycelium B overlay address: $ADDR_B"
    TUN_A="myA$$" TUN_B="myB$$"

    spawn PID_B "$NS_B" "$WORKDIR/$sys-b.log" "$MYCELIUM_BIN" --config-file "$cfg_b" \
        --key-file "$dir/B.key" --disable-peer-discovery --log-format plain ||
        { fail "mycelium B did not start: $(tail_log "$WORKDIR/$sys-b.log")"; return 1; }
    spawn PID_A "$NS_A" "$WORKDIR/$sys-a.log" "$MYCELIUM_BIN" --config-file "$cfg_a" \
        --key-file "$dir/A.key" --disable-peer-discovery --log-format plain ||
        { fail "mycelium A did not start: $(tail_log "$WORKDIR/$sys-a.log")"; return 1; }

    wait_link "$ADDR_B" "overlay ping to $ADDR_B" "$WORKDIR/$sys-a.log" "$WORKDIR/$sys-b.log" || return 1
    measure "$sys"
}

# --------------------------------------------------------------- reporting --
boringtun_version() {
    if ! want boringtun || [[ -z $BORINGTUN_BIN ]]; then echo '-'; return; fi
    timeout 5 "$BORINGTUN_BIN" --version 2>/dev/null | awk '{ print $2 }'
}
mycelium_version() {
    want mycelium || want mycelium_quic || { echo '-'; return; }
    [[ -n $MYCELIUM_BIN && -x $MYCELIUM_BIN ]] || { echo 'unset'; return; }
    timeout 5 "$MYCELIUM_BIN" --version 2>/dev/null | awk '{ print $2; exit }'
}

print_header() {
    echo "# Planetary LAN overlay comparison"
    print_machine_header
    echo "versions: meshd=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo 'no-commit')" \
        "yggdrasil=$(dpkg-query -W -f='${Version}' yggdrasil 2>/dev/null || echo '?')" \
        "nebula=$(dpkg-query -W -f='${Version}' nebula 2>/dev/null || echo '?')" \
        "boringtun=$(boringtun_version)" "mycelium=$(mycelium_version)" \
        "iperf3=$(iperf3 --version 2>/dev/null | awk 'NR==1 { print $2 }')"
    echo "settings: DURATION=${DURATION}s PING_COUNT=$PING_COUNT PING_INTERVAL=${PING_INTERVAL}s" \
        "TUN_MTU=${TUN_MTU:-default} ROUNDS=$ROUNDS systems=${SYSTEMS[*]}"
    echo
}

# print_results [NOTE]: the table, CSV and Markdown of RESULT/UNAVAILABLE (the
# current round, or the medians); NOTE goes to the CSV's note column.
print_results() {
    local note=${1:-} sys tcp1 tcp4 ping cpu peak idle mtu date kernel
    date=$(date -u '+%Y-%m-%d')
    kernel=$(uname -r)
    echo
    printf '%-13s | %10s | %10s | %8s | %10s | %8s | %8s | %5s\n' \
        system "tcp1 Mb/s" "tcp4 Mb/s" "ping ms" "cpu s/GB" "peak MiB" "idle MiB" mtu
    echo "--------------+------------+------------+----------+------------+----------+----------+------"
    for sys in "${SYSTEMS[@]}"; do
        if [[ -n ${RESULT[$sys]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu <<<"${RESULT[$sys]}"
            printf '%-13s | %10.0f | %10.0f | %8.3f | %10.2f | %8.1f | %8.1f | %5s%s\n' \
                "$sys" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu" "${ROW_NOTE[$sys]:+  (${ROW_NOTE[$sys]})}"
        else
            echo "$sys: not available (${UNAVAILABLE[$sys]:-not run})"
        fi
    done
    echo
    echo "# CSV (paste into docs/BENCHMARKS.md)"
    echo "csv,system,date,kernel,nproc,duration_s,tcp1_mbps,tcp4_mbps,ping_avg_ms,cpu_s_per_gb,peak_rss_mib,idle_rss_mib,tun_mtu,note"
    for sys in "${SYSTEMS[@]}"; do
        if [[ -n ${RESULT[$sys]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu <<<"${RESULT[$sys]}"
            printf 'csv,%s,%s,%s,%s,%s,%.1f,%.1f,%.3f,%.3f,%.1f,%.1f,%s,%s\n' "$sys" "$date" "$kernel" \
                "$(nproc)" "$DURATION" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu" "${ROW_NOTE[$sys]:-$note}"
        else
            printf 'csv,%s,%s,%s,%s,%s,,,,,,,,"%snot available: %s"\n' "$sys" "$date" "$kernel" "$(nproc)" \
                "$DURATION" "${note:+$note; }" "${UNAVAILABLE[$sys]//\"/\'}"
        fi
    done

    echo
    echo "# Markdown"
    echo "| system | TCP 1 stream (Mbit/s) | TCP -P 4 (Mbit/s) | ping avg (ms) | CPU s/GB (both daemons) | peak RSS (MiB) | idle RSS (MiB) | tun MTU |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for sys in "${SYSTEMS[@]}"; do
        if [[ -n ${RESULT[$sys]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu <<<"${RESULT[$sys]}"
            printf '| %s | %.0f | %.0f | %.3f | %.2f | %.1f | %.1f | %s |\n' \
                "$sys${ROW_NOTE[$sys]:+ (${ROW_NOTE[$sys]})}" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu"
        else
            printf '| %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n' "$sys"
        fi
    done
}

# median NUMBER...: the median (mean of the two middle values for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) exit 1
              if (NR % 2) printf "%s", v[(NR + 1) / 2]
              else printf "%s", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Field I (0-based: tcp1 tcp4 ping cpu peak idle mtu) of a result string.
field() { local f; read -r -a f <<<"$1"; echo "${f[$2]}"; }

# RESULT/UNAVAILABLE := the median of every field over the rounds in which the
# system was measured (the MTU of the first such round).
compute_medians() {
    local sys round i n vals mtu row reasons
    RESULT=() UNAVAILABLE=()
    for sys in "${SYSTEMS[@]}"; do
        n=0 mtu="" reasons=""
        for ((round = 1; round <= ROUNDS; round++)); do
            if [[ -n ${ROUND_RESULT["$round $sys"]:-} ]]; then
                n=$((n + 1))
                [[ -n $mtu ]] || mtu=$(field "${ROUND_RESULT["$round $sys"]}" 6)
            else
                reasons+="${reasons:+; }round $round: ${ROUND_UNAVAILABLE["$round $sys"]:-not run}"
            fi
        done
        if ((n == 0)); then
            UNAVAILABLE[$sys]=$reasons
            continue
        fi
        if ((n < ROUNDS)); then
            ROW_NOTE[$sys]="median of $n of $ROUNDS rounds"
            log "  $sys: median of $n of $ROUNDS rounds ($reasons)"
        fi
        row=""
        for ((i = 0; i < 6; i++)); do
            vals=()
            for ((round = 1; round <= ROUNDS; round++)); do
                [[ -n ${ROUND_RESULT["$round $sys"]:-} ]] &&
                    vals+=("$(field "${ROUND_RESULT["$round $sys"]}" "$i")")
            done
            row+="$(median "${vals[@]}") "
        done
        RESULT[$sys]="$row$mtu"
    done
}

# ratio A B: A / B with two decimals, or "n/a".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

# Ratios of meshd to every other measured system: throughput meshd/peer (tcp1
# and tcp4, higher is better for meshd) and CPU per GB peer/meshd (higher: meshd
# spends less), from the medians; with ROUNDS>1 also the tcp1 ratio of every
# round in which both were measured, and its median.
print_ratios() {
    local base=meshd sys round r per m_tcp1 m_tcp4 m_cpu p_tcp1 p_tcp4 p_cpu
    [[ -n ${RESULT[$base]:-} ]] || return 0
    m_tcp1=$(field "${RESULT[$base]}" 0) m_tcp4=$(field "${RESULT[$base]}" 1) m_cpu=$(field "${RESULT[$base]}" 3)
    echo
    echo "# Ratios of $base to each system$( ((ROUNDS > 1)) && echo " (from the medians of $ROUNDS rounds)")"
    if ((ROUNDS > 1)); then
        echo "| system | TCP 1 stream, $base / system | per round | median of the per-round ratios | TCP -P 4, $base / system | CPU s/GB, system / $base |"
        echo "|---|---:|---|---:|---:|---:|"
    else
        echo "| system | TCP 1 stream, $base / system | TCP -P 4, $base / system | CPU s/GB, system / $base |"
        echo "|---|---:|---:|---:|"
    fi
    for sys in "${SYSTEMS[@]}"; do
        [[ $sys != "$base" && -n ${RESULT[$sys]:-} ]] || continue
        p_tcp1=$(field "${RESULT[$sys]}" 0) p_tcp4=$(field "${RESULT[$sys]}" 1) p_cpu=$(field "${RESULT[$sys]}" 3)
        if ((ROUNDS > 1)); then
            per=()
            for ((round = 1; round <= ROUNDS; round++)); do
                [[ -n ${ROUND_RESULT["$round $base"]:-} && -n ${ROUND_RESULT["$round $sys"]:-} ]] || continue
                r=$(ratio "$(field "${ROUND_RESULT["$round $base"]}" 0)" "$(field "${ROUND_RESULT["$round $sys"]}" 0)")
                [[ $r != n/a ]] && per+=("$r")
            done
            printf '| %s | %s | %s | %s | %s | %s |\n' "$sys" "$(ratio "$m_tcp1" "$p_tcp1")" \
                "${per[*]:-n/a}" "$( ((${#per[@]})) && printf '%.2f' "$(median "${per[@]}")" || echo n/a)" \
                "$(ratio "$m_tcp4" "$p_tcp4")" "$(ratio "$p_cpu" "$m_cpu")"
        else
            printf '| %s | %s | %s | %s |\n' "$sys" "$(ratio "$m_tcp1" "$p_tcp1")" \
                "$(ratio "$m_tcp4" "$p_tcp4")" "$(ratio "$p_cpu" "$m_cpu")"
        fi
    done
}

# -------------------------------------------------------------------- main --
parse_args() {
    parse_common_args "$@"
    if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION == 0)); then
        die "DURATION must be a positive integer"
    fi
    if [[ -n $TUN_MTU && ! $TUN_MTU =~ ^[0-9]+$ ]]; then
        die "TUN_MTU must be an integer"
    fi
    if ! [[ $ROUNDS =~ ^[0-9]+$ ]] || ((ROUNDS == 0)); then
        die "ROUNDS must be a positive integer"
    fi
}

main() {
    parse_args "$@"
    ((EUID == 0)) || die "must run as root (network namespaces, tun devices)"
    [[ -c /dev/net/tun ]] || die "/dev/net/tun missing"

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORKDIR=$(mktemp -d "/tmp/$TAG.XXXXXX")

    ensure_deps
    print_header

    local round sys i order
    for ((round = 1; round <= ROUNDS; round++)); do
        # Odd rounds in the order given, even rounds reversed, so that no system
        # always runs first (or last) while the machine's load drifts.
        order=()
        if ((round % 2)); then
            order=("${SYSTEMS[@]}")
        else
            for ((i = ${#SYSTEMS[@]} - 1; i >= 0; i--)); do order+=("${SYSTEMS[i]}"); done
        fi
        ((ROUNDS > 1)) && log "=== round $round of $ROUNDS: ${order[*]}"
        RESULT=() UNAVAILABLE=()
        for sys in "${order[@]}"; do
            run_system "$sys"
            ROUND_RESULT["$round $sys"]=${RESULT[$sys]:-}
            ROUND_UNAVAILABLE["$round $sys"]=${UNAVAILABLE[$sys]:-}
        done
        if ((ROUNDS > 1)); then
            echo
            echo "## Round $round of $ROUNDS (order: ${order[*]}; finished $(date -u '+%H:%M:%SZ')," \
                "load average $(cut -d' ' -f1-3 /proc/loadavg))"
            print_results "round $round of $ROUNDS"
        fi
    done

    if ((ROUNDS > 1)); then
        compute_medians
        echo
        echo "## Medians of $ROUNDS rounds (odd rounds in the order given, even rounds reversed)"
        print_results "median of $ROUNDS rounds"
    else
        print_results
    fi
    print_ratios
}

# Measure one system between two fresh namespaces: RESULT[sys] or UNAVAILABLE[sys].
run_system() {
    local sys=$1
    log "== $sys"
    reset_state
    if setup_netns "$sys"; then
        "run_$sys" || UNAVAILABLE[$sys]=${REASON:-failed}
    else
        UNAVAILABLE[$sys]="could not create network namespaces"
    fi
    teardown
    [[ -n ${RESULT[$sys]:-} ]] && log "  done: ${RESULT[$sys]}"
    return 0
}

main "$@"
