#!/usr/bin/env bash
# `make dev`: the emulators, the web app and the dev server. Emulators this
# script starts are stopped when the dev server stops (Ctrl-C); ones already
# running (another `make dev`, `make emulators`) are reused and left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export GOFLAGS=${GOFLAGS:--buildvcs=false}

if scripts/emulators.sh status >/dev/null 2>&1; then
	eval "$(scripts/emulators.sh env)"
else
	eval "$(scripts/emulators.sh start)"
	trap 'scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
fi
bash web/test.sh build
bin=$(mktemp -d)
go build -o "$bin/paymeter-dev" ./cmd/dev
"$bin/paymeter-dev"
