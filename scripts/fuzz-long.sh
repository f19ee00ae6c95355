#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 3600), seeded with the shipped captures, the
# shared real ones, the docs' scenarios and every earlier finding. A finding (a crash, a failed
# assertion, a leak or a timeout) is copied into fuzz/regressions/TARGET/, where CI's short runs
# replay it every time from then on; commit it with the fix.
# Exits 1 when something was found, 2 when a target did not run at all.
# Needs cargo-fuzz (cargo install cargo-fuzz). Usage: scripts/fuzz-long.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3600}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(capture_reader classify scenario replay)
mkdir -p fuzz/corpus/scenario
cp docs/*.toml fuzz/corpus/scenario/ 2>/dev/null
cargo run --release -q -- scenario default > fuzz/corpus/scenario/builtin.toml
found=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    seeds=("fuzz/regressions/$t")
    case "$t" in
        capture_reader | replay) seeds+=(pcaps ../shared/pcaps-real) ;;
        classify) seeds+=(pcaps) ;;
    esac
    echo "=== $t for ${secs}s"
    before=$(ls "fuzz/artifacts/$t" | wc -l)
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 > "fuzz/artifacts/$t.log" 2>&1
    status=$?
    grep -E "^(Done|#[0-9]+ +DONE)|ERROR|SUMMARY|panicked" "fuzz/artifacts/$t.log"
    for a in "fuzz/artifacts/$t"/*; do
        [ -e "$a" ] || continue
        cp -n "$a" "fuzz/regressions/$t/"
    done
    after=$(ls "fuzz/artifacts/$t" | wc -l)
    if [ "$after" -gt "$before" ]; then
        echo "$t: $((after - before)) finding(s), copied into fuzz/regressions/$t/"
        found=1
    elif [ "$status" -ne 0 ]; then
        # No finding, yet it failed: it did not run (a build error, a full disk). Say so.
        tail -5 "fuzz/artifacts/$t.log"
        echo "$t: did not run (exit $status; fuzz/artifacts/$t.log has all of it)"
        found=2
    else
        runs=$(grep -oE "Done [0-9]+ runs" "fuzz/artifacts/$t.log" | tail -1)
        echo "$t: nothing found${runs:+ ($runs)}"
    fi
done
exit $found
