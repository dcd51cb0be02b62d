#!/usr/bin/env bash
# State backends side by side (issue 23 point 6): the 1,000-step local
# chain and the 100-step remote chain, each on SQLite (WAL,
# synchronous=FULL) and on PostgreSQL (loopback, fsync on), in one run,
# alternating the two ROUNDS times (default 3; the median is printed).
# FLEET=1 adds the 100-host fleet (bench/fleet.sh with PG_URL: SQLite and
# PostgreSQL rows of the same fleet).
# Usage: bench/state.sh   (BIN=path/to/runbook; ROUNDS=n; FLEET=1)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  bin="$PWD/target/release/runbook"
else
  bin=$(realpath "$BIN")
fi
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d /tmp/rbstate.XXXXXX)
chmod 755 "$work"
cleanup() { pg_stop; [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=bench/pg-lib.sh
. bench/pg-lib.sh
# shellcheck source=bench/sshd-lib.sh
. bench/sshd-lib.sh
mkdir -p "$work/runbooks"

chain() { # n [on]
  [ -n "${2:-}" ] && printf '%s' "$host_yaml"
  echo "steps:"
  for i in $(seq 0 $(($1 - 1))); do
    echo "  - id: s$i"
    [ "$i" -gt 0 ] && echo "    needs: [s$((i - 1))]"
    [ -n "${2:-}" ] && echo "    on: $2"
    echo "    run: 'true'"
  done
}
chain 1000 > "$work/runbooks/local.yaml"
chain 100 box > "$work/runbooks/remote.yaml"

ms() { # the wall time of a command, in ms
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>"$work/err" || { echo "FAILED: $*" >&2; cat "$work/err" >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

declare -A times
n=0
for r in $(seq "$ROUNDS"); do
  for case in local remote; do
    rm -rf "$work/state"
    lite=$(cd "$work" && ms "$bin" -q run "$case" --fresh)
    pg_db "r${r}_$case"
    pg=$(cd "$work" && RUNBOOK_STATE="$pg_url" ms "$bin" -q run "$case" --fresh)
    times[$case,sqlite]+="$lite "
    times[$case,pg]+="$pg "
    n=$((n + 1))
  done
done

echo "| case | SQLite | PostgreSQL | per step, SQLite | per step, PostgreSQL | ratio |"
echo "|---|---|---|---|---|---|"
for case in local remote; do
  steps=1000; [ "$case" = remote ] && steps=100
  # shellcheck disable=SC2086
  l=$(median ${times[$case,sqlite]})
  # shellcheck disable=SC2086
  p=$(median ${times[$case,pg]})
  printf '| %s chain, %s steps | %s ms | %s ms | %.2f ms | %.2f ms | %.2f× |\n' \
    "$case" "$steps" "$l" "$p" "$(echo "$l / $steps" | bc -l)" "$(echo "$p / $steps" | bc -l)" "$(echo "$p / $l" | bc -l)"
done
echo "(median of $ROUNDS rounds; each round: SQLite then PostgreSQL; every run's times: ${times[local,sqlite]}/ ${times[local,pg]}/ ${times[remote,sqlite]}/ ${times[remote,pg]})"

if [ -n "${FLEET:-}" ]; then
  pg_db fleet
  PG_URL="$pg_url" BIN="$bin" SKIP_PEERS=1 bash bench/fleet.sh
fi
