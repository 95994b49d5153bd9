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
T_START=0 T_TRAFFIC=0 T_STOP=0 NEXT_SAMPLE=0 LAST_HI=0

usage() { sed -n '2,/^# Output/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

now() { echo "$EPOCHREALTIME"; }
now_s() { printf '%(%s)T' -1; }

# rand_int VAR LO HI: a seeded integer in [LO, HI] (in this shell: $RANDOM must never be read
# in a subshell, whose draws would not advance the schedule).
rand_int() { printf -v "$1" '%d' $(($2 + RANDOM % ($3 - $2 + 1))); }

# range_lo / range_hi of "A-B" (or "A").
range_lo() { echo "${1%-*}"; }
range_hi() { echo "${1#*-}"; }

# ----------------------------------------------------------------- topology --
add_link() { LINKS=$((LINKS + 1)); LINK_A[LINKS]=$1; LINK_B[LINKS]=$2; LINK_KIND[LINKS]=$3; CUT[LINKS]=0; }

plan_topology() {
    local m=$((NODES - 1)) i c a b
    for ((i = 1; i <= m; i++)); do
        a=$i b=$((i % m + 1))
        ((a < b)) && add_link "$a" "$b" ring || add_link "$b" "$a" ring
    done
    for ((c = 0; c < 2; c++)); do
        a=$((2 + 2 * c)) b=$(((2 + 2 * c + m / 2 - 1) % m + 1))
        ((a < b)) && add_link "$a" "$b" chord || add_link "$b" "$a" chord
    done
    add_link 1 "$NODES" leaf
    {
        echo "link,a,b,kind"
        for ((i = 1; i <= LINKS; i++)); do echo "$i,${LINK_A[i]},${LINK_B[i]},${LINK_KIND[i]}"; done
    } >"$OUT_DIR/links.csv"
}

# Which nodes the graph still joins: "c1 c2 ... cN" (component of each node, 0 = down).
components() {
    local -a comp=() queue=()
    local i l n c=0 x y
    for ((i = 1; i <= NODES; i++)); do comp[i]=0; done
    for ((i = 1; i <= NODES; i++)); do
        ((DOWN[i] == 0 && comp[i] == 0)) || continue
        c=$((c + 1)) comp[i]=$c queue=("$i")
        while ((${#queue[@]})); do
            n=${queue[0]} queue=("${queue[@]:1}")
            for ((l = 1; l <= LINKS; l++)); do
                ((CUT[l] == 0)) || continue
                x=${LINK_A[l]} y=${LINK_B[l]}
                if ((x == n)); then :; elif ((y == n)); then y=$x; else continue; fi
                ((DOWN[y] == 0 && comp[y] == 0)) || continue
                comp[y]=$c queue+=("$y")
            done
        done
    done
    echo "${comp[*]:1}"
}

# "none" or the nodes outside the largest component.
partition_text() {
    awk '{ for (i = 1; i <= NF; i++) if ($i > 0) n[$i]++
           for (c in n) if (n[c] > best) { best = n[c]; big = c }
           for (i = 1; i <= NF; i++) if ($i > 0 && $i != big) out = out " " i
           print (out == "" ? "none" : "nodes" out " cut off") }' <<<"$1"
}

setup_namespaces() {
    local i l a b
    for ((i = 1; i <= NODES; i++)); do
        NS[i]="$TAG-$i"
        ip netns add "${NS[i]}" || return 1
        CREATED_NS+=("${NS[i]}")
        ip -n "${NS[i]}" link set lo up
        in_ns "${NS[i]}" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 >/dev/null
    done
    for ((l = 1; l <= LINKS; l++)); do
        a=${LINK_A[l]} b=${LINK_B[l]}
        ip -n "${NS[a]}" link add "l$l" type veth peer name "l$l" netns "${NS[b]}" || return 1
        ip -n "${NS[a]}" addr add "$NET_PREFIX.$l.1/24" dev "l$l"
        ip -n "${NS[b]}" addr add "$NET_PREFIX.$l.2/24" dev "l$l"
        ip -n "${NS[a]}" link set "l$l" up
        ip -n "${NS[b]}" link set "l$l" up
    done
}

# ------------------------------------------------------------------- meshd --
write_config() {
    local i=$1 l peers=() dir="$WORKDIR/n$1"
    mkdir -p "$dir/state"
    for ((l = 1; l <= LINKS; l++)); do
        ((LINK_A[l] == i)) && peers+=("\"udp://$NET_PREFIX.$l.2:$MESHD_PORT\"")
    done
    CFG[i]="$dir/meshd.toml" SOCK[i]="$dir/admin.sock" POLICY[i]="$OUT_DIR/policy/$i.toml"
    cat >"${CFG[i]}" <<EOF
state_dir = "$dir/state"
listen = ["udp://0.0.0.0:$MESHD_PORT"]
peers = [$(IFS=,; echo "${peers[*]}")]
admin_socket = "${SOCK[i]}"
log_level = "info"
policy_file = "${POLICY[i]}"

[tun]
name = "msk$i"
EOF
}

# write_policy NODE SEED: traffic denied by default, allowed for the mesh's nodes (by key,
# once known), a filler circle of POLICY_FILLER addresses (drawn from SEED) denied some UDP
# ports, and a test that the mesh may reach the probe port. Replaced atomically.
write_policy() {
    local file=${POLICY[$1]} keys="" i
    for ((i = 1; i <= NODES; i++)); do [[ -n ${KEY[i]:-} ]] && keys+="\"${KEY[i]}\", "; done
    awk -v seed="$2" -v n="$POLICY_FILLER" -v keys="$keys" -v port="$PROBE_PORT" 'BEGIN {
        srand(seed)
        if (keys == "") { print "default = \"allow\"" } else {
            print "[defaults]"; print "traffic = \"deny\""
        }
        print "[circles]"
        if (keys != "") print "mesh = [" keys "]"
        line = "filler = ["
        for (m = 0; m < n; m++)
            line = line sprintf("\"6%02x:%x:%x:%x:%x:%x:%x:%x\", ", int(rand() * 256),
                int(rand() * 65536), int(rand() * 65536), int(rand() * 65536),
                int(rand() * 65536), int(rand() * 65536), int(rand() * 65536), m)
        print line "]"
        print "[[rules]]"; print "action = \"traffic\""; print "deny = \"circle:filler\""
        printf "ports = [\"udp/%d-%d\", \"tcp/22\"]\n", 20000 + seed % 1000, 20100 + seed % 1000
        if (keys != "") {
            print "[[rules]]"; print "action = \"traffic\""; print "allow = \"circle:mesh\""
            print "[[tests]]"; print "from = \"circle:mesh\""
            printf "to = \"udp/%d\"\nexpect = \"allow\"\n", port
        }
    }' >"$file.tmp" && mv -f -- "$file.tmp" "$file"
}

# policy_reloads NODE: the daemon's count of policy reloads ("" if it does not answer).
policy_reloads() { mctl "${NS[$1]}" "${SOCK[$1]}" policy show --json 2>/dev/null | jq -r '.reloads // empty' 2>/dev/null; }
policy_error() { mctl "${NS[$1]}" "${SOCK[$1]}" policy show --json 2>/dev/null | jq -r '.last_error // empty' 2>/dev/null; }

# start_node NODE: start instance INST+1 and wait for its admin socket.
start_node() {
    local i=$1
    INST[i]=$((${INST[i]:-0} + 1))
    spawn "PID[$i]" "${NS[i]}" "$OUT_DIR/logs/meshd-$i.${INST[i]}.log" "$MESHD_BIN" --config "${CFG[i]}" ||
        { log "  meshd $i did not start: $(tail_log "$OUT_DIR/logs/meshd-$i.${INST[i]}.log")"; return 1; }
    LAST_TICKS[i]=0
    wait_meshctl "${NS[i]}" "${SOCK[i]}" "${PID[i]}" ||
        { log "  meshd $i: admin socket silent for ${LINK_TIMEOUT}s: $(tail_log "$OUT_DIR/logs/meshd-$i.${INST[i]}.log")"; return 1; }
}

# kill9 NODE: SIGKILL the daemon (its CPU so far is kept) and reap its wrapper.
kill9() {
    local i=$1 t
    t=$(cpu_ticks "${PID[i]}" 2>/dev/null) && CPU_BASE[i]=$((CPU_BASE[i] + t))
    DOWN[i]=1
    kill -KILL "${PID[i]}" 2>/dev/null
    wait "${WRAPPER_OF[${PID[i]}]}" 2>/dev/null
}

# ------------------------------------------------------------------- faults --
# log_fault ID KIND TARGET START END DETAIL COMPONENTS (one CSV row; detail without commas).
# CUR_FAULT_START is the start of the fault under way ("" if none), for the interval lines.
CUR_FAULT_START=""
log_fault() {
    printf '%s,%s,%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "$4" "$5" "${6//,/;}" "$7" >>"$OUT_DIR/faults.csv"
    CUR_FAULT_START=""
}

cut_link() {
    local l=$1 ns=${NS[${LINK_A[$1]}]}
    CUT[l]=1
    in_ns "$ns" nft -f - <<EOF
table inet soakcut$l {
    chain in { type filter hook input priority -10; iifname "l$l" drop; }
    chain out { type filter hook output priority -10; oifname "l$l" drop; }
}
EOF
}

heal_link() { CUT[$1]=0; in_ns "${NS[${LINK_A[$1]}]}" nft delete table inet soakcut"$1"; }

link_text() { echo "link $1 (${LINK_A[$1]}-${LINK_B[$1]} ${LINK_KIND[$1]})"; }

# pick_kind: set KIND to a fault kind drawn by FAULT_MIX's weights.
KIND=""
pick_kind() {
    local total=0 k r
    for k in "${!WEIGHT[@]}"; do total=$((total + WEIGHT[$k])); done
    rand_int r 0 $((total - 1))
    for k in cut cut2 kill reload; do
        r=$((r - ${WEIGHT[$k]:-0}))
        ((r < 0)) && { KIND=$k; return; }
    done
}

fault_cut() {
    local n=$1 l1 l2=0 d start comps what
    rand_int l1 1 "$LINKS"
    if ((n == 2)); then
        rand_int l2 1 $((LINKS - 1))
        ((l2 >= l1)) && l2=$((l2 + 1))
    fi
    rand_int d "$(range_lo "$CUT_TIME")" "$(range_hi "$CUT_TIME")"
    start=$(now) CUR_FAULT_START=$start
    cut_link "$l1" || { log "  nft failed on link $l1"; return 1; }
    what=$(link_text "$l1")
    if ((l2)); then cut_link "$l2"; what+=" + $(link_text "$l2")"; fi
    comps=$(components)
    log "fault $FAULT_ID: cut $what for ${d}s; partition: $(partition_text "$comps")"
    tick_until $(($(now_s) + d))
    heal_link "$l1"
    ((l2)) && heal_link "$l2"
    local target=$l1 kind=cut
    ((l2)) && target+="+$l2" kind=cut2
    log_fault "$FAULT_ID" "$kind" "$target" "$start" "$(now)" "$what" "$comps"
}

fault_kill() {
    local i d start comps cand=() j
    for ((j = 1; j <= NODES; j++)); do [[ ,$NO_KILL, == *",$j,"* ]] || cand+=("$j"); done
    rand_int j 0 $((${#cand[@]} - 1))
    i=${cand[j]}
    rand_int d "$(range_lo "$DOWN_TIME")" "$(range_hi "$DOWN_TIME")"
    start=$(now) CUR_FAULT_START=$start
    kill9 "$i"
    comps=$(components)
    log "fault $FAULT_ID: kill -9 node $i (instance ${INST[i]}), restart in ${d}s; partition: $(partition_text "$comps")"
    tick_until $(($(now_s) + d))
    if start_node "$i"; then
        DOWN[i]=0
        log_fault "$FAULT_ID" kill "$i" "$start" "$(now)" "node $i down ${d}s then restarted as instance ${INST[i]}" "$comps"
    else
        DOWN[i]=0 RESTART_FAILURES=$((RESTART_FAILURES + 1))
        log_fault "$FAULT_ID" kill "$i" "$start" "$(now)" "node $i restart FAILED" "$comps"
    fi
}

fault_reload() {
    local i before after="" start deadline detail err seed
    rand_int i 1 "$NODES"
    rand_int seed 1 30000
    before=$(policy_reloads "$i")
    start=$(now)
    ((EXCLUDE_RELOADS)) && CUR_FAULT_START=$start
    write_policy "$i" "$seed"
    log "fault $FAULT_ID: policy of node $i replaced (filler seed $seed)"
    deadline=$(($(now_s) + RELOAD_TIMEOUT))
    while (($(now_s) < deadline)); do
        after=$(policy_reloads "$i")
        [[ -n $before && -n $after ]] && ((after > before)) && break
        sleep 0.1
    done
    if [[ -n $before && -n $after ]] && ((after > before)); then
        err=$(policy_error "$i")
        detail="node $i reloads $before->$after${err:+ ERROR $err}"
    else
        RELOADS_NOT_SEEN=$((RELOADS_NOT_SEEN + 1))
        detail="node $i reload NOT SEEN within ${RELOAD_TIMEOUT}s (reloads $before->$after)"
        log "  $detail"
    fi
    log_fault "$FAULT_ID" reload "$i" "$start" "$(now)" "$detail" "$(components)"
}

# A daemon that died without being killed: count it, keep its log, restart it.
check_crashes() {
    local i t comps
    ((STOP)) && return 0
    for ((i = 1; i <= NODES; i++)); do
        ((DOWN[i] == 0)) || continue
        alive "${PID[i]}" && continue
        t=$(now) CUR_FAULT_START=$t
        CRASHES=$((CRASHES + 1))
        CPU_BASE[i]=$((CPU_BASE[i] + ${LAST_TICKS[i]:-0}))
        log "CRASH: meshd $i (instance ${INST[i]}) $(exit_status "${PID[i]}"): $(tail_log "$OUT_DIR/logs/meshd-$i.${INST[i]}.log" 5)"
        DOWN[i]=1 comps=$(components)
        FAULT_ID=$((FAULT_ID + 1))
        start_node "$i" || RESTART_FAILURES=$((RESTART_FAILURES + 1))
        DOWN[i]=0
        log_fault "$FAULT_ID" crash "$i" "$t" "$(now)" "instance $((INST[i] - 1)) died; see logs/meshd-$i.$((INST[i] - 1)).log" "$comps"
    done
}

# tick_until T: wait until unix second T, checking for crashes every second and sampling when due.
tick_until() {
    while (($(now_s) < $1)) && ((STOP == 0)); do
        sleep 1
        check_crashes
        (($(now_s) >= NEXT_SAMPLE)) && { sample; NEXT_SAMPLE=$((NEXT_SAMPLE + SAMPLE_EVERY)); }
    done
}

# ---------------------------------------------------------------- sampling --
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
            fs[nf] = $4 - 1; fe[nf] = $5 + grace; nf++; next
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
    [[ $PROBE_INTERVAL =~ ^[0-9]*\.?[0-9]+$ ]] && (($(calc "($PROBE_INTERVAL >= 0.01)"))) ||
        die "PROBE_INTERVAL: seconds, at least 0.01"
    for v in FAULT_GAP CUT_TIME DOWN_TIME; do
        [[ ${!v} =~ ^[0-9]+(-[0-9]+)?$ ]] && (($(range_lo "${!v}") <= $(range_hi "${!v}"))) ||
            die "$v must be N or LO-HI (seconds)"
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

on_int() {
    if ((T_TRAFFIC == 0 || STOP)); then exit 130; fi
    STOP=1
    log "interrupted: stopping the soak; the summary follows (Ctrl-C again to quit at once)"
}

# Clean up (lib.sh): probers and daemons are in STARTED_PIDS, namespaces (and their nft
# tables) in CREATED_NS; WORKDIR (state, sockets) is removed, OUT_DIR is kept.
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
        ADDR[i]=$(jq -er .address <<<"$self" 2>/dev/null) && KEY[i]=$(jq -er .public_key <<<"$self" 2>/dev/null) ||
            { log "  node $i: no address/key in 'meshctl self --json': ${self:0:160}"; return 1; }
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
    parse_args "$@"
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
    mkdir -p "$WORKDIR/bin" && cp -p -- "$MESHD_BIN" "$MESHCTL_BIN" "$WORKDIR/bin/" || die "cannot copy the binaries"
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

mkdir -p "$OUT_DIR" || { echo "cannot create $OUT_DIR" >&2; exit 1; }
main "$@" 2>&1 | tee -i -a "$OUT_DIR/soak.log"
exit "${PIPESTATUS[0]}"
