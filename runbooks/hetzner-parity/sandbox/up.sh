#!/usr/bin/env bash
# Starts the sandbox: a simulated Hetzner server on this machine, reached over
# a dedicated sshd on a loopback port. Nothing of the user's own SSH setup or
# any root account is touched; everything lives under $SANDBOX_DIR
# (default: state/sandbox under the current directory).
#
# Writes $SANDBOX_DIR/runbook-args: the --var arguments that point the
# hetzner-parity runbook at the sandbox, one per line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${SANDBOX_DIR:-$PWD/state/sandbox}
"$here/down.sh" "$root" >/dev/null 2>&1 || true
rm -rf "$root"
mkdir -p "$root/run" "$root/upstream"
root=$(cd "$root" && pwd)

for tool in /usr/sbin/sshd ssh-keygen docker-compose /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "sandbox: $tool is missing (apt-get install openssh-server docker-compose)" >&2; exit 1; }
done

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The server's file system: the deploy dir as found on Hetzner.
deploy="$root/server/opt/mcp-stack"
mkdir -p "$deploy"
cp -R "$here/seed/deploy/." "$deploy/"
mv "$deploy/env" "$deploy/.env"
chmod 600 "$deploy/.env"
cp "$here/seed/users.json" "$root/users.json"

# With SANDBOX_NETNS=NAME (root only), the server gets a network namespace of
# its own, joined to this machine by a veth pair on a private /30: its sshd
# listens on the namespace side, and its loopback (where mcp-proxy publishes
# port 8000) is reachable only through the SSH tunnel, as on the real server.
bind=127.0.0.1
wrap=""
listen=127.0.0.1
if [ -n "${SANDBOX_NETNS:-}" ]; then
  ns=$SANDBOX_NETNS
  lock=/tmp/runbook-sandbox-netns.lock
  for _ in $(seq 300); do mkdir "$lock" 2>/dev/null && break; sleep 0.1; done
  trap 'rmdir "$lock" 2>/dev/null || true' EXIT
  echo "$ns" > "$root/netns"
  ip netns add "$ns"
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
  trap - EXIT
  bind="10.213.$octet.1"
  listen="10.213.$octet.2"
  wrap="ip netns exec $ns"
fi

# Simulated upstream APIs (GitHub, Trello, SonarCloud).
cp "$here/valid-tokens.env" "$root/upstream/valid.env"
/usr/bin/python3 "$here/server/upstream.py" "$root/upstream/port" "$root/upstream/valid.env" "$bind" >"$root/run/upstream.log" 2>&1 &
echo $! > "$root/run/upstream.pid"
for _ in $(seq 100); do [ -s "$root/upstream/port" ] && break; sleep 0.05; done
up_port=$(cat "$root/upstream/port")
echo "http://$bind:$up_port" > "$root/upstream.url"
free_port > "$root/proxy.port"

# The server's sshd: own host key, own client key, key auth only.
ssh-keygen -q -t ed25519 -N '' -f "$root/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$root/client_key"
cp "$root/client_key.pub" "$root/authorized_keys"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd
# A free port can be taken by someone else before sshd binds it: try again.
for attempt in 1 2 3 4 5; do
ssh_port=$(free_port)
cat > "$root/sshd_config" <<CFG
Port $ssh_port
ListenAddress $listen
HostKey $root/host_key
AuthorizedKeysFile $root/authorized_keys
PidFile $root/run/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxSessions 50
SetEnv PATH=$here/server/bin:/usr/local/bin:/usr/bin:/bin SANDBOX_STATE=$root
CFG
if $wrap /usr/sbin/sshd -f "$root/sshd_config" -E "$root/run/sshd.log"; then break; fi
[ "$attempt" = 5 ] && { echo "sandbox: sshd did not start; see $root/run/sshd.log" >&2; exit 1; }
done
echo "[$listen]:$ssh_port $(cut -d' ' -f1,2 "$root/host_key.pub")" > "$root/known_hosts"

# What runs on the server before the parity work: both compose files up.
(cd "$deploy" && SANDBOX_STATE="$root" $wrap "$here/server/bin/docker" compose \
  -f docker-compose.yml -f docker-compose.hetzner.yml up -d >/dev/null)

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
github_api=http://$bind:$up_port
--var
trello_api=http://$bind:$up_port
--var
sonar_api=http://$bind:$up_port
--var
proxy_port=$(cat "$root/proxy.port")
--var
sandbox=true
ARGS
echo "sandbox up: server deploy dir $deploy, sshd on $listen port $ssh_port"
