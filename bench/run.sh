#!/usr/bin/env bash
# Builds and runs the benchmarks (BENCHMARKS.md), printing markdown tables.
#
#   bash bench/run.sh                  every phase, on the release binary (fat LTO, as shipped)
#   bash bench/run.sh intake e2e       only these phases (intake, e2e, startup, log, metrics, storm)
#   bash bench/run.sh --smoke          CI: a few hundred events, 10k log rows, debug build;
#                                      checks correctness only and exits non-zero on a failure
#
# Needs Postfix's smtp-sink and smtp-source (Debian: apt-get install postfix; tests/run
# installs it). Everything runs on 127.0.0.1; every process started is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
args=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done

for tool in smtp-sink smtp-source; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    echo "bench/run.sh: $tool is missing (Debian: apt-get install postfix)" >&2
    exit 1
  fi
done

# The harness's executable path, from cargo's JSON build messages.
harness_path() {
  grep -o '"executable":"[^"]*/mmc_bench-[^"]*"' | tail -n 1 | sed 's/^"executable":"//; s/"$//'
}

# Where cargo puts its builds (CARGO_TARGET_DIR when set).
target=${CARGO_TARGET_DIR:-target}

if [ "$smoke" -eq 1 ]; then
  # Debug builds: the same artifacts `cargo test` makes, so CI builds little more.
  cargo build --locked --bin mailmycustomer
  harness=$(cargo build --locked --bench mmc_bench --message-format=json-render-diagnostics | harness_path)
  bin=$target/debug/mailmycustomer
else
  # The server as shipped (profile.release: fat LTO). The harness only needs to be optimized,
  # not link-time optimized: it builds in the bench profile without LTO, in its own target
  # directory, because a bench build also builds the server binary and would otherwise replace
  # target/release/mailmycustomer with that non-LTO copy.
  cargo build --locked --release --bin mailmycustomer
  harness=$(CARGO_TARGET_DIR=$target/bench-harness CARGO_PROFILE_BENCH_LTO=false \
    CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
    cargo bench --locked --no-run --bench mmc_bench --message-format=json-render-diagnostics | harness_path)
  bin=$target/release/mailmycustomer
fi
if [ -z "$harness" ]; then
  echo "bench/run.sh: could not find the built harness" >&2
  exit 1
fi
exec "$harness" --bin "$bin" "${args[@]}"
