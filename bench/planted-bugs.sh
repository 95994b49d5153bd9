#!/usr/bin/env bash
# Shows that the reference-model test of whole nodes (meshd/src/node/model_test.rs) catches
# real bugs: each patch in meshd/tests/planted/ plants one in a scratch git worktree of HEAD
# (in /tmp; this checkout is not touched), the model test runs there, and one line per patch
# says "caught" (the test failed on a broken invariant, with its shrunk counterexample in the
# log) or "MISSED" (the test passed). Exit status: 0 when every bug is caught.
#
#   bench/planted-bugs.sh            # CARGO_TARGET_DIR is honoured (default: ./target)
#   MODEL_CASES=200 bench/planted-bugs.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
target=${CARGO_TARGET_DIR:-$root/target}
scratch=$(mktemp -d /tmp/planted.XXXXXX)
logs=$scratch/logs
mkdir -p "$logs"
cleanup() { git -C "$root" worktree remove --force "$scratch/wt" >/dev/null 2>&1 || true; }
trap cleanup EXIT
git -C "$root" worktree add --detach -q "$scratch/wt" HEAD
missed=0
for patch in "$root"/meshd/tests/planted/*.patch; do
    name=$(basename "$patch" .patch)
    git -C "$scratch/wt" checkout -q -- .
    git -C "$scratch/wt" apply "$patch"
    log=$logs/$name.log
    start=$(date +%s)
    if CARGO_TARGET_DIR=$target cargo test --release --manifest-path "$scratch/wt/Cargo.toml" \
        -p meshd --lib node::model_test >"$log" 2>&1; then
        echo "MISSED  $name ($(($(date +%s) - start)) s)"
        missed=1
    elif grep -q "Test failed:" "$log"; then
        echo "caught  $name ($(($(date +%s) - start)) s): $(grep -m1 -o 'Test failed:.*' "$log" | cut -c14-400)"
        grep -m1 -o '^steps: .*' "$log" | sed 's/^/          /' || true
    else
        echo "ERROR   $name: it did not build or failed another way (log: $log)"
        missed=1
    fi
done
echo "logs: $logs"
exit $missed
