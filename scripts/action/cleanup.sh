#!/usr/bin/env bash
# The action's always-run last step: stops the engines and containers of this
# job's run (also after a cancel), never failing the job itself.
set -uo pipefail

if ! command -v lmcache-e2e >/dev/null 2>&1; then
  echo "lmcache-e2e is not installed; nothing to clean up"
  exit 0
fi
if [ -n "${RESULTS_DIR:-}" ] && [ -f "$RESULTS_DIR/state.json" ]; then
  lmcache-e2e cleanup --results-dir "$RESULTS_DIR" || echo "::warning::cleanup of $RESULTS_DIR failed"
fi
# Containers whose runner died before it wrote its state file.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  lmcache-e2e cleanup --stale || echo "::warning::cleanup of stale containers failed"
fi
exit 0
