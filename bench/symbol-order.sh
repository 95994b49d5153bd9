#!/usr/bin/env bash
# bench/symbol-order.sh — regenerate meshd/link/symbol-order.txt: the functions of the
# meshd binary that a node runs, most instructions first, so that the linker (lld's
# --symbol-ordering-file, passed by meshd/build.rs) lays them out together and the pages of
# code a running node maps stay few (idle RSS 9.8 -> 6.2 MiB; docs/BENCHMARKS.md).
#
# Usage (as root): bench/symbol-order.sh
#        bench/symbol-order.sh --check [MESHD_BINARY]   how much of the list a binary has
# It runs bench/compare.sh (one link: start, link up, ping, TCP) and bench/hops.sh (three
# hops: transit) for meshd alone, each daemon under valgrind's callgrind, and writes the
# functions of the meshd binary that ran. Rebuild afterwards (`cargo build --release`).
#
# Rerun it when `--check` (every meshd bench runs it, bench/lib.sh) says the list is stale:
# symbol names carry hashes that change with the toolchain, dependencies' versions, the packages one build
# selects, the path of the checkout (a list made in another worktree fits only in part), and
# (names with `.llvm.N`) the code of their module. A stale list costs memory,
# never correctness: functions it does not name are laid out after those it does.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
if [[ ${1:-} == --check ]]; then
    bin=${2:-$TARGET/release/meshd}
    command -v nm >/dev/null || { echo "symbol order: nm is missing (binutils)"; exit 0; }
    nm --defined-only "$bin" 2>/dev/null | awk '{print $3}' | sort -u >"${TMPDIR:-/tmp}/syms.$$"
    grep -v '^#' meshd/link/symbol-order.txt | sort -u >"${TMPDIR:-/tmp}/want.$$"
    have=$(comm -12 "${TMPDIR:-/tmp}/syms.$$" "${TMPDIR:-/tmp}/want.$$" | wc -l)
    rm -f "${TMPDIR:-/tmp}/syms.$$" "${TMPDIR:-/tmp}/want.$$"
    # Each way of building has its own section of about a third of the list.
    per_build=$(awk '/^# build:/ {n++; next} /^#/ {next} n == 1 {c++} END {print c + 0}' \
        meshd/link/symbol-order.txt)
    # Every function missing from the list can cost a 64 KB window of code at idle: 10%
    # missing (about 170 functions) gave back half of what the list saves.
    if ((per_build > 0 && have * 50 < per_build * 49)); then
        echo "symbol order: STALE, $bin has $have of the about $per_build functions listed for its build: rerun bench/symbol-order.sh"
    else
        echo "symbol order: $bin has $have functions of the list (about $per_build per build): current"
    fi
    exit 0
fi
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# Which packages one `cargo build` selects changes the features and the LTO mode its
# dependencies are built with, and so the hashes in every symbol's name: one list per way
# meshd is built here. The user's (README), the tests' (tests/src/lib.rs) and the
# benchmarks' (bench/lib.sh).
VARIANTS=("" "-p meshd -p meshctl -p mobile-ffi" "-p meshd -p meshctl")
for i in "${!VARIANTS[@]}"; do
    # shellcheck disable=SC2086 # the selection is words
    cargo build --release -q ${VARIANTS[$i]}
    cp "$TARGET/release/meshd" "$OUT/meshd-$i"
    cat >"$OUT/run-$i" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --dump-instr=no --demangle=no --compress-strings=no \
    --callgrind-out-file=$OUT/cg-$i.%p "$OUT/meshd-$i" "\$@"
WRAP
    chmod +x "$OUT/run-$i"
    export MESHD_BIN=$OUT/run-$i MESHCTL_BIN=$TARGET/release/meshctl LINK_TIMEOUT=120 DURATION=2
    bench/compare.sh --only meshd >"$OUT/compare-$i.log" 2>&1 ||
        { echo "bench/compare.sh failed:" >&2; tail -n 20 "$OUT/compare-$i.log" >&2; exit 1; }
    bench/hops.sh --only meshd >"$OUT/hops-$i.log" 2>&1 ||
        { echo "bench/hops.sh failed:" >&2; tail -n 20 "$OUT/hops-$i.log" >&2; exit 1; }
    ls "$OUT"/cg-"$i".* >/dev/null 2>&1 || { echo "no callgrind output for variant $i" >&2; exit 1; }
done
python3 - "$OUT" meshd/link/symbol-order.txt "$(rustc -V)" "${VARIANTS[@]}" <<'PY'
import collections, glob, sys
out, dest, rustc, *variants = sys.argv[1:]
sections = []
for i, variant in enumerate(variants):
    cost = collections.Counter()
    for path in glob.glob(f"{out}/cg-{i}.*"):
        ours = False; after_calls = False; ob = ""
        for line in open(path, errors="replace"):
            if line.startswith("ob="):
                ob = line[3:].strip(); continue
            if line.startswith("fn="):
                fn = line[3:].strip().split("'")[0]
                ours = ob.endswith(f"/meshd-{i}")
                if ours: cost[fn] += 0
                continue
            if line.startswith("calls="):
                after_calls = True; continue
            if line[:1].isdigit() or line[:1] in "+-*":
                if after_calls: after_calls = False; continue  # a call's inclusive cost
                parts = line.split()
                if ours and len(parts) >= 2 and parts[1].isdigit():
                    cost[fn] += int(parts[1])
    names = [n for n, _ in cost.most_common()
             if n not in ("(below main)", "main") and not n.startswith("0x")]
    sections.append((variant, names))
with open(dest, "w") as f:
    f.write("# Generated by bench/symbol-order.sh; do not edit.\n")
    f.write(f"# {rustc}\n")
    for variant, names in sections:
        f.write(f"# build: cargo build --release {variant}".rstrip() + "\n")
        f.write("".join(n + "\n" for n in names))
        print(f"{dest}: {len(names)} functions for `cargo build --release {variant}`")
PY
echo "now rebuild: cargo build --release"
