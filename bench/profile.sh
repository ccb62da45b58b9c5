#!/usr/bin/env bash
# Profiles the server during the benchmarks with perf and prints where its CPU time goes,
# grouped by pipeline stage (BENCHMARKS.md, "What the profiles showed").
#
#   bash bench/profile.sh                 intake and e2e phases (the default)
#   bash bench/profile.sh e2e             one phase
#   bash bench/profile.sh storm           the storm's second round at each level (with
#                                         MMC_BENCH_STORM_SKIP_EMPTY=1: pre-filled only)
#   bash bench/profile.sh --report DIR    only print the breakdown of profiles already in DIR
#
# The server is built like the release binary (fat LTO) but keeps its symbols, in its own
# target directory (target/bench-profile), so target/release is left alone. perf attaches to
# the server process only (perf record -p), with DWARF call graphs; profiles go to
# $MMC_BENCH_PERF_DIR (default /tmp/mmc-bench-perf). Needs perf (Debian: linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."

# Sums the samples of one profile into buckets: the first pattern (in this order) that
# appears anywhere in a sample's call stack names its bucket.
buckets() {
  perf script -i "$1" -F comm,ip,sym 2>/dev/null | awk '
    function bucket(comm, s) {
      if (s ~ /Envelope::parse/) return "intake: Envelope::parse (serde_json::Value of the body)"
      if (s ~ /signature::verify/) return "intake: signature::verify (HMAC)"
      if (s ~ /integrations::get/) return "intake: integrations::get (pool, per request)"
      if (s ~ /web::webhook|poem::server::serve_connection|hyper::proto/) return "intake: HTTP (hyper, poem, handler)"
      if (comm ~ /event-writer/ && s ~ /sqlite3WalCheckpoint/) return "writer: WAL auto-checkpoint inside intake commits"
      if (comm ~ /event-writer/ && s ~ /unixSync|fdatasync|fsync|sync_file/) return "writer: fsync of the WAL"
      if (comm ~ /event-writer/ && s ~ /pagerWalFrames/) return "writer: WAL frame writes"
      if (comm ~ /event-writer/) return "writer: inserts, other (event-writer thread)"
      if (comm ~ /checkpointer/) return "checkpointer thread: passes and write-out (off the write lock)"
      if (s ~ /sqlite3WalCheckpoint/) return "WAL auto-checkpoint in processor or sender commits"
      if (s ~ /pipeline::record|commit_done|start_commit/) return "processor: record (deliveries insert, events finish, commit)"
      if (s ~ /Processor::load|events::due_after|postponed_before/) return "processor: load (due events, integrations, templates)"
      if (s ~ /html_to_text|html2text/) return "processor: html_to_text (html2text)"
      if (s ~ /Renderer::render|minijinja/) return "processor: Renderer::render (minijinja)"
      if (s ~ /Preparer::prepare|trigger::classify/) return "processor: prepare, other (JSON parse, classify, choose)"
      if (s ~ /claim_due/) return "sender: deliveries::claim_due"
      if (s ~ /commit_outcomes|record_attempts/) return "sender: commit of outcomes (record_attempts)"
      if (s ~ /mail_builder|Mailer::build/) return "sender: build the MIME message (mail-builder)"
      if (s ~ /SmtpConnection|mail_send|Sender::/) return "sender: SMTP I/O"
      if (s ~ /health::healthz/) return "healthz"
      if (s ~ /sqlite3/) return "SQLite, caller not resolved"
      if (s ~ /tokio::runtime|parking_lot|futex|schedule/) return "tokio runtime, scheduling, wake-ups"
      return "other (" comm ")"
    }
    function flush() {
      if (header == "") return
      b = bucket(comm, stack); n[b]++; total++
      header = ""; stack = ""
    }
    /^\t/ { stack = stack " " $0; next }
    /^[[:space:]]*$/ { next }
    { flush(); header = $0; comm = $1 }
    END {
      flush()
      for (b in n) printf "%6.1f%%  %s\n", 100 * n[b] / total, b
    }' | sort -rn
}

perf_dir=${MMC_BENCH_PERF_DIR:-/tmp/mmc-bench-perf}
if [ "${1:-}" = "--report" ]; then
  perf_dir=${2:?usage: bench/profile.sh --report DIR}
else
  command -v perf >/dev/null 2>&1 || { echo "bench/profile.sh: perf is missing (Debian: apt-get install linux-perf)" >&2; exit 1; }
  phases=("$@")
  [ ${#phases[@]} -gt 0 ] || phases=(intake e2e)
  # Where cargo puts its builds (CARGO_TARGET_DIR when set), as in bench/run.sh.
  target=${CARGO_TARGET_DIR:-target}
  CARGO_TARGET_DIR=$target/bench-profile CARGO_PROFILE_RELEASE_STRIP=false \
    CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --locked --release --bin mailmycustomer
  harness=$(CARGO_TARGET_DIR=$target/bench-harness CARGO_PROFILE_BENCH_LTO=false \
    CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
    cargo bench --locked --no-run --bench mmc_bench --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*/mmc_bench-[^"]*"' | tail -n 1 | sed 's/^"executable":"//; s/"$//')
  mkdir -p "$perf_dir"
  rm -f "$perf_dir"/*.perf.data
  MMC_BENCH_PERF_DIR=$perf_dir "$harness" --bin "$target/bench-profile/release/mailmycustomer" "${phases[@]}"
fi

# Per thread name (tids merged), from perf stat --per-thread: fsyncs (intake commits and
# checkpoints), SQLite busy-handler sleeps (clock_nanosleep) and futex calls (lock hand-offs).
syscalls() {
  awk '$2 ~ /^[0-9,]+$/ && $3 ~ /^syscalls:/ {
      thread = $1; sub(/-[0-9]+$/, "", thread)
      call = $3; sub(/^syscalls:sys_enter_/, "", call)
      count = $2; gsub(/,/, "", count)
      n[thread " " call] += count
    }
    END { for (k in n) if (n[k] > 0) printf "%10d  %s\n", n[k], k }' "$1" | sort -rn
}

for data in "$perf_dir"/*.perf.data; do
  [ -e "$data" ] || continue
  name=$(basename "$data" .perf.data)
  samples=$(perf report -i "$data" --stdio --sort comm 2>/dev/null | awk '/^# Samples:/ && !n {print $3; n = 1}')
  echo "### $name: where the server's CPU time goes ($samples samples at 299 Hz)"
  echo
  buckets "$data"
  echo
  if [ -s "$perf_dir/$name.syscalls.txt" ]; then
    echo "System calls by thread (perf stat):"
    echo
    syscalls "$perf_dir/$name.syscalls.txt"
    echo
  fi
done
