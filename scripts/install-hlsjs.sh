#!/usr/bin/env bash
# hls.js for the web pages, from its npm package at set-up time (no third-party minified code in
# the repository). Copies dist/hls.min.js (and its licence) to periscope_ingest/web/static/vendor/,
# which git ignores. Without it the pages fall back to the browser's native HLS (Safari, iOS).
# HLSJS_VERSION picks the release (default: the newest 1.x); --force reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=periscope_ingest/web/static/vendor
if [ -s "$dest/hls.min.js" ] && [ "${1:-}" != "--force" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-hlsjs: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent "hls.js@${HLSJS_VERSION:-1}" >/dev/null )
tar -xzf "$work"/hls.js-*.tgz -C "$work"
[ -s "$work/package/dist/hls.min.js" ] || { echo "install-hlsjs: no dist/hls.min.js in the package" >&2; exit 1; }
mkdir -p "$dest"
cp "$work/package/dist/hls.min.js" "$dest/hls.min.js.tmp"
mv "$dest/hls.min.js.tmp" "$dest/hls.min.js"
cp "$work/package/LICENSE" "$dest/hls.js-LICENSE" 2>/dev/null || true
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$work/package/package.json" | head -1)
echo "$version" > "$dest/hls.js-VERSION"
echo "hls.js $version installed in $dest"
