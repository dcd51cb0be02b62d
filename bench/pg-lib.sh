# Sourced by the state benchmarks: starts a throw-away PostgreSQL (Debian's
# `postgresql` package) in $work on a free loopback port, fsync on, as
# `nobody` when run as root; stopped by its pid on exit (pg_stop). Sets:
# pg_url (no password: local trust), pg_bin.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "PostgreSQL is missing: apt-get install postgresql" >&2; exit 1; }
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/pg"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown nobody:nogroup "$work/pg"
  as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$pg_bin/postgres" -D "$work/pg/data" -h 127.0.0.1 -p "$pg_port" -k "$work/pg" \
  -c fsync=on -c synchronous_commit=on -c max_connections=200 >"$work/pg/log" 2>&1 &
pg_pid=$!
for _ in $(seq 100); do "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.1; done
pg_stop() { kill -INT "$pg_pid" 2>/dev/null; wait "$pg_pid" 2>/dev/null || true; }
pg_db() { # name: a new database, its URL in pg_url
  "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE $1" postgres
  pg_url="postgres://postgres@127.0.0.1:$pg_port/$1?sslmode=disable"
}
