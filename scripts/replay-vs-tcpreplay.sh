#!/usr/bin/env bash
# Measures `plsim replay` against `tcpreplay --topspeed` on the same capture, in one run:
# 200,000 complete conversations (1.6 million packets) made by plsim's generator; tcpreplay sends
# them into a veth pair inside a network namespace of its own (nothing leaves the namespace).
# Needs root, iproute2 and tcpreplay (apt-get install tcpreplay). Usage: scripts/replay-vs-tcpreplay.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q
pcap=$(mktemp -d)/conv200k.pcap
./target/release/plsim generate conversations --flows 200000 --out "$pcap"
ns=plsim-bench-$$
ip netns add "$ns"
trap 'ip netns del "$ns"; rm -f "$pcap"' EXIT
ip netns exec "$ns" ip link add veth0 type veth peer name veth1
ip netns exec "$ns" ip link set veth0 up
ip netns exec "$ns" ip link set veth1 up
for i in $(seq "$rounds"); do
    t=$(ip netns exec "$ns" tcpreplay --topspeed -i veth0 "$pcap" 2>&1 | sed -n 's/.* \([0-9.]*\) pps$/\1/p')
    p=$(./target/release/plsim replay --quiet --json "$pcap" | python3 -c 'import json,sys; print(json.load(sys.stdin)["throughput"]["packets_per_sec"])')
    python3 -c "print(f'round $i: tcpreplay --topspeed {float(\"$t\")/1e6:.3f} Mpps, plsim replay {float(\"$p\")/1e6:.3f} Mpps, ratio {float(\"$p\")/float(\"$t\"):.1f}x')"
done
