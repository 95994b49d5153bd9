#!/usr/bin/env bash
# bench/compare.sh — compare meshd against yggdrasil and nebula between two
# network namespaces on this machine, in one run, and print a table.
#
# Usage (as root, from anywhere):
#   bench/compare.sh [--only meshd,meshd_tcp,meshd_quic,yggdrasil,nebula] [--build] [-h|--help]
#
# Environment:
#   DURATION=10             seconds per iperf3 run (two runs per system)
#   PING_COUNT=20           echo requests for the latency measurement
#   PING_INTERVAL=0.05      seconds between echo requests
#   LINK_TIMEOUT=20         seconds to wait for an overlay link to come up
#   MESHD_BUILD_TIMEOUT=1800  bound for `cargo build --release -p meshd -p meshctl`
#   MESHD_BIN, MESHCTL_BIN  default target/release/{meshd,meshctl}
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

ALL_SYSTEMS=(meshd meshd_policy meshd_tcp meshd_quic yggdrasil nebula)
SYSTEMS=("${ALL_SYSTEMS[@]}")
FORCE_BUILD=0

# Shared helpers; also sets REPO_ROOT, MESHD_BIN, MESHCTL_BIN (overridable from
# the environment), CLK_TCK, WORKDIR, CREATED_NS, STARTED_PIDS and WRAPPER_OF.
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 1

VETH_A=10.199.0.1
VETH_B=10.199.0.2
NEBULA_NET=10.198.0          # nebula overlay /24, only inside the namespaces
IPERF_PORT=5201
# Upper bound on the lifetime of any daemon we start (seconds): every daemon
# runs under `timeout`, so nothing survives even if this script is SIGKILLed.
DAEMON_LIFETIME=$((2 * DURATION + LINK_TIMEOUT + 120))

TAG="plb$$"                  # unique prefix for namespaces and devices

# Per-system state, reset by reset_state.
NS_A="" NS_B="" PID_A="" PID_B="" ADDR_B="" TUN_A="" TUN_B="" REASON=""

# Results: RESULT[sys] = "tcp1 tcp4 ping cpu_per_gb peak_rss idle_rss mtu"
# or UNAVAILABLE[sys] = reason.
declare -A RESULT=() UNAVAILABLE=()

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
    local pid ns
    for pid in "$PID_A" "$PID_B"; do [[ -n $pid ]] && kill_pid "$pid"; done
    for ns in "$NS_A" "$NS_B"; do [[ -n $ns ]] && delete_ns "$ns"; done
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
    pa=$(meshd_policy_file A) && pb=$(meshd_policy_file B) || { fail "cannot write the policies"; return 1; }
    # meshd_config reads POLICY_FILE; A's and B's files differ, so each side's
    # config is written with its own.
    POLICY_FILE=$pa POLICY_B=$pb run_meshd meshd_policy
}

# meshd with its link over TCP (Noise framed on one TCP connection) or over QUIC
# (Noise in QUIC datagrams, TLS outside), instead of UDP.
run_meshd_tcp() {
    MESHD_LISTEN="tcp://0.0.0.0:7820" MESHD_PEER="tcp://$VETH_B:7820" run_meshd meshd_tcp
}

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

    spawn PID_B "$NS_B" "$WORKDIR/$sys-b.log" "$MESHD_BIN" --config "$cfg_b" ||
        { fail "meshd B did not start: $(tail_log "$WORKDIR/$sys-b.log")"; return 1; }
    spawn PID_A "$NS_A" "$WORKDIR/$sys-a.log" "$MESHD_BIN" --config "$cfg_a" ||
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

# --------------------------------------------------------------- reporting --
print_header() {
    echo "# Planetary LAN overlay comparison"
    print_machine_header
    echo "versions: meshd=$(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo 'no-commit')" \
        "yggdrasil=$(dpkg-query -W -f='${Version}' yggdrasil 2>/dev/null || echo '?')" \
        "nebula=$(dpkg-query -W -f='${Version}' nebula 2>/dev/null || echo '?')" \
        "iperf3=$(iperf3 --version 2>/dev/null | awk 'NR==1 { print $2 }')"
    echo "settings: DURATION=${DURATION}s PING_COUNT=$PING_COUNT PING_INTERVAL=${PING_INTERVAL}s" \
        "TUN_MTU=${TUN_MTU:-default} systems=${SYSTEMS[*]}"
    echo
}

print_results() {
    local sys tcp1 tcp4 ping cpu peak idle mtu date kernel
    date=$(date -u '+%Y-%m-%d')
    kernel=$(uname -r)
    echo
    printf '%-10s | %10s | %10s | %8s | %10s | %8s | %8s | %5s\n' \
        system "tcp1 Mb/s" "tcp4 Mb/s" "ping ms" "cpu s/GB" "peak MiB" "idle MiB" mtu
    echo "-----------+------------+------------+----------+------------+----------+----------+------"
    for sys in "${SYSTEMS[@]}"; do
        if [[ -n ${RESULT[$sys]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu <<<"${RESULT[$sys]}"
            printf '%-10s | %10.0f | %10.0f | %8.3f | %10.2f | %8.1f | %8.1f | %5s\n' \
                "$sys" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu"
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
            printf 'csv,%s,%s,%s,%s,%s,%.1f,%.1f,%.3f,%.3f,%.1f,%.1f,%s,\n' "$sys" "$date" "$kernel" \
                "$(nproc)" "$DURATION" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu"
        else
            printf 'csv,%s,%s,%s,%s,%s,,,,,,,,"not available: %s"\n' "$sys" "$date" "$kernel" "$(nproc)" \
                "$DURATION" "${UNAVAILABLE[$sys]//\"/\'}"
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
                "$sys" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu"
        else
            printf '| %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n' "$sys"
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

    local sys
    for sys in "${SYSTEMS[@]}"; do
        log "== $sys"
        reset_state
        if setup_netns "$sys"; then
            "run_$sys" || UNAVAILABLE[$sys]=${REASON:-failed}
        else
            UNAVAILABLE[$sys]="could not create network namespaces"
        fi
        teardown
        [[ -n ${RESULT[$sys]:-} ]] && log "  done: ${RESULT[$sys]}"
    done

    print_results
}

main "$@"
