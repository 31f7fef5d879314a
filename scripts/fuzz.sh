#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time, one after another.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Default: 60 seconds for each target. Works on the stable toolchain (RUSTC_BOOTSTRAP lets
# cargo-fuzz use the sanitizer flags it needs). Needs `cargo install cargo-fuzz`.
# Exits non-zero when a target finds a crash; the input is left in fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-60}"
shift || true
cd "$(dirname "$0")/.."

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 1
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi

for target in "${targets[@]}"; do
    echo "== fuzzing ${target} for ${seconds}s"
    mkdir -p "fuzz/corpus/${target}"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "${target}" "fuzz/corpus/${target}" -- \
        -max_total_time="${seconds}" -print_final_stats=1
done
