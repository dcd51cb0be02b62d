#!/usr/bin/env bash
# The statements runbook sends PostgreSQL over a 100-step local chain of
# `true`, as the server logs them (log_statement = all), by kind: how many
# round trips a step costs (bench/README.md, issue 23 point 6).
# Usage: bench/state-count.sh path/to/runbook
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/rbcount.XXXXXX); chmod 755 "$work"
cleanup() { pg_stop; rm -rf "$work"; }
trap cleanup EXIT
. bench/pg-lib.sh
mkdir -p "$work/runbooks"
{ echo "steps:"; for i in $(seq 0 99); do echo "  - id: s$i"; [ $i -gt 0 ] && echo "    needs: [s$((i-1))]"; echo "    run: 'true'"; done; } > "$work/runbooks/local.yaml"
pg_db cnt
"$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "ALTER SYSTEM SET log_statement='all'" -c "SELECT pg_reload_conf()" postgres >/dev/null
sleep 0.5
before=$(wc -l < "$work/pg/log")
(cd "$work" && RUNBOOK_STATE="$pg_url" "$bin" -q run local --fresh >/dev/null)
tail -n +$((before+1)) "$work/pg/log" | grep -E 'LOG:  (statement|execute)' > "$work/stmts" || true
total=$(wc -l < "$work/stmts")
echo "statements logged for a 100-step chain: $total"
for k in BEGIN COMMIT "FOR KEY SHARE" "INSERT INTO steps" "INSERT INTO attempt_history" "DELETE FROM output" "UPDATE leases"; do
  printf '%-28s %s\n' "$k" "$(grep -c "$k" "$work/stmts" || true)"
done
sed -E 's/.*(statement|execute [^:]*): //' "$work/stmts" | cut -c1-60 | sort | uniq -c | sort -rn | head -20
