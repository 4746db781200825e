#!/usr/bin/env bash
# On the H200 (run detached, from the folder /root/b that holds the bundle
# parts, the model, the MMLU data and lmcache-e2e.xz): installs vLLM and
# LMCache, runs the gpu-1 preset through lmcache-e2e, then k3's MP path on
# one GPU, each with a capture sidecar; every stage marks /root/r/<stage>.done.
set -u
B=${B:-/root/b} R=${R:-/root/r}
mkdir -p "$R"
exec > >(tee -a "$R/driver.log") 2>&1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
cd "$B"
stamp install
[ -x lmcache-e2e ] || { xz -dc lmcache-e2e.xz > lmcache-e2e && chmod +x lmcache-e2e; }
bash install.sh || { stamp "install failed"; touch "$R/main.done" "$R/mp.done" "$R/all.done"; exit 1; }
printf '#!/bin/sh\nexport PYTHONPATH=%s/site${PYTHONPATH:+:$PYTHONPATH}\nexec python3 -c "import sys; from lmcache.cli.main import main; sys.argv[0]=\\"lmcache\\"; sys.exit(main())" "$@"\n' "$B" > bin/lmcache
chmod +x bin/lmcache
export PATH=$B/bin:$PATH
./lmcache-e2e --version; nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu --format=csv > "$R/nvidia-smi-query.csv"
cat "$R/nvidia-smi-query.csv"; free -g; nproc
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 2 > "$R/gpu-timeline.csv" 2>&1 &
smi=$!

stage() { # name, results dir, lmcache-e2e args...
  local name=$1 dir=$2; shift 2
  stamp "stage $name"
  python3 "$B/capture.py" "$dir" "$R/caps-$name" "$R/$name.done" &
  local cap=$!
  local t0=$(date +%s)
  ./lmcache-e2e ci --results-dir "$dir" "$@" > "$R/console-$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc wall=$(( $(date +%s) - t0 ))s" | tee "$R/$name.rc"
  ps -eo pid,pgid,stat,etimes,args --sort=pgid | grep -v -e ' ps ' -e grep > "$R/ps-after-$name.txt"
  nvidia-smi > "$R/nvidia-smi-after-$name.txt" 2>&1
  touch "$R/$name.done"; wait $cap
  tar -C "$R" -cJf "$R/$name.tar.xz" --exclude=mmlu_data "$(basename "$dir")" "caps-$name" "console-$name.txt" "$name.rc" "ps-after-$name.txt" "nvidia-smi-after-$name.txt" "gpu-timeline.csv" "nvidia-smi-query.csv"
  tail -40 "$R/console-$name.txt"
}

stage main "$R/main" --preset gpu-1 --set run.model=$B/model --set tests.mmlu.data=$B/data.tar.xz --set run.readiness_timeout_secs=600

stamp "mp: does lmcache server take k3's --transport?"
timeout 30 lmcache server --transport zmq --l1-size-gb 1 --port 6599 --http-port 8099 > "$R/lmcache-transport.txt" 2>&1; echo "rc=$?" >> "$R/lmcache-transport.txt"
tail -5 "$R/lmcache-transport.txt"
cp "$R/lmcache-transport.txt" "$R/caps-mp-transport.txt" 2>/dev/null
stage mp "$R/mp" --suite "$B/k3-one-gpu.toml"
kill $smi 2>/dev/null
stamp done
touch "$R/all.done"
