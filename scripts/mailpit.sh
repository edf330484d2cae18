#!/usr/bin/env bash
# The local mail server of `make dev` and the end-to-end tests: Mailpit, built
# from its pinned Go module (tools/mailpit/build.sh), on free loopback ports.
#
#   scripts/mailpit.sh start DIR   start it (pid and log in DIR), print the exports to eval:
#                                  SMTP_URL (where the dev server sends) and MAILPIT_URL (its web view and API)
#   scripts/mailpit.sh stop DIR    stop the one started with DIR
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "${1:-}" in
start)
	dir=${2:?usage: scripts/mailpit.sh start DIR}
	mkdir -p "$dir"
	bin=$("$ROOT/tools/mailpit/build.sh")
	smtp=$(free_port)
	web=$(free_port)
	"$bin" --listen "127.0.0.1:$web" --smtp "127.0.0.1:$smtp" --database "$dir/mailpit.db" \
		--smtp-auth-accept-any --smtp-auth-allow-insecure --quiet >"$dir/mailpit.log" 2>&1 &
	echo $! >"$dir/mailpit.pid"
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$web/api/v1/info" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fsS "http://127.0.0.1:$web/api/v1/info" >/dev/null || { cat "$dir/mailpit.log" >&2; echo "mailpit.sh: Mailpit did not start" >&2; exit 1; }
	echo "export SMTP_URL=smtp://127.0.0.1:$smtp"
	echo "export MAILPIT_URL=http://127.0.0.1:$web"
	;;
stop)
	dir=${2:?usage: scripts/mailpit.sh stop DIR}
	if [ -f "$dir/mailpit.pid" ]; then
		kill "$(cat "$dir/mailpit.pid")" 2>/dev/null || true
		rm -f "$dir/mailpit.pid"
	fi
	;;
*) echo "usage: scripts/mailpit.sh start|stop DIR" >&2; exit 2 ;;
esac
