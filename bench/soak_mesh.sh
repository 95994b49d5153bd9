# shellcheck shell=bash
# shellcheck disable=SC2034  # globals set here are read by soak.sh
# bench/soak_mesh.sh — the mesh of bench/soak.sh: its topology (ring, chords, a leaf), its
# namespaces and veths, its daemons (config, policy files, start, kill -9) and its faults
# (cut, cut2, kill, reload, and crashes seen). Sourced by soak.sh after lib.sh; it uses the
# globals soak.sh declares (NODES, NS, PID, LINK_*, CUT, DOWN, OUT_DIR, ...) and runs nothing
# by itself. Random draws go through rand_int in the main shell only (see soak.sh), so a seed
# gives the same schedule.

# ----------------------------------------------------------------- topology --
add_link() { LINKS=$((LINKS + 1)); LINK_A[LINKS]=$1; LINK_B[LINKS]=$2; LINK_KIND[LINKS]=$3; CUT[LINKS]=0; }

plan_topology() {
    local m=$((NODES - 1)) i c a b
    for ((i = 1; i <= m; i++)); do
        a=$i b=$((i % m + 1))
        if ((a < b)); then add_link "$a" "$b" ring; else add_link "$b" "$a" ring; fi
    done
    for ((c = 0; c < 2; c++)); do
        a=$((2 + 2 * c)) b=$(((2 + 2 * c + m / 2 - 1) % m + 1))
        if ((a < b)); then add_link "$a" "$b" chord; else add_link "$b" "$a" chord; fi
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
    for k in "${!WEIGHT[@]}"; do total=$((total + ${WEIGHT[$k]})); done
    rand_int r 0 $((total - 1))
    for k in cut cut2 kill reload; do
        r=$((r - ${WEIGHT[$k]:-0}))
        ((r < 0)) && { KIND=$k; return; }
    done
}

fault_cut() {
    local id=$FAULT_ID n=$1 l1 l2=0 d start comps what
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
    log "fault $id: cut $what for ${d}s; partition: $(partition_text "$comps")"
    tick_until $(($(now_s) + d))
    heal_link "$l1"
    ((l2)) && heal_link "$l2"
    local target=$l1 kind=cut
    ((l2)) && target+="+$l2" kind=cut2
    log_fault "$id" "$kind" "$target" "$start" "$(now)" "$what" "$comps"
}

fault_kill() {
    local id=$FAULT_ID i d start comps cand=() j
    for ((j = 1; j <= NODES; j++)); do
        ((DOWN[j] == 0)) && [[ ,$NO_KILL, != *",$j,"* ]] && cand+=("$j")
    done
    ((${#cand[@]})) || { log "fault $id: no node left to kill (skipped)"; return 0; }
    rand_int j 0 $((${#cand[@]} - 1))
    i=${cand[j]}
    rand_int d "$(range_lo "$DOWN_TIME")" "$(range_hi "$DOWN_TIME")"
    start=$(now) CUR_FAULT_START=$start
    kill9 "$i"
    comps=$(components)
    log "fault $id: kill -9 node $i (instance ${INST[i]}), restart in ${d}s; partition: $(partition_text "$comps")"
    tick_until $(($(now_s) + d))
    if start_node "$i"; then
        DOWN[i]=0
        log_fault "$id" kill "$i" "$start" "$(now)" "node $i down ${d}s then restarted as instance ${INST[i]}" "$comps"
    else
        give_up "$i"
        log_fault "$id" kill "$i" "$start" "$(now)" "node $i restart FAILED" "$comps"
    fi
}

fault_reload() {
    local id=$FAULT_ID i before after="" start deadline detail err seed
    rand_int i 1 "$NODES"
    rand_int seed 1 30000
    ((DOWN[i] == 0)) || { log "fault $id: node $i is down for good (reload skipped)"; return 0; }
    before=$(policy_reloads "$i")
    start=$(now)
    ((EXCLUDE_RELOADS)) && CUR_FAULT_START=$start
    write_policy "$i" "$seed"
    log "fault $id: policy of node $i replaced (filler seed $seed)"
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
    log_fault "$id" reload "$i" "$start" "$(now)" "$detail" "$(components)"
}

# give_up NODE: its restart failed; it stays down (DOWN=2) for the rest of the run.
give_up() {
    DOWN[$1]=2 RESTART_FAILURES=$((RESTART_FAILURES + 1))
    kill_pid "${PID[$1]}"
    log "  node $1 could not be restarted: left down for the rest of the run"
}

# A daemon that died without being killed: count it, keep its log, restart it.
check_crashes() {
    local i t comps
    ((STOP)) && return 0
    for ((i = 1; i <= NODES; i++)); do
        ((DOWN[i] == 0)) || continue
        alive "${PID[i]}" && continue
        # It died within the last tick: the window opens a second before it was seen.
        t=$(awk -v t="$(now)" 'BEGIN { printf "%.6f", t - 1 }') CUR_FAULT_START=$t
        CRASHES=$((CRASHES + 1))
        CPU_BASE[i]=$((CPU_BASE[i] + ${LAST_TICKS[i]:-0}))
        log "CRASH: meshd $i (instance ${INST[i]}) $(exit_status "${PID[i]}"): $(tail_log "$OUT_DIR/logs/meshd-$i.${INST[i]}.log" 5)"
        DOWN[i]=1 comps=$(components)
        FAULT_ID=$((FAULT_ID + 1))
        if start_node "$i"; then DOWN[i]=0; else give_up "$i"; fi
        log_fault "$FAULT_ID" crash "$i" "$t" "$(now)" "instance $((INST[i] - 1)) died; see logs/meshd-$i.$((INST[i] - 1)).log" "$comps"
    done
}
