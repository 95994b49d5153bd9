#!/usr/bin/env bash
# bench/gateway.sh — a published HTTPS service reached three ways in one run:
#   gateway   curl (internet) → meshd gateway → yamux over the overlay → container node →
#             router namespace → container (TLS end to end, passed through by SNI)
#   overlay   curl on the gateway's node as a mesh user → the service address over the overlay
#             → container node → container (no gateway hop, no yamux)
#   rathole   curl (internet) → rathole server → its reverse tunnel (noise: encrypted; tcp:
#             plain) → rathole client on the container node → the same server program there
# Measured for each: a 1 GiB download (Mbit/s), and 1,000 sequential short HTTPS requests, each
# on a new connection (requests per second, latency p50/p99; "added" is against overlay).
# Rounds alternate the order of the paths; medians are reported.
#
# Usage (as root): bench/gateway.sh
# Environment: ROUNDS=3, SIZE_MB=1024, REQUESTS=1000, MESHD_BIN, MESHCTL_BIN, RATHOLE_BIN
# (default: target/release/{meshd,meshctl}, rathole from PATH; `cargo install rathole
# --no-default-features --features server,client,noise` if missing).
#
# Topology (namespaces made here, deleted at exit):
#   inet 10.80.0.1 ══ 10.80.0.2 gw ══ 10.81.0.1 / 10.81.0.2 c ── router ns ── web (container)
set -uo pipefail

ROUNDS=${ROUNDS:-3}
SIZE_MB=${SIZE_MB:-1024}
REQUESTS=${REQUESTS:-1000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MESHD_BIN=${MESHD_BIN:-$ROOT/target/release/meshd}
MESHCTL_BIN=${MESHCTL_BIN:-$ROOT/target/release/meshctl}
RATHOLE_BIN=${RATHOLE_BIN:-$(command -v rathole || echo "$HOME/.cargo/bin/rathole")}
export -n MESHD_BIN MESHCTL_BIN 2>/dev/null
TAG="plg$$"
WORK=$(mktemp -d "/tmp/$TAG.XXXXXX")
PIDS=()
NSS=()

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    # What runs inside our namespaces (servers started through subshells) goes with them.
    for n in "${NSS[@]}"; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$n" 2>/dev/null
    done
    if [[ -f $WORK/routers ]]; then
        while read -r r; do ip netns del "$r" 2>/dev/null; rm -f "/run/netns/$r"; done <"$WORK/routers"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

((EUID == 0)) || die "must run as root"
for t in jq curl openssl; do
    command -v $t >/dev/null || apt-get install -y -qq $t >/dev/null || die "$t missing"
done
[[ -x $RATHOLE_BIN ]] || cargo install rathole --no-default-features --features server,client,noise ||
    die "rathole missing"
RATHOLE_BIN=${RATHOLE_BIN:-$HOME/.cargo/bin/rathole}
if [[ ! -x $MESHD_BIN || ! -x $MESHCTL_BIN ]]; then
    (cd "$ROOT" && cargo build --release -q -p meshd -p meshctl) || die "build failed"
fi
LIFE=$((ROUNDS * 600 + 120))

mkns() { ip netns add "$1" && NSS+=("$1") && ip -n "$1" link set lo up; }
for n in inet gw c web; do mkns "$TAG-$n" || die "netns"; done
LINKS=0
link() { # ns1 ip1 ns2 ip2
    LINKS=$((LINKS + 1))
    local a="$TAG-a$LINKS" b="$TAG-b$LINKS"
    ip link add "$a" netns "$1" type veth peer name "$b" netns "$3" || die "veth"
    ip -n "$1" addr add "$2/24" dev "$a" && ip -n "$1" link set "$a" up
    ip -n "$3" addr add "$4/24" dev "$b" && ip -n "$3" link set "$b" up
}
link "$TAG-inet" 10.80.0.1 "$TAG-gw" 10.80.0.2
link "$TAG-gw" 10.81.0.1 "$TAG-c" 10.81.0.2

start() { # side peers extra
    local d="$WORK/$1"
    mkdir -p "$d/state"
    cat >"$d/meshd.toml" <<CFG
state_dir = "$d/state"
admin_socket = "$d/admin.sock"
listen = ["udp://0.0.0.0:7820"]
peers = [$2]
log_level = "warn"
$3
[tun]
name = "msh$1"
CFG
    timeout $LIFE ip netns exec "$TAG-$1" "$MESHD_BIN" --config "$d/meshd.toml" >"$d/log" 2>&1 &
    PIDS+=($!)
    timeout 10 bash -c "until '$MESHCTL_BIN' --socket '$d/admin.sock' self >/dev/null 2>&1; do sleep 0.2; done" ||
        die "meshd $1 did not start: $(tail -3 "$d/log")"
}
ctl() { local side=$1; shift; "$MESHCTL_BIN" --socket "$WORK/$side/admin.sock" "$@"; }

start c '"udp://10.81.0.1:7820"' ''
KC=$(ctl c self --json | jq -r .public_key)
cat >"$WORK/gw-policy.toml" <<POL
[circles]
shops = ["$KC"]
[[rules]]
action = "publish"
allow = "circle:shops"
POL
start gw '' "policy_file = \"$WORK/gw-policy.toml\"
[gateway]
listen = [\"10.80.0.2:443\"]"
KG=$(ctl gw self --json | jq -r .public_key)

# The container and its server (and the same server on the container node, for rathole).
ctl c znet create bench --ipv4 10.50.0.0/16 >/dev/null || die "znet create"
ctl c znet show bench --json | jq -r .router_netns >>"$WORK/routers"
ctl c znet attach bench --netns "$TAG-web" >/dev/null || die "attach"
mkdir -p "$WORK/www"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=shop.test \
    -addext subjectAltName=DNS:shop.test -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null ||
    die "certificate"
truncate -s "${SIZE_MB}M" "$WORK/www/big.bin"
head -c 1024 /dev/urandom | base64 >"$WORK/www/small.txt"
serve() { # ns port
    (cd "$WORK/www" && timeout $LIFE ip netns exec "$1" openssl s_server -quiet -WWW -accept "$2" \
        -cert "$WORK/cert.pem" -key "$WORK/key.pem" >/dev/null 2>&1) &
    PIDS+=($!)
}
serve "$TAG-web" 443
serve "$TAG-c" 9443
ctl c publish bench "$TAG-web:443" --name shop.test --gateway "$KG" >/dev/null || die "publish"
SVC=$(ctl c services --json | jq -r '.[0].service_address')

# rathole: the server on the gateway node, the client on the container node dialing out.
keys=$("$RATHOLE_BIN" --genkey 2>/dev/null)
PRIV=$(echo "$keys" | awk '/Private Key/ {getline; print}')
PUB=$(echo "$keys" | awk '/Public Key/ {getline; print}')
cat >"$WORK/rs.toml" <<R
[server]
bind_addr = "10.81.0.1:2333"
[server.transport]
type = "noise"
[server.transport.noise]
local_private_key = "$PRIV"
[server.services.noise]
token = "bench"
bind_addr = "10.80.0.2:8443"
nodelay = true
R
cat >"$WORK/rc.toml" <<R
[client]
remote_addr = "10.81.0.1:2333"
[client.transport]
type = "noise"
[client.transport.noise]
remote_public_key = "$PUB"
[client.services.noise]
token = "bench"
local_addr = "127.0.0.1:9443"
nodelay = true
R
sed -e 's/2333/2334/; s/"noise"/"tcp"/; /transport.noise/,/private_key/d; s/services.noise/services.tcp/; s/8443/8444/' \
    "$WORK/rs.toml" >"$WORK/rs-tcp.toml"
sed -e 's/2333/2334/; s/"noise"/"tcp"/; /transport.noise/,/public_key/d; s/services.noise/services.tcp/' \
    "$WORK/rc.toml" >"$WORK/rc-tcp.toml"
for x in rs rs-tcp; do
    timeout $LIFE ip netns exec "$TAG-gw" "$RATHOLE_BIN" --server "$WORK/$x.toml" >"$WORK/$x.log" 2>&1 &
    PIDS+=($!)
done
sleep 0.5
for x in rc rc-tcp; do
    timeout $LIFE ip netns exec "$TAG-c" "$RATHOLE_BIN" --client "$WORK/$x.toml" >"$WORK/$x.log" 2>&1 &
    PIDS+=($!)
done

# path → (namespace of curl, host:port to resolve shop.test to, port)
declare -A NS_OF=([gateway]="$TAG-inet" [overlay]="$TAG-gw" [rathole-noise]="$TAG-inet" [rathole-tcp]="$TAG-inet")
declare -A AT_OF=([gateway]="10.80.0.2" [overlay]="[$SVC]" [rathole-noise]="10.80.0.2" [rathole-tcp]="10.80.0.2")
declare -A PORT_OF=([gateway]=443 [overlay]=443 [rathole-noise]=8443 [rathole-tcp]=8444)
PATHS=(gateway overlay rathole-noise rathole-tcp)
fetch() { # path file [curl args]
    local p=$1 f=$2
    shift 2
    ip netns exec "${NS_OF[$p]}" curl -s --cacert "$WORK/cert.pem" \
        --resolve "shop.test:${PORT_OF[$p]}:${AT_OF[$p]}" "$@" "https://shop.test:${PORT_OF[$p]}/$f"
}
for p in "${PATHS[@]}"; do
    timeout 20 bash -c "until $(declare -f fetch); $(declare -p NS_OF AT_OF PORT_OF WORK); fetch $p small.txt -o /dev/null --max-time 2; do sleep 0.3; done" ||
        die "path $p does not answer"
done
log "all four paths answer; service address $SVC"

median() { grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A MBPS RPS P50 P99
for ((r = 0; r < ROUNDS; r++)); do
    order=("${PATHS[@]}")
    ((r % 2)) && order=(rathole-tcp rathole-noise overlay gateway)
    for p in "${order[@]}"; do
        bps=$(fetch "$p" big.bin -o /dev/null -w '%{speed_download}' --max-time 300)
        m=$(awk -v b="$bps" 'BEGIN { printf "%.0f", b * 8 / 1e6 }')
        MBPS[$p]+="$m "
        urls=()
        for ((i = 0; i < REQUESTS; i++)); do urls+=("https://shop.test:${PORT_OF[$p]}/small.txt"); done
        t0=$(date +%s.%N)
        ip netns exec "${NS_OF[$p]}" curl -s --cacert "$WORK/cert.pem" -H 'Connection: close' \
            --resolve "shop.test:${PORT_OF[$p]}:${AT_OF[$p]}" -w '%{stderr}%{time_total}\n' \
            "${urls[@]}" >/dev/null 2>"$WORK/times-$p-$r"
        t1=$(date +%s.%N)
        n=$(grep -c . "$WORK/times-$p-$r")
        RPS[$p]+="$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }') "
        P50[$p]+="$(sort -n "$WORK/times-$p-$r" | awk '{a[NR]=$1} END {printf "%.2f", a[int(NR*0.5)]*1000}') "
        P99[$p]+="$(sort -n "$WORK/times-$p-$r" | awk '{a[NR]=$1} END {printf "%.2f", a[int(NR*0.99)]*1000}') "
        log "round $((r + 1)) $p: $m Mbit/s, ${n} requests"
    done
done

base50=$(echo "${P50[overlay]}" | tr ' ' '\n' | median)
base99=$(echo "${P99[overlay]}" | tr ' ' '\n' | median)
printf '\n| path | 1 GiB download (Mbit/s) | requests/s | p50 (ms) | p99 (ms) | added p50 / p99 vs overlay (ms) |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for p in "${PATHS[@]}"; do
    m=$(echo "${MBPS[$p]}" | tr ' ' '\n' | median)
    q=$(echo "${RPS[$p]}" | tr ' ' '\n' | median)
    a=$(echo "${P50[$p]}" | tr ' ' '\n' | median)
    b=$(echo "${P99[$p]}" | tr ' ' '\n' | median)
    printf '| %s | %s | %s | %s | %s | %s / %s |\n' "$p" "$m" "$q" "$a" "$b" \
        "$(awk -v x="$a" -v y="$base50" 'BEGIN{printf "%+.2f", x-y}')" \
        "$(awk -v x="$b" -v y="$base99" 'BEGIN{printf "%+.2f", x-y}')"
done
printf '\nall rounds (Mbit/s): '
for p in "${PATHS[@]}"; do printf '%s: %s; ' "$p" "${MBPS[$p]}"; done
printf '\n'
