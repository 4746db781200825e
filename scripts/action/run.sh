#!/usr/bin/env bash
# The action's run step: maps the action's inputs (passed as environment
# variables, never interpolated into this script) to `lmcache-e2e ci`.
set -euo pipefail

args=(ci)
if [ -n "${LMCACHE_E2E_SUITE:-}" ]; then
  args+=(--suite "$LMCACHE_E2E_SUITE")
elif [ -n "${LMCACHE_E2E_PRESET:-}" ]; then
  args+=(--preset "$LMCACHE_E2E_PRESET")
fi
if [ -n "${LMCACHE_E2E_TESTS:-}" ]; then
  args+=(--only "$LMCACHE_E2E_TESTS")
fi
# One KEY=VALUE per line.
while IFS= read -r line; do
  line=${line#"${line%%[![:space:]]*}"}
  line=${line%"${line##*[![:space:]]}"}
  [ -n "$line" ] && args+=(--set "$line")
done <<<"${LMCACHE_E2E_SET:-}"
if [ "${LMCACHE_E2E_SEQUENTIAL:-false}" = true ]; then
  args+=(--sequential)
fi
if [ "${LMCACHE_E2E_DRY_RUN:-false}" = true ]; then
  args+=(--dry-run)
fi

results_dir=${LMCACHE_E2E_RESULTS_DIR:-${RUNNER_TEMP:-/tmp}/lmcache-e2e-results}
args+=(--results-dir "$results_dir")
# Known before the run, so the upload and cleanup steps find it even if the
# run dies early.
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "results-dir=$results_dir" >>"$GITHUB_OUTPUT"
fi

# The binary reads these itself; empty inputs must not count as set.
for var in MODEL LMCACHE_E2E_OVERLAY LMCACHE_E2E_PR_COMMENT LMCACHE_E2E_COMMENT_ID \
  LMCACHE_E2E_JUNIT LMCACHE_E2E_TEMPLATES LMCACHE_E2E_STRICT_REPORT GITHUB_TOKEN \
  LMCACHE_E2E_SHARD LMCACHE_E2E_DURATIONS_FROM LMCACHE_E2E_HISTORY LMCACHE_E2E_HISTORY_APPEND; do
  if [ -z "${!var:-}" ]; then
    unset "$var"
  fi
done

# Merge mode: the shards' directories (one per line, globs expanded here)
# into one results directory, reported as one run.
if [ -n "${LMCACHE_E2E_MERGE:-}" ]; then
  merge=(merge)
  while IFS= read -r line; do
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    [ -z "$line" ] && continue
    # shellcheck disable=SC2206 # the glob is meant to expand
    matched=($line)
    merge+=("${matched[@]}")
  done <<<"$LMCACHE_E2E_MERGE"
  exec lmcache-e2e "${merge[@]}" --into "$results_dir"
fi

exec lmcache-e2e "${args[@]}"
