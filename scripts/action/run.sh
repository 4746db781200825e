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

results_dir=${LMCACHE_E2E_RESULTS_DIR:-${RUNNER_TEMP:-/tmp}/lmcache-e2e-results}
args+=(--results-dir "$results_dir")
# Known before the run, so the upload and cleanup steps find it even if the
# run dies early.
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "results-dir=$results_dir" >>"$GITHUB_OUTPUT"
fi

# The binary reads these itself; empty inputs must not count as set.
for var in MODEL LMCACHE_E2E_OVERLAY LMCACHE_E2E_PR_COMMENT LMCACHE_E2E_COMMENT_ID \
  LMCACHE_E2E_JUNIT LMCACHE_E2E_TEMPLATES LMCACHE_E2E_STRICT_REPORT GITHUB_TOKEN; do
  if [ -z "${!var:-}" ]; then
    unset "$var"
  fi
done

exec lmcache-e2e "${args[@]}"
