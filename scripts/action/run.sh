#!/usr/bin/env bash
# The action's run step: maps the action's inputs (passed as environment
# variables, never interpolated into this script) to `lmcache-e2e ci`.
set -euo pipefail

# Old input names still work, with a warning on the job's page: the action,
# the Buildkite plugin and the CLI share one vocabulary (the CLI's flags).
deprecated() {
  # $1 old input, $2 new input, $3 the old one's variable, $4 the new one's
  if [ -n "${!3:-}" ]; then
    echo "::warning title=lmcache-e2e::the input \`$1\` is deprecated; use \`$2\`"
    printf -v "$4" '%s' "${!3}"
  fi
}
[ -n "${LMCACHE_E2E_ONLY:-}" ] || deprecated tests only LMCACHE_E2E_TESTS LMCACHE_E2E_ONLY
[ -n "${LMCACHE_E2E_OVERLAY:-}" ] || deprecated thresholds overlay LMCACHE_E2E_THRESHOLDS LMCACHE_E2E_OVERLAY
# These two have defaults, so an old input given explicitly wins.
deprecated comment pr-comment LMCACHE_E2E_COMMENT LMCACHE_E2E_PR_COMMENT
deprecated upload-artifact upload-results LMCACHE_E2E_UPLOAD_ARTIFACT LMCACHE_E2E_UPLOAD
export LMCACHE_E2E_OVERLAY LMCACHE_E2E_PR_COMMENT

args=(ci)
if [ -n "${LMCACHE_E2E_SUITE:-}" ]; then
  args+=(--suite "$LMCACHE_E2E_SUITE")
elif [ -n "${LMCACHE_E2E_PRESET:-}" ]; then
  args+=(--preset "$LMCACHE_E2E_PRESET")
fi
if [ -n "${LMCACHE_E2E_ONLY:-}" ]; then
  args+=(--only "$LMCACHE_E2E_ONLY")
fi
# One KEY=VALUE per line.
while IFS= read -r line; do
  line=${line#"${line%%[![:space:]]*}"}
  line=${line%"${line##*[![:space:]]}"}
  [ -n "$line" ] && args+=(--set "$line")
done <<<"${LMCACHE_E2E_SET:-}"
if [ -n "${LMCACHE_E2E_ENGINE_CACHE:-}" ]; then
  args+=(--set "run.engine_cache=$LMCACHE_E2E_ENGINE_CACHE")
fi
if [ "${LMCACHE_E2E_SEQUENTIAL:-false}" = true ]; then
  args+=(--sequential)
fi
if [ "${LMCACHE_E2E_NO_CONTROLS:-false}" = true ]; then
  args+=(--no-controls)
fi
if [ "${LMCACHE_E2E_DRY_RUN:-false}" = true ]; then
  args+=(--dry-run)
fi

results_dir=${LMCACHE_E2E_RESULTS_DIR:-${RUNNER_TEMP:-/tmp}/lmcache-e2e-results}
args+=(--results-dir "$results_dir")
# The directory is the action's: what an earlier run on this runner left
# there is cleared, not uploaded with this run's results.
if [ "${LMCACHE_E2E_OVERWRITE:-true}" != false ]; then
  args+=(--overwrite)
fi
unset LMCACHE_E2E_OVERWRITE

# One artifact name per job of a run (two jobs' uploads of one name clash):
# the job, what it runs, its shard and the run attempt.
upload=${LMCACHE_E2E_UPLOAD:-true}
if [ -z "${LMCACHE_E2E_ARTIFACT_NAME:-}" ]; then
  what=${LMCACHE_E2E_COMMENT_ID:-}
  [ -n "$what" ] || what=$(basename "${LMCACHE_E2E_SUITE:-}" .toml)
  [ -n "$what" ] || what=${LMCACHE_E2E_PRESET:-sim}
  [ -z "${LMCACHE_E2E_SHARD:-}" ] || what="$what-shard-${LMCACHE_E2E_SHARD%%/*}"
  LMCACHE_E2E_ARTIFACT_NAME="lmcache-e2e-results-${GITHUB_JOB:-job}-$what-${GITHUB_RUN_ATTEMPT:-1}"
fi
# Artifact names refuse these characters.
LMCACHE_E2E_ARTIFACT_NAME=$(printf '%s' "$LMCACHE_E2E_ARTIFACT_NAME" | tr '":<>|*?\\/\r\n' '-')
if [ "$upload" = true ]; then
  export LMCACHE_E2E_ARTIFACT_NAME
else
  unset LMCACHE_E2E_ARTIFACT_NAME
fi
# Known before the run, so the upload and cleanup steps find it even if the
# run dies early.
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "results-dir=$results_dir"
    echo "upload=$upload"
    echo "artifact-name=${LMCACHE_E2E_ARTIFACT_NAME:-}"
  } >>"$GITHUB_OUTPUT"
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
