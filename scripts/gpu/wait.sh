#!/usr/bin/env bash
# Waits up to $1 seconds for the driver to finish, then copies to $OUT
# what it has so far (the finished stages' archives and the driver's log).
R=${R:-/root/r}
end=$(( $(date +%s) + ${1:-540} ))
while [ ! -e "$R/all.done" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 5; done
for f in main.tar.xz mp.tar.xz driver.log lmcache-transport.txt; do [ -e "$R/$f" ] && cp "$R/$f" "$OUT/"; done
[ -e "$R/all.done" ] && echo ALL-DONE || echo "still running at $(date -u +%H:%M:%S)"
tail -25 "$R/driver.log" 2>/dev/null
for n in main mp; do [ -e "$R/console-$n.txt" ] && { echo "-- console-$n (tail)"; tail -15 "$R/console-$n.txt"; }; done
ls "$R"
