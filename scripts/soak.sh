#!/usr/bin/env bash
# The soak: scripts/soak.toml's churn (a million flows open at once, ended by FIN, RST and idle
# timeout, the NAT IPs near exhaustion) for two hours of simulated time and for HOURS (default
# 6), sampled every 10 s. Checks at every sample of both runs that the ports in use plus the
# ports held equal the live flow records (each record holds exactly one port), and that the
# long run's peak memory is the two-hour run's (within 5%): once the tables have grown to the
# churn's peak, memory stops growing. (Two hours, not one: the hash tables double when their
# live count first crosses a threshold, and the churn's peak count creeps up for a while; on
# the soak's 2026-11-30 run the last doubling came 75 minutes in, a step of 460 MiB, then
# nothing.) Prints what it measured; exits 1 if a check fails. A short version runs in CI
# (tests/soak.rs). Usage: scripts/soak.sh [HOURS]
set -euo pipefail
cd "$(dirname "$0")/.."
hours=${1:-6}
cargo build --release -q
lscpu | sed -n 's/^Model name: *//p; s/^L3 cache: *//p' | paste -sd ',' | sed 's/^/machine: /'
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for h in 2 "$hours"; do
    secs=$(python3 -c "print(int($h * 3600))")
    /usr/bin/time -f '%M %e' -o "$dir/time.$h" ./target/release/plsim simulate \
        --scenario scripts/soak.toml --until "$secs" --sample-every 10 \
        --out "$dir/run.$h" --no-pcaps --json > "$dir/summary.$h.json"
done
python3 - "$dir" "$hours" <<'PY'
import csv, json, sys
d, hours = sys.argv[1], sys.argv[2]
ok = True
rss = {}
for h in ("2", hours):
    kb, wall = open(f"{d}/time.{h}").read().split()
    rss[h] = int(kb) * 1024
    s = json.load(open(f"{d}/summary.{h}.json"))
    rows = list(csv.DictReader(open(f"{d}/run.{h}/timeseries.csv")))
    bad = 0
    for r in rows:
        in_use = sum(int(v) for k, v in r.items() if k.startswith("ports_in_use_"))
        if in_use + int(r["ports_held"]) != int(r["live_flows"]):
            bad += 1
            if bad <= 3:
                print(f"  t={r['t_s']}: {in_use} in use + {r['ports_held']} held != {r['live_flows']} records")
    peak = max(int(r["live_flows"]) for r in rows)
    print(f"{h} h of simulated time: {s['input']['packets']:,} packets, {s['flows']['created']:,} flows, "
          f"{s['flows']['snat_failures']:,} SNAT failures, records at most {peak:,}; "
          f"{len(rows):,} samples, {bad} broken; peak RSS {rss[h] / 2**20:.0f} MiB; wall {float(wall):.0f} s")
    ok &= bad == 0
grew = rss[hours] / rss["2"] - 1
print(f"peak RSS, {hours} h against 2 h: {grew * 100:+.1f}%")
ok &= grew < 0.05
print("soak:", "passed" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
