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
if [ -f "$root/netns" ]; then ip netns del "$(cat "$root/netns")" 2>/dev/null; rm -f "$root/netns"; fi
if [ -f "$root/veth" ]; then ip link del "$(cat "$root/veth")" 2>/dev/null; rm -f "$root/veth"; fi
exit 0
