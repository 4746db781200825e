#!/usr/bin/env bash
# On the H200, from /root/b (bundle parts, model, data, lmcache-e2e.xz):
# install, then run reset-check.toml; the results come back in $OUT.
set -u
cd /root/b
xz -dc lmcache-e2e.xz > lmcache-e2e && chmod +x lmcache-e2e
bash install.sh > "$OUT/install.txt" 2>&1 || { tail -5 "$OUT/install.txt"; exit 3; }
export PATH=/root/b/bin:$PATH
t0=$(date +%s)
timeout "${1:-420}" ./lmcache-e2e ci --suite reset-check.toml --results-dir /root/r/reset > "$OUT/console.txt" 2>&1
echo "rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$OUT/console.txt"
tar -C /root/r -cJf "$OUT/reset.tar.xz" --exclude=mmlu_data reset
tail -30 "$OUT/console.txt"
