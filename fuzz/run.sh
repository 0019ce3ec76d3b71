#!/usr/bin/env bash
# Runs fuzz targets one after another, each for RUNS executions on one core, and
# prints a docs/reliability.md table row per target: executions, wall time, exec/s,
# corpus (libFuzzer's units/bytes after the run, and files on disk) and the command.
#   fuzz/run.sh [RUNS] [TARGET...]      (default: 10000000, every target)
# Seeds the corpora first (seed.sh). Without a sanitizer: the fuzzed crates have
# no unsafe code, and Rust's own checks (bounds, overflow with debug assertions,
# which cargo-fuzz turns on) stay on; ASan would only halve the rate.
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
./seed.sh >/dev/null
cargo +nightly fuzz build -s none >/dev/null 2>&1 || cargo +nightly fuzz build -s none
mkdir -p logs
for t in "${targets[@]}"; do
    args=(-runs="$runs" -jobs=1 -workers=1)
    cmd="cargo +nightly fuzz run -s none $t -- ${args[*]}"
    start=$(date +%s)
    status=ok
    # -jobs=1 runs the fuzzer in a child process whose output goes to fuzz-0.log.
    cargo +nightly fuzz run -s none "$t" -- "${args[@]}" > "logs/$t.out" 2>&1 || status="FAILED (see fuzz/logs/$t.out, fuzz-0.log, artifacts/$t)"
    secs=$(( $(date +%s) - start ))
    [ -f fuzz-0.log ] && mv fuzz-0.log "logs/$t.log"
    done_line=$(grep -h 'DONE' "logs/$t.log" 2>/dev/null | tail -n 1 || true)
    execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$done_line")
    rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$done_line")
    corpus=$(sed -nE 's/.*corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$done_line")
    fuzzing=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "logs/$t.log" 2>/dev/null | tail -n 1)
    printf '| `%s` | %s | %s s (%d s with the build) | %s | %s (%d files) | `%s` | %s |\n' \
        "$t" "${execs:-?}" "${fuzzing:-?}" "$secs" "${rate:-?}" "${corpus:-?}" \
        "$(find "corpus/$t" -type f | wc -l)" "$cmd" "$status"
done
