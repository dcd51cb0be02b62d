#!/usr/bin/env bash
# Stops the sandbox's processes (sshd and its sessions, upstreams, proxy).
root=${1:-${SANDBOX_DIR:-$PWD/state/sandbox}}
for pidfile in "$root"/run/sshd.pid "$root"/run/upstream.pid "$root"/run/proxy.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  [ "$(basename "$pidfile")" = sshd.pid ] && pkill -KILL -P "$pid" 2>/dev/null
  kill "$pid" 2>/dev/null
  rm -f "$pidfile"
done
exit 0
