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
# Carry plan (64 MiB a call): the site parts, real/ (split in two), then each
# carried system's NAME-N folders, one a call, copied into /root/b; last the
# binary, data and these files, starting this script with setsid. Then poll
# /root/r/walls.txt and fetch systems.tar.xz through $OUT.
set -u
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
  ps -eo pid,pgid,stat,etimes,args --sort=pgid | grep -v -e ' ps ' -e grep > "$R/ps-after-$name.txt"
  nvidia-smi --query-gpu=memory.used --format=csv > "$R/gpu-after-$name.txt" 2>&1
}
if host_lm_eval; then
  run_system lm_eval "" --preset gpu-1-real --only lm_eval --set tests.lm_eval.data="$B/data.tar.xz"
else
  echo "lm_eval not carried" | tee -a "$R/walls.txt"
fi
if host_wheels dynamo; then
  pip_show=$(PYTHONPATH=$B/dynamo-site:$B/site python3 -c 'import importlib.metadata as m; print(m.version("ai-dynamo"))' 2>&1)
  echo "ai-dynamo $pip_show" | tee -a "$R/walls.txt"
  run_system dynamo "$B/dynamo-site:$B/site" --preset dynamo --set tests.mmlu.data="$B/data.tar.xz"
else
  echo "dynamo not carried" | tee -a "$R/walls.txt"
fi
if host_wheels sglang; then
  run_system sglang "$B/sglang-site:$B/site" --suite "$B/k3-sglang-one-gpu.toml"
else
  echo "sglang not carried" | tee -a "$R/walls.txt"
fi
finish
