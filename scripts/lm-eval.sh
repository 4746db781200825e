#!/usr/bin/env bash
# Installs lm-eval (PyPI: lm-eval[api], no torch) into a venv under target/
# so the integration tests run the real lm_eval against llama.cpp's server.
# A venv that already answers is reused. Prints the lm_eval executable.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LMCACHE_E2E_LM_EVAL_VENV:-target/lmeval-venv}
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
version=0.4.13
ready() {
  [ -x "$venv/bin/lm_eval" ] &&
    "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('lm_eval') != '$version')" >/dev/null 2>&1
}
if ! ready; then
  echo "--- installing lm-eval[api]==$version into $venv" >&2
  start=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv"
  if ! "$venv/bin/pip" install --quiet --disable-pip-version-check "lm-eval[api]==$version"; then
    echo "scripts/lm-eval.sh: failed to install lm-eval[api]==$version from PyPI" >&2
    exit 3
  fi
  echo "--- lm-eval installed in $(($(date +%s) - start)) s" >&2
fi
echo "$venv/bin/lm_eval"
