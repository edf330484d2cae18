#!/usr/bin/env bash
# Local Firebase emulators for `make dev` and `make test`.
#
#   scripts/emulators.sh start                 start Firestore + Auth (reuses running ones), print env exports
#   scripts/emulators.sh stop                  stop everything this script started (whole process trees)
#   scripts/emulators.sh status                one line per emulator; exit 0 only if Firestore and Auth answer
#   scripts/emulators.sh env                   print the env exports only (eval "$(scripts/emulators.sh env)")
#   scripts/emulators.sh start-rules PORT FILE a second Firestore emulator on PORT enforcing the rules FILE
#   scripts/emulators.sh stop-rules PORT       stop that one
#   scripts/emulators.sh install               install the pinned firebase-tools only
#
# Firestore runs straight from the Cloud SDK's emulator jar on the default Java (17 is fine): it is up
# in about a second and needs no download. Auth runs under the pinned firebase-tools in
# tools/emulators (npm ci from the committed lock file, no install scripts). Where the Cloud SDK jar
# is absent, firebase-tools downloads its own Firestore jar once (a connected machine only) and that
# jar is run the same way, on a Java >= 21 if one is installed.
#
# Settings (environment):
#   FIRESTORE_EMULATOR_PORT, AUTH_EMULATOR_PORT   default: emulators.*.port in firebase.json (8080, 9099)
#   EMULATORS_PROJECT      Firebase project id, must start with demo- (default demo-paymeter)
#   EMULATORS_STATE_DIR    pids and logs (default .emulators/ at the repo root, ignores itself in git)
#   EMULATORS_TIMEOUT      seconds to wait for each emulator to answer (default 120)
#   FIRESTORE_EMULATOR_JAR path of the Firestore emulator jar (default: found in the Cloud SDK;
#                          "download": the one firebase-tools downloads and caches)
#   JAVA                   java binary for Firestore (default: java on PATH)
# With CI=true every failure is one line starting "emulators.sh: FAILED" and a non-zero exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/tools/emulators"
STATE=${EMULATORS_STATE_DIR:-$ROOT/.emulators}
PROJECT=${EMULATORS_PROJECT:-demo-paymeter}
TIMEOUT=${EMULATORS_TIMEOUT:-120}
HOST=127.0.0.1

say() { printf 'emulators.sh: %s\n' "$*" >&2; }
die() {
	printf 'emulators.sh: FAILED: %s\n' "$*" >&2
	exit 1
}

case "$PROJECT" in demo-*) ;; *) die "EMULATORS_PROJECT=$PROJECT must start with demo- (the emulators must never touch a real project)" ;; esac

# Port from firebase.json (emulators.NAME.port), without needing node or jq.
config_port() {
	local name=$1 fallback=$2 port
	port=$(tr -d '\n' <"$ROOT/firebase.json" 2>/dev/null |
		grep -o "\"$name\"[[:space:]]*:[[:space:]]*{[^}]*\"port\"[[:space:]]*:[[:space:]]*[0-9]*" |
		grep -o '[0-9]*$' | head -n1) || true
	echo "${port:-$fallback}"
}
FS_PORT=${FIRESTORE_EMULATOR_PORT:-$(config_port firestore 8080)}
AUTH_PORT=${AUTH_EMULATOR_PORT:-$(config_port auth 9099)}

ensure_state() {
	mkdir -p "$STATE/tmp"
	[ -f "$STATE/.gitignore" ] || printf '*\n' >"$STATE/.gitignore"
}

# ---------- processes ----------

# alive PID: running and not a zombie (a reaped-late zombie still passes kill -0).
alive() {
	local pid=$1 st
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# descendants PID...: every descendant, children first found breadth-first.
descendants() {
	local table queue=("$@") next pid child
	table=$(ps -eo pid=,ppid= 2>/dev/null) || return 0
	while [ ${#queue[@]} -gt 0 ]; do
		next=()
		for pid in "${queue[@]}"; do
			while read -r child; do
				[ -n "$child" ] || continue
				echo "$child"
				next+=("$child")
			done < <(awk -v p="$pid" '$2 == p { print $1 }' <<<"$table")
		done
		queue=("${next[@]+"${next[@]}"}")
	done
}

# kill_tree PIDFILE: TERM the process, its group and every descendant (firebase-tools starts
# its java children detached, in their own sessions), then KILL whatever is left.
kill_tree() {
	local pidfile=$1 pid pids p
	pid=$(cat "$pidfile" 2>/dev/null || true)
	rm -f "$pidfile"
	[ -n "$pid" ] || return 0
	alive "$pid" || return 0
	mapfile -t pids < <(echo "$pid"; descendants "$pid")
	kill -TERM -- "-$pid" 2>/dev/null || true
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 1 50); do
		local left=0
		for p in "${pids[@]}"; do alive "$p" && left=1; done
		[ $left = 0 ] && return 0
		sleep 0.1
	done
	kill -KILL -- "-$pid" 2>/dev/null || true
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}

# ---------- probes ----------

# http_get URL: the body, or nothing; never fails.
http_get() {
	if command -v curl >/dev/null 2>&1; then
		curl -s --max-time 2 "$1" 2>/dev/null || true
	else
		local hostport=${1#http://} path
		path=/${hostport#*/}
		hostport=${hostport%%/*}
		(
			exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 0
			printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
			timeout 2 cat <&3
		) 2>/dev/null || true
	fi
}
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
firestore_up() { [ "$(http_get "http://$HOST:$1/" | tr -d '\r\n')" = Ok ]; }
auth_up() { http_get "http://$HOST:$1/" | grep -q '"authEmulator"'; }

# wait_up NAME PIDFILE LOG PROBE PORT
wait_up() {
	local name=$1 pidfile=$2 log=$3 probe=$4 port=$5 start=$SECONDS pid
	pid=$(cat "$pidfile")
	while ! "$probe" "$port"; do
		if ! alive "$pid"; then
			tail -n 20 "$log" >&2 || true
			rm -f "$pidfile"
			die "$name emulator exited before answering on $HOST:$port (log: $log)"
		fi
		if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
			tail -n 20 "$log" >&2 || true
			kill_tree "$pidfile"
			die "$name emulator did not answer on $HOST:$port within ${TIMEOUT}s (log: $log)"
		fi
		sleep 0.1
	done
}

# ---------- Java and the Firestore jar ----------

java_major() { # java_major JAVA -> 17, 21, ...
	"$1" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

pick_java() { # pick_java MIN: a java binary of at least MIN, preferring $JAVA, then PATH, then /usr/lib/jvm
	local min=$1 j m
	for j in ${JAVA:-} $(command -v java 2>/dev/null || true) /usr/lib/jvm/*/bin/java; do
		[ -x "$j" ] || continue
		m=$(java_major "$j" 2>/dev/null || true)
		[ -n "$m" ] && [ "$m" -ge "$min" ] && {
			echo "$j"
			return 0
		}
	done
	return 1
}

sdk_jar() {
	local rel=platform/cloud-firestore-emulator/cloud-firestore-emulator.jar g d
	if [ -n "${FIRESTORE_EMULATOR_JAR:-}" ]; then
		[ -f "$FIRESTORE_EMULATOR_JAR" ] || die "FIRESTORE_EMULATOR_JAR=$FIRESTORE_EMULATOR_JAR does not exist"
		echo "$FIRESTORE_EMULATOR_JAR"
		return 0
	fi
	if g=$(command -v gcloud 2>/dev/null); then
		d=$(dirname "$(readlink -f "$g")")/..
		[ -f "$d/$rel" ] && {
			readlink -f "$d/$rel"
			return 0
		}
	fi
	for d in /usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk /opt/google-cloud-sdk "$HOME/google-cloud-sdk"; do
		[ -f "$d/$rel" ] && {
			echo "$d/$rel"
			return 0
		}
	done
	if [ -n "${g:-}" ]; then
		d=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
		[ -n "$d" ] && [ -f "$d/$rel" ] && {
			echo "$d/$rel"
			return 0
		}
	fi
	return 1
}

# firestore_jar: prints "JAR MIN_JAVA". Cloud SDK jar first; otherwise the one firebase-tools downloads.
firestore_jar() {
	local jar cache
	if [ "${FIRESTORE_EMULATOR_JAR:-}" != download ] && jar=$(sdk_jar); then
		echo "$jar 11"
		return 0
	fi
	cache=${FIREBASE_EMULATORS_PATH:-$HOME/.cache/firebase/emulators}
	jar=$(ls -1 "$cache"/cloud-firestore-emulator-v*.jar 2>/dev/null | sort -V | tail -n1 || true)
	if [ -z "$jar" ]; then
		say "no Cloud SDK Firestore emulator jar; asking firebase-tools to download one (needs network)"
		ensure_firebase_tools
		(cd "$STATE" && CI=1 TMPDIR="$STATE/tmp" "$TOOLS/node_modules/.bin/firebase" setup:emulators:firestore \
			>"$STATE/firestore-download.log" 2>&1) ||
			die "no Firestore emulator: install the Cloud SDK's (apt-get install google-cloud-cli-firestore-emulator) or set FIRESTORE_EMULATOR_JAR; download failed, see $STATE/firestore-download.log"
		jar=$(ls -1 "$cache"/cloud-firestore-emulator-v*.jar 2>/dev/null | sort -V | tail -n1 || true)
		[ -n "$jar" ] || die "firebase-tools reported success but no jar is in $cache"
	fi
	echo "$jar 21"
}

rules_id() { echo "$1 $(cksum <"$1" 2>/dev/null | cut -d' ' -f1)"; }

# start_firestore NAME PORT [RULES]
start_firestore() {
	local name=$1 port=$2 rules=${3:-} pidfile log jm jar min java args t0
	pidfile="$STATE/$name.pid"
	log="$STATE/$name.log"
	if alive "$(cat "$pidfile" 2>/dev/null || true)" && firestore_up "$port"; then
		# The emulator reads --rules once: reuse it only for the same file with the same content.
		if [ -z "$rules" ] || [ "$(cat "$STATE/$name.rules" 2>/dev/null)" = "$(rules_id "$rules")" ]; then
			say "$name already running on $HOST:$port (reused)"
			return 0
		fi
		say "$name running with other rules; restarting"
		kill_tree "$pidfile"
	fi
	rm -f "$pidfile"
	if port_open "$port"; then
		if [ -z "$rules" ] && firestore_up "$port"; then
			say "$name: a Firestore emulator not started by this script answers on $HOST:$port (reused; stop does not touch it)"
			return 0
		fi
		die "port $port is taken by another process; free it or set ${4:-FIRESTORE_EMULATOR_PORT}"
	fi
	jm=$(firestore_jar) || exit 1
	read -r jar min <<<"$jm"
	java=$(pick_java "$min") || die "Firestore emulator needs Java >= $min (install openjdk-17-jre-headless, or set JAVA)"
	args=(-Duser.language=en -cp "$jar" com.google.cloud.datastore.emulator.firestore.CloudFirestore
		--host "$HOST" --port "$port")
	if [ -n "$rules" ]; then
		[ -f "$rules" ] || die "rules file $rules not found"
		args+=(--rules "$rules")
		rules_id "$rules" >"$STATE/$name.rules"
	fi
	t0=$(date +%s%N)
	setsid "$java" "${args[@]}" >"$log" 2>&1 </dev/null 9>&- &
	echo $! >"$pidfile"
	wait_up "$name" "$pidfile" "$log" firestore_up "$port"
	say "$name up on $HOST:$port in $(((($(date +%s%N) - t0) / 1000000)))ms (java $(java_major "$java"), $(basename "$jar"))"
}

# ---------- firebase-tools and Auth ----------

pinned_version() {
	grep -o '"firebase-tools"[[:space:]]*:[[:space:]]*"[^"]*"' "$TOOLS/package.json" | head -n1 | sed 's/.*"\([^"]*\)"$/\1/'
}
installed_version() {
	grep -o '"version"[[:space:]]*:[[:space:]]*"[^"]*"' "$TOOLS/node_modules/firebase-tools/package.json" 2>/dev/null |
		head -n1 | sed 's/.*"\([^"]*\)"$/\1/'
}

ensure_firebase_tools() {
	local want have t0
	want=$(pinned_version)
	have=$(installed_version || true)
	if [ -n "$have" ] && [ "$have" = "$want" ] && [ -x "$TOOLS/node_modules/.bin/firebase" ]; then
		return 0
	fi
	command -v node >/dev/null 2>&1 || die "node is not installed (firebase-tools needs Node.js >= 20)"
	command -v npm >/dev/null 2>&1 || die "npm is not installed (needed to install firebase-tools $want)"
	say "installing firebase-tools $want into tools/emulators/node_modules (npm ci)"
	t0=$SECONDS
	ensure_state
	# --ignore-scripts: the only native build (re2, for the Hosting emulator) is not needed and would
	# try to download a prebuilt binary first.
	(cd "$TOOLS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >"$STATE/npm.log" 2>&1 || {
		tail -n 20 "$STATE/npm.log" >&2
		die "npm ci in tools/emulators failed (log: $STATE/npm.log)"
	}
	say "firebase-tools $want installed in $((SECONDS - t0))s"
}

start_auth() {
	local pidfile="$STATE/auth.pid" log="$STATE/auth.log" t0
	if alive "$(cat "$pidfile" 2>/dev/null || true)" && auth_up "$AUTH_PORT"; then
		say "auth already running on $HOST:$AUTH_PORT (reused)"
		return 0
	fi
	rm -f "$pidfile"
	if port_open "$AUTH_PORT"; then
		if auth_up "$AUTH_PORT"; then
			say "auth: an Auth emulator not started by this script answers on $HOST:$AUTH_PORT (reused; stop does not touch it)"
			return 0
		fi
		die "port $AUTH_PORT is taken by another process; free it or set AUTH_EMULATOR_PORT"
	fi
	ensure_firebase_tools
	# A config of our own: the Auth port (which may be overridden), no UI; firebase-tools finds free
	# ports for its hub and logging endpoints. Run from the state dir so firebase-debug.log lands there.
	cat >"$STATE/firebase.json" <<EOF
{ "emulators": { "auth": { "host": "$HOST", "port": $AUTH_PORT }, "ui": { "enabled": false }, "singleProjectMode": true } }
EOF
	t0=$(date +%s%N)
	(cd "$STATE" && CI=1 TMPDIR="$STATE/tmp" exec setsid \
		"$TOOLS/node_modules/.bin/firebase" emulators:start --only auth --project "$PROJECT" \
		--config "$STATE/firebase.json" >"$log" 2>&1 </dev/null 9>&-) &
	echo $! >"$pidfile"
	wait_up auth "$pidfile" "$log" auth_up "$AUTH_PORT"
	say "auth up on $HOST:$AUTH_PORT in $(((($(date +%s%N) - t0) / 1000000)))ms (firebase-tools $(installed_version))"
}

print_env() {
	echo "export FIRESTORE_EMULATOR_HOST=$HOST:$FS_PORT"
	echo "export FIREBASE_AUTH_EMULATOR_HOST=$HOST:$AUTH_PORT"
	echo "export GOOGLE_CLOUD_PROJECT=$PROJECT"
}

lock() {
	ensure_state
	exec 9>"$STATE/lock"
	command -v flock >/dev/null 2>&1 && flock -w 600 9 || true
}

cmd=${1:-}
case "$cmd" in
start)
	lock
	t0=$(date +%s%N)
	# Both at once: Firestore is up in ~1s, Auth (firebase-tools) takes several seconds of CPU.
	ensure_firebase_tools
	start_firestore firestore "$FS_PORT" &
	fs_job=$!
	start_auth &
	auth_job=$!
	# The first failure stops the other start too.
	rc=0
	wait -n $fs_job $auth_job || rc=1
	[ $rc != 0 ] || wait $fs_job $auth_job || rc=1
	if [ $rc != 0 ]; then
		kill $fs_job $auth_job 2>/dev/null || true
		wait 2>/dev/null || true
		kill_tree "$STATE/firestore.pid"
		kill_tree "$STATE/auth.pid"
		exit 1
	fi
	say "ready in $(((($(date +%s%N) - t0) / 1000000)))ms; logs in $STATE"
	print_env
	;;
start-rules)
	[ $# -ge 3 ] || die "usage: $0 start-rules PORT RULESFILE"
	lock
	port=$2
	rules=$(readlink -f "$3" 2>/dev/null || echo "$3")
	start_firestore "firestore-rules-$port" "$port" "$rules" "PORT"
	echo "export FIRESTORE_RULES_EMULATOR_HOST=$HOST:$port"
	;;
stop-rules)
	[ $# -ge 2 ] || die "usage: $0 stop-rules PORT"
	kill_tree "$STATE/firestore-rules-$2.pid"
	rm -f "$STATE/firestore-rules-$2.rules"
	;;
stop)
	[ -d "$STATE" ] || exit 0
	lock
	for f in "$STATE"/*.pid; do
		[ -e "$f" ] || continue
		kill_tree "$f"
		say "stopped $(basename "$f" .pid)"
	done
	rm -f "$STATE"/*.rules
	;;
status)
	rc=0
	if firestore_up "$FS_PORT"; then echo "firestore: up on $HOST:$FS_PORT"; else
		echo "firestore: down ($HOST:$FS_PORT)"
		rc=3
	fi
	if auth_up "$AUTH_PORT"; then echo "auth: up on $HOST:$AUTH_PORT"; else
		echo "auth: down ($HOST:$AUTH_PORT)"
		rc=3
	fi
	for f in "$STATE"/firestore-rules-*.pid; do
		[ -e "$f" ] || continue
		p=${f##*-}
		p=${p%.pid}
		if firestore_up "$p"; then echo "firestore-rules: up on $HOST:$p ($(cat "${f%.pid}.rules" 2>/dev/null))"; else echo "firestore-rules: down ($HOST:$p)"; fi
	done
	exit $rc
	;;
env)
	print_env
	;;
install)
	ensure_firebase_tools
	;;
*)
	echo "usage: $0 start|stop|status|env|install|start-rules PORT RULESFILE|stop-rules PORT" >&2
	exit 2
	;;
esac
