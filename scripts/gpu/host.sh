# shellcheck shell=bash
# Sourced by the GPU-host drivers (real-controls.sh, systems.sh), run from
# /root/b holding the carried bundle: installs what they share. Each step
# is done once and says why it failed; `host_done FILE` marks the run over
# for whoever polls.
B=${B:-/root/b} R=${R:-/root/r}
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

# lmcache-e2e, vLLM + LMCache's site (shared/gpu's install.sh) and `lmcache`.
host_install() {
  [ -x lmcache-e2e ] || { xz -dc lmcache-e2e.xz > lmcache-e2e && chmod +x lmcache-e2e; } || return 1
  [ -d site ] || bash install.sh || return 1
  printf '#!/bin/sh\nexport PYTHONPATH=%s/site${PYTHONPATH:+:$PYTHONPATH}\nexec python3 -c "import sys; from lmcache.cli.main import main; sys.argv[0]=\\"lmcache\\"; sys.exit(main())" "$@"\n' "$B" > bin/lmcache
  chmod +x bin/lmcache
  export PATH=$B/bin:$PATH
}

# real-model/: SmolLM2-135M-Instruct's GGUF (real/) as a bf16 directory.
host_real_model() {
  [ -f real-model/config.json ] && return 0
  [ -f real/model.gguf ] || cat real/*.gguf.part.* > real/model.gguf 2>/dev/null || true
  local gguf conv
  gguf=$(find real -name "*.gguf" | head -1)
  python3 -m pip install -q --no-index --no-deps --target /tmp/gguf real/gguf-*.whl || return 1
  # Ours (scripts/gpu/, copied beside the driver) saves what shared/'s cannot.
  conv=$B/make-real-model.py; [ -f "$conv" ] || conv=real/make-real-model.py
  PYTHONPATH=/tmp/gguf:$B/site python3 "$conv" "$gguf" model real-model
}

# NAME-site/ from wheels-bundle.sh's NAME-site.tar.xz.part.* where they
# were carried (returns 1 where they were not): a folder of its own, put
# ahead of the vLLM site only by whoever runs the package.
host_wheels() {
  local name=$1
  [ -d "$name-site" ] && return 0
  ls "$name"-site.tar.xz.part.* >/dev/null 2>&1 || return 1
  stamp "unpacking $name"
  cat "$name"-site.tar.xz.part.* | tar xJ && rm -f "$name"-site.tar.xz.part.*
}

# bin/lm_eval on lmeval-site, where its wheels were carried.
host_lm_eval() {
  [ -x bin/lm_eval ] && return 0
  host_wheels lmeval || return 1
  # What the bundle left out as the vLLM site's is found there.
  printf '#!/bin/sh\nexport PYTHONPATH=%s/lmeval-site:%s/site\nexec python3 -m lm_eval "$@"\n' "$B" "$B" > bin/lm_eval
  chmod +x bin/lm_eval
}

host_done() { touch "$1"; }
