#!/usr/bin/env bash
# Stops everything the sandbox started, by the pids and names it recorded:
# the stack's containers, its Docker Engine (by its pid file) and the mounts
# under its data root, sshd and its sessions, the simulated upstreams, the
# network namespace and its veth. Leaves nothing running.
root=${1:-${SANDBOX_DIR:-$PWD/state/sandbox}}
[ -d "$root" ] || exit 0
root=$(cd "$root" && pwd)

# On the user's daemon: only this sandbox's compose project (its containers,
# networks, volumes and the images it built), then the stand-in images up.sh
# built (the names in standin-images, labelled rbsandbox.standin, and their
# old versions) that no container uses any more, so that a
# name like redis:7 is not left pointing at a stand-in. The imported base
# (rbsandbox/base) stays, to be imported once only; the daemon keeps running.
if [ -f "$root/env" ] && [ ! -d "$root/engine" ]; then
  (
    set -a
    . "$root/env"
    set +a
    # The project and its file named here: a COMPOSE_FILE of yours would
    # make `down --volumes` remove the volumes that file names.
    cd "$root/server/opt/mcp-stack" 2>/dev/null &&
      timeout 120 env -u COMPOSE_FILE -u COMPOSE_PROFILES -u COMPOSE_PATH_SEPARATOR \
        docker compose -p "$COMPOSE_PROJECT_NAME" -f docker-compose.yml \
        down --volumes --remove-orphans --rmi local --timeout 5 >"$root/run/down.log" 2>&1
    # What compose down left of the project (a volume still busy a moment
    # after its container went), by the project's label only.
    label="label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
    left=$(docker ps -aq --filter "$label" 2>/dev/null)
    [ -z "$left" ] || docker rm -f $left >/dev/null 2>&1
    for _ in 1 2 3; do
      left=$(docker volume ls -q --filter "$label" 2>/dev/null; docker network ls -q --filter "$label" 2>/dev/null)
      [ -n "$left" ] || break
      sleep 1
      docker volume ls -q --filter "$label" 2>/dev/null | while read -r v; do docker volume rm "$v" >/dev/null 2>&1; done
      docker network ls -q --filter "$label" 2>/dev/null | while read -r n; do docker network rm "$n" >/dev/null 2>&1; done
    done
    if [ -n "$(docker ps -aq --filter "$label" 2>/dev/null; docker volume ls -q --filter "$label" 2>/dev/null)" ]; then
      echo "sandbox: some containers or volumes of compose project $COMPOSE_PROJECT_NAME are left (see $root/run/down.log): docker ps -a --filter $label; docker volume ls --filter $label" >&2
    fi
    while read -r name; do
      [ -n "$(docker image inspect -f '{{index .Config.Labels "rbsandbox.standin"}}' "$name" 2>/dev/null)" ] &&
        docker image rm "$name" >/dev/null 2>&1
    done < <(cat "$root/standin-images" 2>/dev/null)
    for id in $(docker images -q --filter dangling=true --filter label=rbsandbox.standin 2>/dev/null); do
      docker image rm "$id" >/dev/null 2>&1
    done
  )
fi

# The sandbox's own engine: dockerd stops its containers and its containerd;
# what a killed engine leaves mounted under its folders is unmounted.
if [ -d "$root/engine" ]; then
  "$(dirname "$0")/engine.sh" stop "$root/engine"
fi

# A pid file outlives its process (a reboot, a kill -9): its pid is this
# sandbox's only while that process's command line names this sandbox's
# files; another process that got the pid since is left alone.
ours() { # PID TEXT
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}
for pidfile in "$root"/run/sshd.pid "$root"/run/upstream.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  case "$(basename "$pidfile")" in
  sshd.pid) mark="$root/sshd_config" ;;
  *) mark="$root/upstream/port" ;;
  esac
  if ours "$pid" "$mark"; then
    # sshd's per-connection children, by their parent's pid (never by name).
    if [ "$(basename "$pidfile")" = sshd.pid ]; then
      for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -KILL "$child" 2>/dev/null; done
    fi
    kill "$pid" 2>/dev/null
  fi
  rm -f "$pidfile"
done
# Anything still in the server's namespace was started by the sandbox (a
# container or a containerd an engine left behind when it was killed).
if [ -f "$root/netns" ]; then
  ns=$(cat "$root/netns")
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
  for _ in $(seq 30); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  awk -v r="$root/engine/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
fi
if [ -f "$root/netns" ]; then ip netns del "$(cat "$root/netns")" 2>/dev/null; rm -f "$root/netns"; fi
# Deleting the namespace took the veth pair with it. The pair is left only
# when up.sh stopped before moving its peer (rbnN) into the namespace: then
# both ends are here. A veth of that name whose peer is elsewhere is another
# sandbox's (this record can be older than a reboot).
if [ -f "$root/veth" ]; then
  veth=$(cat "$root/veth")
  if ip -o link show dev "$veth" 2>/dev/null | grep -qF -- "$veth@${veth/rbh/rbn}:"; then
    ip link del "$veth" 2>/dev/null
  fi
  rm -f "$root/veth"
fi
exit 0
