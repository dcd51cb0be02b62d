#!/bin/sh
# Uploaded by the hetzner-parity runbook to <deploy_dir>/.runbook/apply-env.sh.
# usage: apply-env.sh "SERVICE..." NAME...
# Writes NAME="<value of the environment variable NAME>" into .env for each
# NAME (replacing an older line; quoted so that Compose reads the same value),
# then recreates the SERVICEs (and only them) with $COMPOSE.
# Values arrive through the environment, never on a command line.
set -eu
cd "$(dirname "$0")/.."
services=$1
shift
i=0
until mkdir .runbook/lock 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -ge 120 ]; then echo "stale lock .runbook/lock: taking it over" >&2; break; fi
  sleep 1
done
trap 'rmdir .runbook/lock 2>/dev/null || true' EXIT
umask 077
cp .env .env.runbook-tmp
for name in "$@"; do
  case $name in *[!A-Za-z0-9_]*|'') echo "bad name $name" >&2; exit 2 ;; esac
  eval "value=\${$name}"
  grep -v "^$name=" .env.runbook-tmp > .env.runbook-tmp2 || true
  # Double-quoted, with \ " $ escaped and newlines as \n: Docker Compose
  # reads back exactly the value (unquoted, a `$` would be interpolated and
  # a ` #` would start a comment).
  printf '%s="%s"\n' "$name" "$(printf '%s' "$value" | awk 'NR > 1 { printf "\\n" } { gsub(/[\\"$]/, "\\\\&"); printf "%s", $0 }')" >> .env.runbook-tmp2
  mv -f .env.runbook-tmp2 .env.runbook-tmp
  echo "$name set in .env"
done
mv -f .env.runbook-tmp .env
# --no-deps: only these services; without it Compose recreates their
# dependencies too (postgres, redis), restarting the database for a token.
$COMPOSE up -d --no-deps --force-recreate $services
