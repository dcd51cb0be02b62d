#!/usr/bin/env bash
# The sandbox in one command: builds runbook, starts a Hetzner-like server on
# this machine (state/sandbox: its own sshd and, as root, its own Docker
# Engine in a network namespace; see up.sh), and runs the hetzner-parity
# runbook against it. Extra arguments go to `runbook run`.
# The first time, the base image is built with debootstrap (about a minute,
# cached under state/sandbox-base). Stop everything: sandbox/down.sh.
#
# The first run ends held (exit 3): the simulated server's tokens are expired,
# as on the real one. Play Lukas and finish the job:
#   cat runbooks/hetzner-parity/sandbox/valid-tokens.env >> state/sandbox/server/opt/mcp-stack/.env
#   ./target/release/runbook resume hetzner-parity
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$repo"
cargo build --release --quiet
SANDBOX_DIR="$repo/state/sandbox" runbooks/hetzner-parity/sandbox/up.sh
mapfile -t args < state/sandbox/runbook-args
set +e
./target/release/runbook run hetzner-parity --fresh "${args[@]}" "$@"
code=$?
set -e
if [ "$code" = 3 ]; then
  echo
  echo "sandbox: the run is held for Lukas's tokens, as on the real server. Read the page he would get:"
  echo "  ./target/release/runbook handoff hetzner-parity"
  echo "then play Lukas and finish:"
  echo "  cat runbooks/hetzner-parity/sandbox/valid-tokens.env >> state/sandbox/server/opt/mcp-stack/.env"
  echo "  ./target/release/runbook resume hetzner-parity"
fi
echo "the containers: set -a; . state/sandbox/env; set +a; docker ps    stop it all: runbooks/hetzner-parity/sandbox/down.sh"
exit "$code"
