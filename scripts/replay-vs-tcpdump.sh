#!/usr/bin/env bash
# `plsim replay` against libpcap on the same capture, whole processes, alternating, ROUNDS times:
# without --out against `tcpdump -r CAP -w /dev/null` (libpcap only reading), with --out (both
# pcaps, the time series and its plot) against `tcpdump -r CAP -w FILE` (reading and writing one
# copy). Each process's time is its wall clock and its CPU (user + system), so a rate and a cost
# per packet are both shown. The capture: 200,000 complete conversations (1.6M packets, 212 MB) from plsim's
# generator, read once first so every run finds it in the page cache.
# Needs tcpdump (apt-get install tcpdump). Usage: scripts/replay-vs-tcpdump.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q
lscpu | sed -n 's/^Model name: *//p; s/^L3 cache: *//p' | paste -sd ',' | sed 's/^/machine: /'
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pcap=$dir/conv200k.pcap
./target/release/plsim generate conversations --flows 200000 --out "$pcap"
cat "$pcap" > /dev/null
# "wall, cpu" of one whole process
secs() { /usr/bin/time -f '%e, %U + %S' "$@" 2>&1 >/dev/null | tail -1; }
for i in $(seq "$rounds"); do
    t0=$(secs tcpdump -r "$pcap" -w /dev/null)
    p0=$(secs ./target/release/plsim replay "$pcap")
    t1=$(secs tcpdump -r "$pcap" -w "$dir/copy.pcap")
    p1=$(secs ./target/release/plsim replay "$pcap" --out "$dir/out")
    python3 -c "
(t0, c0), (p0, d0), (t1, c1), (p1, d1) = ($t0), ($p0), ($t1), ($p1)
print(f'round $i: reading: tcpdump {t0:.2f} s ({c0:.2f} s CPU), plsim replay {p0:.2f} s ({d0:.2f} s CPU): '
      f'{t0 / p0:.2f}x the rate, {d0 / c0:.2f}x the CPU; '
      f'writing: tcpdump -w FILE {t1:.2f} s ({c1:.2f} s CPU), plsim replay --out {p1:.2f} s ({d1:.2f} s CPU): '
      f'{t1 / p1:.2f}x the rate, {d1 / c1:.2f}x the CPU')"
done
