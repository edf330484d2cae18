#!/usr/bin/env bash
# `make rehearse`: builds the deployable source zip and runs it the way Cloud
# Functions runs it (one process per function, production configuration,
# behind a front that behaves like Firebase Hosting and Cloud Run), against
# the Firestore and Auth emulators, the Cloud Tasks emulator and stripe-mock,
# and checks the product through it (cmd/rehearse). Exits 0 only if every
# check passed.
#
#   scripts/rehearse.sh          run the checks, print each function's cold start and RSS
#   scripts/rehearse.sh serve    the same, then keep it up: "Paymeter rehearsal running at <url>"
#
# Reuses running emulators (FIRESTORE_EMULATOR_HOST and FIREBASE_AUTH_EMULATOR_HOST
# set and answering, or the ones scripts/emulators.sh runs); otherwise starts
# them and stops them at the end. Builds web/dist when it is missing. With
# CI=true a missing tool is a failure, never a skip.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export GOFLAGS=${GOFLAGS:--buildvcs=false}

args=()
case "${1:-}" in
"") ;;
serve) args+=(-serve) ;;
*) echo "usage: scripts/rehearse.sh [serve]" >&2; exit 2 ;;
esac

for tool in go zip; do
	command -v "$tool" >/dev/null || { echo "rehearse.sh: FAILED: needs $tool" >&2; exit 1; }
done

up() { [ -n "${FIRESTORE_EMULATOR_HOST:-}" ] && [ -n "${FIREBASE_AUTH_EMULATOR_HOST:-}" ] &&
	curl -sf --max-time 2 "http://$FIRESTORE_EMULATOR_HOST/" >/dev/null &&
	curl -sf --max-time 2 "http://$FIREBASE_AUTH_EMULATOR_HOST/" >/dev/null; }
if ! up; then
	if scripts/emulators.sh status >/dev/null 2>&1; then
		eval "$(scripts/emulators.sh env)"
	else
		eval "$(scripts/emulators.sh start)"
		trap 'scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
	fi
fi

if [ ! -f web/dist/index.html ]; then
	echo "rehearse.sh: building web/dist (web/test.sh build)"
	if ! bash web/test.sh build >/tmp/paymeter-rehearse-web.$$.log 2>&1; then
		tail -n 20 /tmp/paymeter-rehearse-web.$$.log >&2
		rm -f /tmp/paymeter-rehearse-web.$$.log
		if [ "${CI:-}" = true ]; then
			echo "rehearse.sh: FAILED: web/dist could not be built" >&2
			exit 1
		fi
		echo "rehearse.sh: web/dist could not be built; the rehearsal serves the API only" >&2
	fi
	rm -f /tmp/paymeter-rehearse-web.$$.log
fi

# Built, then run as a child that gets our INT/TERM, so that it ends the
# processes it started (go run would not pass the signal on).
bin_dir=$(mktemp -d)
go build -o "$bin_dir/rehearse" ./cmd/rehearse
"$bin_dir/rehearse" "${args[@]+"${args[@]}"}" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
rc=0
wait "$pid" || rc=$?
# A trapped signal interrupts the first wait: wait for the child to finish.
if kill -0 "$pid" 2>/dev/null; then wait "$pid" || rc=$?; fi
rm -rf "$bin_dir"
exit "$rc"
