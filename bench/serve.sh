#!/usr/bin/env bash
# Web view benchmark (issue 25, point 5), every figure beside its floor in
# one run of the script:
#  1. the run page of a run of 1,000 instances (100 hosts × 10 steps on one
#     loopback sshd), and of a 1,000-step local fan-out, against a trivial
#     axum server sending a static file of the same size;
#  2. the CPU `runbook serve` spends while 50 run pages follow a running run
#     (each page does what its script does: the event stream, and a refetch
#     of the run's fragment on every state change), against 50 idle
#     event-stream connections to the trivial server, over the same seconds.
# Both on each state backend of STATES: a SQLite file, and a PostgreSQL
# server this script starts (Debian's initdb + postgres, as nobody when run
# as root, on loopback; the password in PGPASSWORD, never in the URL).
# Usage: bench/serve.sh   (BIN=path/to/runbook; HELPER=path/to/serve_bench;
#                          N=100 hosts; PAGES=50; STATES="sqlite postgres";
#                          WINDOW=20 seconds; TIMES=20 requests per row)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${HELPER:-}" ]; then
  cargo build --release --locked --quiet --example serve_bench
  helper="$PWD/target/release/examples/serve_bench"
else
  helper=$(realpath "$HELPER")
fi
if [ -z "${BIN:-}" ]; then
  cargo build --release --locked --quiet
  bin="$PWD/target/release/runbook"
else
  bin=$(realpath "$BIN")
fi
N=${N:-100}
PAGES=${PAGES:-50}
WINDOW=${WINDOW:-20}
TIMES=${TIMES:-20}
STATES=${STATES:-sqlite postgres}
work=$(mktemp -d /tmp/rbserve.XXXXXX)
chmod 755 "$work"
pg_pid=""
cleanup() { # what this script started and still runs, by pid
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null || true
  [ -n "$pg_pid" ] && kill -INT "$pg_pid" 2>/dev/null && wait "$pg_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
source bench/sshd-lib.sh
mkdir -p "$work/runbooks"
cd "$work"

# --- the runs ---------------------------------------------------------------
{
  echo "hosts:"
  for i in $(seq 1 "$N"); do
    echo "  h$i: { address: 127.0.0.1, port: $port, user: $user, identity_file: $work/client_key, known_hosts_file: $work/known_hosts }"
  done
  echo "groups:"
  echo "  web: ['h*']"
  echo "steps:"
  for s in $(seq 0 9); do
    echo "  - id: s$s"
    echo "    on: web"
    [ "$s" -gt 0 ] && echo "    needs: [s$((s - 1))]"
    echo "    run: 'true'"
  done
} > runbooks/fleet.yaml
{
  echo "steps:"
  echo "  - id: root"
  echo "    run: 'true'"
  for i in $(seq 1 998); do
    echo "  - id: l$i"
    echo "    needs: [root]"
    echo "    run: 'true'"
  done
  echo "  - id: join"
  echo "    needs: [$(seq -s, -f 'l%g' 1 998)]"
  echo "    run: 'true'"
} > runbooks/fan.yaml
# The followed run: a chain of 1-second steps, each printing ten lines.
{
  echo "steps:"
  for i in $(seq 1 120); do
    echo "  - id: step$i"
    [ "$i" -gt 1 ] && echo "    needs: [step$((i - 1))]"
    echo "    run: 'for i in 1 2 3 4 5 6 7 8 9 10; do echo line \$i; sleep 0.1; done'"
  done
} > runbooks/busy.yaml

measure() { # backend: the runs on it, then every figure, in $work/$1
  rm -rf "$work/$1"; mkdir -p "$work/$1"; cp -r "$work/runbooks" "$work/$1/"
  cd "$work/$1"
  echo
  echo "######## state: $1${RUNBOOK_STATE:+ ($RUNBOOK_STATE)}"
  t0=$(date +%s.%N)
  RUNBOOK_SSH_IDLE=5s "$bin" -q run fleet --jobs "$N" >/dev/null
  t1=$(date +%s.%N)
  printf 'run 1: %s hosts x 10 steps (%s instances) in %.1f s\n' "$N" "$((N * 10))" "$(echo "$t1 - $t0" | bc -l)"
  "$bin" -q run fan --jobs 4 >/dev/null
  echo "run 2: 1,000-step fan-out"

  # --- the servers ------------------------------------------------------------
  "$bin" serve --listen 127.0.0.1:0 > serve.out 2>serve.err &
  serve=$!
  for _ in $(seq 400); do [ -s serve.out ] && break; sleep 0.05; done
  url=$(head -1 serve.out)
  base=${url%%/\?token=*}
  export RUNBOOK_TOKEN=${url##*token=}
  echo "serve: $base (pid $serve)"

  floor_up() { # file: starts the floor server on it; sets fl and fbase
    "$helper" floor "$1" > floor.out &
    fl=$!
    for _ in $(seq 400); do [ -s floor.out ] && break; sleep 0.05; done
    fbase=$(head -1 floor.out)
    [ -n "$fbase" ] || { echo "the floor server did not start" >&2; exit 1; }
  }
  cpu() { # pid: utime + stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
  }
  hz=$(getconf CLK_TCK)
  timed() { # label pid url: wall times, and the server's CPU per request
    local a b out
    a=$(cpu "$2")
    out=$("$helper" time "$3" "$TIMES")
    b=$(cpu "$2")
    printf '%-34s %s  server CPU %.1f ms per request\n' "$1" "$out" \
      "$(echo "($b - $a) * 1000 / $hz / $TIMES" | bc -l)"
  }
  page_row() { # name path
    curl -sf -H "Authorization: Bearer $RUNBOOK_TOKEN" "$base$2" > page.html
    floor_up page.html
    timed "$1" "$serve" "$base$2"
    timed "  floor: same bytes, static file" "$fl" "$fbase/static"
    kill "$fl"
    wait "$fl" 2>/dev/null || true
  }
  echo
  echo "== one request at a time, $TIMES each (time to the last byte on loopback; CPU from /proc) =="
  page_row "run page, 1,000 instances" /runs/1
  page_row "  its live fragment" "/runs/1?fragment=1"
  page_row "  /api/runs/1" /api/runs/1
  page_row "  handoff page" /runs/1/handoff
  page_row "run page, 1,000-step fan-out" /runs/2
  page_row "  its live fragment" "/runs/2?fragment=1"

  # --- following a running run -----------------------------------------------
  "$bin" -q run busy >/dev/null 2>&1 &
  engine=$!
  for _ in $(seq 100); do
    curl -sf -H "Authorization: Bearer $RUNBOOK_TOKEN" "$base/api/runs" | grep -q '"state":"running"' && break
    sleep 0.1
  done
  : > empty.html
  floor_up empty.html
  window() { # label pages
    local a b fa fb out fout
    a=$(cpu "$serve"); fa=$(cpu "$fl")
    out=$("$helper" pages "$base" 3 "$2" "$WINDOW" &
          RUNBOOK_TOKEN='' "$helper" pages "$fbase" x "$2" "$WINDOW" >/dev/null 2>&1 &
          wait)
    b=$(cpu "$serve"); fb=$(cpu "$fl")
    printf '%-34s serve %5.2f%% of a core   floor (idle streams) %5.2f%%   (%s)\n' "$1" \
      "$(echo "($b - $a) * 100 / $hz / $WINDOW" | bc -l)" \
      "$(echo "($fb - $fa) * 100 / $hz / $WINDOW" | bc -l)" "$out"
  }
  echo
  echo "== CPU over ${WINDOW} s while run 3 runs (a 1 s step after another, 10 lines each) =="
  window "no page open" 0
  window "1 page following" 1
  window "$PAGES pages following" "$PAGES"
  kill "$engine" 2>/dev/null || true
  wait "$engine" 2>/dev/null || true
  kill "$serve" "$fl" 2>/dev/null || true
  wait "$serve" "$fl" 2>/dev/null || true
  cd "$work"
}

pg_up() { # a PostgreSQL server of this script's own; sets RUNBOOK_STATE
  local bin pgport as=()
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  [ -x "$bin/initdb" ] || { echo "no PostgreSQL: apt-get install postgresql" >&2; exit 1; }
  mkdir -p "$work/pg"
  export PGPASSWORD=bench-$RANDOM$RANDOM
  echo "$PGPASSWORD" > "$work/pg/pw"
  if [ "$(id -u)" = 0 ]; then
    chown -R nobody:nogroup "$work/pg"
    as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  fi
  "${as[@]}" "$bin/initdb" -D "$work/pg/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --pwfile="$work/pg/pw" -E UTF8 --locale=C >/dev/null
  rm -f "$work/pg/pw"
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "${as[@]}" "$bin/postgres" -D "$work/pg/data" -h 127.0.0.1 -p "$pgport" -k "$work/pg" \
    -c max_connections=200 > "$work/pg/log" 2>&1 &
  pg_pid=$!
  for _ in $(seq 300); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$pgport" && break; sleep 0.1; done
  "$bin/psql" -X -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -c "CREATE DATABASE bench"
  export RUNBOOK_STATE="postgres://postgres@127.0.0.1:$pgport/bench?sslmode=disable"
}

for state in $STATES; do
  case $state in
    sqlite) (unset RUNBOOK_STATE; measure sqlite) ;;
    postgres) pg_up; measure postgres ;;
    *) echo "STATES: sqlite or postgres, not $state" >&2; exit 2 ;;
  esac
done
