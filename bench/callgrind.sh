#!/usr/bin/env bash
# bench/callgrind.sh — instructions per packet of the data path, by stage, from
# valgrind's callgrind on the in-memory datapath bench (meshd/benches/datapath.rs).
# Instruction counts repeat exactly however busy the machine is, unlike times.
#
# Usage: bench/callgrind.sh [BENCH_BINARY]
#   BENCH_BINARY  default: built with `cargo bench -p meshd --bench datapath --no-run`
# Environment:
#   PACKETS=2000  packets per line (the counts are divided by it)
#   LINES="aes chacha aes-policy aes-direct chacha-direct"
#
# Prints one row per line: instructions per packet at the source (A's outbound),
# the transit node (B's forwarding; lines of three nodes only) and the destination.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${PACKETS:-2000}
LINES=${LINES:-"aes chacha aes-policy aes-direct chacha-direct"}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
BIN=${1:-}
if [[ -z $BIN ]]; then
  BIN=$(cargo bench -p meshd --bench datapath --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="datapath" and m.get("executable"): print(m["executable"])' | tail -1)
fi
[[ -x $BIN ]] || { echo "no bench binary: $BIN" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
printf '%-14s %12s %12s %12s\n' line source transit destination
for line in $LINES; do
  DATAPATH_PACKETS=$PACKETS DATAPATH_LINE=$line valgrind --tool=callgrind \
    --callgrind-out-file="$OUT/$line.out" "$BIN" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --threshold=100 "$OUT/$line.out" 2>/dev/null | awk -v n="$PACKETS" -v line="$line" '
    /datapath::stage_(source|transit|destination) \[/ {
      gsub(",", "", $1); split($0, a, "stage_"); split(a[2], b, " "); v[b[1]] = $1 / n
    }
    END {
      t = ("transit" in v) ? sprintf("%12.0f", v["transit"]) : sprintf("%12s", "-")
      printf "%-14s %12.0f %s %12.0f\n", line, v["source"], t, v["destination"]
    }'
done
