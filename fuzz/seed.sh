#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the project's own examples: the protocol's golden
# vectors, the TOML examples in docs/, the sample register and the API's documented
# bodies. Idempotent; what the fuzzer adds to the corpus stays out of git.
#   fuzz/seed.sh && cd fuzz && cargo +nightly fuzz run message -- -runs=10000000
set -euo pipefail
cd "$(dirname "$0")"
root=..
vectors=$root/protocol/tests/vectors
corpus=corpus

seed() { # seed TARGET NAME: stdin → corpus/TARGET/NAME
    mkdir -p "$corpus/$1"
    cat > "$corpus/$1/$2"
}
# The first input byte picks the message kind (fuzz_targets/message.rs).
selector() {
    case "$1" in
        lift) echo 0 ;; sterilizer) echo 1 ;; cycle) echo 2 ;; event) echo 3 ;; birth) echo 4 ;;
        presence) echo 5 ;; ack) echo 6 ;; batch_ack) echo 7 ;; *) return 1 ;;
    esac
}
with_selector() { # with_selector N: prefixes stdin with the byte N
    printf "\\$(printf '%03o' "$1")"
    cat
}

# message: every golden vector, and every refused one of invalid.txt, under its kind.
for pair in lift:lift_trapped sterilizer:sterilizer_hot cycle:cycle_aborted event:event_fault \
    birth:birth presence:presence_offline ack:ack batch_ack:batch_ack; do
    kind=${pair%%:*} file=${pair#*:}
    tr -d '\n' < "$vectors/$file.json" | with_selector "$(selector "$kind")" | seed message "$file"
done
n=0
grep -v '^#' "$vectors/invalid.txt" | while IFS=$'\t' read -r kind _reason payload; do
    n=$((n + 1))
    sel=$(selector "$kind") || continue
    printf '%s' "$payload" | with_selector "$sel" | seed message "invalid-$n"
done

# batch: the golden batch, and one batch per reading vector (tagged with its kind).
tr -d '\n' < "$vectors/batch.json" | seed batch batch
for pair in lift:lift_trapped sterilizer:sterilizer_hot cycle:cycle_aborted event:event_fault birth:birth; do
    kind=${pair%%:*} file=${pair#*:}
    reading=$(tr -d '\n' < "$vectors/$file.json")
    printf '{"v":1,"gateway":"gw1","batch":7,"readings":[{"kind":"%s",%s]}' "$kind" "${reading#\{}" | seed batch "$file"
done

# topic: one of each form (protocol/src/topic.rs), and near misses.
for t in gw/gw1/dev/L-0001/lift gw/gw1/dev/S-0001/sterilizer gw/gw1/dev/S-0001/cycle gw/gw1/dev/L-0001/event \
    gw/gw1/dev/L-0001/birth gw/gw1/dev/L-0001/presence gw/gw1/batch gw/gw1/ack gw/gw1/ack/L-0001 \
    gw/gw1/dev/L-0001/teleport gw/+/dev/#/lift gw//batch; do
    printf '%s' "$t" | seed topic "$(printf '%s' "$t" | tr '/+#' '_pH')"
done

# config: the documented --config example (docs/alerts.md, moved under [alerts]), the
# case rules and deadlines, and the documented --users example (docs/api.md). The first
# byte picks the file: even --config, odd --users.
toml_block() { awk '/^```toml/{on=1; next} /^```/{if(on) exit} on' "$1"; }
{
    printf '\000[alerts]\n'
    toml_block "$root/docs/alerts.md" | sed -E 's/^\[([a-z_]+)\]$/[alerts.\1]/'
} | seed config alerts
{
    printf '\000'
    printf '%s\n' '[cases]' 'rural = ["0101", "02"]' \
        '[[cases.deadlines.trapped_passenger]]' 'step = "accept"' 'within_s = 300' 'escalate_to = "grid_head"' \
        '[[cases.deadlines.trapped_passenger]]' 'step = "handle"' 'within_s = 1800' 'rural_within_s = 3600' \
        'escalate_to = "emergency_service"' \
        '[[cases.rules]]' 'alert = "any_fault"' 'min_severity = "major"' 'case_type = "equipment_fault"' \
        'priority = "high"'
} | seed config cases
{ printf '\001'; toml_block "$root/docs/api.md"; } | seed config users

# register_csv: the header with a few rows of the sample register each (small inputs
# fuzz faster than the whole file).
csv=$root/simulators/data/registry-sample.csv
header=$(head -n 1 "$csv")
for start in 2 60 120 180 240 300; do
    { echo "$header"; sed -n "${start},$((start + 2))p" "$csv"; } | seed register_csv "rows-$start"
done
grep -m 3 '餐具消毒设备' "$csv" | { echo "$header"; cat; } | seed register_csv sterilizers

# api_body: the documented bodies of each POST route (docs/api.md); the first byte
# picks the route (fuzz_targets/api_body.rs).
printf '\000{"device_id":"31103306242009000001","kind":"trapped_passenger"}' | seed api_body ack
printf '\000{"device_id":"31103306242009000001","kind":"fault:17"}' | seed api_body ack-fault
printf '\001{"channel":"hotline12315","device_id":"31103306242009000001","case_type":"trapped_passenger","description":"stuck on 3","priority":"urgent","reporter":"138"}' | seed api_body report
printf '\002{"step":"handle","note":"rescued","evidence":[{"kind":"photo","reference":"f/1.jpg"}],"decision":"proceed"}' | seed api_body step
printf '\002{"step":"review","decision":"return_for_rework"}' | seed api_body step-rework
printf '\003{"date":"2026-11-13","next_due":"2027-11-13"}' | seed api_body inspection
printf '\004{"date":"2026-11-13"}' | seed api_body maintenance

for dir in "$corpus"/*/; do
    printf '%-14s %3d seeds\n' "$(basename "$dir")" "$(find "$dir" -type f | wc -l)"
done
