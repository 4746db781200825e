#!/usr/bin/env bash
# The long fuzzing run: every reader of outside bytes (the `fuzz_*`
# property tests: results.json, suite TOML and --set, MMLU CSV and archives,
# prompt JSONL, vllm bench and lm_eval result files, nvidia-smi output, the
# SSE stream) on inputs mutated from the committed corpus in
# tests/fixtures/fuzz/. Each runs CASES cases (default 100000; .ci/run runs
# 256 as part of the tests); prints each target's cases and seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-100000}
cargo nextest --version >/dev/null 2>&1 || { echo "scripts/fuzz.sh: needs cargo-nextest" >&2; exit 3; }
targets=$(cargo nextest list --bin lmcache-e2e -E 'test(/fuzz_/)' --message-format oneline 2>/dev/null | awk '{print $2}')
for t in $targets; do
  start=$(date +%s)
  PROPTEST_CASES=$cases cargo nextest run --bin lmcache-e2e --no-fail-fast -E "test(=$t)" >/tmp/lmcache-e2e-fuzz.log 2>&1 || {
    echo "$t: FAILED after $(( $(date +%s) - start )) s (see /tmp/lmcache-e2e-fuzz.log)"
    grep -E "minimal failing input|panicked" /tmp/lmcache-e2e-fuzz.log | head -5
    continue
  }
  echo "$t: $cases cases, $(( $(date +%s) - start )) s, no failure"
done
