#!/usr/bin/env bash
# What PROXY protocol v2 costs: `plsim bench` at FLOWS live flows, ROUNDS rounds, alternating
# three binaries in one session: BASE (a revision before the option existed, built in a
# worktree), this tree with the option off, and this tree with `--proxy-protocol`. Prints each
# run's Mpps, its ratio to the same run's reference loop, and the bytes per flow of each stage.
# Usage: scripts/bench-proxy.sh [BASE] [FLOWS] [ROUNDS]   (defaults: 3780ff9 1000000 3); set
# BASE_BIN to a plsim built from BASE to skip building it.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-3780ff9}
flows=${2:-1000000}
rounds=${3:-3}
packets=$((flows * 20))
cargo build --release -q
lscpu | sed -n 's/^Model name: *//p; s/^L3 cache: *//p' | paste -sd ',' | sed 's/^/machine: /'
dir=$(mktemp -d)
trap 'git worktree remove --force "$dir/base" >/dev/null 2>&1; rm -rf "$dir"' EXIT
if [ -n "${BASE_BIN:-}" ]; then
    cp "$BASE_BIN" "$dir/plsim-base" # built from BASE already
else
    git worktree add -q --detach "$dir/base" "$base"
    (cd "$dir/base" && CARGO_TARGET_DIR="$dir/target" cargo build --release -q)
    cp "$dir/target/release/plsim" "$dir/plsim-base"
fi
run() {
    local bin=$1
    shift
    "$bin" bench --flows "$flows" --packets "$packets" --json "$@" | python3 -c "
import json, sys
r = json.load(sys.stdin)
b = r['bytes_per_flow']
assert r['complete'], 'dropped packets: not a throughput figure'
print(f\"{r['mpps']:6.2f} Mpps ({r['ratio']:.2f}x the reference loop), {b['lb'] + b['snat'] + b.get('table', 0):.1f} B/flow\")"
}
for i in $(seq "$rounds"); do
    echo "round $i: base $base:   $(run "$dir/plsim-base")"
    echo "round $i: option off:    $(run ./target/release/plsim)"
    echo "round $i: option on:     $(run ./target/release/plsim --proxy-protocol)"
done
