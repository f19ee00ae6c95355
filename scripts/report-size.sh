#!/usr/bin/env bash
# How big a long run's report.html is and how long headless Chromium takes to open it: a
# `simulate` of FLOWS flows (10 million by default) into a scratch directory, then the page
# loaded and its DOM dumped, and a screenshot taken, each timed, beside an empty page's times
# (the browser's own start). A measurement to run by hand (the README quotes it), not in CI.
# Usage: scripts/report-size.sh [FLOWS] [RATE]   (defaults: 10000000 flows, poisson:RATE with
# RATE 10000 flows a second); set PLSIM to a plsim binary to skip building one.
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-10000000}
rate=${2:-10000}
if [ -z "${PLSIM:-}" ]; then
    cargo build --release -q
    PLSIM=target/release/plsim
fi
browser=$(command -v chromium || command -v chromium-browser)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s.%N)
"$PLSIM" simulate --flows "$flows" --arrivals "poisson:$rate" --until "$((2 * flows / rate + 10))" \
    --no-pcaps -q --out "$dir/out" >"$dir/summary.txt"
end=$(date +%s.%N)
sed -n "1p;/^  flows/p;/^  NAT IP/p" "$dir/summary.txt" | head -4
echo "simulate: $(echo "$end - $start" | bc) s"
echo "report.html: $(stat -c %s "$dir/out/report.html") bytes ($(grep -o '<svg' "$dir/out/report.html" | wc -l) plots, $(grep -o 'data-json' "$dir/out/report.html" | wc -l) figures)"
echo '<!DOCTYPE html><title>empty</title>' >"$dir/empty.html"
flags=(--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
    --disable-component-update --disable-sync --disable-extensions --window-size=1200,2400)
time_it() { # what, then the browser's arguments
    local what=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    "$browser" "${flags[@]}" --user-data-dir="$dir/profile" "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    printf '%-28s %.2f s\n' "$what" "$(echo "$t1 - $t0" | bc)"
}
"$browser" "${flags[@]}" --user-data-dir="$dir/profile" --dump-dom "file://$dir/empty.html" >/dev/null 2>&1 # warm
for i in 1 2 3; do
    time_it "empty page, --dump-dom" --dump-dom "file://$dir/empty.html"
    time_it "report.html, --dump-dom" --dump-dom "file://$dir/out/report.html"
    time_it "report.html, --screenshot" --screenshot="$dir/shot.png" "file://$dir/out/report.html"
done
