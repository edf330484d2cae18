#!/usr/bin/env bash
# `make dev`: the emulators, the web app and the dev server. Emulators this
# script starts are stopped when the dev server stops (Ctrl-C); ones already
# running (another `make dev`, `make emulators`) are reused and left alone.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export GOFLAGS=${GOFLAGS:--buildvcs=false}

mail=$(mktemp -d)
stop_emulators=""
cleanup() {
	scripts/mailpit.sh stop "$mail" || true
	rm -rf "$mail"
	[ -z "$stop_emulators" ] || scripts/emulators.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
if scripts/emulators.sh status >/dev/null 2>&1; then
	eval "$(scripts/emulators.sh env)"
else
	eval "$(scripts/emulators.sh start)"
	stop_emulators=1
fi
# The notices' emails go to a local Mailpit unless SMTP_URL says otherwise.
if [ -z "${SMTP_URL:-}" ]; then
	eval "$(scripts/mailpit.sh start "$mail")"
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
