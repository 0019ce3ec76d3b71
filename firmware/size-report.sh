#!/usr/bin/env bash
# Builds the board images size-optimised and checks them against the budgets
# (flash = text + data <= 128 KiB, static RAM = data + bss <= 32 KiB).
# Usage: firmware/size-report.sh   (from anywhere; honours CARGO_TARGET_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

FLASH_BUDGET=$((128 * 1024))
RAM_BUDGET=$((32 * 1024))
target_dir="${CARGO_TARGET_DIR:-target}"

# The workspace's `firmware` profile: size over speed, as the shipping images are built.
cargo build -p gridwatch-firmware --target thumbv7em-none-eabihf --profile firmware --features board-stm32f407

size_tool=$(command -v llvm-size || command -v size)
status=0
for image in lift-node-f407 sterilizer-node-f407; do
    read -r text data bss _ < <("$size_tool" "$target_dir/thumbv7em-none-eabihf/firmware/$image" | tail -n1)
    flash=$((text + data))
    ram=$((data + bss))
    awk -v i="$image" -v f="$flash" -v r="$ram" \
        'BEGIN { printf "%-22s flash %6d B (%5.1f KiB)  static RAM %6d B (%4.1f KiB)\n", i, f, f / 1024, r, r / 1024 }'
    if ((flash > FLASH_BUDGET || ram > RAM_BUDGET)); then
        echo "  over budget (flash <= $FLASH_BUDGET B, static RAM <= $RAM_BUDGET B)" >&2
        status=1
    fi
done
exit $status
