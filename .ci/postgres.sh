#!/usr/bin/env bash
# Runs a throwaway PostgreSQL cluster for the tests.
#
#   eval "$(.ci/postgres.sh start)"   # prints the exports for AGENTPASS_TEST_POSTGRES and friends
#   .ci/postgres.sh restart           # what the fault test calls (pg_ctl restart, fast mode)
#   .ci/postgres.sh stop
#
# The cluster lives in $AGENTPASS_PGDATA (default /tmp/agentpass-pg/data) and listens on
# 127.0.0.1:$AGENTPASS_PGPORT (default 55432). As root it runs as the "postgres" user, since
# PostgreSQL refuses to run as root. It installs the Debian packages when initdb is missing.
set -euo pipefail

PGROOT=${AGENTPASS_PGROOT:-/tmp/agentpass-pg}
PGDATA=${AGENTPASS_PGDATA:-$PGROOT/data}
PGPORT=${AGENTPASS_PGPORT:-55432}

find_bin() {
	local name=$1
	if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
	ls /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1
}

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_installed() {
	if [ -z "$(find_bin initdb)" ]; then
		echo "installing PostgreSQL from Debian packages" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >&2
		apt-get install -y -qq postgresql >&2
	fi
	if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
		useradd --system --home "$PGROOT" postgres
	fi
}

start() {
	ensure_installed
	local initdb pg_ctl
	initdb=$(find_bin initdb); pg_ctl=$(find_bin pg_ctl)
	mkdir -p "$PGROOT"
	[ "$(id -u)" = 0 ] && chown postgres "$PGROOT"
	if [ ! -f "$PGDATA/PG_VERSION" ]; then
		as_pg "$initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
	fi
	if ! as_pg "$pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
		as_pg "$pg_ctl" -D "$PGDATA" -l "$PGROOT/postgres.log" -w -t 60 \
			-o "-p $PGPORT -k $PGROOT -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null
	fi
	echo "export AGENTPASS_TEST_POSTGRES='postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable'"
	echo "export AGENTPASS_TEST_PG_RESTART='$(cd "$(dirname "$0")" && pwd)/postgres.sh restart'"
}

restart() {
	as_pg "$(find_bin pg_ctl)" -D "$PGDATA" -m fast -w -t 60 restart \
		-o "-p $PGPORT -k $PGROOT -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" >/dev/null
}

stop() {
	as_pg "$(find_bin pg_ctl)" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
}

export AGENTPASS_PGROOT=$PGROOT AGENTPASS_PGDATA=$PGDATA AGENTPASS_PGPORT=$PGPORT
case "${1:-}" in
start) start ;;
restart) restart ;;
stop) stop ;;
*) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
