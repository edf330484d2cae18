#!/usr/bin/env bash
# Builds Mailpit (the local mail server and its web view) from its Go module,
# pinned in this directory's go.mod and go.sum, and prints the binary's path.
# The module ships its web UI's sources, not the bundle: when npm is there,
# the bundle is built first from the module's own package-lock.json (npm ci,
# no install scripts), else the binary serves the API and SMTP only. The
# binary is cached under the user cache by a hash of go.mod and go.sum.
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$DIR"
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0
hash=$(cat go.mod go.sum | sha256sum | cut -c1-16)
out=${XDG_CACHE_HOME:-$HOME/.cache}/paymeter/mailpit-web-$hash
bin=$out/mailpit
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
src=$(go mod download -json github.com/axllent/mailpit | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "mailpit: module source not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -R "$src/." "$work/"
chmod -R u+w "$work"
if command -v npm >/dev/null 2>&1; then
	echo "mailpit: building the web view (npm ci, esbuild)" >&2
	if ! (cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2 && npm run build >&2); then
		echo "mailpit: the web view did not build; the API and SMTP still work" >&2
	fi
else
	echo "mailpit: npm not found; building without the web view" >&2
fi
mkdir -p "$out"
(cd "$work" && go build -trimpath -o "$bin.$$" .)
mv "$bin.$$" "$bin"
echo "$bin"
