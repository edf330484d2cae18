# Paymeter: `make dev` runs the whole product locally, offline; `make test`
# runs every test. Both install what they need on a fresh machine.
SHELL := /bin/bash
PORT ?= 8000
export GOFLAGS ?= -buildvcs=false

.PHONY: help dev test check test-go test-terraform test-web test-e2e web-build emulators emulators-stop \
	bench rehearse plans-sync plans-dry-run deploy-source deploy deploy-web destroy fuzz storm load

## dev: start the emulators, build the web app and serve everything on http://localhost:$(PORT)
dev:
	@PORT=$(PORT) bash scripts/dev.sh

## test: every test (static checks, Go with the emulators, Terraform, the web app, end to end)
test:
	bash scripts/test.sh

## check: gofmt, go vet and the domain's no-SDK rule, fast
check:
	bash scripts/test.sh check

## test-go: the Go tests, with the emulators (started if not running)
test-go:
	bash scripts/test.sh go

## test-terraform: terraform fmt, validate and test against the provider schemas, offline
test-terraform:
	bash terraform/test.sh

## test-web: the web app's unit tests and production build
test-web:
	bash web/test.sh

## test-e2e: the web app's tests and the end-to-end journey in chromium against the dev server, with the emulators
test-e2e:
	bash scripts/test.sh e2e

## rehearse: build the deployable zip and run it as Cloud Functions does, behind a Hosting + Cloud Run front; checks, cold starts, RSS
rehearse:
	bash scripts/rehearse.sh

## web-build: install the web app's packages if needed and build web/dist
web-build:
	bash web/test.sh build

## emulators: start the Firestore and Auth emulators and print their environment
emulators:
	@scripts/emulators.sh start

## emulators-stop: stop the emulators that make emulators started
emulators-stop:
	@scripts/emulators.sh stop

## bench: benchmarks of the domain debit and of the metered path on the Firestore emulator
bench:
	bash scripts/test.sh bench

## plans-sync: create or update the Stripe products and prices (needs STRIPE_SECRET_KEY) and Firestore plans/
plans-sync:
	go run ./cmd/plans sync

## plans-dry-run: what plans-sync would change, changing nothing
plans-dry-run:
	go run ./cmd/plans sync -dry-run

## deploy-source: the function source zip (terraform/build/source.zip)
deploy-source:
	terraform/build-source.sh

## deploy: terraform apply everything (first deploy: follow terraform/README.md)
deploy:
	terraform/deploy.sh apply

## deploy-web: build web/ for production and deploy it to Firebase Hosting
deploy-web:
	terraform/deploy.sh web

## destroy: tear the deployment down, Firestore data included
destroy:
	terraform/deploy.sh destroy

FUZZTIME ?= 60s
## fuzz: every fuzz target for FUZZTIME each (their seed corpora run in make test)
fuzz:
	@set -e; for t in FuzzVerifyEvent FuzzSignedEventBody FuzzSignedEventFields; do go test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./payments; done; \
	for t in FuzzMeterKey FuzzUserBodies FuzzWebhookDelivery; do go test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./functions; done; \
	go test -run '^$$' -fuzz '^FuzzClockAdvance$$' -fuzztime $(FUZZTIME) ./cmd/dev

## storm: the webhook storm alone, verbose (1,000 events, duplicates, shuffles, two SIGKILLs)
storm:
	@eval "$$(scripts/emulators.sh start)" && go test -count=1 -v -run TestWebhookStorm ./internal/storm

## load: both metering modes in one run on one hot key, through HTTP (docs/cost.md)
load:
	@eval "$$(scripts/emulators.sh start)" && bash cmd/load/compare.sh

## help: every target with a line on what it does
help:
	@awk '/^## [a-z0-9-]+:/ { sub(/^## /, ""); t = $$0; sub(/:.*/, "", t); d = $$0; sub(/^[^:]*: */, "", d); printf "  %-16s %s\n", t, d; documented[t] = 1 } \
		/^[a-z0-9-]+:/ { t = $$1; sub(/:.*/, "", t); targets[++n] = t } \
		END { for (i = 1; i <= n; i++) if (!(targets[i] in documented)) { print "no \"## " targets[i] ": ...\" line in the Makefile" > "/dev/stderr"; bad = 1 } exit bad }' $(firstword $(MAKEFILE_LIST))
