#!/usr/bin/env bash
# Fuzzes each target (all by default) for SECONDS, one after another, then minimizes its corpus
# in place; `cargo test` replays what is committed. Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Usage: bash fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(signature envelope classify_json classify_mutated render)
for target in "${targets[@]}"; do
  corpora=("corpus/$target")
  [ -d "regressions/$target" ] && corpora+=("regressions/$target")
  options=(-max_total_time="$seconds" -print_final_stats=1)
  case $target in
    envelope | classify_json) options+=(-dict="$PWD/dict/events.dict") ;;
  esac
  mkdir -p "corpus/$target"
  nice -n 10 cargo +nightly fuzz run "$target" "${corpora[@]}" -- "${options[@]}"
  nice -n 10 cargo +nightly fuzz cmin "$target" "corpus/$target"
done
