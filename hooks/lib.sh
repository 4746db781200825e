#!/usr/bin/env bash
# Shared by the plugin's hooks: its properties, as the agent passes them.
# shellcheck disable=SC2034 # used by the hooks that source this file

prefix=BUILDKITE_PLUGIN_LMCACHE_E2E

# The value of a plugin property (its name upper-cased, `-` as `_`).
prop() {
  local var="${prefix}_$1"
  printf '%s' "${!var:-}"
}

# A shard of a step with `parallelism` gets its own directory, so the
# shards' artifacts do not overwrite each other.
results_dir() {
  local dir
  dir=$(prop RESULTS_DIR)
  dir=${dir:-${BUILDKITE_BUILD_CHECKOUT_PATH:-$PWD}/lmcache-e2e-results}
  if [ -n "${BUILDKITE_PARALLEL_JOB:-}" ] && [ "$(prop MERGE)" != true ]; then
    dir="$dir-shard-$((BUILDKITE_PARALLEL_JOB + 1))"
  fi
  printf '%s' "$dir"
}
