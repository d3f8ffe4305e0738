#!/usr/bin/env bash
# Resilience checks of issue 7 (item 5), run against the release build under load:
#   1. PostgreSQL restarted mid-load: logins fail with an error page during the outage and go
#      through again afterwards, with the same broker process (no restart);
#   2. the broker SIGKILLed mid-load and started again, on PostgreSQL and on SQLite: no
#      half-created user, every code the broker handed out belongs to a complete user and is
#      still redeemable, every access token issued is still valid.
# Each check is `bench --chaos …` (examples/bench.rs), which prints PASS/FAIL per check and exits
# non-zero on a failure. The PostgreSQL restarts hit a private server started here on its own
# port and data directory, not the shared cluster that tests use.
#
#   scripts/resilience.sh                 # all three scenarios, 20 s each
#   RESILIENCE_SECONDS=30 scripts/resilience.sh
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${RESILIENCE_SECONDS:-20}
port=${RESILIENCE_PG_PORT:-5439}
bench=target/release/examples/bench
if [ ! -x target/release/ssobroker ] || [ ! -x "$bench" ]; then
  cargo build --release --bin ssobroker --example bench
fi

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$pgbin" ] || { echo "resilience: no PostgreSQL server binaries under /usr/lib/postgresql" >&2; exit 1; }
if [ "$(id -u)" = 0 ]; then
  as_postgres() { su postgres -s /bin/sh -c "$*"; }
else
  as_postgres() { sudo -u postgres sh -c "$*"; }
fi

dir=$(mktemp -d /tmp/ssobroker-resilience-pg.XXXXXX)
chmod 755 "$dir"
chown postgres "$dir" 2>/dev/null || sudo chown postgres "$dir"
pgctl="$pgbin/pg_ctl -D $dir/data -l $dir/server.log -w"
cleanup() {
  as_postgres "$pgctl -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
as_postgres "$pgbin/initdb -D $dir/data -A trust -U postgres" >/dev/null
as_postgres "$pgctl -o '-p $port -k $dir -c listen_addresses=127.0.0.1' start" >/dev/null
url="postgres://postgres@127.0.0.1:$port/postgres"

opts="-o '-p $port -k $dir -c listen_addresses=127.0.0.1'"
if [ "$(id -u)" = 0 ]; then
  stop="su postgres -s /bin/sh -c \"$pgctl -m fast stop\""
  start="su postgres -s /bin/sh -c \"$pgctl start $opts\""
  restart="su postgres -s /bin/sh -c \"$pgctl -m fast restart -o '-p $port -k $dir -c listen_addresses=127.0.0.1'\""
else
  stop="sudo -u postgres $pgctl -m fast stop"
  start="sudo -u postgres $pgctl start $opts"
  restart="sudo -u postgres $pgctl -m fast restart -o '-p $port -k $dir -c listen_addresses=127.0.0.1'"
fi

status=0
run() {
  echo "=== bench $*"
  "$bench" --seconds "$seconds" "$@" || status=1
  echo
}
run --chaos pg-restart --database "$url" --pg-restart-cmd "$restart"
# A longer outage (stopped for 8 s): requests must get their error page (pool timeout 5 s), not
# hang, and the broker must reconnect once the server is back.
run --chaos pg-restart --database "$url" --pg-restart-cmd "$stop; sleep 8; $start"
run --chaos broker-kill --database "$url"
run --chaos broker-kill --database sqlite
[ "$status" = 0 ] && echo "resilience: all checks passed" || echo "resilience: a check FAILED" >&2
exit "$status"
