#!/usr/bin/env bash
# Here, with PyPI: a Python package and what it needs beyond the GPU host's
# image (scripts/gpu/image-packages.txt) and the vLLM site (shared/gpu's
# pinned requirements.txt), installed here into NAME-site/ for the image's
# Python 3.12 and packed as one xz tar split into parts that each fit a
# device call's 64 MiB beside the working tree: OUT/NAME-N/NAME-site.tar.xz.part.KK.
#
#   wheels-bundle.sh OUT NAME SPEC...
#   lm-eval: SOURCE_ONLY="sqlitedict word2number rouge-score" \
#            wheels-bundle.sh .gpu lmeval 'lm-eval[api]==0.4.13'    (163 MB of wheels, 13 kept, 5 MB of xz)
#   SGLang:  KEEP="transformers tokenizers" wheels-bundle.sh .gpu sglang sglang==0.5.17
#            (1,396 MB of wheels, 975 kept, 562 MB of xz in 12 parts)
#   Dynamo:  STUBS="vllm==0.26.0 transformers==5.17.0" \
#            wheels-bundle.sh .gpu dynamo 'ai-dynamo[vllm]==1.4.2'  (444 MB, 223 kept, 147 MB of xz)
#
# Left out, since the host has them: the image's packages (whatever their
# version there: a bet that a recent image meets the pins, named in each
# run's note), the vLLM site's at the same version, and a `-cu12` wheel
# whose `-cu13` twin is kept (the host's torch is built for CUDA 13). KEEP
# names packages kept anyway (SGLang pins transformers 5.12.1 where the
# image has 5.17, and that transformers wants tokenizers <= 0.23.0 where
# the image has 0.23.2: an H100 run's first SGLang start died of it). xz packs the installed files about half as small as the
# wheels' zip (sglang-kernel: 383 MB of wheel, 178 MB of xz).
#
# On the host, NAME-site/ goes ahead of the vLLM site for whoever runs it:
#   cat NAME-site.tar.xz.part.* | tar xJ
#   PYTHONPATH=$PWD/NAME-site:$PWD/site python3 -m ...
# The download is kept under target/gpu-wheels/NAME-wheels and reused.
# What the image has is resolved against empty stand-ins of its versions
# (STUBS) instead of fetched: their real wheels pin CUDA libraries PyPI
# cannot meet for this platform anyway. Packages PyPI has only as source
# (SOURCE_ONLY, pure Python) are built here first.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 OUT NAME SPEC..." >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
name=$2
shift 2
cache=$here/../../target/gpu-wheels
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plat=(--python-version 3.12 --implementation cp --only-binary=:all:)
for p in manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014; do
  plat+=(--platform "${p}_x86_64")
done

download() {
  local stubs="torch==2.11.0 torchvision==0.26.0 torchaudio==2.11.0 ${STUBS:-}"
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
  mv "$work/$name-wheels" "$cache/"
}
[ -d "$cache/$name-wheels" ] || download "$@"

# The wheels the host lacks, one path a line.
python3 - "$cache/$name-wheels" "$here/image-packages.txt" "$here/../../../shared/gpu/requirements.txt" \
  "${KEEP:-}" > "$work/kept.txt" <<'PY'
import os, re, sys
wheels, image_list, site_list, keep = sys.argv[1:5]
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
image = {norm(l.strip()) for l in open(image_list) if l.strip() and not l.startswith("#")}
site = dict(
    (norm(n), v) for n, v in
    (l.strip().split("==", 1) for l in open(site_list) if "==" in l and not l.startswith("#"))
)
keep = {norm(k) for k in keep.split()}
files = sorted(f for f in os.listdir(wheels) if f.endswith(".whl"))
names = {norm(f.split("-")[0]) for f in files}
left, kept = [], 0
for f in files:
    n, v = norm(f.split("-")[0]), f.split("-")[1]
    twin = n.endswith("-cu12") and n[:-5] + "-cu13" in names
    if n not in keep and (n in image or site.get(n) == v or twin):
        left.append(n)
    else:
        kept += 1
        print(os.path.join(wheels, f))
print(f"left out (the host has them): {' '.join(left)}", file=sys.stderr)
PY
mapfile -t kept < "$work/kept.txt"
python3 -m pip install -q --no-deps --no-compile "${plat[@]}" --target "$work/$name-site" "${kept[@]}"
echo "$name: ${#kept[@]} wheels kept of $(find "$cache/$name-wheels" -name '*.whl' | wc -l), installed $(du -sh "$work/$name-site" | cut -f1)"
# A call carries the working tree too: a part is 64 MiB less the tracked
# files and a MiB to spare.
tree=$(git -C "$here/../.." ls-files -z | (cd "$here/../.." && xargs -0 du -cb) | tail -1 | cut -f1)
part=$((64 * 1024 * 1024 - tree - 1024 * 1024))
tar -C "$work" -cf - "$name-site" | xz -T0 -6 | (cd "$work" && split -b "$part" -d -a 2 - "$name-site.tar.xz.part.")
rm -rf "$out/$name"-[0-9]*
n=0
for part in "$work/$name"-site.tar.xz.part.*; do
  mkdir -p "$out/$name-$n"
  mv "$part" "$out/$name-$n/"
  n=$((n + 1))
done
echo "$name: $n parts under $out/$name-* ($(cat "$out/$name"-*/"$name"-site.tar.xz.part.* | wc -c) bytes)"
