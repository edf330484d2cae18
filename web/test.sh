#!/usr/bin/env bash
# The web app's tests: Vitest unit tests, the production build and, with
# --e2e (or E2E_BASE_URL set), the end-to-end journey in Debian's chromium.
#
#   web/test.sh                 units + build
#   web/test.sh build           npm ci if needed + build only (for make dev)
#   web/test.sh --e2e           ... + journey against E2E_BASE_URL, or, when it
#                               is unset, against the in-memory fake (e2e/fake-server.mjs)
#   E2E_BASE_URL=http://127.0.0.1:8080 web/test.sh    ... + journey against a running stack
#
# Screenshots go to web/e2e/screenshots/ (E2E_SCREENSHOTS overrides).
set -euo pipefail
cd "$(dirname "$0")"

e2e=0
build_only=0
for a in "$@"; do
  case "$a" in
    --e2e|e2e) e2e=1 ;;
    build) build_only=1 ;;
    *) echo "usage: web/test.sh [build | --e2e]" >&2; exit 2 ;;
  esac
done
[ -n "${E2E_BASE_URL:-}" ] && [ "$build_only" = 0 ] && e2e=1

# npm ci when node_modules is missing or older than the lockfile.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

if [ "$build_only" = 1 ]; then
  # `make dev`: just the app in web/dist (VITE_* from the environment).
  exec npm run build --silent
fi

npx vitest run
npm run build --silent

[ "$e2e" = 1 ] || exit 0

if [ -z "${CHROMIUM:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "web/test.sh: installing Debian's chromium for the end-to-end journey" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "web/test.sh: the journey needs chromium: run 'sudo apt-get update && sudo apt-get install -y chromium' (or set CHROMIUM=/path/to/chrome)" >&2
      exit 1
    fi
  fi
  export CHROMIUM="$(command -v chromium)"
fi

fake_pid=""
cleanup() { [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "${E2E_BASE_URL:-}" ]; then
  # No stack given: build the app for the fake (its Auth emulator subset lives on
  # the same origin) and serve both from one port.
  port="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
  VITE_AUTH_EMULATOR_URL="http://127.0.0.1:$port" PAYMETER_WEB_OUT=dist-e2e npx vite build --logLevel warn
  log="$(mktemp)"
  node e2e/fake-server.mjs --port "$port" --dist dist-e2e >"$log" 2>&1 &
  fake_pid=$!
  for _ in $(seq 50); do grep -q '^Paymeter running at ' "$log" && break; sleep 0.1; done
  grep -q '^Paymeter running at ' "$log" || { cat "$log" >&2; echo "web/test.sh: the fake server did not start" >&2; exit 1; }
  export E2E_BASE_URL="http://127.0.0.1:$port"
  echo "web/test.sh: journey against the in-memory fake at $E2E_BASE_URL"
fi

node e2e/journey.mjs
