#!/usr/bin/env bash
# On the GPU host (run detached, from the folder /root/b that holds the
# bundle of shared/gpu/build-bundle.sh: site.part.*, site.sha256, install.sh,
# model/, real/, plus the MMLU data.tar.xz and lmcache-e2e.xz): installs vLLM
# and LMCache, turns real/'s GGUF into a bf16 model directory, then runs the
# gpu-1-real preset (its suite, then its controls: A/A, the in-process
# connector, injected corrupt and slow KV) with a capture sidecar. Marks
# /root/r/real.done; /root/r/real.tar.xz holds everything to commit.
#
# Carry plan (64 MiB a call, the machine kept warm between calls): one call
# per site.part.N (each copied into /root/b), one per lmeval-wheels part of
# `scripts/gpu/wheels-bundle.sh .gpu lmeval` (optional: lm_eval then runs), one with real/ (98 MB GGUF:
# split it in two with `split -n 2`, joined here), one with model/, the data
# and the binary, which copies this script and make-real-model.py beside
# them and starts this script with setsid; no `--only` in EXTRA, which
# would skip the controls; then poll for
# /root/r/real.done and fetch real.tar.xz through $OUT.
set -u
B=${B:-/root/b} R=${R:-/root/r}
mkdir -p "$R"
exec > >(tee -a "$R/driver-real.log") 2>&1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
cd "$B" || exit 1
stamp install
[ -x lmcache-e2e ] || { xz -dc lmcache-e2e.xz > lmcache-e2e && chmod +x lmcache-e2e; }
[ -d site ] || bash install.sh || { stamp "install failed"; touch "$R/real.done"; exit 1; }
printf '#!/bin/sh\nexport PYTHONPATH=%s/site${PYTHONPATH:+:$PYTHONPATH}\nexec python3 -c "import sys; from lmcache.cli.main import main; sys.argv[0]=\\"lmcache\\"; sys.exit(main())" "$@"\n' "$B" > bin/lmcache
chmod +x bin/lmcache
export PATH=$B/bin:$PATH
stamp "real weights"
if [ ! -f real-model/config.json ]; then
  [ -f real/model.gguf ] || cat real/*.gguf.part.* > real/model.gguf 2>/dev/null || true
  gguf=$(find real -name "*.gguf" | head -1)
  python3 -m pip install -q --no-index --no-deps --target /tmp/gguf real/gguf-*.whl
  # Ours (scripts/gpu/, copied beside this script) saves what shared/'s cannot.
  conv=$B/make-real-model.py; [ -f "$conv" ] || conv=real/make-real-model.py
  PYTHONPATH=/tmp/gguf:$B/site python3 "$conv" "$gguf" model real-model || { stamp "make-real-model failed"; touch "$R/real.done"; exit 1; }
fi
# lm_eval, where the carry brought its wheels (lmeval-wheels.tar.part.*):
# its own folder on PYTHONPATH, the vLLM site untouched; the preset's lm_eval
# test is skipped, saying why, without it.
if ls lmeval-wheels.tar.part.* >/dev/null 2>&1 && [ ! -x bin/lm_eval ]; then
  stamp "lm_eval"
  cat lmeval-wheels.tar.part.* | tar x && rm -f lmeval-wheels.tar.part.*
  if python3 -m pip install -q --no-index --find-links lmeval-wheels --target "$B/lmeval" 'lm-eval[api]==0.4.13'; then
    printf '#!/bin/sh\nexport PYTHONPATH=%s/lmeval\nexec python3 -m lm_eval "$@"\n' "$B" > bin/lm_eval
    chmod +x bin/lm_eval
  else
    stamp "lm_eval install failed"
  fi
fi
./lmcache-e2e --version
nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu --format=csv > "$R/nvidia-smi-query.csv"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 2 > "$R/gpu-timeline.csv" 2>&1 &
smi=$!
stamp "stage real"
python3 "$B/capture.py" "$R/real" "$R/caps-real" "$R/real.done" &
cap=$!
t0=$(date +%s)
# EXTRA: more lmcache-e2e arguments, e.g. a smaller scale when device time is short.
read -r -a extra <<<"${EXTRA:-}"
# A suite file in EXTRA (`--suite F`) replaces the preset.
suite=(--preset gpu-1-real)
[[ " ${EXTRA:-} " == *" --suite "* ]] && suite=()
./lmcache-e2e ci --results-dir "$R/real" "${suite[@]}" --set run.model="$B/real-model" \
  --set tests.mmlu.data="$B/data.tar.xz" --set tests.determinism.data="$B/data.tar.xz" \
  --set tests.lm_eval.data="$B/data.tar.xz" "${extra[@]}" > "$R/console-real.txt" 2>&1
echo "rc=$? wall=$(( $(date +%s) - t0 ))s" | tee "$R/real.rc"
ps -eo pid,pgid,stat,etimes,args --sort=pgid | grep -v -e ' ps ' -e grep > "$R/ps-after-real.txt"
nvidia-smi > "$R/nvidia-smi-after-real.txt" 2>&1
kill $smi 2>/dev/null
touch "$R/real.done"; wait $cap
# The whole engine logs are megabytes of LMCache warnings: keep heads and tails.
find "$R/real" -name '*.log' -size +2M -exec sh -c 'head -c 400000 "$1" > "$1.head"; tail -c 400000 "$1" > "$1.tail"; rm "$1"' _ {} \;
tar -C "$R" -cJf "$R/real.tar.xz" --exclude=mmlu_data real caps-real console-real.txt real.rc ps-after-real.txt nvidia-smi-after-real.txt gpu-timeline.csv nvidia-smi-query.csv driver-real.log
stamp "done"
