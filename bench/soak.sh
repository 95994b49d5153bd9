#!/usr/bin/env bash
# bench/soak.sh — a SOAK UNDER CHURN: a mesh of NODES meshd daemons in network namespaces for
# DURATION seconds, with probe traffic between random pairs all the time and faults on a
# seeded schedule (link cuts, kill -9 and restart, policy reloads). Prints RSS, CPU, drop
# counters and delivery every SAMPLE_EVERY seconds, and a summary with verdicts at the end.
#
# Usage (as root, from anywhere):
#   bench/soak.sh [--build] [-h|--help]
#
# Environment:
#   NODES=10                daemons (8 to 12)
#   DURATION=1800           seconds of soak (traffic and faults) once the mesh is up
#   SEED=1                  seed of the fault schedule and of the pair rotation: the same
#                           seed gives the same faults (kinds, targets, durations, gaps)
#   SAMPLE_EVERY=30         seconds between two printed samples
#   WARMUP=30               seconds of traffic before the first fault
#   FAULT_GAP=10-30         seconds from the end of one fault to the start of the next
#   CUT_TIME=2-12           seconds a link stays cut
#   DOWN_TIME=1-8           seconds a killed daemon stays down before its restart
#   FAULT_MIX=cut:35,cut2:15,kill:30,reload:20   weights of the fault kinds
#   NO_KILL=2,<NODES/2+2>   nodes never killed (their RSS covers the whole run)
#   GRACE=5                 seconds after a fault during which probes are not judged
#   EXCLUDE_RELOADS=0       1: policy reloads are fault windows like the others; 0: they are
#                           not (docs/POLICY.md: allowed traffic is not disturbed by a reload)
#   PROBE_INTERVAL=0.2      seconds between two probes of one sender
#   PROBE_TIMEOUT=3         seconds a probe waits for its echo before it counts as lost
#   ROTATE=30               seconds before every node picks new destinations
#   FANOUT=1                destinations per node at a time
#   POLICY_FILLER=500       addresses in the filler circle of each policy file
#   RSS_GROWTH_PCT=10       RSS flatness bound (see the summary)
#   DELIVERY_MIN_PCT=99     delivery bound outside the fault windows
#   OUT_DIR=/tmp/soak-<UTC time>-<PID>   where logs and CSVs go (kept)
#   MESHD_BIN, MESHCTL_BIN  default target/release/{meshd,meshctl}; PYTHON default python3
#
# Topology (NODES=10): namespaces pls<PID>-1 .. -10, one veth pair per link, each link its
# own 10.182.L.0/24 (the lower-numbered node .1 dials the other, .2, over udp://:7820):
#
#     ring 1-2-3-4-5-6-7-8-9-1   chords 2-6, 4-8   leaf 10 hangs on node 1 only
#
# A single cut of a ring link or a chord leaves another path; a cut of the leaf's link, two
# cuts at once (cut2) or the death of node 1 may leave none: every fault logs which nodes the
# graph still joins ("components"). Ring: nodes 1..NODES-1; chords 2+2c <-> 2+2c+(NODES-1)/2.
#
# Traffic: bench/soak_probe.py in every namespace, one UDP socket on [::]:7900 that echoes
# probes and sends its own, 64 bytes every PROBE_INTERVAL to FANOUT destinations picked again
# every ROTATE seconds (seeded), over the overlay addresses. Delivery is round trip: a probe
# counts as delivered when its echo is back within PROBE_TIMEOUT.
#
# Faults, one at a time (FAULT_GAP between them), each logged with its start and end:
#   cut     one link: nft drops everything in and out of its veth on the dialing side
#   cut2    two links at once
#   kill    kill -9 of a daemon (not in NO_KILL); restarted DOWN_TIME later with the same
#           config and identity; the fault ends when its admin socket answers
#   reload  one node's policy file replaced (atomically, a new filler circle; the mesh's
#           nodes stay allowed) and picked up by meshd's file poller; ends when
#           `meshctl policy show` counts the reload
#   crash   not planned: a daemon that died without the script killing it (restarted)
#
# Every node's policy denies traffic by default and allows the mesh's nodes by key, so every
# reload recompiles what each probe is judged by.
#
# Output (OUT_DIR, printed at start): soak.log (what is printed), faults.csv, samples.csv (one
# row per node and sample), delivery.csv (per pair per interval), probes/N.csv (every probe),
# status/N.jsonl (raw `meshctl status --json`), logs/meshd-N.K.log (instance K of node N),
# summary.txt (bench/soak_report.py, which can be run again on the directory).
# Exit status: 0 if every verdict holds, 2 if a verdict fails, 1 if the soak itself failed.

set -uo pipefail
export LC_ALL=C

# ---------------------------------------------------------------- settings --
NODES=${NODES:-10}
DURATION=${DURATION:-1800}
SEED=${SEED:-1}
SAMPLE_EVERY=${SAMPLE_EVERY:-30}
WARMUP=${WARMUP:-30}
FAULT_GAP=${FAULT_GAP:-10-30}
CUT_TIME=${CUT_TIME:-2-12}
DOWN_TIME=${DOWN_TIME:-1-8}
FAULT_MIX=${FAULT_MIX:-cut:35,cut2:15,kill:30,reload:20}
NO_KILL=${NO_KILL:-}
GRACE=${GRACE:-5}
EXCLUDE_RELOADS=${EXCLUDE_RELOADS:-0}
PROBE_INTERVAL=${PROBE_INTERVAL:-0.2}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-3}
ROTATE=${ROTATE:-30}
FANOUT=${FANOUT:-1}
POLICY_FILLER=${POLICY_FILLER:-500}
RSS_GROWTH_PCT=${RSS_GROWTH_PCT:-10}
DELIVERY_MIN_PCT=${DELIVERY_MIN_PCT:-99}
OUT_DIR=${OUT_DIR:-/tmp/soak-$(date -u +%Y%m%dT%H%M%SZ)-$$}
PYTHON=${PYTHON:-$(command -v python3)}
LINK_TIMEOUT=20              # bound for a daemon's admin socket to answer (wait_meshctl)
CONVERGE_TIMEOUT=90          # bound for the whole mesh to answer pings at start
RELOAD_TIMEOUT=30            # bound for a policy reload to be seen
MESHD_BUILD_TIMEOUT=${MESHD_BUILD_TIMEOUT:-1800}
FORCE_BUILD=0

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" || exit 1
# shellcheck source=bench/soak_mesh.sh
source "$BENCH_DIR/soak_mesh.sh" || exit 1
export -n OUT_DIR PYTHON 2>/dev/null

TAG="pls$$"
NET_PREFIX=10.182
MESHD_PORT=7820
PROBE_PORT=7900
DAEMON_LIFETIME=0            # set in main from DURATION

# Per node (1..NODES).
NS=() PID=() SOCK=() CFG=() POLICY=() ADDR=() KEY=() INST=() DOWN=()
CPU_BASE=() LAST_TICKS=() PROBE_PID=()
declare -A PREV_DROPS=()     # node -> "instance link e2e local routing policy" at the last sample
# Per link (1..LINKS).
LINK_A=() LINK_B=() LINK_KIND=() CUT=()
LINKS=0
# Fault schedule state.
FAULT_ID=0 CRASHES=0 RESTART_FAILURES=0 RELOADS_NOT_SEEN=0 STOP=0
declare -A WEIGHT=()
T_TRAFFIC=0 T_STOP=0 NEXT_SAMPLE=0 LAST_HI=0

usage() { sed -n '2,/^# Output/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

now() { echo "$EPOCHREALTIME"; }
now_s() { printf '%(%s)T' -1; }

# rand_int VAR LO HI: a seeded integer in [LO, HI] (in this shell: $RANDOM must never be read
# in a subshell, whose draws would not advance the schedule).
rand_int() { printf -v "$1" '%d' $(($2 + RANDOM % ($3 - $2 + 1))); }

# range_lo / range_hi of "A-B" (or "A").
range_lo() { echo "${1%-*}"; }
range_hi() { echo "${1#*-}"; }

# ---------------------------------------------------------------- sampling --
# tick_until T: wait until unix second T, checking for crashes every second and sampling when due.
tick_until() {
    while (($(now_s) < $1)) && ((STOP == 0)); do
        sleep 1
        check_crashes
        (($(now_s) >= NEXT_SAMPLE)) && { sample; NEXT_SAMPLE=$((NEXT_SAMPLE + SAMPLE_EVERY)); }
    done
}

# Sums of meshd's drop counters by family, whatever their names (other counters may come):
# link, end-to-end (all but sessions_established), local (all but multicast: the kernel's own
# solicitations), routing, policy (in + out); then peers up, routing state entries, uptime.
STATUS_JQ='[ ([.counters.dropped[]? | numbers] | add // 0),
  ([.e2e // {} | to_entries[] | select(.key != "sessions_established") | .value | numbers] | add // 0),
  ([.local // {} | to_entries[] | select(.key != "multicast") | .value | numbers] | add // 0),
  ([.routing.dropped[]? | numbers] | add // 0),
  ((.policy.counters.dropped_in // 0) + (.policy.counters.dropped_out // 0)),
  (.peers_up // 0), (.routing.state_entries // 0), (.uptime_secs // 0) ] | @tsv'

sample() {
    local ts el i rss ticks cpu json vals link e2e loc rt pol peers ent up pi pl pe po pr pp
    local -a d=()
    ts=$(now)
    el=$((${ts%.*} - T_TRAFFIC))
    echo
    log "sample t=${el}s (elapsed since traffic started)"
    printf '  %4s %4s %8s %7s %8s %8s %5s %6s  %s\n' node inst pid "up s" "RSS MiB" "CPU s" peers state \
        "drops since last sample: link e2e local routing policy"
    for ((i = 1; i <= NODES; i++)); do
        if ((DOWN[i])) || ! alive "${PID[i]}"; then
            printf '  %4s %4s %8s  (down)\n' "$i" "${INST[i]}" -
            continue
        fi
        rss=$(status_kb "${PID[i]}" VmRSS) || rss=""
        ticks=$(cpu_ticks "${PID[i]}") || ticks=${LAST_TICKS[i]:-0}
        LAST_TICKS[i]=$ticks
        cpu=$(calc "(${CPU_BASE[i]} + $ticks) / $CLK_TCK")
        json=$(mctl "${NS[i]}" "${SOCK[i]}" status --json 2>/dev/null | jq -c . 2>/dev/null)
        vals=$(jq -r "$STATUS_JQ" <<<"${json:-null}" 2>/dev/null) || vals=""
        [[ -n $json ]] && echo "{\"ts\":$ts,\"node\":$i,\"instance\":${INST[i]},\"status\":$json}" >>"$OUT_DIR/status/$i.jsonl"
        if [[ -z $vals ]]; then
            printf '  %4s %4s %8s %7s %8.1f %8.1f  (meshctl status did not answer)\n' "$i" "${INST[i]}" "${PID[i]}" \
                - "$(calc "${rss:-0} / 1024")" "$cpu"
            echo "$ts,$el,$i,${INST[i]},${PID[i]},,${rss},$cpu,,,,,,,," >>"$OUT_DIR/samples.csv"
            continue
        fi
        read -r link e2e loc rt pol peers ent up <<<"$vals"
        # Drops since the last sample of the same instance (counters start at 0 on a restart).
        read -r pi pl pe po pr pp <<<"${PREV_DROPS[$i]:-0 0 0 0 0 0}"
        if [[ $pi != "${INST[i]}" ]]; then pl=0 pe=0 po=0 pr=0 pp=0; fi
        d=($((link - pl)) $((e2e - pe)) $((loc - po)) $((rt - pr)) $((pol - pp)))
        PREV_DROPS[$i]="${INST[i]} $link $e2e $loc $rt $pol"
        printf '  %4s %4s %8s %7s %8.1f %8.1f %5s %6s  %s %s %s %s %s\n' "$i" "${INST[i]}" "${PID[i]}" "$up" \
            "$(calc "${rss:-0} / 1024")" "$cpu" "$peers" "$ent" "${d[@]}"
        echo "$ts,$el,$i,${INST[i]},${PID[i]},$up,${rss},$cpu,$link,$e2e,$loc,$rt,$pol,$peers,$ent" >>"$OUT_DIR/samples.csv"
    done
    delivery_interval "$ts" "$el"
}

# delivery_interval TS EL: probes sent in [LAST_HI, TS - PROBE_TIMEOUT - 0.5) (all settled by
# now): per pair into delivery.csv, and one line: all, outside the fault windows (as the
# summary judges them, with the fault under way open-ended), and the pairs that lost some.
delivery_interval() {
    local hi
    hi=$(awk -v t="$1" -v w="$PROBE_TIMEOUT" 'BEGIN { printf "%.6f", t - w - 0.5 }')
    awk -F, -v lo="$LAST_HI" -v hi="$hi" -v el="$2" -v grace="$GRACE" -v exrel="$EXCLUDE_RELOADS" \
        -v cur="$CUR_FAULT_START" -v csv="$OUT_DIR/delivery.csv" '
        FILENAME ~ /faults\.csv$/ {
            if (FNR == 1 || ($2 == "reload" && !exrel)) next
            fs[nf + 0] = $4 - 1; fe[nf + 0] = $5 + grace; nf++; next
        }
        $6 == "late" { late++; next }
        $1 < lo || $1 >= hi { next }
        {
            k = $2 ">" $3; sent[k]++; ok = ($5 != -1); recv[k] += ok; all++; got += ok
            judged = !(cur != "" && $1 >= cur - 1)
            for (f = 0; judged && f < nf; f++) if ($1 >= fs[f] && $1 <= fe[f]) judged = 0
            if (judged) { js[k]++; jr[k] += ok; jall++; jgot += ok }
        }
        END {
            for (k in sent) {
                split(k, p, ">")
                printf "%d,%s,%s,%d,%d,%d,%d\n", el, p[1], p[2], sent[k], recv[k], js[k], jr[k] >>csv
                if (recv[k] < sent[k]) lossy = lossy sprintf(" %s %d/%d", k, recv[k], sent[k])
            }
            pct = all ? 100 * got / all : 0; jpct = jall ? 100 * jgot / jall : 100
            printf "  delivery (probes sent in the interval): %d/%d (%.2f%%); outside fault windows %d/%d (%.2f%%)",
                got, all, pct, jgot, jall, jpct
            if (late) printf "; %d late echoes so far", late
            printf "\n"
            if (lossy != "") print "  pairs with losses (src>dst received/sent):" lossy
        }' "$OUT_DIR/faults.csv" "$OUT_DIR"/probes/*.csv 2>/dev/null
    LAST_HI=$hi
}

# ------------------------------------------------------------------ set-up --
parse_args() {
    local v w k
    while (($#)); do
        case $1 in
            --build) FORCE_BUILD=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
    for v in NODES DURATION SEED SAMPLE_EVERY WARMUP GRACE PROBE_TIMEOUT ROTATE FANOUT POLICY_FILLER \
        RSS_GROWTH_PCT DELIVERY_MIN_PCT EXCLUDE_RELOADS; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
    done
    ((NODES >= 8 && NODES <= 12)) || die "NODES: 8 to 12"
    ((DURATION >= 60)) || die "DURATION: at least 60 seconds"
    ((SAMPLE_EVERY >= 5)) || die "SAMPLE_EVERY: at least 5 seconds"
    ((FANOUT >= 1 && FANOUT < NODES)) || die "FANOUT: 1 to NODES-1"
    ((PROBE_TIMEOUT >= 1)) || die "PROBE_TIMEOUT: at least 1 second"
    if ! [[ $PROBE_INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] || (($(calc "($PROBE_INTERVAL < 0.01)"))); then
        die "PROBE_INTERVAL: seconds, at least 0.01"
    fi
    for v in FAULT_GAP CUT_TIME DOWN_TIME; do
        if ! [[ ${!v} =~ ^[0-9]+(-[0-9]+)?$ ]] || (($(range_lo "${!v}") > $(range_hi "${!v}"))); then
            die "$v must be N or LO-HI (seconds)"
        fi
    done
    (($(range_lo "$CUT_TIME") >= 1 && $(range_lo "$FAULT_GAP") >= 1)) || die "CUT_TIME and FAULT_GAP: at least 1 s"
    IFS=, read -r -a v <<<"$FAULT_MIX"
    for w in "${v[@]}"; do
        k=${w%%:*}
        [[ $k =~ ^(cut|cut2|kill|reload)$ && ${w#*:} =~ ^[0-9]+$ ]] ||
            die "FAULT_MIX: a list of KIND:WEIGHT with KIND cut, cut2, kill or reload (got '$w')"
        WEIGHT[$k]=${w#*:}
    done
    local total=0
    for k in "${!WEIGHT[@]}"; do total=$((total + WEIGHT[$k])); done
    ((total > 0)) || die "FAULT_MIX: every weight is 0"
    [[ -n $NO_KILL ]] || NO_KILL="2,$((NODES / 2 + 2))"
    [[ $NO_KILL =~ ^[0-9]+(,[0-9]+)*$|^none$ ]] || die "NO_KILL: a list of node numbers, or none"
    local killable=0 j
    for ((j = 1; j <= NODES; j++)); do [[ ,$NO_KILL, == *",$j,"* ]] || killable=$((killable + 1)); done
    ((killable > 0 || ${WEIGHT[kill]:-0} == 0)) || die "NO_KILL leaves no node to kill (set the kill weight to 0)"
    [[ -n $PYTHON ]] || die "python3 not found (set PYTHON)"
}

# First Ctrl-C: stop the soak and still print the summary; the second quits at once.
# shellcheck disable=SC2317  # called by the INT trap
on_int() {
    if ((T_TRAFFIC == 0 || STOP)); then exit 130; fi
    STOP=1
    log "interrupted: stopping the soak; the summary follows (Ctrl-C again to quit at once)"
}

# Clean up (lib.sh): probers and daemons are in STARTED_PIDS, namespaces (and their nft
# tables) in CREATED_NS; WORKDIR (state, sockets) is removed, OUT_DIR is kept.
# shellcheck disable=SC2317  # called by the EXIT trap
soak_cleanup() {
    local rc=$?
    log "cleaning up: ${#STARTED_PIDS[@]} processes, ${#CREATED_NS[@]} namespaces; results in $OUT_DIR"
    (exit "$rc")
    cleanup
}

print_header() {
    local commit
    commit=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
    echo "# Planetary LAN soak under churn ($NODES nodes, ${DURATION}s)"
    print_machine_header
    echo "meshd:    $("$MESHD_BIN" --version 2>/dev/null | awk '{ print $2 }') (checkout $commit, binary built" \
        "$(date -u -r "$MESHD_BIN" '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null || echo '?'))"
    echo "settings: SEED=$SEED SAMPLE_EVERY=$SAMPLE_EVERY WARMUP=$WARMUP FAULT_GAP=$FAULT_GAP CUT_TIME=$CUT_TIME" \
        "DOWN_TIME=$DOWN_TIME FAULT_MIX=$FAULT_MIX NO_KILL=$NO_KILL GRACE=$GRACE EXCLUDE_RELOADS=$EXCLUDE_RELOADS"
    echo "traffic:  PROBE_INTERVAL=$PROBE_INTERVAL PROBE_TIMEOUT=$PROBE_TIMEOUT ROTATE=$ROTATE FANOUT=$FANOUT"
    echo "output:   $OUT_DIR"
}

start_mesh() {
    local i self
    for ((i = 1; i <= NODES; i++)); do
        write_config "$i"
        write_policy "$i" 0
        DOWN[i]=0 CPU_BASE[i]=0 INST[i]=0
    done
    # Highest first: every dial then finds its peer listening.
    for ((i = NODES; i >= 1; i--)); do start_node "$i" || return 1; done
    for ((i = 1; i <= NODES; i++)); do
        self=$(mctl "${NS[i]}" "${SOCK[i]}" self --json 2>/dev/null)
        if ! ADDR[i]=$(jq -er .address <<<"$self" 2>/dev/null) ||
            ! KEY[i]=$(jq -er .public_key <<<"$self" 2>/dev/null); then
            log "  node $i: no address/key in 'meshctl self --json': ${self:0:160}"
            return 1
        fi
        echo "$i ${ADDR[i]}" >>"$OUT_DIR/addrs.txt"
        log "  node $i: ${NS[i]} ${ADDR[i]} key ${KEY[i]:0:16}…"
    done
    # The real policies, now that the keys are known (each node must see its reload).
    local -a before=()
    for ((i = 1; i <= NODES; i++)); do before[i]=$(policy_reloads "$i"); write_policy "$i" 1; done
    local deadline=$(($(now_s) + RELOAD_TIMEOUT)) pending
    while :; do
        pending=0
        for ((i = 1; i <= NODES; i++)); do
            [[ $(policy_reloads "$i") -gt ${before[i]:-0} ]] 2>/dev/null || pending=$((pending + 1))
        done
        ((pending == 0)) && break
        (($(now_s) < deadline)) || { log "  $pending nodes did not reload their keyed policy in ${RELOAD_TIMEOUT}s"; return 1; }
        sleep 0.3
    done
    for ((i = 1; i <= NODES; i++)); do
        [[ -z $(policy_error "$i") ]] || { log "  node $i refused its policy: $(policy_error "$i")"; return 1; }
    done
}

# Every node answers ping from node 1 and node 1 from every node (bounded).
wait_converged() {
    local i deadline=$(($(now_s) + CONVERGE_TIMEOUT)) t0=$SECONDS
    for ((i = 2; i <= NODES; i++)); do
        until in_ns "${NS[1]}" ping -6 -c1 -W1 "${ADDR[i]}" >/dev/null 2>&1 &&
            in_ns "${NS[i]}" ping -6 -c1 -W1 "${ADDR[1]}" >/dev/null 2>&1; do
            (($(now_s) < deadline)) || { log "  node $i does not answer node 1 after ${CONVERGE_TIMEOUT}s"; return 1; }
            sleep 0.5
        done
    done
    log "  mesh converged: every node answers node 1 ($((SECONDS - t0))s)"
}

start_probers() {
    local i
    for ((i = 1; i <= NODES; i++)); do
        : >"$OUT_DIR/probes/$i.csv"
        spawn "PROBE_PID[$i]" "${NS[i]}" "$OUT_DIR/logs/probe-$i.log" "$PYTHON" "$BENCH_DIR/soak_probe.py" \
            --index "$i" --addrs "$OUT_DIR/addrs.txt" --port "$PROBE_PORT" --interval "$PROBE_INTERVAL" \
            --timeout "$PROBE_TIMEOUT" --rotate "$ROTATE" --fanout "$FANOUT" --seed "$SEED" \
            --t0 "$T_TRAFFIC" --out "$OUT_DIR/probes/$i.csv" ||
            { log "  prober $i did not start: $(tail_log "$OUT_DIR/logs/probe-$i.log")"; return 1; }
    done
}

write_meta() {
    cat >"$OUT_DIR/meta.env" <<EOF
NODES=$NODES
DURATION=$DURATION
SEED=$SEED
T_TRAFFIC=$T_TRAFFIC
T_STOP=$T_STOP
GRACE=$GRACE
PRE_GRACE=1
PROBE_TIMEOUT=$PROBE_TIMEOUT
PROBE_INTERVAL=$PROBE_INTERVAL
EXCLUDE_RELOADS=$EXCLUDE_RELOADS
RSS_GROWTH_PCT=$RSS_GROWTH_PCT
DELIVERY_MIN_PCT=$DELIVERY_MIN_PCT
NO_KILL=$NO_KILL
CRASHES=$CRASHES
RESTART_FAILURES=$RESTART_FAILURES
RELOADS_NOT_SEEN=$RELOADS_NOT_SEEN
CLEAN_EXIT=$((1 - STOP))
EOF
}

# -------------------------------------------------------------------- main --
main() {
    local i gap end rc
    ((EUID == 0)) || die "must run as root (network namespaces, TUN devices, nft)"
    [[ -c /dev/net/tun ]] || die "/dev/net/tun missing"
    DAEMON_LIFETIME=$((DURATION + 1800))
    trap soak_cleanup EXIT
    trap on_int INT
    trap 'exit 143' TERM
    WORKDIR=$(mktemp -d "/tmp/$TAG.XXXXXX")
    mkdir -p "$OUT_DIR"/{logs,probes,status,policy} || die "cannot create $OUT_DIR"
    echo "id,kind,target,start,end,detail,components" >"$OUT_DIR/faults.csv"
    echo "ts,elapsed,node,instance,pid,uptime_s,rss_kb,cpu_s,link_drops,e2e_drops,local_drops,routing_drops,policy_drops,peers_up,state_entries" \
        >"$OUT_DIR/samples.csv"
    echo "elapsed,src,dst,sent,received,judged_sent,judged_received" >"$OUT_DIR/delivery.csv"

    ensure_base_deps
    command -v nft >/dev/null || apt_install nftables || die "nft missing (apt-get install nftables)"
    ensure_meshd_built || die "$REASON"
    # Copies: a concurrent build in the work tree cannot change the binaries mid-run.
    mkdir -p "$WORKDIR/bin" || die "cannot create $WORKDIR/bin"
    cp -p -- "$MESHD_BIN" "$MESHCTL_BIN" "$WORKDIR/bin/" || die "cannot copy the binaries"
    print_header
    MESHD_BIN="$WORKDIR/bin/$(basename "$MESHD_BIN")"
    MESHCTL_BIN="$WORKDIR/bin/$(basename "$MESHCTL_BIN")"

    RANDOM=$SEED
    plan_topology
    log "topology: $(awk -F, 'NR > 1 { printf "%s%s-%s(%s)", sep, $2, $3, $4; sep = " " }' "$OUT_DIR/links.csv")"
    setup_namespaces || die "could not create the namespaces and veths"
    log "starting $NODES daemons"
    start_mesh || die "the mesh did not start (logs in $OUT_DIR/logs)"
    wait_converged || die "the mesh did not converge (logs in $OUT_DIR/logs)"
    # Every prober listens before any sends: they all start sending at T_TRAFFIC.
    T_TRAFFIC=$(($(now_s) + 3 + NODES / 2))
    start_probers || die "the probers did not start"
    (($(now_s) < T_TRAFFIC)) || log "  warning: the probers took until after T_TRAFFIC to start"
    while (($(now_s) < T_TRAFFIC)); do sleep 0.2; done
    LAST_HI=$T_TRAFFIC NEXT_SAMPLE=$((T_TRAFFIC + SAMPLE_EVERY))
    log "traffic started: $NODES senders, one probe every ${PROBE_INTERVAL}s to $FANOUT destination(s) each; first fault after ${WARMUP}s"

    tick_until $((T_TRAFFIC + WARMUP))
    end=$((T_TRAFFIC + DURATION))
    while (($(now_s) < end && STOP == 0)); do
        rand_int gap "$(range_lo "$FAULT_GAP")" "$(range_hi "$FAULT_GAP")"
        tick_until $(($(now_s) + gap < end ? $(now_s) + gap : end))
        (($(now_s) < end && STOP == 0)) || break
        FAULT_ID=$((FAULT_ID + 1))
        pick_kind
        case $KIND in
            cut) fault_cut 1 ;;
            cut2) fault_cut 2 ;;
            kill) fault_kill ;;
            reload) fault_reload ;;
        esac
    done
    # Let the last fault's grace pass, then one last sample.
    ((STOP)) || tick_until $(($(now_s) + GRACE + PROBE_TIMEOUT + 1))
    T_STOP=$(now_s)
    check_crashes
    sample
    for ((i = 1; i <= NODES; i++)); do kill_pid "${PROBE_PID[i]}"; done
    write_meta
    echo
    "$PYTHON" "$BENCH_DIR/soak_report.py" "$OUT_DIR" | tee "$OUT_DIR/summary.txt"
    rc=${PIPESTATUS[0]}
    ((rc == 0 || rc == 2)) || { log "soak_report.py failed (status $rc)"; return 1; }
    return "$rc"
}

parse_args "$@"
if [[ -e $OUT_DIR/faults.csv ]]; then
    echo "$OUT_DIR already holds a soak: choose another OUT_DIR" >&2
    exit 1
fi
mkdir -p "$OUT_DIR" || { echo "cannot create $OUT_DIR" >&2; exit 1; }
main 2>&1 | tee -i -a "$OUT_DIR/soak.log"
exit "${PIPESTATUS[0]}"
