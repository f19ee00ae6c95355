#!/usr/bin/env bash
# The cluster test: starts a single-node Slurm cluster on this machine (Debian's slurm-wlm and
# munge, installed if missing), submits examples/slurm's array job over a 16-point grid of
# pcaps/syns-3000.pcap, waits for it and its merge, and compares sweep.csv and the plot with a
# one-machine `plsim sweep` of the same grid, byte for byte. CI runs it (.ci/run). It needs root
# (packages, daemons); without root it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "skipping the Slurm test: it installs packages and starts daemons, which needs root"
    exit 0
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
cargo build --release -q
plsim=$(pwd)/target/release/plsim
work=$(mktemp -d /tmp/plsim-slurm.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# munge: a key and its daemon, on a socket of our own.
mkdir -p "$work/munge"
chown munge:munge "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$work/munge/munge.key"
chmod 400 "$work/munge/munge.key"
socket=$work/munge/munge.socket
runuser -u munge -- munged --key-file="$work/munge/munge.key" --socket="$socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed"
pids+=("$(cat "$work/munge/munged.pid")")

# Slurm: one node, this machine, every core.
host=$(hostname -s)
mkdir -p "$work/state" "$work/spool"
conf=$work/slurm.conf
cat > "$conf" <<CONF
ClusterName=plsim-test
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmdSpoolDir=$work/spool
StateSaveLocation=$work/state
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$conf
slurmctld -D -f "$conf" > "$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$conf" > "$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -q idle && break
    sleep 1
done
if ! sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "the Slurm node never came up:" >&2
    tail -n 20 "$work"/slurm*.log "$work"/*.out >&2 || true
    exit 1
fi

# The sweep: on the cluster, and on this machine alone.
grid=(--nat-ips 1..4 --allocators sequential,random:7 --ports 1024-1033,1024-1063)
capture=$(pwd)/pcaps/syns-3000.pcap
out=$work/cluster
merge=$(PLSIM=$plsim SWEEP_OUT=$out examples/slurm/submit.sh "$capture" "${grid[@]}")
echo "submitted; the merge is job $merge"
for _ in $(seq 300); do
    [ -z "$(squeue -h -o %i)" ] && break
    sleep 1
done
if [ -n "$(squeue -h -o %i)" ]; then
    echo "the jobs did not finish in 5 minutes:" >&2
    squeue >&2
    exit 1
fi
"$plsim" sweep "$capture" "${grid[@]}" --out "$work/alone" > /dev/null 2>&1
status=0
for f in sweep.csv sweep.svg sweep.png; do
    if cmp -s "$work/alone/$f" "$out/$f"; then
        echo "$f: the same"
    else
        echo "$f: DIFFERS (or is missing)" >&2
        status=1
    fi
done
points=$(ls "$out/points" | wc -l)
echo "$points point results from the array job"
[ "$points" = 16 ] || status=1
if [ "$status" != 0 ]; then
    tail -n 5 "$out"/*.out >&2 || true
fi
exit $status
