#!/usr/bin/env bash
# Both metering modes side by side, in one run on this machine: two dev
# servers (two function instances) per mode on the running emulators
# (eval "$(scripts/emulators.sh start)" first), and the load command against
# them. `make load` runs it; docs/cost.md has its figures.
#
#   one hot key, 50 clients, one server; one client, one call after another;
#   the Zipf mix (1,000 keys, s=1.1, 50 clients, two servers);
#   50 revocations of a hot key served by both servers.
#
#   CLIENTS=50 LEASE_CALLS=20000 TXN_CALLS=100 ZIPF_CALLS=100000 ZIPF_WARMUP=40000 TXN_ZIPF_CALLS=2000 REVOCATIONS=50 bash cmd/load/compare.sh
#
# The lease Zipf mix first makes ZIPF_WARMUP calls left out of its figures:
# each instance's first lease on each of the 1,000 accounts (2,000 lease
# transactions) is a one-off, not the steady cost.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${FIRESTORE_EMULATOR_HOST:?start the emulators: eval \"\$(scripts/emulators.sh start)\"}"
: "${FIREBASE_AUTH_EMULATOR_HOST:?start the emulators: eval \"\$(scripts/emulators.sh start)\"}"
CLIENTS=${CLIENTS:-50}
LEASE_CALLS=${LEASE_CALLS:-20000}
TXN_CALLS=${TXN_CALLS:-100}
ZIPF_CALLS=${ZIPF_CALLS:-100000}
ZIPF_WARMUP=${ZIPF_WARMUP:-40000}
TXN_ZIPF_CALLS=${TXN_ZIPF_CALLS:-2000}
KEYS=${KEYS:-1000}
REVOCATIONS=${REVOCATIONS:-50}
PORT_BASE=${PORT_BASE:-8611}
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
	METER_MODE=$1 PORT=$2 WEB_DIR=$bin "$bin/dev" >"$bin/$1-$2.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		curl -fs "http://localhost:$2/api/plans" >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "the $1 dev server on $2 did not start:"; tail "$bin/$1-$2.log"; exit 1
}
T1=$PORT_BASE T2=$((PORT_BASE + 1)) L1=$((PORT_BASE + 2)) L2=$((PORT_BASE + 3))
start txn "$T1"; start txn "$T2"; start lease "$L1"; start lease "$L2"
txn="http://localhost:$T1" txn2="$txn,http://localhost:$T2"
lease="http://localhost:$L1" lease2="$lease,http://localhost:$L2"
echo "== hot key, $CLIENTS clients, one server"
"$bin/load" -url "$txn" -clients "$CLIENTS" -calls "$TXN_CALLS" -label txn
"$bin/load" -url "$lease" -clients "$CLIENTS" -calls "$LEASE_CALLS" -label lease
echo "== one client, one call after another"
"$bin/load" -url "$txn" -clients 1 -calls "$TXN_CALLS" -label txn-1
"$bin/load" -url "$lease" -clients 1 -calls 2000 -label lease-1
if [ "$KEYS" -gt 0 ]; then # KEYS=0 skips the mix: setting up 1,000 users on the emulator takes many minutes
	echo "== Zipf mix: $KEYS keys, s=1.1, $CLIENTS clients, two servers"
	"$bin/load" -url "$txn2" -clients "$CLIENTS" -keys "$KEYS" -zipf 1.1 -calls "$TXN_ZIPF_CALLS" -label txn-zipf
	"$bin/load" -url "$lease2" -clients "$CLIENTS" -keys "$KEYS" -zipf 1.1 -warmup "$ZIPF_WARMUP" -calls "$ZIPF_CALLS" -label lease-zipf
fi
echo "== revocation of a hot key, two servers"
"$bin/load" -url "$txn2" -clients 10 -calls 0 -revocations 10 -label txn
"$bin/load" -url "$lease2" -clients 10 -calls 0 -revocations "$REVOCATIONS" -label lease
