#!/usr/bin/env bash
# Validates the Kubernetes manifests in examples/k8s against the Kubernetes API schema
# (kubernetes-validate, from PyPI, in a virtualenv of its own), and checks that the Indexed Job
# runs the grid the README shows: its completions equal `plsim sweep --list`'s points for the
# same arguments. CI runs it (.ci/run). Usage: scripts/test-k8s.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PLSIM_VENV:-target/k8s-venv}
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.33 examples/k8s/*.yaml
cargo build --release -q
grid=$(python3 - <<'PY'
import re
text = open("examples/k8s/sweep-job.yaml").read()
args = re.findall(r"^            - (.*)$", text, re.M)
i = args.index("--point")
print(" ".join(a.strip('"') for a in args[1:i]))
PY
)
completions=$(sed -n 's/^  completions: *//p' examples/k8s/sweep-job.yaml)
# shellcheck disable=SC2086
points=$(./target/release/plsim sweep pcaps/syns-3000.pcap ${grid#* } --list | wc -l)
if [ "$points" != "$completions" ]; then
    echo "examples/k8s/sweep-job.yaml: completions $completions, but its grid has $points points" >&2
    exit 1
fi
echo "examples/k8s: valid; the Indexed Job's $completions completions are its grid's points"
