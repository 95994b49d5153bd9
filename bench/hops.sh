#!/usr/bin/env bash
# bench/hops.sh — throughput ACROSS SEVERAL OVERLAY HOPS: meshd and yggdrasil
# in a line of HOPS+1 network namespaces on this machine, in one run, and
# print a table.
#
# Usage (as root, from anywhere):
#   bench/hops.sh [--only meshd,yggdrasil] [--build] [-h|--help]
#
# Environment:
#   HOPS=3                  overlay hops from the first node to the last
#                           (HOPS+1 namespaces, 1 <= HOPS <= 25)
#   DURATION=10             seconds per iperf3 run (two runs per row)
#   PING_COUNT=20           echo requests for the latency measurement
#   PING_INTERVAL=0.05      seconds between echo requests
#   LINK_TIMEOUT=40         seconds to wait for the overlay path to come up
#   MESHD_BUILD_TIMEOUT=1800  bound for `cargo build --release -p meshd -p meshctl`
#   MESHD_BIN, MESHCTL_BIN  default target/release/{meshd,meshctl}
#   YGG_PORT=9443           TCP port of the yggdrasil listeners
#   TUN_MTU=                if set, the "meshd" and "yggdrasil" rows set every
#                           overlay tun of the line to this MTU once the path is
#                           up; default: each daemon's own (meshd 1420,
#                           yggdrasil 53049). The "yggdrasil mtu1280" row always
#                           sets 1280 on every node (skipped if TUN_MTU=1280).
#
# Topology (HOPS=3), created fresh for every row (never two rows at once):
#
#   netns plh<PID>-<row>-1   -2                        -3                        -4
#         node A ---- veth1 ---- node B ---- veth2 ---- node C ---- veth3 ---- node D
#   10.201.1.1/24    10.201.1.2/24  10.201.2.1/24  10.201.2.2/24  10.201.3.1/24  10.201.3.2/24
#
# Each node's daemon peers only with the next node (A->B, B->C, C->D). IP
# forwarding is off in every namespace and each one only has routes to its
# adjacent /24s, so A's traffic to D can only travel through the daemons in B
# and C. No address is added outside the namespaces; iperf3/ping only target
# the overlay address of the daemon in the last namespace, from the first one.
#
# Rows: meshd (default MTU 1420 unless TUN_MTU), yggdrasil (default MTU 53049
# unless TUN_MTU), yggdrasil mtu1280.
#
# Measurements per row (A -> D):
#   tcp1     iperf3 TCP, one stream (Mbit/s, receiver side)
#   tcp4     iperf3 TCP, -P 4 (Mbit/s, receiver side)
#   ping     average RTT of `ping -6 -c PING_COUNT -i PING_INTERVAL` (ms)
#   cpu/GB   utime+stime of ALL daemons of the line (from /proc/PID/stat),
#            delta over the two iperf3 runs, per GB (1e9 bytes) received
#   peakRSS  VmHWM of the largest daemon at the end (MiB)
#   idleRSS  max VmRSS of the daemons right after the path came up (MiB)
#   mtu      MTU of the overlay tun in namespace A
#   hops     meshd: hops reported by `meshctl ping` A -> D (must equal HOPS);
#            yggdrasil: not measurable (admin socket off), shown as "-"
# Per node: CPU seconds during the iperf3 runs and peak RSS; for meshd also
# state_entries, state_bytes and forwarded from `meshctl status --json`.

set -uo pipefail

# ---------------------------------------------------------------- settings --
HOPS=${HOPS:-3}
DURATION=${DURATION:-10}
PING_COUNT=${PING_COUNT:-20}
PING_INTERVAL=${PING_INTERVAL:-0.05}
LINK_TIMEOUT=${LINK_TIMEOUT:-40}
MESHD_BUILD_TIMEOUT=${MESHD_BUILD_TIMEOUT:-1800}
YGG_PORT=${YGG_PORT:-9443}
TUN_MTU=${TUN_MTU:-}

ALL_SYSTEMS=(meshd yggdrasil)
SYSTEMS=("${ALL_SYSTEMS[@]}")
FORCE_BUILD=0

# Shared helpers; also sets REPO_ROOT, MESHD_BIN, MESHCTL_BIN (overridable from
# the environment), CLK_TCK, WORKDIR, CREATED_NS, STARTED_PIDS and WRAPPER_OF.
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 1

NET_PREFIX=10.201            # veth k: $NET_PREFIX.k.1 (node k) -- $NET_PREFIX.k.2 (node k+1)
MESHD_PORT=7820
IPERF_PORT=5201
TAG="plh$$"                  # unique prefix for namespaces and devices
NODES=0 DAEMON_LIFETIME=0    # set in main once HOPS/DURATION are validated

# Rows, in order: id -> system, forced MTU ("" = daemon default), label.
ROWS=()
declare -A ROW_SYS=() ROW_MTU=() ROW_LABEL=()

# Per-row state (index 1..NODES), reset by reset_state.
NS=() PIDS=() LOGS=() TUNS=() SOCKS=()
ADDR_D="" REASON="" ROW=""

# Results: RESULT[row] = "tcp1 tcp4 ping cpu_per_gb peak_rss idle_rss mtu hops"
# NODE_ROWS[row] = lines "node cpu_s peak_mib state_entries state_bytes forwarded"
# PATH_CHECK[row] = one line about the hop check; UNAVAILABLE[row] = reason.
declare -A RESULT=() NODE_ROWS=() PATH_CHECK=() UNAVAILABLE=()

# ----------------------------------------------------------------- helpers --
usage() { sed -n '2,/^# Topology/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# Letter of node i (1 -> A).
node_name() { local letters=ABCDEFGHIJKLMNOPQRSTUVWXYZ; echo "${letters:$1-1:1}"; }

want() { local s; for s in "${SYSTEMS[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

ensure_deps() {
    ensure_base_deps
    if want yggdrasil && ! command -v yggdrasil >/dev/null; then apt_install yggdrasil; fi
}

# The commit checked out, read from .git without running git ("?" if unknown).
repo_commit() {
    local g="$REPO_ROOT/.git" head ref sha=""
    [[ -f $g/HEAD ]] || { echo "?"; return; }
    head=$(<"$g/HEAD")
    if [[ $head == "ref: "* ]]; then
        ref=${head#ref: }
        if [[ -f $g/$ref ]]; then
            sha=$(<"$g/$ref")
        elif [[ -f $g/packed-refs ]]; then
            sha=$(awk -v r="$ref" '$2 == r { print $1 }' "$g/packed-refs")
        fi
    else
        sha=$head
    fi
    echo "${sha:0:7}"
}

# --------------------------------------------------------- the namespaces --
reset_state() { NS=() PIDS=() LOGS=() TUNS=() SOCKS=(); ADDR_D="" REASON=""; }

# A line of NODES fresh namespaces; veth k joins node k and node k+1 (created
# directly inside the namespaces, so nothing is ever added to the root one).
setup_line() {
    local short=$1 i k ns
    for ((i = 1; i <= NODES; i++)); do
        ns="$TAG-$short-$i"
        ip netns add "$ns" || return 1
        CREATED_NS+=("$ns")
        NS[i]=$ns
        ip -n "$ns" link set lo up
        # No IP forwarding: only the overlay daemons may carry A's traffic on.
        in_ns "$ns" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 >/dev/null
    done
    for ((k = 1; k <= HOPS; k++)); do
        ip -n "${NS[k]}" link add "veth$k" type veth peer name "veth$k" netns "${NS[k + 1]}" || return 1
        ip -n "${NS[k]}" addr add "$NET_PREFIX.$k.1/24" dev "veth$k"
        ip -n "${NS[k + 1]}" addr add "$NET_PREFIX.$k.2/24" dev "veth$k"
        ip -n "${NS[k]}" link set "veth$k" up
        ip -n "${NS[k + 1]}" link set "veth$k" up
    done
    # Wait for every veth pair to pass traffic (IPv4, no DAD involved).
    for ((k = 1; k <= HOPS; k++)); do
        timeout 10 bash -c "until ip netns exec '${NS[k]}' ping -c1 -W1 $NET_PREFIX.$k.2 >/dev/null 2>&1; do sleep 0.2; done" ||
            return 1
    done
}

teardown() {
    local pid ns
    for pid in "${PIDS[@]}"; do [[ -n $pid ]] && kill_pid "$pid"; done
    for ns in "${NS[@]}"; do [[ -n $ns ]] && delete_ns "$ns"; done
}

# Fail if any daemon of the line has exited (with its status and log tail).
check_all_alive() {
    local i
    for ((i = 1; i <= NODES; i++)); do
        if ! alive "${PIDS[i]:-}"; then
            fail "daemon $(node_name "$i") $(exit_status "${PIDS[i]:-0}"): $(tail_log "${LOGS[i]}")"
            return 1
        fi
    done
}

# Wait (bounded) until ADDR_D answers `ping -6` from node A, while all live.
wait_path() {
    local deadline=$((SECONDS + LINK_TIMEOUT))
    while ((SECONDS < deadline)); do
        check_all_alive || return 1
        in_ns "${NS[1]}" timeout 3 ping -6 -c1 -W1 "$ADDR_D" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    fail "no ping reply from $ADDR_D (node $(node_name "$NODES")) within ${LINK_TIMEOUT}s from A: $(tail_log "${LOGS[1]}")"
}

# --------------------------------------------------------------- measuring --
# iperf3 client A -> D; prints "bits_per_second bytes" as seen by the receiver.
run_iperf() {
    local streams=$1 out
    out=$(in_ns "${NS[1]}" timeout $((DURATION + 30)) \
        iperf3 -c "$ADDR_D" -p "$IPERF_PORT" -t "$DURATION" -P "$streams" -J 2>/dev/null)
    jq -er '[.end.sum_received.bits_per_second, .end.sum_received.bytes] | @tsv' \
        <<<"$out" 2>/dev/null | tr '\t' ' '
}

# Common measurement once all daemons run and ADDR_D answers pings from A.
#   measure MTU HOPS_SEEN
measure() {
    local mtu_set=$1 hops_seen=$2 i idle_kb=0 peak_kb=0 ping_out ping_avg r1 r4 bps1 bytes1 bps4 bytes4
    local iperf_pid mtu cpu_total=0 kb
    local -a cpu0=() cpu1=()

    if [[ -n $mtu_set ]]; then
        for ((i = 1; i <= NODES; i++)); do
            ip -n "${NS[i]}" link set dev "${TUNS[i]}" mtu "$mtu_set" ||
                { fail "could not set MTU $mtu_set on ${TUNS[i]} in ${NS[i]}"; return 1; }
        done
    fi

    # Idle RSS right after the path came up, before any bulk traffic.
    for ((i = 1; i <= NODES; i++)); do
        kb=$(status_kb "${PIDS[i]}" VmRSS) && idle_kb=$(max "$idle_kb" "${kb:-0}")
    done

    ping_out=$(in_ns "${NS[1]}" timeout $((PING_COUNT + 10)) \
        ping -6 -q -c "$PING_COUNT" -i "$PING_INTERVAL" -W 2 "$ADDR_D" 2>&1)
    ping_avg=$(sed -n 's|^rtt .* = [^/]*/\([^/]*\)/.*|\1|p' <<<"$ping_out")
    [[ -n $ping_avg ]] || { fail "ping failed: $(tail -n1 <<<"$ping_out")"; return 1; }

    spawn iperf_pid "${NS[NODES]}" "$WORKDIR/$ROW-iperf3-server.log" iperf3 -s -p "$IPERF_PORT" ||
        { fail "iperf3 server did not start"; return 1; }
    sleep 0.5

    for ((i = 1; i <= NODES; i++)); do cpu0[i]=$(cpu_ticks "${PIDS[i]}"); done
    log "  iperf3 A -> $(node_name "$NODES") single stream, ${DURATION}s"
    r1=$(run_iperf 1)
    log "  iperf3 A -> $(node_name "$NODES") -P 4, ${DURATION}s"
    r4=$(run_iperf 4)
    if ! check_all_alive; then
        kill_pid "$iperf_pid"
        REASON="during iperf3: $REASON"
        return 1
    fi
    for ((i = 1; i <= NODES; i++)); do
        cpu1[i]=$(cpu_ticks "${PIDS[i]}")
        cpu_total=$((cpu_total + cpu1[i] - cpu0[i]))
        kb=$(status_kb "${PIDS[i]}" VmHWM)
        peak_kb=$(max "$peak_kb" "${kb:-0}")
        NODE_ROWS[$ROW]+="$(node_name "$i") $(calc "(${cpu1[i]} - ${cpu0[i]}) / $CLK_TCK") $(calc "${kb:-0} / 1024")"$'\n'
    done
    kill_pid "$iperf_pid"

    [[ -n $r1 && -n $r4 ]] || { fail "iperf3 failed (single: '${r1}', -P4: '${r4}')"; return 1; }
    read -r bps1 bytes1 <<<"$r1"
    read -r bps4 bytes4 <<<"$r4"
    mtu=$(in_ns "${NS[1]}" cat "/sys/class/net/${TUNS[1]}/mtu" 2>/dev/null) || mtu="?"

    RESULT[$ROW]="$(calc "$bps1 / 1e6") $(calc "$bps4 / 1e6") $ping_avg \
$(calc "($cpu_total / $CLK_TCK) / (($bytes1 + $bytes4) / 1e9)") \
$(calc "$peak_kb / 1024") $(calc "$idle_kb / 1024") $mtu $hops_seen"
}

# ------------------------------------------------------------------ meshd ---
# Same config as compare.sh, but node i (except the last) peers only with the
# next node, at its address on veth i.
meshd_config() {
    local i=$1 dir="$WORKDIR/$ROW-$1" peers=""
    ((i < NODES)) && peers="\"udp://$NET_PREFIX.$i.2:$MESHD_PORT\""
    mkdir -p "$dir/state"
    cat >"$dir/meshd.toml" <<EOF
identity_file = "$dir/identity.key"
state_dir = "$dir/state"
listen = ["udp://0.0.0.0:$MESHD_PORT"]
peers = [$peers]
admin_socket = "$dir/admin.sock"
log_level = "info"

[tun]
name = "msh$i$$"
EOF
    echo "$dir/meshd.toml"
}

# Everything meshd can tell about each node, for a failed or odd run (stderr).
meshd_diag() {
    local i n
    for ((i = 1; i <= NODES; i++)); do
        n=$(node_name "$i")
        {
            echo "---- meshd node $n (${NS[i]}) ----"
            if alive "${PIDS[i]:-}"; then
                echo "# meshctl tree"
                mctl "${NS[i]}" "${SOCKS[i]}" tree 2>&1
                echo "# meshctl peers"
                mctl "${NS[i]}" "${SOCKS[i]}" peers 2>&1
                echo "# meshctl status --json | jq .routing"
                mctl "${NS[i]}" "${SOCKS[i]}" status --json 2>&1 | jq -c '.routing' 2>&1
            else
                echo "(daemon not running)"
            fi
            echo "# last lines of the log"
            tail -n 15 "${LOGS[i]}" 2>/dev/null | sed -e 's/\x1b\[[0-9;]*m//g'
        } >&2
    done
}

# Build if needed, then run copies of the binaries from WORKDIR: the other
# rows and a concurrent `cargo build` in the work tree cannot change them
# halfway through. Sets MESHD_PREP_ERROR on failure.
MESHD_PREP_ERROR=""
prepare_meshd() {
    log "== preparing meshd"
    if ! ensure_meshd_built; then MESHD_PREP_ERROR=$REASON; return 1; fi
    mkdir -p "$WORKDIR/bin"
    if ! cp -p -- "$MESHD_BIN" "$MESHCTL_BIN" "$WORKDIR/bin/"; then
        MESHD_PREP_ERROR="could not copy $MESHD_BIN and $MESHCTL_BIN"
        return 1
    fi
    MESHD_BIN="$WORKDIR/bin/$(basename "$MESHD_BIN")"
    MESHCTL_BIN="$WORKDIR/bin/$(basename "$MESHCTL_BIN")"
}

run_meshd_row() {
    local mtu=$1 i cfg self_d ping_json hops rtt n st t0=$SECONDS
    [[ -z $MESHD_PREP_ERROR ]] || { fail "$MESHD_PREP_ERROR"; return 1; }

    # Start from the far end so that every dial finds its peer listening.
    for ((i = NODES; i >= 1; i--)); do
        cfg=$(meshd_config "$i")
        LOGS[i]="$WORKDIR/$ROW-$i.log"
        SOCKS[i]="$WORKDIR/$ROW-$i/admin.sock"
        TUNS[i]="msh$i$$"
        spawn "PIDS[$i]" "${NS[i]}" "${LOGS[i]}" "$MESHD_BIN" --config "$cfg" ||
            { fail "meshd $(node_name "$i") did not start: $(tail_log "${LOGS[i]}")"; return 1; }
    done
    for ((i = 1; i <= NODES; i++)); do
        wait_meshctl "${NS[i]}" "${SOCKS[i]}" "${PIDS[i]}" || {
            check_all_alive &&
                fail "'meshctl self' on $(node_name "$i") did not answer in ${LINK_TIMEOUT}s: $(tail_log "${LOGS[i]}")"
            return 1
        }
    done

    self_d=$(mctl "${NS[NODES]}" "${SOCKS[NODES]}" self --json)
    ADDR_D=$(jq -er '.address' <<<"$self_d" 2>/dev/null) ||
        { fail "no .address in 'meshctl self --json' of $(node_name "$NODES"): ${self_d:0:160}"; return 1; }
    log "  meshd $(node_name "$NODES") overlay address: $ADDR_D"

    if ! wait_path; then
        meshd_diag
        return 1
    fi
    log "  path A -> $(node_name "$NODES") answers ping -6 ($((SECONDS - t0))s after the daemons started)"

    # The daemon's own view of the path: hops of an overlay ping A -> D.
    ping_json=$(mctl "${NS[1]}" "${SOCKS[1]}" ping "$ADDR_D" -c 1 --json 2>&1)
    hops=$(jq -er '.[0].Reply.hops' <<<"$ping_json" 2>/dev/null) || hops="?"
    rtt=$(jq -er '.[0].Reply.rtt_us' <<<"$ping_json" 2>/dev/null) || rtt="?"
    if [[ $hops == "$HOPS" ]]; then
        PATH_CHECK[$ROW]="meshctl ping A -> $(node_name "$NODES"): hops=$hops (expected $HOPS: ok), rtt_us=$rtt"
        log "  ${PATH_CHECK[$ROW]}"
    else
        PATH_CHECK[$ROW]="WARNING: meshctl ping A -> $(node_name "$NODES"): hops=$hops, expected $HOPS (reply: ${ping_json:0:200})"
        log "  ${PATH_CHECK[$ROW]}"
        meshd_diag
    fi

    measure "$mtu" "$hops" || { meshd_diag; return 1; }

    # Routing state held and packets forwarded by each node, after the run.
    local -a lines=()
    mapfile -t lines <<<"${NODE_ROWS[$ROW]%$'\n'}"
    NODE_ROWS[$ROW]=""
    for ((i = 1; i <= NODES; i++)); do
        n=$(node_name "$i")
        st=$(mctl "${NS[i]}" "${SOCKS[i]}" status --json 2>/dev/null |
            jq -r '.routing | "\(.state_entries) \(.state_bytes) \(.forwarded)"' 2>/dev/null)
        [[ -n $st ]] || st="? ? ?"
        NODE_ROWS[$ROW]+="${lines[i - 1]} $st"$'\n'
    done
    mctl "${NS[1]}" "${SOCKS[1]}" peers --json 2>/dev/null |
        jq -r '.[] | "  meshd A peer \(.address): state=\(.state) tx_bytes=\(.tx_bytes) rx_bytes=\(.rx_bytes)"' \
            >&2 2>/dev/null || true
}

# -------------------------------------------------------------- yggdrasil ---
# yggdrasil 0.4.x, as in compare.sh: JSON config from -genconf, multicast
# discovery and admin socket off. Node i listens on its veth addresses towards
# both neighbours and peers with the next node only.
ygg_config() {
    local i=$1 conf="$WORKDIR/$ROW-$1.conf" listen=() peers=()
    ((i > 1)) && listen+=("tcp://$NET_PREFIX.$((i - 1)).2:$YGG_PORT")
    ((i < NODES)) && listen+=("tcp://$NET_PREFIX.$i.1:$YGG_PORT")
    ((i < NODES)) && peers+=("tcp://$NET_PREFIX.$i.2:$YGG_PORT")
    yggdrasil -genconf -json | jq \
        --arg ifname "ygg$i$$" \
        --argjson listen "$(jq -nc '$ARGS.positional' --args "${listen[@]}")" \
        --argjson peers "$(jq -nc '$ARGS.positional' --args "${peers[@]}")" '
        .IfName = $ifname
        | .Listen = $listen
        | .Peers = $peers
        | .MulticastInterfaces = []
        | .AdminListen = "none"' >"$conf" || return 1
    echo "$conf"
}

run_yggdrasil_row() {
    local mtu=$1 i cfg
    command -v yggdrasil >/dev/null || { fail "yggdrasil not installed"; return 1; }
    for ((i = NODES; i >= 1; i--)); do
        cfg=$(ygg_config "$i") || { fail "config generation failed"; return 1; }
        ((i == NODES)) && { ADDR_D=$(yggdrasil -useconffile "$cfg" -address) ||
            { fail "yggdrasil -address failed"; return 1; }; }
        LOGS[i]="$WORKDIR/$ROW-$i.log"
        TUNS[i]="ygg$i$$"
        spawn "PIDS[$i]" "${NS[i]}" "${LOGS[i]}" yggdrasil -useconffile "$cfg" -logto stdout ||
            { fail "yggdrasil $(node_name "$i") did not start: $(tail_log "${LOGS[i]}")"; return 1; }
    done
    log "  yggdrasil $(node_name "$NODES") overlay address: $ADDR_D"

    wait_path || return 1
    PATH_CHECK[$ROW]="hops not measured (yggdrasil admin socket off); the line allows no other path"
    measure "$mtu" "$HOPS" || return 1
    local -a lines=()
    mapfile -t lines <<<"${NODE_ROWS[$ROW]%$'\n'}"
    NODE_ROWS[$ROW]=""
    for ((i = 1; i <= NODES; i++)); do NODE_ROWS[$ROW]+="${lines[i - 1]} - - -"$'\n'; done
}

# --------------------------------------------------------------- reporting --
print_header() {
    local newer="no"
    [[ -x $MESHD_BIN ]] &&
        [[ -n $(find "$REPO_ROOT"/{meshd,meshctl,routing} -name '*.rs' -newer "$MESHD_BIN" 2>/dev/null | head -n1) ]] &&
        newer="YES"
    [[ -x $MESHD_BIN ]] || newer="?"
    echo "# Planetary LAN multi-hop comparison (line of $NODES namespaces, $HOPS overlay hops)"
    print_machine_header
    echo "versions: meshd=$("$MESHD_BIN" --version 2>/dev/null | awk '{ print $2 }' || echo '?')" \
        "(checkout $(repo_commit), binary built $(date -u -r "$MESHD_BIN" '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null || echo '?')," \
        "sources newer than binary: $newer)" \
        "yggdrasil=$(dpkg-query -W -f='${Version}' yggdrasil 2>/dev/null || echo '?')" \
        "iperf3=$(iperf3 --version 2>/dev/null | awk 'NR==1 { print $2 }')"
    echo "settings: HOPS=$HOPS DURATION=${DURATION}s PING_COUNT=$PING_COUNT PING_INTERVAL=${PING_INTERVAL}s" \
        "TUN_MTU=${TUN_MTU:-default} rows=$(row_labels)"
    echo
}

row_labels() { local r out=(); for r in "${ROWS[@]}"; do out+=("${ROW_LABEL[$r]// /_}"); done; local IFS=,; echo "${out[*]}"; }

print_results() {
    local row tcp1 tcp4 ping cpu peak idle mtu hops date kernel node ncpu npeak ent byt fwd
    date=$(date -u '+%Y-%m-%d')
    kernel=$(uname -r)
    echo
    printf '%-18s | %4s | %10s | %10s | %8s | %10s | %8s | %8s | %5s\n' \
        row hops "tcp1 Mb/s" "tcp4 Mb/s" "ping ms" "cpu s/GB" "peak MiB" "idle MiB" mtu
    echo "-------------------+------+------------+------------+----------+------------+----------+----------+------"
    for row in "${ROWS[@]}"; do
        if [[ -n ${RESULT[$row]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu hops <<<"${RESULT[$row]}"
            printf '%-18s | %4s | %10.0f | %10.0f | %8.3f | %10.2f | %8.1f | %8.1f | %5s\n' \
                "${ROW_LABEL[$row]}" "$hops" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu"
        else
            echo "${ROW_LABEL[$row]}: not available (${UNAVAILABLE[$row]:-not run})"
        fi
    done
    echo "(hops: meshd as reported by 'meshctl ping' A -> $(node_name "$NODES"), yggdrasil the line's" \
        "length (its admin socket is off); cpu s/GB: all $NODES daemons; peak MiB: largest daemon)"
    echo
    ((${#RESULT[@]})) &&
    echo "per node (cpu s: during both iperf3 runs; state/forwarded: meshctl status --json | jq .routing)" &&
    printf '%-18s | %4s | %7s | %8s | %13s | %11s | %10s\n' row node "cpu s" "peak MiB" state_entries state_bytes forwarded &&
    echo "-------------------+------+---------+----------+---------------+-------------+-----------"
    for row in "${ROWS[@]}"; do
        [[ -n ${RESULT[$row]:-} ]] || continue
        while read -r node ncpu npeak ent byt fwd; do
            [[ -n $node ]] || continue
            printf '%-18s | %4s | %7.2f | %8.1f | %13s | %11s | %10s\n' \
                "${ROW_LABEL[$row]}" "$node" "$ncpu" "$npeak" "$ent" "$byt" "$fwd"
        done <<<"${NODE_ROWS[$row]}"
    done
    echo
    for row in "${ROWS[@]}"; do
        [[ -n ${PATH_CHECK[$row]:-} ]] && echo "${ROW_LABEL[$row]}: ${PATH_CHECK[$row]}"
    done

    echo
    echo "# CSV (paste into docs/BENCHMARKS.md)"
    echo "csv,row,hops,date,kernel,nproc,duration_s,tcp1_mbps,tcp4_mbps,ping_avg_ms,cpu_s_per_gb,peak_rss_mib,idle_rss_mib,tun_mtu,meshctl_hops,note"
    for row in "${ROWS[@]}"; do
        if [[ -n ${RESULT[$row]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu hops <<<"${RESULT[$row]}"
            printf 'csv,%s,%s,%s,%s,%s,%s,%.1f,%.1f,%.3f,%.3f,%.1f,%.1f,%s,%s,\n' "${ROW_LABEL[$row]}" "$HOPS" \
                "$date" "$kernel" "$(nproc)" "$DURATION" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu" \
                "$([[ ${ROW_SYS[$row]} == meshd ]] && echo "$hops")"
        else
            printf 'csv,%s,%s,%s,%s,%s,%s,,,,,,,,,"not available: %s"\n' "${ROW_LABEL[$row]}" "$HOPS" "$date" \
                "$kernel" "$(nproc)" "$DURATION" "${UNAVAILABLE[$row]//\"/\'}"
        fi
    done
    echo "csvnode,row,node,cpu_s,peak_rss_mib,state_entries,state_bytes,forwarded"
    for row in "${ROWS[@]}"; do
        [[ -n ${RESULT[$row]:-} ]] || continue
        while read -r node ncpu npeak ent byt fwd; do
            [[ -n $node ]] || continue
            printf 'csvnode,%s,%s,%.2f,%.1f,%s,%s,%s\n' "${ROW_LABEL[$row]}" "$node" "$ncpu" "$npeak" \
                "${ent/-/}" "${byt/-/}" "${fwd/-/}"
        done <<<"${NODE_ROWS[$row]}"
    done

    echo
    echo "# Markdown"
    echo "| system | hops | TCP 1 stream (Mbit/s) | TCP -P 4 (Mbit/s) | ping avg (ms) | CPU s/GB (all $NODES daemons) | peak RSS (MiB, largest) | idle RSS (MiB) | tun MTU |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        if [[ -n ${RESULT[$row]:-} ]]; then
            read -r tcp1 tcp4 ping cpu peak idle mtu hops <<<"${RESULT[$row]}"
            printf '| %s | %s | %.0f | %.0f | %.3f | %.2f | %.1f | %.1f | %s |\n' \
                "${ROW_LABEL[$row]}" "$hops" "$tcp1" "$tcp4" "$ping" "$cpu" "$peak" "$idle" "$mtu"
        else
            printf '| %s | %s | n/a | n/a | n/a | n/a | n/a | n/a | n/a |\n' "${ROW_LABEL[$row]}" "$HOPS"
        fi
    done
    ((${#RESULT[@]})) || return 0
    echo
    echo "| system | node | CPU s (both iperf3 runs) | peak RSS (MiB) | routing state entries | routing state bytes | forwarded |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        [[ -n ${RESULT[$row]:-} ]] || continue
        while read -r node ncpu npeak ent byt fwd; do
            [[ -n $node ]] || continue
            printf '| %s | %s | %.2f | %.1f | %s | %s | %s |\n' "${ROW_LABEL[$row]}" "$node" "$ncpu" "$npeak" \
                "$ent" "$byt" "$fwd"
        done <<<"${NODE_ROWS[$row]}"
    done
}

# -------------------------------------------------------------------- main --
parse_args() {
    parse_common_args "$@"
    if ! [[ $HOPS =~ ^[0-9]+$ ]] || ((HOPS < 1 || HOPS > 25)); then
        die "HOPS must be an integer from 1 to 25"
    fi
    if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION == 0)); then
        die "DURATION must be a positive integer"
    fi
    if ! [[ $LINK_TIMEOUT =~ ^[0-9]+$ ]] || ((LINK_TIMEOUT == 0)); then
        die "LINK_TIMEOUT must be a positive integer"
    fi
    if [[ -n $TUN_MTU && ! $TUN_MTU =~ ^[0-9]+$ ]]; then
        die "TUN_MTU must be an integer"
    fi
}

# add_row ID SYSTEM MTU LABEL
add_row() { ROWS+=("$1"); ROW_SYS[$1]=$2; ROW_MTU[$1]=$3; ROW_LABEL[$1]=$4; }

plan_rows() {
    if want meshd; then
        add_row m meshd "$TUN_MTU" "meshd${TUN_MTU:+ mtu$TUN_MTU}"
    fi
    if want yggdrasil; then
        add_row y yggdrasil "$TUN_MTU" "yggdrasil${TUN_MTU:+ mtu$TUN_MTU}"
        [[ $TUN_MTU == 1280 ]] || add_row y1280 yggdrasil 1280 "yggdrasil mtu1280"
    fi
}

main() {
    parse_args "$@"
    ((EUID == 0)) || die "must run as root (network namespaces, tun devices)"
    [[ -c /dev/net/tun ]] || die "/dev/net/tun missing"
    NODES=$((HOPS + 1))
    # Upper bound on the lifetime of any daemon we start (seconds): every
    # daemon runs under `timeout`, so nothing survives even a SIGKILL of ours.
    DAEMON_LIFETIME=$((2 * DURATION + 2 * LINK_TIMEOUT + 180))

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORKDIR=$(mktemp -d "/tmp/$TAG.XXXXXX")

    ensure_deps
    plan_rows
    if want meshd; then prepare_meshd; fi
    print_header

    for ROW in "${ROWS[@]}"; do
        log "== ${ROW_LABEL[$ROW]} ($NODES nodes, $HOPS hops)"
        reset_state
        if setup_line "$ROW"; then
            "run_${ROW_SYS[$ROW]}_row" "${ROW_MTU[$ROW]}" || UNAVAILABLE[$ROW]=${REASON:-failed}
        else
            UNAVAILABLE[$ROW]="could not create the line of network namespaces"
        fi
        teardown
        [[ -n ${RESULT[$ROW]:-} ]] && log "  done: ${RESULT[$ROW]}"
    done

    print_results
}

main "$@"
