#!/usr/bin/env bash
# Both metering modes, one run on this machine: a dev server per mode on
# the running emulators (eval "$(scripts/emulators.sh start)" first), the
# load command against each, one hot key. `make load` runs it.
#
#   CLIENTS=50 LEASE_CALLS=20000 TXN_CALLS=100 bash cmd/load/compare.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${FIRESTORE_EMULATOR_HOST:?start the emulators: eval \"\$(scripts/emulators.sh start)\"}"
: "${FIREBASE_AUTH_EMULATOR_HOST:?start the emulators: eval \"\$(scripts/emulators.sh start)\"}"
CLIENTS=${CLIENTS:-50}
LEASE_CALLS=${LEASE_CALLS:-20000}
TXN_CALLS=${TXN_CALLS:-100}
TXN_PORT=${TXN_PORT:-8611}
LEASE_PORT=${LEASE_PORT:-8612}
bin=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT
go build -o "$bin/dev" ./cmd/dev
go build -o "$bin/load" ./cmd/load
start() { # mode port
	METER_MODE=$1 PORT=$2 WEB_DIR=$bin "$bin/dev" >"$bin/$1.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		curl -fs "http://localhost:$2/api/plans" >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "the $1 dev server did not start:"; tail "$bin/$1.log"; exit 1
}
start txn "$TXN_PORT"
start lease "$LEASE_PORT"
echo "== METER_MODE=txn, $CLIENTS clients, one key"
"$bin/load" -url "http://localhost:$TXN_PORT" -clients "$CLIENTS" -calls "$TXN_CALLS" -label txn
echo "== METER_MODE=txn, 1 client, one key"
"$bin/load" -url "http://localhost:$TXN_PORT" -clients 1 -calls "$TXN_CALLS" -label txn-1
echo "== METER_MODE=lease, $CLIENTS clients, one key"
"$bin/load" -url "http://localhost:$LEASE_PORT" -clients "$CLIENTS" -calls "$LEASE_CALLS" -label lease
echo "== METER_MODE=lease, 1 client, one key"
"$bin/load" -url "http://localhost:$LEASE_PORT" -clients 1 -calls 2000 -label lease-1
