#!/usr/bin/env bash
# A Docker Engine of its own (Debian's dockerd), as root, in a network
# namespace: up.sh runs the sandbox server's engine with it, and the tests
# run with it the daemon a non-root user "already has".
#
# usage: engine.sh start DIR NETNS [DOCKERD-OPTION...]
#   Starts dockerd in the network namespace NETNS (nsenter joins the network
#   namespace only: `ip netns exec` would hide the cgroup mounts from it),
#   with everything under DIR: data root DIR/data, exec root DIR/exec, pid
#   file DIR/dockerd.pid, socket DIR/docker.sock, log DIR/dockerd.log. It
#   starts its own containerd, or uses a running system containerd under the
#   containerd namespace NETNS. Its iptables rules live in NETNS's tables.
#   Waits until it answers; prints its DOCKER_HOST (unix://DIR/docker.sock).
#   Extra options go to dockerd (e.g. `--dns ADDR`, `-G GROUP` to let that
#   group use the socket).
# usage: engine.sh stop DIR
#   Stops that dockerd by its pid file (TERM, then KILL after 30s; it stops
#   its containers and its containerd) and unmounts what it left under DIR
#   (overlays, container namespaces), deepest first. Leaves NETNS alone.
set -euo pipefail
cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] || { echo "usage: engine.sh start DIR NETNS [DOCKERD-OPTION...] | engine.sh stop DIR" >&2; exit 2; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# Whether PID is still this engine's dockerd: a pid file outlives its
# process (a reboot, a kill -9), and the pid may be another process's now.
ours() { # PID DIR
  [ -n "$1" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "-H unix://$2/docker.sock "
}

case "$cmd" in
start)
  ns=${3:-}
  [ -n "$ns" ] || { echo "usage: engine.sh start DIR NETNS [DOCKERD-OPTION...]" >&2; exit 2; }
  shift 3
  command -v dockerd >/dev/null || { echo "sandbox: dockerd is missing (apt-get install docker.io)" >&2; exit 1; }
  command -v nsenter >/dev/null || { echo "sandbox: nsenter is missing (apt-get install util-linux)" >&2; exit 1; }
  command -v iptables >/dev/null || { echo "sandbox: iptables is missing (apt-get install iptables)" >&2; exit 1; }
  [ -e "/run/netns/$ns" ] || { echo "sandbox: no network namespace $ns (ip netns add $ns)" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  nsenter --net="/run/netns/$ns" dockerd --data-root "$dir/data" --exec-root "$dir/exec" \
    --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" --userland-proxy=true \
    --containerd-namespace "$ns" --containerd-plugins-namespace "$ns-plugins" "$@" \
    >"$dir/dockerd.log" 2>&1 &
  pid=$!
  # dockerd writes its pid file only once it is up: this one is there at once.
  echo "$pid" > "$dir/started.pid"
  for _ in $(seq 300); do
    [ -S "$dir/docker.sock" ] && DOCKER_HOST="unix://$dir/docker.sock" docker version >/dev/null 2>&1 && break
    alive "$pid" || { tail -5 "$dir/dockerd.log" >&2; echo "sandbox: dockerd did not start; see $dir/dockerd.log" >&2; exit 1; }
    sleep 0.1
  done
  DOCKER_HOST="unix://$dir/docker.sock" docker version >/dev/null 2>&1 ||
    { echo "sandbox: dockerd does not answer on unix://$dir/docker.sock; see $dir/dockerd.log" >&2; exit 1; }
  echo "unix://$dir/docker.sock"
  ;;
stop)
  [ -d "$dir" ] || exit 0
  dir=$(cd "$dir" && pwd)
  pid=$(cat "$dir/dockerd.pid" 2>/dev/null || cat "$dir/started.pid" 2>/dev/null || true)
  if alive "$pid" && ours "$pid" "$dir"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$dir/started.pid"
  awk -v r="$dir/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  ;;
*)
  echo "usage: engine.sh start DIR NETNS [DOCKERD-OPTION...] | engine.sh stop DIR" >&2
  exit 2
  ;;
esac
