#!/usr/bin/env bash
# Starts the sandbox: a Hetzner-like server on this machine, reached over a
# dedicated sshd, running the stack on a real Docker Engine. Nothing of the
# user's own SSH setup or any root account is touched; everything lives under
# $SANDBOX_DIR (default: state/sandbox under the current directory).
#
# As root: the server gets a network namespace of its own ($SANDBOX_NETNS, or
# a name derived from $SANDBOX_DIR) joined to this machine by a veth pair, and
# its own Docker Engine (Debian's dockerd: data root, socket and pid file
# under $SANDBOX_DIR/engine) inside that namespace, so what the stack
# publishes on 127.0.0.1 is the server's loopback, reachable only through the
# SSH tunnel. Without root: the Docker daemon you already have (DOCKER_HOST or
# the default socket), under a compose project name of its own.
#
# No image is pulled: the images the compose files name are built here from a
# Debian base (base.sh, cached under state/sandbox-base) before the run.
#
# Writes $SANDBOX_DIR/runbook-args (the --var arguments that point the
# hetzner-parity runbook at the sandbox, one per line) and $SANDBOX_DIR/env
# (DOCKER_HOST=..., COMPOSE_PROJECT_NAME=...: `. state/sandbox/env; docker ps`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${SANDBOX_DIR:-$PWD/state/sandbox}
# The sandbox's sshd_config names files under it (quoted: spaces are fine).
case "$root" in
*'"'* | *'\'* | *'%'* | *$'\n'*)
  echo "sandbox: the sandbox folder $root has a \", \\, % or newline in its path, which sshd_config cannot hold: set SANDBOX_DIR to another folder" >&2
  exit 1
  ;;
esac
# The folder is emptied: only when it is empty or a sandbox's (up.sh makes
# run/ first), never a folder of yours that SANDBOX_DIR names by mistake.
if [ -d "$root" ] && [ ! -d "$root/run" ] && [ -n "$(ls -A "$root" 2>/dev/null)" ]; then
  echo "sandbox: $root is not empty and not a sandbox folder, and up.sh would delete what is in it: set SANDBOX_DIR to a new or empty folder" >&2
  exit 1
fi
"$here/down.sh" "$root" >/dev/null 2>&1 || true
rm -rf "$root"
mkdir -p "$root/run" "$root/upstream"
root=$(cd "$root" && pwd)
# A failed start takes down what it started (engine, sshd, namespace).
on_exit() { local code=$?; [ "$code" = 0 ] || "$here/down.sh" "$root" >/dev/null 2>&1; exit "$code"; }
trap on_exit EXIT
export DOCKER_BUILDKIT=0
t0=$(date +%s)

need() { command -v "$1" >/dev/null || { echo "sandbox: $1 is missing ($2)" >&2; exit 1; }; }
need /usr/sbin/sshd "apt-get install openssh-server"
need ssh-keygen "apt-get install openssh-client"
need /usr/bin/python3 "apt-get install python3"
need docker "apt-get install docker.io"
# Compose v2, the `docker compose` of a current server (the Docker CLI
# plugin; Debian 13's docker-compose package, which compose-v2.sh installs
# on Debian 12), not Debian 12's Compose v1: the runbook's own default
# `compose: docker compose`, with no --var compose= override.
docker compose version >/dev/null 2>&1 || {
  echo "sandbox: docker compose (Compose v2, the Docker CLI plugin) is missing: as root, $here/compose-v2.sh installs it (Debian 13's docker-compose package, also on Debian 12)" >&2
  exit 1
}
is_root=""
[ "$(id -u)" = 0 ] && is_root=1
if [ -n "$is_root" ]; then
  need dockerd "apt-get install docker.io"
  need ip "apt-get install iproute2"
  need nsenter "apt-get install util-linux"
  need iptables "apt-get install iptables"
fi

# The images the compose files name, which the sandbox builds as stand-ins.
standins=(postgres:16 redis:7 ghcr.io/open-webui/open-webui:main mcp/filesystem
  ghcr.io/github/github-mcp-server mcp/clickup mcp/trello node:20-alpine python:3.12-slim)

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The server's file system: the deploy dir as found on Hetzner.
deploy="$root/server/opt/mcp-stack"
mkdir -p "$deploy"
cp -R "$here/seed/deploy/." "$deploy/"
# The server's old mcp-proxy differs from the checkout in db.py and tenants.py
# (and a leftover legacy_gateway.py): its main.py and Dockerfile are today's.
cp "$here/source/mcp-proxy/main.py" "$here/source/mcp-proxy/Dockerfile" "$deploy/mcp-proxy/"
mv "$deploy/env" "$deploy/.env"
chmod 600 "$deploy/.env"

# As root the server has a network namespace of its own, joined to this
# machine by a veth pair on a private /30: its sshd and its Docker Engine live
# there, and its loopback is reachable only through the SSH tunnel.
bind=127.0.0.1
wrap=""
listen=127.0.0.1
if [ -n "$is_root" ]; then
  ns=${SANDBOX_NETNS:-rbsb-$(printf '%s' "$root" | cksum | cut -d' ' -f1)}
  lock=/tmp/runbook-sandbox-netns.lock
  for _ in $(seq 300); do mkdir "$lock" 2>/dev/null && break; sleep 0.1; done
  trap 'code=$?; rmdir "$lock" 2>/dev/null; (exit "$code"); on_exit' EXIT
  # Recorded (for down.sh to delete) only once it is ours.
  ip netns add "$ns" || { echo "sandbox: cannot make the network namespace $ns (is one of that name left over? ip netns del $ns)" >&2; exit 1; }
  echo "$ns" > "$root/netns"
  octet=""
  for o in $(seq 1 254); do
    # A deleted namespace's veth lingers a moment after `ip netns del`: skip
    # used addresses, and let `ip link add` itself say whether the name is free.
    ip -o addr show | grep -q "10\.213\.$o\." && continue
    if ip link add "rbh$o" type veth peer name "rbn$o" 2>/dev/null; then octet=$o; break; fi
  done
  [ -n "$octet" ] || { echo "sandbox: no free 10.213.x.0/30" >&2; exit 1; }
  echo "rbh$octet" > "$root/veth"
  ip link set "rbn$octet" netns "$ns"
  ip addr add "10.213.$octet.1/30" dev "rbh$octet"
  ip link set "rbh$octet" up
  ip netns exec "$ns" ip addr add "10.213.$octet.2/30" dev "rbn$octet"
  ip netns exec "$ns" ip link set "rbn$octet" up
  ip netns exec "$ns" ip link set lo up
  rmdir "$lock"
  trap on_exit EXIT
  bind="10.213.$octet.1"
  listen="10.213.$octet.2"
  wrap="ip netns exec $ns"
fi

# The Docker Engine.
if [ -n "$is_root" ]; then
  # Debian's dockerd in the server's namespace (engine.sh). Its iptables
  # rules (NAT from the compose networks out to the veth, the published
  # ports) live in that namespace's tables, not this machine's. The
  # containers' DNS forwards names outside the compose network to this
  # machine's side of the veth (nothing answers there), never to the outside.
  eng="$root/engine"
  base=$("$here/base.sh")
  DOCKER_HOST=$("$here/engine.sh" start "$eng" "$ns" --dns "$bind")
  export DOCKER_HOST
  project=mcp-stack
  echo "sandbox: own Docker Engine (dockerd pid $(cat "$eng/started.pid")) in namespace $ns, $DOCKER_HOST" >&2
else
  # The user's daemon, under a project name of this sandbox's own.
  if ! docker version >/dev/null 2>&1; then
    echo "sandbox: not root, and no Docker daemon answers at ${DOCKER_HOST:-the default socket}: run as root (the sandbox then starts its own engine) or set DOCKER_HOST to a daemon you may use" >&2
    exit 1
  fi
  export DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}
  project="rbsandbox-$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
  # Containers reach the simulated upstreams through the address this
  # machine has on the daemon's default bridge (docker0): its gateway, which
  # Docker leaves out of `network inspect` unless it was configured; then it
  # is the subnet's first address, as Docker assigns it.
  bind=$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{"\n"}}{{end}}' 2>/dev/null |
    /usr/bin/python3 -c '
import ipaddress, sys
for line in sys.stdin:
    f = line.split()
    if len(f) == 1 and ipaddress.ip_network(f[0], strict=False).version == 4:
        print(next(ipaddress.ip_network(f[0], strict=False).hosts())); break
    if len(f) == 2 and ipaddress.ip_address(f[0]).version == 4:
        print(f[0]); break
' 2>/dev/null || true)
  [ -n "$bind" ] || { echo "sandbox: cannot find this machine's address on the daemon's bridge network (docker network inspect bridge); the daemon must run on this machine" >&2; exit 1; }
  base=""
  echo "sandbox: not root: using the Docker daemon at $DOCKER_HOST with compose project $project; the stack publishes ports 8000 (loopback), 3000, 3100 and 3200 on this machine" >&2
  # On your own daemon, never replace a real image of a stand-in's name:
  # refuse before building anything.
  for name in "${standins[@]}"; do
    if mark=$(docker image inspect -f '{{index .Config.Labels "rbsandbox.standin"}}' "$name" 2>/dev/null) && [ "$mark" != 1 ]; then
      echo "sandbox: your Docker daemon has an image $name of its own, which the sandbox's stand-in would replace: run as root (own engine) or remove it (docker image rm $name); nothing on your daemon was changed" >&2
      exit 1
    fi
  done
fi
# Shell-quoted where needed (`. env` reads it back, also with spaces).
printf 'DOCKER_HOST=%q\nCOMPOSE_PROJECT_NAME=%q\n' "$DOCKER_HOST" "$project" > "$root/env"
export COMPOSE_PROJECT_NAME=$project

# Simulated upstream APIs (GitHub, Trello, SonarCloud), on this machine's side.
cp "$here/valid-tokens.env" "$root/upstream/valid.env"
/usr/bin/python3 "$here/server/upstream.py" "$root/upstream/port" "$root/upstream/valid.env" "$bind" >"$root/run/upstream.log" 2>&1 &
echo $! > "$root/run/upstream.pid"
for _ in $(seq 600); do
  [ -s "$root/upstream/port" ] && break
  kill -0 "$(cat "$root/run/upstream.pid")" 2>/dev/null || break
  sleep 0.05
done
[ -s "$root/upstream/port" ] || { cat "$root/run/upstream.log" >&2; echo "sandbox: the simulated upstream APIs did not start on $bind; see $root/run/upstream.log" >&2; exit 1; }
up_port=$(cat "$root/upstream/port")
upstream="http://$bind:$up_port"
echo "$upstream" > "$root/upstream.url"

# The images the compose files name, built locally (no registry): a base
# image with Debian's PostgreSQL, redis-server and python3, and on it the
# stand-ins (images/), one image per name with its own command.
t_img=$(date +%s)
if [ -n "$base" ]; then
  docker import "$base" rbsandbox/base:latest >/dev/null ||
    { echo "sandbox: the cached base image $base does not import: delete it and run again to rebuild it" >&2; exit 1; }
elif ! docker image inspect rbsandbox/base:latest >/dev/null 2>&1; then
  # Without root there is no debootstrap: the base tar a root run cached.
  base=$("$here/base.sh") ||
    { echo "sandbox: your Docker daemon has no rbsandbox/base image and there is no cached base to import: build it once as root (sudo $here/base.sh), then run up.sh again" >&2; exit 1; }
  [ -r "$base" ] ||
    { echo "sandbox: cannot read the cached base $base: make it readable to you (sudo chmod a+r $base), or import it as its owner (docker import $base rbsandbox/base:latest)" >&2; exit 1; }
  echo "sandbox: importing the cached base $base into your daemon as rbsandbox/base:latest" >&2
  docker import "$base" rbsandbox/base:latest >/dev/null ||
    { echo "sandbox: the cached base image $base does not import" >&2; exit 1; }
fi
# What down.sh removes from your daemon when it stops the sandbox.
[ -n "$is_root" ] || printf '%s\n' rbsandbox/standins:latest "${standins[@]}" > "$root/standin-images"
ctx="$root/run/standins"
mkdir -p "$ctx"
cp "$here/images/"* "$here/seed/users.json" "$ctx/"
printf 'FROM rbsandbox/base:latest\nLABEL rbsandbox.standin=base\nCOPY . /opt/sandbox/\nRUN ln -s /opt/sandbox/npx /usr/local/bin/npx\nENV SANDBOX_UPSTREAM=%s\n' "$upstream" > "$ctx/Dockerfile"
docker build -q -t rbsandbox/standins:latest "$ctx" >/dev/null 2>>"$root/run/images.log" ||
  { cat "$root/run/images.log" >&2; echo "sandbox: building the stand-in base failed" >&2; exit 1; }
standin() { # NAME DOCKERFILE-LINES...
  local name=$1
  shift
  # Checked against the user's images above only if it is in the list.
  [[ " ${standins[*]} " == *" $name "* ]] || { echo "sandbox: the stand-in $name is missing from the standins list in up.sh" >&2; return 1; }
  printf 'FROM rbsandbox/standins:latest\nLABEL rbsandbox.standin=1\n%s\n' "$@" | docker build -q -t "$name" - >/dev/null 2>>"$root/run/images.log"
}
pids=()
standin postgres:16 'STOPSIGNAL SIGINT' 'CMD ["/opt/sandbox/postgres.sh"]' & pids+=($!)
standin redis:7 'CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", ""]' & pids+=($!)
standin ghcr.io/open-webui/open-webui:main 'CMD ["python3", "/opt/sandbox/webui.py"]' & pids+=($!)
standin mcp/filesystem 'CMD ["python3", "/opt/sandbox/mcpserver.py", "filesystem"]' & pids+=($!)
standin ghcr.io/github/github-mcp-server 'CMD ["python3", "/opt/sandbox/mcpserver.py", "github"]' & pids+=($!)
standin mcp/clickup 'CMD ["python3", "/opt/sandbox/mcpserver.py", "clickup"]' & pids+=($!)
standin mcp/trello 'CMD ["python3", "/opt/sandbox/mcpserver.py", "trello"]' & pids+=($!)
standin node:20-alpine 'CMD ["python3", "/opt/sandbox/idle.py"]' & pids+=($!)
standin python:3.12-slim 'CMD ["python3"]' & pids+=($!)
for p in "${pids[@]}"; do wait "$p" || { cat "$root/run/images.log" >&2; echo "sandbox: building a stand-in image failed" >&2; exit 1; }; done
echo "sandbox: images ready in $(( $(date +%s) - t_img ))s" >&2

# The server's sshd: own host key, own client key, key auth only. Its
# sessions talk to the sandbox's engine (DOCKER_HOST) with the real clients.
ssh-keygen -q -t ed25519 -N '' -f "$root/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$root/client_key"
cp "$root/client_key.pub" "$root/authorized_keys"
[ -n "$is_root" ] && mkdir -p /run/sshd
# A free port can be taken by someone else before sshd binds it: try again.
for attempt in 1 2 3 4 5; do
ssh_port=$(free_port)
cat > "$root/sshd_config" <<CFG
Port $ssh_port
ListenAddress $listen
HostKey "$root/host_key"
AuthorizedKeysFile "$root/authorized_keys"
PidFile "$root/run/sshd.pid"
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxSessions 50
SetEnv PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "DOCKER_HOST=$DOCKER_HOST" COMPOSE_PROJECT_NAME=$project DOCKER_BUILDKIT=0 "SANDBOX_STATE=$root"
CFG
if $wrap /usr/sbin/sshd -f "$root/sshd_config" -E "$root/run/sshd.log"; then break; fi
[ "$attempt" = 5 ] && { echo "sandbox: sshd did not start; see $root/run/sshd.log" >&2; exit 1; }
done
echo "[$listen]:$ssh_port $(cut -d' ' -f1,2 "$root/host_key.pub")" > "$root/known_hosts"

# What runs on the server before the parity work: both compose files up.
t_seed=$(date +%s)
(cd "$deploy" && docker compose -f docker-compose.yml -f docker-compose.hetzner.yml up -d --build >"$root/run/seed-up.log" 2>&1) ||
  { tail -20 "$root/run/seed-up.log" >&2; echo "sandbox: the seed stack did not start; see $root/run/seed-up.log" >&2; exit 1; }
echo "sandbox: the server's old stack is up in $(( $(date +%s) - t_seed ))s" >&2

cat > "$root/runbook-args" <<ARGS
--var
host=$listen
--var
ssh_port=$ssh_port
--var
ssh_user=$(id -un)
--var
ssh_key=$root/client_key
--var
known_hosts_file=$root/known_hosts
--var
deploy_dir=$deploy
--var
source_dir=$here/source
--var
github_api=$upstream
--var
trello_api=$upstream
--var
sonar_api=$upstream
--var
sonarqube_url=$upstream
--var
sandbox=true
ARGS
echo "sandbox up in $(( $(date +%s) - t0 ))s: server deploy dir $deploy, sshd on $listen port $ssh_port; docker: . $root/env"
