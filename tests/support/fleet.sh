#!/usr/bin/env bash
# Starts N test hosts that are really separate, and stops them again.
#
#   fleet.sh up DIR N     hosts h1..hN; writes into DIR:
#                           hosts.tsv    name<TAB>address<TAB>port, one per line
#                           client_key   the key every host accepts
#                           known_hosts  every host's key, at its address
#                           inventory.ini, runbook-hosts.yaml  the same hosts, ready to paste
#                           mode         netns or loopback
#   fleet.sh down DIR     stops every process this fleet started, by pid,
#                         and deletes its namespaces
#
# As root, each host is a network namespace of its own, joined to this
# machine by a veth pair on a private /30 in 10.214.0.0/15, with its own sshd
# on port 22. Otherwise each host is an sshd of its own on 127.0.0.K (K from
# 2), all on one free port.
set -euo pipefail

cmd=${1:?usage: fleet.sh up DIR N | down DIR}
dir=${2:?DIR}
SSHD=/usr/sbin/sshd

down() {
  local d=$1
  [ -f "$d/pids" ] || return 0
  # Sessions an sshd forked are its descendants; a namespace's processes
  # are listed by `ip netns pids`. Each is one this script started.
  if [ "$(cat "$d/mode" 2>/dev/null)" = netns ]; then
    while read -r ns; do
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    done < "$d/namespaces"
  fi
  while read -r pid; do
    for c in $(descendants "$pid"); do kill -KILL "$c" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
  done < "$d/pids"
  if [ -f "$d/namespaces" ]; then
    while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done < "$d/namespaces"
  fi
  rm -f "$d/pids" "$d/namespaces"
}

descendants() {
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null || true)
  for k in $kids; do echo "$k"; descendants "$k"; done
}

wait_port() {
  local wrap=$1 addr=$2 port=$3
  for _ in $(seq 1 500); do
    if $wrap bash -c "echo > /dev/tcp/$addr/$port" 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  echo "fleet.sh: sshd on $addr:$port did not come up" >&2
  return 1
}

if [ "$cmd" = down ]; then down "$dir"; exit 0; fi

n=${3:?N}
mkdir -p "$dir"
: > "$dir/pids"; : > "$dir/hosts.tsv"; : > "$dir/known_hosts"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
hostkey=$(cut -d' ' -f1,2 "$dir/host_key.pub")
# FLEET_USER: the user every host is logged in as (default: this one).
user=${FLEET_USER:-$(id -un)}
trap 'down "$dir"' ERR

config() { # address port pidfile
  cat <<EOF
Port $2
ListenAddress $1
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $3
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel ERROR
MaxSessions 100
MaxStartups 100:30:200
EOF
}

if [ "$(id -u)" = 0 ] && ip netns list >/dev/null 2>&1; then
  echo netns > "$dir/mode"
  : > "$dir/namespaces"
  mkdir -p /run/sshd
  # Blocks of 4 addresses; a block is taken when its address is on a link.
  # The lock keeps two fleets starting at once from taking the same one.
  exec 9>/tmp/runbook-fleet-netns.lock
  flock 9
  used=$(ip -o -4 addr show | grep -o '10\.21[45]\.[0-9]*\.[0-9]*' || true)
  block=0
  for i in $(seq 1 "$n"); do
    while :; do
      a=$((214 + block / 16384)); b=$(((block / 64) % 256)); c=$(((block % 64) * 4))
      block=$((block + 1))
      grep -qx "10\.$a\.$b\.$((c + 1))" <<<"$used" || break
    done
    ns="rbf$$-$i"
    veth="rf$((block - 1))"
    ip netns add "$ns"
    echo "$ns" >> "$dir/namespaces"
    ip link add "${veth}h" type veth peer name "${veth}n"
    ip link set "${veth}n" netns "$ns"
    ip addr add "10.$a.$b.$((c + 1))/30" dev "${veth}h"
    ip link set "${veth}h" up
    ip netns exec "$ns" ip addr add "10.$a.$b.$((c + 2))/30" dev "${veth}n"
    ip netns exec "$ns" ip link set "${veth}n" up
    ip netns exec "$ns" ip link set lo up
    addr="10.$a.$b.$((c + 2))"
    config "$addr" 22 "$dir/h$i.pid" > "$dir/h$i.sshd_config"
    ip netns exec "$ns" "$SSHD" -D -e -f "$dir/h$i.sshd_config" >/dev/null 2>>"$dir/sshd.log" </dev/null &
    echo $! >> "$dir/pids"
    printf 'h%s\t%s\t22\n' "$i" "$addr" >> "$dir/hosts.tsv"
    echo "$addr $hostkey" >> "$dir/known_hosts"
  done
  flock -u 9
  i=0
  while IFS=$'\t' read -r name addr port; do
    i=$((i + 1))
    wait_port "ip netns exec rbf$$-$i" "$addr" "$port"
  done < "$dir/hosts.tsv"
else
  echo loopback > "$dir/mode"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + $$ % 20000)))
  for i in $(seq 1 "$n"); do
    addr="127.0.$(((i + 1) / 256)).$(((i + 1) % 256))"
    config "$addr" "$port" "$dir/h$i.pid" > "$dir/h$i.sshd_config"
    "$SSHD" -D -e -f "$dir/h$i.sshd_config" >/dev/null 2>>"$dir/sshd.log" </dev/null &
    echo $! >> "$dir/pids"
    printf 'h%s\t%s\t%s\n' "$i" "$addr" "$port" >> "$dir/hosts.tsv"
    echo "[$addr]:$port $hostkey" >> "$dir/known_hosts"
  done
  while IFS=$'\t' read -r name addr port; do wait_port "" "$addr" "$port"; done < "$dir/hosts.tsv"
fi

# The same hosts as an Ansible inventory and as runbook `hosts:` entries.
{
  echo "[fleet]"
  while IFS=$'\t' read -r name addr port; do
    echo "$name ansible_host=$addr ansible_port=$port ansible_user=$user ansible_ssh_private_key_file=$dir/client_key"
  done < "$dir/hosts.tsv"
} > "$dir/inventory.ini"
while IFS=$'\t' read -r name addr port; do
  printf '  %s: { address: %s, port: %s, user: %s, identity_file: %s, known_hosts_file: %s }\n' \
    "$name" "$addr" "$port" "$user" "$dir/client_key" "$dir/known_hosts"
done < "$dir/hosts.tsv" > "$dir/runbook-hosts.yaml"
