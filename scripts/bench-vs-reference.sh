#!/usr/bin/env bash
# `plsim bench` against its same-run single-core reference NAT loop (one frame per flow, round
# robin: make the frame, one hashbrown lookup, the source rewrite with its checksum update), at
# 100,000, 1M and 10M live flows, ROUNDS times each; then the sequential engine (one thread) against the
# threaded one (two working threads) at 1M. Each bench alternates the path and the loop over
# five rounds of its frames (`--rounds`), and prints each round's ratio too. Prints the machine
# first: figures depend on it.
# Usage: scripts/bench-vs-reference.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q
lscpu | sed -n 's/^Model name: *//p; s/^L3 cache: *//p' | paste -sd ',' | sed 's/^/machine: /'
row() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["complete"], "the bench dropped packets: not a throughput figure"
s = d["stage_ns_per_packet"]
rounds = ", ".join("%.2fx" % r["ratio"] for r in d["rounds"])
print("  %9d flows %-10s: %6.2f Mpps, reference %6.2f Mpps, ratio %.2fx (its %d rounds: %s; stage ns: endpoint %.0f, core %.0f)"
      % (d["flows"], sys.argv[1], d["mpps"], d["reference_mpps"], d["ratio"], len(d["rounds"]), rounds, s["endpoint"], s["core"]))
' "$1"
}
for i in $(seq "$rounds"); do
    echo "round $i"
    ./target/release/plsim bench --flows 100000 --packets 20000000 --json | row threaded
    ./target/release/plsim bench --flows 1000000 --packets 20000000 --json | row threaded
    ./target/release/plsim bench --flows 10000000 --packets 40000000 --json | row threaded
    ./target/release/plsim bench --flows 1000000 --packets 20000000 --engine sequential --json | row sequential
done
