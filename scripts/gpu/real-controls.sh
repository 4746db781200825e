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
# them and starts this script with setsid (host.sh beside it); no `--only` in EXTRA, which
# would skip the controls; then poll for
# /root/r/real.done and fetch real.tar.xz through $OUT.
set -u
B=${B:-/root/b} R=${R:-/root/r}
mkdir -p "$R"
exec > >(tee -a "$R/driver-real.log") 2>&1
cd "$B" || exit 1
# shellcheck source=scripts/gpu/host.sh
. "$B/host.sh"
stamp install
host_install || { stamp "install failed"; host_done "$R/real.done"; exit 1; }
stamp "real weights"
host_real_model || { stamp "make-real-model failed"; host_done "$R/real.done"; exit 1; }
# lm_eval where its wheels were carried; the preset's lm_eval test is
# skipped, saying why, without it.
host_lm_eval || stamp "no lm_eval"
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
