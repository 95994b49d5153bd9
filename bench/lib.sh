# shellcheck shell=bash
# shellcheck disable=SC2034  # globals set here are used by the sourcing scripts
# bench/lib.sh — helpers shared by bench/compare.sh and bench/hops.sh.
# Source it at the top level of a script (not inside a function): it declares
# global arrays. Nothing here runs anything by itself.
#
# The sourcing script provides, before calling the helpers that use them:
#   DAEMON_LIFETIME   upper bound (s) for anything started with `spawn`
#   LINK_TIMEOUT      bound (s) for wait_meshctl
#   MESHD_BUILD_TIMEOUT, FORCE_BUILD   for ensure_meshd_built
#   WORKDIR           temp dir (created by the script, removed by cleanup)
#   REASON            set by `fail`

# Repository layout and binaries (overridable from the environment).
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
MESHD_BIN=${MESHD_BIN:-"$REPO_ROOT/target/release/meshd"}
MESHCTL_BIN=${MESHCTL_BIN:-"$REPO_ROOT/target/release/meshctl"}
CLK_TCK=$(getconf CLK_TCK)
# meshd reads every MESHD_<KEY> variable of its environment as a config key
# ("unknown field `bin`" for MESHD_BIN): keep our own knobs out of the
# environment of the daemons we start, as plain shell variables.
export -n MESHD_BIN MESHCTL_BIN MESHD_BUILD_TIMEOUT 2>/dev/null

WORKDIR=""                   # temp dir, created by the script
CREATED_NS=()                # namespaces created by this run
STARTED_PIDS=()              # pids of processes started by this run
CREATED_FILES=()             # files outside WORKDIR that this run may leave (sockets)
declare -A WRAPPER_OF=()     # daemon pid -> pid of its `timeout` wrapper

# ----------------------------------------------------------------- helpers --
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# fail REASON: remember why the current system could not be measured.
fail() { REASON=$*; log "  -> $REASON"; return 1; }

# Float arithmetic through awk: calc 'EXPR' (uses awk syntax).
calc() { awk "BEGIN { printf \"%s\", $1 }"; }

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Kill one pid we started (TERM, then KILL after ~3 s).
kill_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
}

# Kill everything still running inside a namespace we created, then delete it.
delete_ns() {
    local ns=$1 pid
    ip netns list 2>/dev/null | grep -qw -- "$ns" || return 0
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill_pid "$pid"; done
    ip netns del "$ns" 2>/dev/null
}

# EXIT trap: kill what we started, delete our namespaces, the files we listed
# and the temp dir.
cleanup() {
    local rc=$? pid ns
    trap - EXIT INT TERM
    for pid in "${STARTED_PIDS[@]}"; do kill_pid "$pid"; done
    for ns in "${CREATED_NS[@]}"; do delete_ns "$ns"; done
    ((${#CREATED_FILES[@]})) && rm -f -- "${CREATED_FILES[@]}"
    [[ -n $WORKDIR && -d $WORKDIR ]] && rm -rf -- "$WORKDIR"
    exit "$rc"
}

# Start a command in a namespace in the background under `timeout` and store
# the pid of the command itself in variable VAR (the child of `timeout`, which
# `ip netns exec` replaced itself with). Output goes to LOGFILE.
#   spawn VAR NS LOGFILE CMD...
spawn() {
    local var=$1 ns=$2 logf=$3 wrapper child i
    shift 3
    ip netns exec "$ns" timeout "$DAEMON_LIFETIME" "$@" >"$logf" 2>&1 </dev/null &
    wrapper=$!
    STARTED_PIDS+=("$wrapper")
    for ((i = 0; i < 50; i++)); do
        child=$(pgrep -P "$wrapper" | head -n1)
        if [[ -n $child ]]; then
            printf -v "$var" '%s' "$child"
            WRAPPER_OF[$child]=$wrapper
            return 0
        fi
        if ! kill -0 "$wrapper" 2>/dev/null; then
            wait "$wrapper"
            echo "exited at once with status $?" >>"$logf"
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# Describe why a daemon is gone: "exited with status N" (after it exited).
exit_status() {
    local w=${WRAPPER_OF[$1]:-}
    [[ -n $w ]] || { echo "exited"; return; }
    wait "$w"
    echo "exited with status $?"
}

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# utime+stime of a pid, in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the comm field may contain spaces, so split after the last ')').
cpu_ticks() {
    local stat rest f
    stat=$(<"/proc/$1/stat") || return 1
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    echo $((f[11] + f[12]))
}

# A field of /proc/PID/status in kB (VmHWM, VmRSS).
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

max() { if (($1 > $2)); then echo "$1"; else echo "$2"; fi; }

# Last lines of a log as one line (colour codes stripped, at most 240 chars).
tail_log() {
    [[ -f $1 ]] || return 0
    tail -n "${2:-3}" "$1" | sed -e 's/\x1b\[[0-9;]*m//g' | tr -s '\n' ' ' | sed 's/ *$//' | cut -c1-240
}

# "date/kernel/nproc/cpu" lines of a report header.
print_machine_header() {
    local cpu
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "date:     $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "kernel:   $(uname -r)"
    echo "nproc:    $(nproc)"
    echo "cpu:      ${cpu:-unknown}"
}

# ------------------------------------------------------------ dependencies --
# Install missing Debian packages (waiting for a concurrent apt/dpkg lock).
apt_install() {
    local opts=(-y -q -o DPkg::Lock::Timeout=600)
    log "installing: $*"
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get "${opts[@]}" install "$@" >/dev/null 2>&1 && return 0
    timeout 600 apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get "${opts[@]}" install "$@" >/dev/null 2>&1
}

# Install the tools every benchmark needs (dies if that fails).
ensure_base_deps() {
    local -A pkg_of=([iperf3]=iperf3 [ping]=iputils-ping [jq]=jq [ip]=iproute2 [pgrep]=procps)
    local missing=() cmd
    for cmd in "${!pkg_of[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${pkg_of[$cmd]}")
    done
    if ((${#missing[@]})); then
        apt_install "${missing[@]}" || die "could not install: ${missing[*]}"
    fi
}

# ------------------------------------------------------------------ meshd ---
# mctl NS SOCKET ARGS...: run meshctl (bounded) inside namespace NS.
mctl() { in_ns "$1" timeout 5 "$MESHCTL_BIN" --socket "$2" "${@:3}"; }

# Bounded wait until meshctl answers on SOCKET (run in namespace NS).
wait_meshctl() {
    local ns=$1 sock=$2 pid=$3 deadline=$((SECONDS + LINK_TIMEOUT))
    while ((SECONDS < deadline)); do
        alive "$pid" || return 1
        [[ -S $sock ]] && mctl "$ns" "$sock" self --json >/dev/null 2>&1 && return 0
        sleep 0.3
    done
    return 1
}

# Build meshd/meshctl if missing (or FORCE_BUILD=1); warn if sources are newer. Then check
# that the binary's code is laid out by use (meshd/build.rs), which the idle RSS depends on.
ensure_meshd_built() {
    local newer
    if ((FORCE_BUILD == 0)) && [[ -x $MESHD_BIN && -x $MESHCTL_BIN ]]; then
        newer=$(find "$REPO_ROOT"/{meshd,meshctl,routing} -name '*.rs' -newer "$MESHD_BIN" 2>/dev/null | head -n1)
        [[ -z $newer ]] || log "  warning: ${newer#"$REPO_ROOT"/} is newer than $MESHD_BIN (use --build to rebuild)"
    else
        build_meshd || return 1
    fi
    check_symbol_order
}

# The symbol list names functions by hashes that depend on which packages one `cargo` command
# selects: `cargo bench -p meshd` (bench/callgrind.sh) or `cargo test -p meshd` leave a
# target/release/meshd whose names the list has only in part. Relink it once as the benches
# build it; a list that is stale for that build too is only reported (bench/symbol-order.sh
# makes it again).
check_symbol_order() {
    local order="$REPO_ROOT/bench/symbol-order.sh" verdict
    verdict=$("$order" --check "$MESHD_BIN" 2>&1)
    if [[ $verdict == *STALE* && $MESHD_BIN == "$REPO_ROOT/target/release/meshd" ]]; then
        log "  $verdict"
        log "  relinking meshd as the benches build it (another cargo command built the binary there)"
        touch "$REPO_ROOT/meshd/src/main.rs"
        build_meshd || return 1
        verdict=$("$order" --check "$MESHD_BIN" 2>&1)
    fi
    log "  $verdict"
}

build_meshd() {
    command -v cargo >/dev/null || { fail "cargo not found, cannot build meshd"; return 1; }
    log "  building meshd/meshctl (cargo build --release, bounded ${MESHD_BUILD_TIMEOUT}s)"
    if ! (cd "$REPO_ROOT" && timeout "$MESHD_BUILD_TIMEOUT" cargo build --release -q -p meshd -p meshctl) \
        >"$WORKDIR/cargo-build.log" 2>&1; then
        fail "cargo build failed: $(grep -m1 -E '^error' "$WORKDIR/cargo-build.log" | cut -c1-160)"
        return 1
    fi
    local b
    for b in "$MESHD_BIN" "$MESHCTL_BIN"; do
        [[ -x $b ]] || { fail "build succeeded but produced no ${b#"$REPO_ROOT"/}"; return 1; }
    done
}

# Options every bench script takes: --only LIST (sets SYSTEMS, checked against ALL_SYSTEMS),
# --build (sets FORCE_BUILD), -h/--help (calls the script's usage).
parse_common_args() {
    local s
    while (($#)); do
        case $1 in
            --only)
                [[ $# -ge 2 ]] || die "--only needs a list, e.g. --only $(IFS=,; echo "${ALL_SYSTEMS[*]}")"
                IFS=, read -r -a SYSTEMS <<<"$2"
                shift 2
                ;;
            --only=*) IFS=, read -r -a SYSTEMS <<<"${1#--only=}"; shift ;;
            --build) FORCE_BUILD=1; shift ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
    for s in "${SYSTEMS[@]}"; do
        [[ " ${ALL_SYSTEMS[*]} " == *" $s "* ]] || die "unknown system '$s' (known: ${ALL_SYSTEMS[*]})"
    done
}

# ----------------------------------------------------------------- policy ---
# write_big_policy FILE SEED: a circle policy of 10,000 identities (overlay
# addresses drawn from SEED) in 100 circles and 998 rules that match neither
# daemon of a benchmark, with traffic and outbound denied by default. The caller
# appends the rules its measurement needs (the shape of compare.sh's
# meshd_policy, written by awk in well under a second).
write_big_policy() {
    local file=$1 seed=$2
    awk -v seed="$seed" 'BEGIN {
        srand(seed)
        print "[defaults]"; print "traffic = \"deny\""; print "outbound = \"deny\""
        print "[circles]"
        for (g = 0; g < 100; g++) {
            line = "team" g " = ["
            for (m = 0; m < 100; m++) {
                line = line sprintf("\"6%02x:%x:%x:%x:%x:%x:%x:%x\", ", int(rand() * 256),
                    int(rand() * 65536), int(rand() * 65536), int(rand() * 65536),
                    int(rand() * 65536), int(rand() * 65536), int(rand() * 65536), g * 100 + m)
            }
            print line "]"
        }
        for (r = 0; r < 998; r++) {
            port = 1000 + (r * 37) % 60000
            printf "[[rules]]\naction = \"%s\"\n%s = \"circle:team%d\"\nports = [\"tcp/%d\", \"udp/%d-%d\"]\n",
                (r % 3) ? "traffic" : "outbound", (r % 7) ? "allow" : "deny", r % 100, port, port, port + 10
        }
    }' >"$file"
}
