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
# With no METER_UPSTREAMS, a sample upstream (cmd/sampleapi) is metered at
# /v1/, so that the playground and curl make a real upstream call.
if [ -z "${METER_UPSTREAMS:-}" ]; then
	go build -o "$bin/sampleapi" ./cmd/sampleapi
	ADDR=127.0.0.1:${SAMPLEAPI_PORT:-9100} "$bin/sampleapi" &
	sample_pid=$!
	trap 'kill "$sample_pid" 2>/dev/null || true; scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
	export METER_UPSTREAMS="/v1/=http://127.0.0.1:${SAMPLEAPI_PORT:-9100}"
fi
"$bin/paymeter-dev"
