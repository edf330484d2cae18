#!/usr/bin/env bash
# The web app's tests and the end-to-end journey against the real local
# stack: the emulators (already running, their hosts in the environment),
# the dev server with the Stripe stand-in, and the built web app, driven in
# Debian's chromium by web/e2e/journey.mjs. Screenshots: web/e2e/screenshots/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${FIRESTORE_EMULATOR_HOST:?start the emulators first (scripts/test.sh e2e does)}"
: "${FIREBASE_AUTH_EMULATOR_HOST:?start the emulators first (scripts/test.sh e2e does)}"

work=$(mktemp -d)
dev_pid=""
sample_pid=""
cleanup() {
	scripts/mailpit.sh stop "$work" || true
	[ -n "$sample_pid" ] && kill "$sample_pid" 2>/dev/null && { wait "$sample_pid" 2>/dev/null || true; }
	[ -n "$dev_pid" ] && kill "$dev_pid" 2>/dev/null && wait "$dev_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# The journey reads the notices' emails in Mailpit's web view.
eval "$(scripts/mailpit.sh start "$work")"

go build -o "$work/dev" ./cmd/dev
go build -o "$work/sampleapi" ./cmd/sampleapi
# The sample upstream, metered at /v1/ as make dev does.
ADDR=127.0.0.1:0 "$work/sampleapi" >"$work/sample.out" 2>&1 &
sample_pid=$!
for _ in $(seq 50); do grep -q '^sampleapi listening on ' "$work/sample.out" && break; sleep 0.1; done
sample=$(sed -n 's/^sampleapi listening on //p' "$work/sample.out")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
METER_UPSTREAMS="/v1/=$sample" PORT=$port PUBLIC_URL="http://127.0.0.1:$port" "$work/dev" >"$work/out" 2>"$work/err" &
dev_pid=$!
for _ in $(seq 100); do
	grep -q '^Paymeter running at ' "$work/out" && break
	kill -0 "$dev_pid" 2>/dev/null || break
	sleep 0.2
done
if ! grep -q '^Paymeter running at ' "$work/out"; then
	cat "$work/out" "$work/err" >&2
	echo "e2e.sh: the dev server did not start" >&2
	exit 1
fi

if ! E2E_BASE_URL="http://127.0.0.1:$port" E2E_MAILPIT_URL="$MAILPIT_URL" bash web/test.sh; then
	echo "e2e.sh: dev server log (last 40 lines):" >&2
	tail -n 40 "$work/err" >&2
	exit 1
fi
