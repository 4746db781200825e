#!/usr/bin/env bash
# Here, with PyPI: a Python package and what it needs beyond the GPU image
# (Python 3.12 with torch 2.11.0, torchvision, torchaudio and triton; see
# shared/gpu/requirements.txt), as wheels in one tar split into parts that
# each fit a device call's 64 MiB carry: OUT/NAME-N/NAME-wheels.tar.part.KK.
#
#   wheels-bundle.sh OUT NAME SPEC...
#   lm-eval: wheels-bundle.sh .gpu lmeval 'lm-eval[api]==0.4.13'
#            (SOURCE_ONLY="sqlitedict word2number rouge-score"; 155 MB)
#   SGLang:  wheels-bundle.sh .gpu sglang sglang==0.5.17            (1.4 GB)
#   Dynamo:  STUBS="vllm==0.26.0 transformers==5.17.0" \
#            wheels-bundle.sh .gpu dynamo 'ai-dynamo[vllm]==1.4.2'  (424 MB)
#
# On the host each gets a folder of its own, ahead of the vLLM site where it
# needs vLLM or LMCache (SGLang pins transformers 5.12.1 where the image
# has 5.17; Dynamo's runtime pydantic <= 2.13 where the site has 2.14):
#   cat NAME-wheels.tar.part.* | tar x
#   python3 -m pip install -q --no-index --no-deps --target NAME-site NAME-wheels/*.whl
#   PYTHONPATH=$PWD/NAME-site:$PWD/site python3 -m ...
# What the image (or the vLLM site) has is resolved against empty
# stand-ins of its versions (STUBS) instead of fetched: their real wheels
# pin CUDA libraries PyPI cannot meet for this platform anyway. Packages
# PyPI has only as source (SOURCE_ONLY, pure Python) are built here first.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 OUT NAME SPEC..." >&2; exit 2; }
out=$(mkdir -p "$1" && cd "$1" && pwd)
name=$2
shift 2
stubs="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 ${STUBS:-}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub" "$work/local" "$work/$name-wheels"
# shellcheck disable=SC2086 # one stand-in per word
python3 - "$work/stub" $stubs <<'PY'
import sys, zipfile
for spec in sys.argv[2:]:
    name, version = spec.split("==")
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(f"{sys.argv[1]}/{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: stand-in\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
PY
if [ -n "${SOURCE_ONLY:-}" ]; then
  # shellcheck disable=SC2086
  python3 -m pip wheel -q --no-deps -w "$work/local" $SOURCE_ONLY
fi
{
  printf '%s\n' "$@"
  for w in "$work"/stub/*.whl; do
    n=$(basename "$w"); echo "${n%%-*} @ file://$w"
  done
} > "$work/req.txt"
plat=(--python-version 3.12 --implementation cp --only-binary=:all:)
for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014; do
  plat+=(--platform "${p}_x86_64")
done
python3 -m pip install -q --dry-run --ignore-installed --report "$work/report.json" "${plat[@]}" \
  --find-links "$work/local" --target "$work/t" -r "$work/req.txt"
python3 - "$work/report.json" > "$work/urls.txt" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
    url = item["download_info"]["url"]
    # The image's triton serves its torch; stand-ins and local builds are file: URLs.
    if item["metadata"]["name"].lower() != "triton" and not url.startswith("file:"):
        print(url)
PY
(cd "$work/$name-wheels" && xargs -n 8 -P 4 curl -fsSL --remote-name-all < "$work/urls.txt")
cp "$work"/local/*.whl "$work/$name-wheels/" 2>/dev/null || true
echo "$name: $(find "$work/$name-wheels" -name '*.whl' | wc -l) wheels, $(du -sh "$work/$name-wheels" | cut -f1)"
tar -C "$work" -cf - "$name-wheels" | (cd "$work" && split -b 60M -d -a 2 - "$name-wheels.tar.part.")
rm -rf "$out/$name"-[0-9]*
n=0
for part in "$work/$name"-wheels.tar.part.*; do
  mkdir -p "$out/$name-$n"
  mv "$part" "$out/$name-$n/"
  n=$((n + 1))
done
echo "$name: $n parts under $out/$name-*"
