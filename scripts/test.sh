#!/usr/bin/env bash
# `make test`: every test of the project, in order of speed. With an
# argument it runs one stage: check, go, rehearse, terraform, web, e2e, bench.
#
# Emulators are started and stopped here; with CI=true a missing emulator or
# browser is a failure, never a skip.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export GOFLAGS=${GOFLAGS:--buildvcs=false}

say() { printf '\n== %s\n' "$*"; }

check() {
	say "gofmt, go vet, the domain imports no SDK"
	local bad
	bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './web/*') 2>/dev/null || true)
	if [ -n "$bad" ]; then
		echo "gofmt would change:"; echo "$bad"; exit 1
	fi
	go vet ./...
	# billing is the domain: standard library only, and no net/http.
	local deps
	deps=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./billing | grep -v '^github.com/paymeter/paymeter/billing$' || true)
	if [ -n "$deps" ] || go list -deps ./billing | grep -qx 'net/http'; then
		echo "billing/ must import only the standard library without net/http; it imports: $deps"; exit 1
	fi
}

emulators_up=""
start_emulators() {
	[ -n "$emulators_up" ] && return
	say "emulators"
	if scripts/emulators.sh status >/dev/null 2>&1; then
		# Reuse the ones `make dev` runs, and leave them running.
		eval "$(scripts/emulators.sh env)"
	else
		eval "$(scripts/emulators.sh start)"
		trap 'scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
	fi
	emulators_up=1
}

gotest() {
	start_emulators
	say "go test -race (unit, Firestore and Auth emulators, security rules, stripe-mock, Cloud Tasks emulator)"
	# -p 1: one package at a time, so that the emulator-heavy tests (the
	# webhook storm, the SIGKILL test) do not stall each other's transactions.
	go test -race -count=1 -p 1 -timeout 30m ./...
}

bench() {
	start_emulators
	say "benchmarks"
	go test -run '^$' -bench . -benchmem -count=1 ./billing ./store ./lease
}

rehearse() {
	start_emulators
	say "rehearsal: the deployable zip built as the Go buildpack builds it, one process per function behind Hosting and Cloud Run"
	bash scripts/rehearse.sh
}

e2e() {
	start_emulators
	say "web app: units, build, and the journey in chromium against the dev server"
	bash scripts/e2e.sh
}

case "${1:-all}" in
check) check ;;
go) gotest ;;
rehearse) rehearse ;;
terraform) bash terraform/test.sh ;;
web) bash web/test.sh ;;
e2e) e2e ;;
bench) bench ;;
all)
	check
	gotest
	rehearse
	say "terraform"
	bash terraform/test.sh
	e2e
	say "all tests passed"
	;;
*) echo "usage: scripts/test.sh [check|go|rehearse|terraform|web|e2e|bench]" >&2; exit 2 ;;
esac
