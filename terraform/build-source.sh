#!/usr/bin/env bash
# Builds the one zip that every Cloud Function is built from: go.mod and
# go.sum at its root, and the files of the root package and of every package
# of this module it imports (Go files and embedded files), as `go list` names
# them for linux/amd64, the platform the Go buildpack builds for. Everything
# else stays out by construction: tests (the buildpack must see one package
# at the root, not a package x_test too), the web app and its node_modules,
# tools/ and their nested modules, cmd/, .emulators, .git, Terraform state and
# variables, and any stray file such as a local .env.
#
# The zip is reproducible: the same files give the same bytes, so its MD5
# (which names the uploaded object) changes only when the code does.
#
# usage: terraform/build-source.sh [OUTPUT]   (default terraform/build/source.zip)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/terraform/build/source.zip}
case $out in /*) ;; *) out=$PWD/$out ;; esac

die() { echo "build-source: $*" >&2; exit 1; }
command -v zip >/dev/null || die "needs zip (apt-get install zip)"
command -v go >/dev/null || die "needs Go (go.mod names the version)"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

cd "$root"
[ -f go.mod ] || die "no go.mod in $root"
# shellcheck disable=SC2016 # a Go template, not shell
template='{{if and .Module .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .CgoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{range .SFiles}}{{$d}}/{{.}}
{{end}}{{range .HFiles}}{{$d}}/{{.}}
{{end}}{{range .CFiles}}{{$d}}/{{.}}
{{end}}{{end}}'
files=$(GOOS=linux GOARCH=amd64 GOWORK=off go list -mod=readonly -deps -f "$template" .) ||
  die "go list failed (does the root package build?)"
{
  echo go.mod
  [ ! -f go.sum ] || echo go.sum
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    case $f in "$root"/*) echo "${f#"$root"/}" ;; *) die "$f is outside $root" ;; esac
  done <<<"$files"
} | LC_ALL=C sort -u >"$stage/files"
grep -q '^[^/]*\.go$' "$stage/files" || die "no Go file at the root of $root"
mkdir -p "$stage/src"
while IFS= read -r f; do
  mkdir -p "$stage/src/$(dirname "$f")"
  cp "$f" "$stage/src/$f"
done <"$stage/files"

mkdir -p "$(dirname "$out")"
rm -f "$out"
cd "$stage/src"
# Fixed times and modes, sorted names, no extra attributes: reproducible bytes.
find . -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
find . -exec touch -h -d '2020-01-01T00:00:00Z' {} +
zip -X -q -D "$out" -@ <"$stage/files"
echo "$out ($(wc -l <"$stage/files") files, $(wc -c <"$out") bytes, md5 $(md5sum "$out" | cut -d' ' -f1))"
