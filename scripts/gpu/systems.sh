#!/usr/bin/env bash
# On the GPU host (run detached, from /root/b holding the vLLM bundle, real/,
# the MMLU data.tar.xz, lmcache-e2e.xz, and this folder's host.sh,
# make-real-model.py and k3-sglang-one-gpu.toml): issue 34's systems through
# the tool, each where wheels-bundle.sh's parts for it were carried:
#   lm_eval  twice against vLLM with LMCacheMPConnector (gpu-1-real --only lm_eval)
#   dynamo   Dynamo's MMLU A/B (presets/dynamo.toml) on real weights
#   sglang   SGLang with and without LMCache (k3-sglang-one-gpu.toml)
# Marks /root/r/systems.done; /root/r/systems.tar.xz holds everything to commit.
#
# Carry plan (64 MiB a call): the site parts, real/ (split in two), the
# binary, data, lm_eval's one part and these files, starting this script
# with setsid; lm_eval then runs while Dynamo's and SGLang's parts follow,
# one a call, copied into /root/b. A system runs once `touch
# /root/b/NAME.carried` says its parts are all there (or is skipped after
# WAIT_S seconds, saying so). Poll /root/r/walls.txt; each system's results
# are packed as it ends (/root/r/systems-N.tar.xz), everything at the end.
# SYSTEMS (default "lm_eval dynamo sglang") names which to run. A
# tokenizers wheel carried beside SGLang's parts goes into its folder
# (SGLang 0.5.17's transformers refuses the image's tokenizers 0.23).
set -u
SYSTEMS=" ${SYSTEMS:-lm_eval dynamo sglang} "
wanted() { [[ $SYSTEMS == *" $1 "* ]]; }
B=${B:-/root/b} R=${R:-/root/r}
mkdir -p "$R"
exec > >(tee -a "$R/driver-systems.log") 2>&1
cd "$B" || exit 1
# shellcheck source=scripts/gpu/host.sh
. "$B/host.sh"
finish() {
  find "$R" -name '*.log' -size +2M -exec sh -c 'head -c 400000 "$1" > "$1.head"; tail -c 400000 "$1" > "$1.tail"; rm "$1"' _ {} \;
  (cd "$R" && tar -cJf systems.tar.xz --exclude=mmlu_data --exclude=systems.tar.xz ./*)
  host_done "$R/systems.done"
  stamp "done"
}
stamp install
host_install || { stamp "install failed"; finish; exit 1; }
host_real_model || { stamp "make-real-model failed"; finish; exit 1; }
./lmcache-e2e --version
nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv > "$R/nvidia-smi-query.csv"

# One system: its folder first on PYTHONPATH (empty: none), then the tool.
run_system() {
  local name=$1 path=$2 t0
  shift 2
  stamp "$name"
  t0=$(date +%s)
  PYTHONPATH=$path ./lmcache-e2e ci --results-dir "$R/$name" --set run.model="$B/real-model" "$@" \
    > "$R/console-$name.txt" 2>&1
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$R/walls.txt"
  # The device harness's own command line carries that machine's paths.
  ps -eo pid,pgid,stat,etimes,args --sort=pgid | grep -v -e ' ps ' -e grep |
    sed 's|bash -c export OUT=.*|bash -c <the device harness, left out>|' > "$R/ps-after-$name.txt"
  nvidia-smi --query-gpu=memory.used --format=csv > "$R/gpu-after-$name.txt" 2>&1
  (cd "$R" && tar -cJf "systems-$name.tar.xz" --exclude='*.tar.xz' --exclude=mmlu_data "$name" ./*.txt ./*.log 2>/dev/null)
}

# Waits (WAIT_S, default 1500 s) for NAME's parts to be carried.
carried() {
  local name=$1 waited=0
  until [ -e "$B/$name.carried" ]; do
    [ "$waited" -ge "${WAIT_S:-1500}" ] && { echo "$name: parts not carried in ${WAIT_S:-1500} s" | tee -a "$R/walls.txt"; return 1; }
    sleep 5; waited=$((waited + 5))
  done
  host_wheels "$name"
}
if ! wanted lm_eval; then
  :
elif host_lm_eval; then
  run_system lm_eval "" --preset gpu-1-real --only lm_eval --set tests.lm_eval.data="$B/data.tar.xz"
else
  echo "lm_eval not carried" | tee -a "$R/walls.txt"
fi
if wanted dynamo && carried dynamo; then
  pip_show=$(PYTHONPATH=$B/dynamo-site:$B/site python3 -c 'import importlib.metadata as m; print(m.version("ai-dynamo"))' 2>&1)
  echo "ai-dynamo $pip_show" | tee -a "$R/walls.txt"
  run_system dynamo "$B/dynamo-site:$B/site" --preset dynamo --set tests.mmlu.data="$B/data.tar.xz" \
    --set run.readiness_timeout_secs=420
fi
if wanted sglang && carried sglang; then
  for w in "$B"/tokenizers-*.whl; do
    [ -e "$w" ] && python3 -m pip install -q --no-index --no-deps --upgrade --target sglang-site "$w"
  done
  run_system sglang "$B/sglang-site:$B/site" --suite "$B/k3-sglang-one-gpu.toml" \
    --set run.readiness_timeout_secs=420
fi
finish
