#!/usr/bin/env bash
# Whole-process memory per live flow: the peak RSS of `plsim bench` at 100,000 and at
# 10,000,000 flows (measured by the kernel, /usr/bin/time's maximum resident set), their
# difference over the 9.9M flows between them, and what the bench says the load balancer's and
# the SNAT's tables hold per flow. The reference loop is left out (--no-reference): its table
# would count in the peak. Usage: scripts/memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
lscpu | sed -n 's/^Model name: *//p; s/^L3 cache: *//p' | paste -sd ',' | sed 's/^/machine: /'
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for flows in 100000 10000000; do
    /usr/bin/time -f '%M' -o "$out/rss.$flows" \
        ./target/release/plsim bench --flows "$flows" --packets "$flows" --no-reference --json > "$out/bench.$flows"
done
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
rss = {f: int(open(f"{d}/rss.{f}").read().split()[-1]) * 1024 for f in (100000, 10000000)}
b = json.load(open(f"{d}/bench.10000000"))
per = (rss[10000000] - rss[100000]) / (10000000 - 100000)
print(f"peak RSS: {rss[100000] / 2**20:.1f} MiB at 100k flows, {rss[10000000] / 2**20:.1f} MiB at 10M")
print(f"whole process: {per:.1f} bytes per live flow (budget 128)")
f = b['bytes_per_flow']
print(f"of which the load balancer's parts {f['lb']:.1f}, the SNAT's parts and ports {f['snat']:.1f}, "
      f"the connection table's keys, index and timers {f['table']:.1f}, "
      f"the rest {per - f['lb'] - f['snat'] - f['table']:.1f}")
PY
