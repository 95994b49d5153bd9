#!/usr/bin/env bash
# bench/stall.sh — does meshd's event loop stall while it is managed? Pings across the
# overlay every 2 ms for the whole run while node A is put through its control work, then
# prints the distribution of gaps between consecutive replies and what the script was doing
# when the largest ones happened.
#
# Usage (as root, from anywhere):
#   bench/stall.sh [--build] [-h|--help]
#
# Environment:
#   CONTAINERS=20           containers (namespaces) attached to a znet and detached again
#   POLICY_RELOADS=3        10,000-identity policies put in place (each read by the file
#                           poller, then once more by `meshctl policy reload`)
#   CIRCLE_EDITS=3          `meshctl circle add` + `circle remove` pairs
#   PEER_CHANGES=10         `meshctl peer add` + `peer remove` pairs (persistent: saved)
#   PING_INTERVAL=0.002     seconds between echo requests
#   LINK_TIMEOUT=20         seconds to wait for the overlay link to come up
#   DAEMON_NICE=            if set (e.g. -10), the daemons and the ping run under
#                           `nice -n DAEMON_NICE`
#   DAEMON_RT=              if set (e.g. 50), they run under `chrt -f DAEMON_RT` (real-time;
#                           meshd's worker threads drop back to the normal policy): on a host
#                           busy with other work, what is measured is then the daemon, not the
#                           scheduler
#   PIN_CPU=                if set (e.g. 1), the daemons' event loops (their main threads) and
#                           both pings run on that CPU only, and the daemons' other threads
#                           (workers) on the other CPUs (`taskset`): then a vCPU that the
#                           hypervisor takes away stalls the control ping too, and is not
#                           counted against meshd
#   MESHD_BUILD_TIMEOUT=1800  bound for `cargo build --release -p meshd -p meshctl`
#   MESHD_BIN, MESHCTL_BIN  default target/release/{meshd,meshctl}
#
# Topology (everything inside namespaces made here and deleted at exit):
#
#   netns stl<PID>-a  (meshd A, policy file)     netns stl<PID>-b  (meshd B)
#   veth 10.199.0.1/24  <------- veth ------->   veth 10.199.0.2/24
#   ping -i 0.002 -D  ── overlay ──────────────▶ B's overlay address
#   netns stl<PID>-c1 .. -cN: the containers attached on A
#
# Phases, in order, each between two quiet moments (the ping runs throughout):
#   baseline       nothing (the reference)
#   znet create    `znet create` on A (A joins it)
#   znet attach    CONTAINERS x `znet attach --netns stl<PID>-cK`
#   znet detach    CONTAINERS x `znet detach`
#   znet join      B creates a second znet naming A; A joins it from the manifest
#   circle edit    CIRCLE_EDITS x (`circle add stall KEY`, `circle remove stall KEY`)
#   policy reload  POLICY_RELOADS x (a new 10,000-identity file moved in place, seen by
#                  the poller; then `meshctl policy reload`)
#   peers          PEER_CHANGES x `peer add udp://10.199.0.K:7820`, then as many `peer remove`
#   znet leave     A leaves both znets
#   tail           nothing (replies in flight arrive)
#
# A control ping runs beside it, at the same interval and priority, from A's namespace to
# B's veth address: its path has no meshd on it. When the host itself stalls (a hypervisor
# that takes the CPU away, "steal" time) both pings see the gap at the same moment; a gap of
# the overlay ping that the control ping did not share (none of its gaps over 5 ms covers
# half of it) is meshd's own. The report gives both.
#
# Output: the gap distribution (count, median, p99, p99.9, max), the same per phase with the
# slowest meshctl call of the phase, the five largest gaps with the phase and step under way,
# and A's own log of its policy compiles (compile_ms on the worker, apply_ms on the loop).
# Exit status: 0 if every step worked and no reply was lost, 1 otherwise.

set -uo pipefail
export LC_ALL=C

# ---------------------------------------------------------------- settings --
CONTAINERS=${CONTAINERS:-20}
POLICY_RELOADS=${POLICY_RELOADS:-3}
CIRCLE_EDITS=${CIRCLE_EDITS:-3}
PEER_CHANGES=${PEER_CHANGES:-10}
PING_INTERVAL=${PING_INTERVAL:-0.002}
LINK_TIMEOUT=${LINK_TIMEOUT:-20}
MESHD_BUILD_TIMEOUT=${MESHD_BUILD_TIMEOUT:-1800}
FORCE_BUILD=0

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 1

VETH_A=10.199.0.1
VETH_B=10.199.0.2
TAG="stl$$"
NS_A="$TAG-a" NS_B="$TAG-b"
# Upper bound on the life of anything started here (seconds).
DAEMON_NICE=${DAEMON_NICE:-}
DAEMON_RT=${DAEMON_RT:-}
PIN_CPU=${PIN_CPU:-}
DAEMON_LIFETIME=$((600 + 5 * CONTAINERS + 60 * (POLICY_RELOADS + CIRCLE_EDITS)))
PID_A="" PID_B="" PID_PING="" PID_CONTROL="" ADDR_B="" KEY_A="" KEY_B="" REASON=""
ROUTER_NS=()                 # router namespaces the daemons made for znets
STEP_FAILURES=0
PHASE=""
LOGDIR=""                    # the daemons' logs and the ping output (tmpfs if there is one)

usage() { sed -n '2,/^# Topology/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

parse_args() {
    while (($#)); do
        case $1 in
            --build) FORCE_BUILD=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
    local v
    for v in CONTAINERS POLICY_RELOADS CIRCLE_EDITS PEER_CHANGES LINK_TIMEOUT; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
    done
    ((CONTAINERS <= 200)) || die "CONTAINERS: at most 200"
    ((PEER_CHANGES <= 200)) || die "PEER_CHANGES: at most 200"
    [[ -z $DAEMON_NICE || $DAEMON_NICE =~ ^-?[0-9]+$ ]] || die "DAEMON_NICE must be a number (-20..19)"
    [[ -z $DAEMON_RT || $DAEMON_RT =~ ^[0-9]+$ ]] || die "DAEMON_RT must be a number (1..99)"
}

# EXIT trap: stop the ping and the daemons, delete the router namespaces they made (they
# live in the daemons' mount namespaces: remove the names too), then lib.sh's cleanup.
stall_cleanup() {
    local rc=$? r
    trap - EXIT INT TERM
    [[ -n $PID_PING ]] && kill_pid "$PID_PING"
    [[ -n $PID_CONTROL ]] && kill_pid "$PID_CONTROL"
    for r in "$PID_A" "$PID_B"; do [[ -n $r ]] && kill_pid "$r"; done
    for r in "${ROUTER_NS[@]}"; do
        ip netns del "$r" 2>/dev/null
        rm -f "/run/netns/$r"
    done
    [[ -n $LOGDIR && $LOGDIR != "$WORKDIR" ]] && rm -rf "$LOGDIR"
    (exit "$rc")
    cleanup
}

# ------------------------------------------------------------------ set-up --
setup_netns() {
    local ns i
    for ns in "$NS_A" "$NS_B"; do
        ip netns add "$ns" || return 1
        CREATED_NS+=("$ns")
        ip -n "$ns" link set lo up
    done
    ip -n "$NS_A" link add veth0 type veth peer name veth0 netns "$NS_B" || return 1
    ip -n "$NS_A" addr add "$VETH_A/24" dev veth0
    ip -n "$NS_B" addr add "$VETH_B/24" dev veth0
    ip -n "$NS_A" link set veth0 up
    ip -n "$NS_B" link set veth0 up
    for ((i = 1; i <= CONTAINERS; i++)); do
        ip netns add "$TAG-c$i" || return 1
        CREATED_NS+=("$TAG-c$i")
    done
    timeout 10 bash -c "until ip netns exec '$NS_A' ping -c1 -W1 $VETH_B >/dev/null 2>&1; do sleep 0.2; done"
}

meshd_config() {
    local side=$1 peers=$2 policy=$3 dir="$WORKDIR/$1"
    mkdir -p "$dir/state"
    cat >"$dir/meshd.toml" <<EOF
identity_file = "$dir/identity.key"
state_dir = "$dir/state"
listen = ["udp://0.0.0.0:7820"]
peers = [$peers]
admin_socket = "$dir/admin.sock"
log_level = "info"
${policy:+policy_file = \"$policy\"}

[tun]
name = "stl$side$$"
EOF
    echo "$dir/meshd.toml"
}

# A's policy: 10,000 identities, traffic and outbound denied by default; A and B may ping
# each other (ICMP both ways; the replies would pass as tracked flows anyway).
policy_for_a() {
    write_big_policy "$1" "$2"
    printf '[[rules]]\naction = "outbound"\nallow = "any"\nports = ["icmp"]\n' >>"$1"
    printf '[[rules]]\naction = "traffic"\nallow = "any"\nports = ["icmp"]\n' >>"$1"
}

start_daemons() {
    local cfg_a cfg_b deadline state
    policy_for_a "$WORKDIR/policy.toml" 1
    cfg_a=$(meshd_config A "\"udp://$VETH_B:7820\"" "$WORKDIR/policy.toml")
    cfg_b=$(meshd_config B "" "")
    SOCK_A="$WORKDIR/A/admin.sock" SOCK_B="$WORKDIR/B/admin.sock"
    spawn PID_B "$NS_B" "$LOGDIR/b.log" "${NICE[@]}" "$MESHD_BIN" --config "$cfg_b" ||
        die "meshd B did not start: $(tail_log "$LOGDIR/b.log")"
    spawn PID_A "$NS_A" "$LOGDIR/a.log" "${NICE[@]}" "$MESHD_BIN" --config "$cfg_a" ||
        die "meshd A did not start: $(tail_log "$LOGDIR/a.log")"
    wait_meshctl "$NS_B" "$SOCK_B" "$PID_B" || die "meshd B does not answer: $(tail_log "$LOGDIR/b.log")"
    wait_meshctl "$NS_A" "$SOCK_A" "$PID_A" || die "meshd A does not answer: $(tail_log "$LOGDIR/a.log")"
    ADDR_B=$(mctl "$NS_B" "$SOCK_B" self --json | jq -er .address) || die "no address from B"
    KEY_B=$(mctl "$NS_B" "$SOCK_B" self --json | jq -er .public_key) || die "no key from B"
    KEY_A=$(mctl "$NS_A" "$SOCK_A" self --json | jq -er .public_key) || die "no key from A"
    deadline=$((SECONDS + LINK_TIMEOUT))
    while ((SECONDS < deadline)); do
        alive "$PID_A" && alive "$PID_B" || die "a daemon died: $(tail_log "$LOGDIR/a.log")"
        in_ns "$NS_A" timeout 3 ping -c1 -W1 "$ADDR_B" >/dev/null 2>&1 && return 0
        sleep 0.3
    done
    state=$(mctl "$NS_A" "$SOCK_A" peers --json 2>/dev/null | jq -c '[.[] | .state]')
    die "no ping reply from $ADDR_B in ${LINK_TIMEOUT}s (peers on A: $state): $(tail_log "$LOGDIR/a.log")"
}

# With PIN_CPU: every thread of the daemons but the main one (the event loop) goes to the
# other CPUs, once, as it appears (workers start when first needed). Runs in the background.
move_workers() {
    local -A moved=()
    local t tid
    [[ -n $OTHER_CPUS ]] || return 0
    while alive "$PID_A" || alive "$PID_B"; do
        for t in /proc/"$PID_A"/task/* /proc/"$PID_B"/task/*; do
            tid=${t##*/}
            [[ -d $t && $tid != "$PID_A" && $tid != "$PID_B" && -z ${moved[$tid]:-} ]] || continue
            taskset -p -c "$OTHER_CPUS" "$tid" >/dev/null 2>&1
            moved[$tid]=1
        done
        sleep 0.1
    done
}

# --------------------------------------------------------------- the steps --
now() { echo "$EPOCHREALTIME"; }

phase() {
    [[ -n $PHASE ]] && printf '%s\t%s\n' "$(now)" "end" >>"$WORKDIR/phases.tsv"
    PHASE=$1
    [[ -n $PHASE ]] && printf '%s\t%s\n' "$(now)" "$PHASE" >>"$WORKDIR/phases.tsv"
    log "phase: ${PHASE:-done}"
}

# step LABEL CMD...: run one command of the current phase, timed; a failure is counted and
# logged with its output.
step() {
    local label=$1 t0 t1 rc out
    shift
    t0=$(now)
    out=$("$@" 2>&1)
    rc=$?
    t1=$(now)
    printf '%s\t%s\t%s\t%s\t%s\n' "$t0" "$t1" "$PHASE" "$label" "$rc" >>"$WORKDIR/steps.tsv"
    if ((rc != 0)); then
        STEP_FAILURES=$((STEP_FAILURES + 1))
        log "  step failed: $label: $(tr '\n' ' ' <<<"$out" | cut -c1-240)"
    fi
    sleep 0.1
    return "$rc"
}

ctl_a() { in_ns "$NS_A" timeout 30 "$MESHCTL_BIN" --socket "$SOCK_A" "$@"; }
ctl_b() { in_ns "$NS_B" timeout 30 "$MESHCTL_BIN" --socket "$SOCK_B" "$@"; }

quiet() { sleep "${1:-1}"; }

# Bounded wait until A's policy counter `reloads` exceeds $1.
wait_reloads() {
    local before=$1 deadline=$((SECONDS + 30)) n
    while ((SECONDS < deadline)); do
        n=$(ctl_a policy show --json 2>/dev/null | jq -r '.reloads // 0')
        ((n > before)) && return 0
        sleep 0.05
    done
    return 1
}

run_phases() {
    local i n key r m2

    phase baseline
    quiet 5

    phase "znet create"
    step "znet create stall" ctl_a znet create stall --ipv4 10.61.0.0/16 --out "$WORKDIR/stall.toml"
    r=$(ctl_a znet show stall --json 2>/dev/null | jq -r '.router_netns // empty')
    [[ -n $r ]] && ROUTER_NS+=("$r")
    quiet

    phase "znet attach"
    for ((i = 1; i <= CONTAINERS; i++)); do
        step "znet attach c$i" ctl_a znet attach stall --netns "$TAG-c$i"
    done
    quiet

    phase "znet detach"
    for ((i = 1; i <= CONTAINERS; i++)); do
        step "znet detach c$i" ctl_a znet detach stall --netns "$TAG-c$i"
    done
    quiet

    phase "znet join"
    # B creates the second znet (B's work, not measured), names A a member, and A joins it.
    m2="$WORKDIR/second.toml"
    if ctl_b znet create second --ipv4 10.62.0.0/16 --out "$m2" >/dev/null 2>&1; then
        printf '\n[[members]]\nkey = "%s"\n' "$KEY_A" >>"$m2"
        ctl_b znet join "$m2" >/dev/null 2>&1
        r=$(ctl_b znet show second --json 2>/dev/null | jq -r '.router_netns // empty')
        [[ -n $r ]] && ROUTER_NS+=("$r")
        step "znet join second (manifest)" ctl_a znet join "$m2"
        r=$(ctl_a znet show second --json 2>/dev/null | jq -r '.router_netns // empty')
        [[ -n $r ]] && ROUTER_NS+=("$r")
    else
        step "znet create second on B" false
    fi
    quiet

    phase "circle edit"
    for ((i = 1; i <= CIRCLE_EDITS; i++)); do
        # B's key, in a circle no rule names: the edit changes nothing that is measured.
        step "circle add stall $i" ctl_a circle add stall "$KEY_B"
        step "circle remove stall $i" ctl_a circle remove stall "$KEY_B"
    done
    quiet

    phase "policy reload"
    for ((i = 1; i <= POLICY_RELOADS; i++)); do
        policy_for_a "$WORKDIR/next.toml" $((i + 1))
        n=$(ctl_a policy show --json 2>/dev/null | jq -r '.reloads // 0')
        # Moved in place (never read half-written); the poller sees it.
        step "policy file $i replaced (poller)" mv "$WORKDIR/next.toml" "$WORKDIR/policy.toml"
        step "poller reload $i in force" wait_reloads "$n"
        step "meshctl policy reload $i" ctl_a policy reload
    done
    quiet

    phase peers
    for ((i = 1; i <= PEER_CHANGES; i++)); do
        step "peer add 10.199.0.$((i + 10))" ctl_a peer add "udp://10.199.0.$((i + 10)):7820"
    done
    for ((i = 1; i <= PEER_CHANGES; i++)); do
        step "peer remove 10.199.0.$((i + 10))" ctl_a peer remove "udp://10.199.0.$((i + 10)):7820"
    done
    quiet

    phase "znet leave"
    step "znet leave stall" ctl_a znet leave stall
    step "znet leave second" ctl_a znet leave second
    quiet

    phase tail
    quiet 1
    phase ""
}

# --------------------------------------------------------------- analysis --
# replies.txt: "receive_time icmp_seq" per reply, from ping -D (control.txt: the same for
# the control ping).
extract_replies() {
    local log
    for log in ping control; do
        awk '/icmp_seq=/ {
            ts = substr($1, 2, length($1) - 2)
            for (i = 2; i <= NF; i++) if ($i ~ /^icmp_seq=/) { print ts, substr($i, 10); break }
        }' "$LOGDIR/$log.log" >"$WORKDIR/$log.txt"
    done
    mv "$WORKDIR/ping.txt" "$WORKDIR/replies.txt"
}

# Replies missing between the first and the last one received (icmp_seq wraps at 65536).
count_lost() {
    awk 'NR > 1 { d = ($2 - prev + 65536) % 65536; if (d > 1 && d < 32768) lost += d - 1 }
         { prev = $2 } END { print lost + 0 }' "$WORKDIR/replies.txt"
}

# gaps.tsv: gap_ms, arrival time, phase, step under way, and the longest gap of the control
# ping that covers at least half of this gap (0 if none: then the gap is meshd's own, not the
# host's) (tab-separated).
label_gaps() {
    awk -F'\t' -v OFS='\t' '
        FILENAME == ARGV[1] { if ($2 == "end") pe[np] = $1; else { ps[++np] = $1; pn[np] = $2; pe[np] = 1e18 } ; next }
        FILENAME == ARGV[2] { ss[++ns] = $1; se[ns] = $2; sl[ns] = $4; next }
        FILENAME == ARGV[3] {
            split($0, f, " ")
            t = f[1] + 0
            if (chave && t - clast > 0.005) { cs[++nc] = clast; ce[nc] = t }
            clast = t; chave = 1
            next
        }
        {
            split($0, f, " ")
            t = f[1] + 0
            if (have) {
                ph = "between phases"
                for (i = 1; i <= np; i++) if (t >= ps[i] && t <= pe[i]) { ph = pn[i]; break }
                st = "-"
                for (i = 1; i <= ns; i++) if (ss[i] <= t && se[i] >= last) { st = sl[i]; break }
                host = 0
                if (t - last > 0.005)
                    for (i = 1; i <= nc; i++) {
                        lo = cs[i] > last ? cs[i] : last
                        hi = ce[i] < t ? ce[i] : t
                        if (hi - lo >= (t - last) / 2 && (ce[i] - cs[i]) * 1000 > host) host = (ce[i] - cs[i]) * 1000
                    }
                printf "%.3f\t%.6f\t%s\t%s\t%.3f\n", (t - last) * 1000, t, ph, st, host
            }
            last = t; have = 1
        }' "$WORKDIR/phases.tsv" "$WORKDIR/steps.tsv" "$WORKDIR/control.txt" "$WORKDIR/replies.txt" >"$WORKDIR/gaps.tsv"
}

# stats: reads gap values (ms), one a line; prints "count median p99 p99.9 max".
stats() {
    sort -g | awk '{ v[++n] = $1 }
        function q(p,  k) { k = int(p * n + 0.999999); if (k < 1) k = 1; if (k > n) k = n; return v[k] }
        END { if (n == 0) { print "0 - - - -"; exit } printf "%d %.2f %.2f %.2f %.2f\n", n, q(0.5), q(0.99), q(0.999), v[n] }'
}

report() {
    local lost all ph c med p99 p999 mx slow over
    extract_replies
    lost=$(count_lost)
    label_gaps
    echo
    echo "# meshd event-loop stall benchmark"
    print_machine_header
    echo "commit:   $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
    echo "settings: PING_INTERVAL=${PING_INTERVAL}s CONTAINERS=$CONTAINERS POLICY_RELOADS=$POLICY_RELOADS" \
        "CIRCLE_EDITS=$CIRCLE_EDITS PEER_CHANGES=$PEER_CHANGES DAEMON_NICE=${DAEMON_NICE:-none} DAEMON_RT=${DAEMON_RT:-none} PIN_CPU=${PIN_CPU:-none}"
    echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) at the end"
    echo
    all=$(cut -f1 "$WORKDIR/gaps.tsv" | stats)
    read -r c med p99 p999 mx <<<"$all"
    echo "replies: $((c + 1)), lost: $lost, failed steps: $STEP_FAILURES"
    echo "gaps between replies (ms): count $c, median $med, p99 $p99, p99.9 $p999, max $mx"
    read -r c med p99 p999 mx < <(awk '{ t = $1 + 0; if (h) printf "%.3f\n", (t - l) * 1000; l = t; h = 1 }' "$WORKDIR/control.txt" | stats)
    echo "control ping (same namespace and priority, to B's veth address: no meshd on its path):"
    echo "  gaps (ms): count $c, median $med, p99 $p99, p99.9 $p999, max $mx"
    read -r shared smax own <<<"$(awk -F'\t' '$1 > 5 && $5 > 0 { n++; if ($1 > m) m = $1 } $5 == 0 && $1 > o { o = $1 }
        END { printf "%d %.2f %.2f\n", n, m, o }' "$WORKDIR/gaps.tsv")"
    echo "  overlay gaps > 5 ms that the control ping shared (the host stalled): $shared, largest $smax ms"
    echo "largest overlay gap the control ping did not share (meshd's own): $own ms"
    echo
    echo "| phase | replies | median gap (ms) | p99 (ms) | p99.9 (ms) | max gap (ms) | gaps > 5 ms | max gap not shared (ms) | slowest step (ms) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    while IFS= read -r ph; do
        read -r c med p99 p999 mx < <(awk -F'\t' -v p="$ph" '$3 == p { print $1 }' "$WORKDIR/gaps.tsv" | stats)
        slow=$(awk -F'\t' -v p="$ph" '$3 == p { d = ($2 - $1) * 1000; if (d > m) m = d } END { if (m) printf "%.0f", m; else print "-" }' "$WORKDIR/steps.tsv")
        over=$(awk -F'\t' -v p="$ph" '$3 == p && $1 > 5 { n++ } END { print n + 0 }' "$WORKDIR/gaps.tsv")
        own=$(awk -F'\t' -v p="$ph" '$3 == p && $5 == 0 && $1 > m { m = $1 } END { printf "%.2f", m }' "$WORKDIR/gaps.tsv")
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$ph" "$c" "$med" "$p99" "$p999" "$mx" "$over" "$own" "$slow"
    done < <(awk -F'\t' '$2 != "end" { print $2 }' "$WORKDIR/phases.tsv")
    echo
    echo "five largest gaps:"
    sort -t$'\t' -k1,1gr "$WORKDIR/gaps.tsv" | head -n 5 |
        awk -F'\t' '{ printf "  %8.2f ms  during %-14s step: %-28s %s\n", $1, $3, $4, ($5 > 0 ? sprintf("host: the control ping had a %.2f ms gap", $5) : "meshd: the control ping had none") }'
    echo
    echo "five largest gaps the control ping did not share:"
    awk -F'\t' '$5 == 0' "$WORKDIR/gaps.tsv" | sort -t$'\t' -k1,1gr | head -n 5 |
        awk -F'\t' '{ printf "  %8.2f ms  during %-14s step: %s\n", $1, $3, $4 }'
    echo
    echo "slow turns of the daemons' event loops (over 5 ms wall-clock, as each daemon logged them;"
    echo "CPU time only for control turns: a turn with little CPU time was preempted, not busy):"
    for side in A B; do
        sed -e 's/\x1b\[[0-9;]*m//g' "$LOGDIR/${side,,}.log" | grep 'slow turn of the event loop' |
            awk -v side="$side" '{
                    w = $0; sub(/.*what="/, "", w); sub(/".*/, "", w)
                    ms = $0; sub(/.* ms="/, "", ms); sub(/".*/, "", ms)
                    cpu = "-"; if ($0 ~ /cpu_ms="/) { cpu = $0; sub(/.*cpu_ms="/, "", cpu); sub(/".*/, "", cpu) }
                    n[w]++; t++
                    if (ms + 0 > m[w]) { m[w] = ms + 0; c[w] = cpu }
                }
                END {
                    if (!t) printf "  %s: none\n", side
                    for (w in n) printf "  %s: %-22s %d, longest %.1f ms (CPU time of that turn: %s ms)\n", side, w, n[w], m[w], c[w]
                }'
    done
    echo
    echo "A's policy compiles (compile_ms on the worker thread, apply_ms = node.set_policy on the loop):"
    sed -e 's/\x1b\[[0-9;]*m//g' "$LOGDIR/a.log" | grep -E 'circle policy (loaded|reloaded)' |
        sed -n 's/.*\(circles=.*\)/  \1/p' | tail -n 20
    if ((lost > 0 || STEP_FAILURES > 0)); then
        echo
        echo "FAILED: $lost replies lost, $STEP_FAILURES steps failed"
        return 1
    fi
}

# -------------------------------------------------------------------- main --
main() {
    parse_args "$@"
    ((EUID == 0)) || die "must run as root (network namespaces, TUN devices, ping -i 0.002)"
    [[ -c /dev/net/tun ]] || die "/dev/net/tun missing"
    trap stall_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORKDIR=$(mktemp -d "/tmp/$TAG.XXXXXX")
    # The daemons' logs and the ping's output go to memory: on ext4, a write() can wait
    # behind a journal commit that another process's fsync started (the daemons fsync their
    # state), and a ping that waits to write its line measures the disk, not meshd. The state
    # dirs stay on disk, as on a real host (where a daemon's log goes to journald by a pipe).
    LOGDIR=$WORKDIR
    if [[ $(stat -f -c %T /dev/shm 2>/dev/null) == tmpfs ]]; then
        LOGDIR=$(mktemp -d "/dev/shm/$TAG.XXXXXX") || LOGDIR=$WORKDIR
    fi
    NICE=()
    [[ -n $DAEMON_NICE ]] && NICE=(nice -n "$DAEMON_NICE")
    [[ -n $DAEMON_RT ]] && NICE+=(chrt -f "$DAEMON_RT")
    [[ -n $PIN_CPU ]] && NICE+=(taskset -c "$PIN_CPU")
    OTHER_CPUS=$(awk -v p="${PIN_CPU:-x}" 'BEGIN { n = 0 } /^processor/ { if ($3 != p) { printf "%s%s", (n++ ? "," : ""), $3 } }' /proc/cpuinfo)
    ensure_base_deps
    ensure_meshd_built || die "$REASON"
    setup_netns || die "could not set up the namespaces"
    start_daemons
    [[ -n $PIN_CPU ]] && move_workers &
    log "link up; B is $ADDR_B; pinging every ${PING_INTERVAL}s"
    : >"$WORKDIR/phases.tsv"
    : >"$WORKDIR/steps.tsv"
    spawn PID_PING "$NS_A" "$LOGDIR/ping.log" "${NICE[@]}" ping -D -i "$PING_INTERVAL" -W 1 "$ADDR_B" ||
        die "ping did not start: $(tail_log "$LOGDIR/ping.log")"
    spawn PID_CONTROL "$NS_A" "$LOGDIR/control.log" "${NICE[@]}" ping -D -i "$PING_INTERVAL" -W 1 "$VETH_B" ||
        die "the control ping did not start: $(tail_log "$LOGDIR/control.log")"
    sleep 0.5
    run_phases
    kill -INT "$PID_PING" "$PID_CONTROL" 2>/dev/null
    sleep 0.3
    alive "$PID_A" || log "warning: meshd A is gone: $(tail_log "$LOGDIR/a.log")"
    report
}

main "$@"
