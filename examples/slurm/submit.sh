#!/usr/bin/env bash
# Submits a plsim sweep as a Slurm array job, one point per task, and its merge as a job that
# depends on the array (it runs once every task ended well). Prints the merge job's id.
#
#   SWEEP_OUT=/shared/sweeps/run1 examples/slurm/submit.sh /shared/caps/day.pcap --nat-ips 1..8 --allocators sequential,random
#
# SWEEP_OUT must be on a filesystem every node sees; PLSIM is the plsim binary (default: plsim
# on the PATH). Extra sbatch options (a partition, an account) go in SBATCH_OPTIONS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${PLSIM:=plsim}"
: "${SWEEP_OUT:?set SWEEP_OUT to a directory on the shared filesystem}"
points=$("$PLSIM" sweep "$@" --list | wc -l)
[ "$points" -gt 0 ] || { echo "submit.sh: the grid has no point" >&2; exit 2; }
mkdir -p "$SWEEP_OUT/points"
export PLSIM SWEEP_OUT
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_OPTIONS:-} --chdir="$SWEEP_OUT" --array="0-$((points - 1))" \
    "$here/sweep.sbatch" "$@")
# shellcheck disable=SC2086
sbatch --parsable ${SBATCH_OPTIONS:-} --chdir="$SWEEP_OUT" --dependency="afterok:${array%%;*}" \
    "$here/merge.sbatch"
