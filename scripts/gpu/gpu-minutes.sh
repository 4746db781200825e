#!/usr/bin/env bash
# On the GPU host (run detached, from /root/b holding the bundle of
# shared/gpu/build-bundle.sh: site.part.*, site.sha256, install.sh, model/,
# plus the MMLU data.tar.xz and lmcache-e2e.xz): the gpu-1 preset whole,
# cold and then warm on the same machine, both passes keeping the engines'
# compile caches in one run.engine_cache directory and each pass under a
# fresh HOME (so nothing but that directory carries over). Marks
# /root/r/minutes.done; /root/r/minutes.tar.xz holds everything to commit.
#
# Carry plan (64 MiB a call, the machine kept warm between calls): one call
# per site.part.N folder (each copied into /root/b), then one with the
# binary and this script, which starts it with setsid; poll for
# /root/r/minutes.done and fetch minutes.tar.xz through $OUT.
set -u
B=${B:-/root/b} R=${R:-/root/r}
mkdir -p "$R"
exec > >(tee -a "$R/driver-minutes.log") 2>&1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
cd "$B" || exit 1
stamp install
[ -x lmcache-e2e ] || { xz -dc lmcache-e2e.xz > lmcache-e2e && chmod +x lmcache-e2e; }
[ -d site ] || bash install.sh || { stamp "install failed"; touch "$R/minutes.done"; exit 1; }
export PATH=$B/bin:$PATH
./lmcache-e2e --version
nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu --format=csv > "$R/nvidia-smi-query.csv"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 2 > "$R/gpu-timeline.csv" 2>&1 &
smi=$!
read -r -a extra <<<"${EXTRA:-}"
for pass in cold warm; do
  stamp "pass $pass"
  mkdir -p "$R/home-$pass"
  t0=$(date +%s)
  HOME="$R/home-$pass" ./lmcache-e2e ci --preset gpu-1 --results-dir "$R/$pass" \
    --set run.model="$B/model" --set tests.mmlu.data="$B/data.tar.xz" \
    --set run.engine_cache="$B/engine-cache" "${extra[@]}" > "$R/console-$pass.txt" 2>&1
  echo "$pass rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$R/walls.txt"
  ps -eo pid,pgid,stat,etimes,args --sort=pgid | grep -v -e ' ps ' -e grep > "$R/ps-after-$pass.txt"
  du -sh "$B/engine-cache"/* > "$R/engine-cache-after-$pass.txt" 2>&1
done
nvidia-smi > "$R/nvidia-smi-after.txt" 2>&1
kill $smi 2>/dev/null
# The whole engine logs are megabytes of LMCache warnings: keep heads and tails.
find "$R/cold" "$R/warm" -name '*.log' -size +2M -exec sh -c 'head -c 400000 "$1" > "$1.head"; tail -c 400000 "$1" > "$1.tail"; rm "$1"' _ {} \;
tar -C "$R" -cJf "$R/minutes.tar.xz" --exclude=mmlu_data cold warm console-cold.txt console-warm.txt walls.txt \
  ps-after-cold.txt ps-after-warm.txt engine-cache-after-cold.txt engine-cache-after-warm.txt \
  nvidia-smi-after.txt gpu-timeline.csv nvidia-smi-query.csv driver-minutes.log
touch "$R/minutes.done"
stamp "done"
