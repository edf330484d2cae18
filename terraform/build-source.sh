#!/usr/bin/env bash
# Builds the one zip that every Cloud Function is built from: the Go module
# at the repository root (go.mod, go.sum, the root package and the packages it
# imports), without the web app, infrastructure, tools, local commands and
# tests. The zip is reproducible: the same files give the same bytes, so its
# MD5 (which names the uploaded object) changes only when the code does.
#
# usage: terraform/build-source.sh [OUTPUT]   (default terraform/build/source.zip)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/terraform/build/source.zip}
case $out in /*) ;; *) out=$PWD/$out ;; esac

command -v zip >/dev/null || { echo "build-source: needs zip (apt-get install zip)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage" "$stage.list"' EXIT

# Files git tracks or would track (untracked but not ignored), minus what the
# functions do not need. Tests are left out as the Go buildpack builds one
# package at the root and must not see a second (package x_test).
cd "$root"
git ls-files -z --cached --others --exclude-standard |
  grep -zv -E '^(web|terraform|tools|cmd|scripts|docs|\.ci|\.github)/|(^|/)testdata/|_test\.go$|(^|/)node_modules/|\.md$|^firebase\.json$|^\.firebaserc$' |
  while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue # deleted but still in the index
    mkdir -p "$stage/$(dirname "$f")"
    cp "$f" "$stage/$f"
    printf '%s\0' "$f"
  done >"$stage.list"

[ -s "$stage.list" ] || { echo "build-source: no source files found under $root" >&2; exit 1; }
grep -qz '^go\.mod$' "$stage.list" || { echo "build-source: go.mod missing" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
rm -f "$out"
cd "$stage"
# Fixed times and modes, sorted names, no extra attributes: reproducible bytes.
find . -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
find . -exec touch -h -d '2020-01-01T00:00:00Z' {} +
tr '\0' '\n' <"$stage.list" | LC_ALL=C sort | zip -X -q -D "$out" -@
echo "$out ($(wc -c <"$out") bytes, md5 $(md5sum "$out" | cut -d' ' -f1))"
