#!/usr/bin/env bash
# Shared by the plugin's hooks: its properties, as the agent passes them.
# shellcheck disable=SC2034 # used by the hooks that source this file

prefix=BUILDKITE_PLUGIN_LMCACHE_E2E

# The value of a plugin property (its name upper-cased, `-` as `_`).
prop() {
  local var="${prefix}_$1"
  printf '%s' "${!var:-}"
}

results_dir() {
  local dir
  dir=$(prop RESULTS_DIR)
  printf '%s' "${dir:-${BUILDKITE_BUILD_CHECKOUT_PATH:-$PWD}/lmcache-e2e-results}"
}
