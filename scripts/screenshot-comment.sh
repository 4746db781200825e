#!/usr/bin/env bash
# Screenshots the report as GitHub shows it at comment width: a passing and
# a failing run of the sim preset, their summary.md (the PR comment's body)
# rendered by cmark-gfm with GitHub's extensions and github-markdown-css (npm)
# in headless Chromium, 820 px wide. Mermaid charts stay code blocks here
# (GitHub draws them with a script). Writes docs/comment-passing.png and
# docs/comment-failing.png.
# Needs (Debian): chromium cmark-gfm npm. Usage: scripts/screenshot-comment.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/lmcache-e2e}
[ -x "$bin" ] || cargo build --release --locked
for tool in chromium cmark-gfm npm; do
  command -v "$tool" >/dev/null || { echo "scripts/screenshot-comment.sh: $tool is missing (Debian: apt-get install chromium cmark-gfm npm)" >&2; exit 3; }
done
css_dir=target/github-markdown-css
if [ ! -f "$css_dir/github-markdown-light.css" ]; then
  mkdir -p "$css_dir"
  (cd "$css_dir" && npm pack --silent github-markdown-css@5 >/dev/null && tar xzf github-markdown-css-*.tgz --strip-components=1)
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" ci --preset sim --quiet --results-dir "$work/passing" >/dev/null || true
# Without LMCache's store the engine is no faster than the baseline.
"$bin" ci --preset sim --quiet --results-dir "$work/failing" \
  --set engines.lmcache.sim.external_cache_tokens=0 >/dev/null || true
for run in passing failing; do
  {
    printf '<!doctype html><meta charset="utf-8"><link rel="stylesheet" href="%s">' "$PWD/$css_dir/github-markdown-light.css"
    printf '<body style="margin:0;background:#fff"><article class="markdown-body" style="box-sizing:border-box;width:820px;padding:16px">'
    cmark-gfm --unsafe --extension table --extension autolink --extension tagfilter --extension strikethrough "$work/$run/summary.md"
    printf '</article></body>'
  } >"$work/$run.html"
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=820,2600 \
    --screenshot="$PWD/docs/comment-$run.png" "file://$work/$run.html" 2>/dev/null
  echo "docs/comment-$run.png"
done
