#!/usr/bin/env bash
# Here, with PyPI: the wheels of lm-eval[api] 0.4.13 and its dependencies
# for the GPU host's Python (3.12, x86_64 Linux), in one tar split into
# parts that each fit a device call's 64 MiB carry:
# OUT/lmeval-N/lmeval-wheels.tar.part.K. scripts/gpu/real-controls.sh
# installs them into a folder of their own on the host (no network there),
# so gpu-1-real's lm_eval test runs. Three pure-Python dependencies ship
# only as source: they are built into wheels here first.
set -euo pipefail
out=${1:-.gpu}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip wheel -q --no-deps -w "$work/local" sqlitedict word2number rouge-score
python3 -m pip download -q 'lm-eval[api]==0.4.13' --python-version 3.12 --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any --find-links "$work/local" -d "$work/lmeval-wheels"
cp "$work"/local/*.whl "$work/lmeval-wheels/"
tar -C "$work" -cf "$work/lmeval-wheels.tar" lmeval-wheels
(cd "$work" && split -b 60M -d -a 1 lmeval-wheels.tar lmeval-wheels.tar.part.)
n=0
for part in "$work"/lmeval-wheels.tar.part.*; do
  mkdir -p "$out/lmeval-$n"
  mv "$part" "$out/lmeval-$n/"
  n=$((n + 1))
done
du -sh "$out"/lmeval-*
