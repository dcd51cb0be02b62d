#!/usr/bin/env bash
# Fleet benchmark (issue 15): N hosts × S steps of `true`, the same hosts and
# steps side by side in one run: runbook vs Ansible (forks = N, pipelining,
# ControlPersist, no facts) vs pyinfra (--parallel N). The hosts are really
# separate: as root each is a network namespace with its own address and
# sshd (tests/support/fleet.sh), otherwise one sshd per 127.0.0.K.
#
# Each tool runs twice: 1 step (what it costs to reach N hosts: connection
# set-up, amortised per host) and S steps; per-step cost is the difference
# divided by S-1 (one step on all N hosts). Peak memory is the whole process
# tree's (the ssh clients included), from a memory cgroup when one can be
# made, else from sampling ps; the engine's own RSS comes from /usr/bin/time.
#
# Usage: bench/fleet.sh   (N=100 S=10; BIN=path/to/runbook; SKIP_PEERS=1
#                          leaves Ansible and pyinfra out, SKIP_ANSIBLE=1
#                          Ansible only; ROUNDS=n; BEFORE=path/to/runbook
#                          adds another build's rows; PG_URL=postgres://...
#                          adds runbook's rows with the state there:
#                          bench/state.sh FLEET=1; FLEET_USER=name logs in
#                          as that user)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  bin="$PWD/target/release/runbook"
else
  bin=$(realpath "$BIN")
fi
N=${N:-100}
S=${S:-10}
work=$(mktemp -d /tmp/rbfleet.XXXXXX)
cleanup() { bash tests/support/fleet.sh down "$work/hosts" || true; rmdir "$cg" 2>/dev/null || true; rm -rf "$work"; }
cg=""
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

t0=$(date +%s.%N)
FLEET_USER=${FLEET_USER:-} bash tests/support/fleet.sh up "$work/hosts" "$N"
t1=$(date +%s.%N)
mode=$(cat "$work/hosts/mode")
printf 'fleet: %s hosts (%s) up in %.1f s\n\n' "$N" "$mode" "$(echo "$t1 - $t0" | bc -l)"
# FLEET_USER=name logs in to every host as that user (made, as root, with
# Debian's default dotfiles when missing), as a fleet's servers would have
# it; by default, as the user running the bench (whose ~/.bashrc every
# login sources: see bench/README.md).
user=${FLEET_USER:-$(id -un)}
if [ -n "${FLEET_USER:-}" ] && ! id "$user" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$user" && usermod -p '*' "$user"
fi
[ -z "${FLEET_USER:-}" ] || chmod o+x "$work" "$work/hosts"

venv="$HOME/.cache/runbook-bench-venv"
if [ -z "${SKIP_PEERS:-}" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  [ -n "${SKIP_ANSIBLE:-}" ] || [ -x "$venv/bin/ansible-playbook" ] || "$venv/bin/pip" install -q ansible-core
  [ -x "$venv/bin/pyinfra" ] || "$venv/bin/pip" install -q pyinfra
fi

# --- peak memory of a whole process tree -----------------------------------
# A memory cgroup (v1 or v2) when this machine lets us make one.
cg_try() {
  for base in /sys/fs/cgroup/memory /sys/fs/cgroup; do
    local d="$base/rbfleet-$$"
    if mkdir "$d" 2>/dev/null; then
      if [ -f "$d/memory.max_usage_in_bytes" ] || [ -f "$d/memory.peak" ]; then cg=$d; return 0; fi
      rmdir "$d"
    fi
  done
  return 1
}
cg_try || true
# Runs a command in the cgroup (fresh), prints "<wall s> <peak MB> <own RSS MB>".
measure() {
  local t0 t1 peak own
  if [ -n "$cg" ]; then
    [ -f "$cg/memory.max_usage_in_bytes" ] && echo 0 > "$cg/memory.max_usage_in_bytes" 2>/dev/null || true
  fi
  t0=$(date +%s.%N)
  if [ -n "$cg" ]; then
    sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' _ "$cg" /usr/bin/time -f '%M' -o "$work/time.out" "$@" >"$work/out.log" 2>&1 || { echo "FAILED: $*" >&2; tail -20 "$work/out.log" >&2; }
  else
    /usr/bin/time -f '%M' -o "$work/time.out" "$@" >"$work/out.log" 2>&1 &
    local pid=$! max=0 s
    while kill -0 "$pid" 2>/dev/null; do
      s=$(ps -eo pid=,ppid=,rss= | awk -v root="$pid" '{p[$1]=$2; r[$1]=$3} END {t=0; for (k in p) {x=k; while (x in p && x!=root && x!=1) x=p[x]; if (x==root) t+=r[k]} print t}')
      [ "$s" -gt "$max" ] && max=$s
      sleep 0.05
    done
    wait "$pid" || { echo "FAILED: $*" >&2; tail -20 "$work/out.log" >&2; }
    echo $((max * 1024)) > "$work/peak"
  fi
  t1=$(date +%s.%N)
  if [ -n "$cg" ]; then
    peak=$(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || cat "$cg/memory.peak")
  else
    peak=$(cat "$work/peak")
  fi
  own=$(tail -1 "$work/time.out")
  echo "$(echo "$t1 - $t0" | bc -l) $((peak / 1048576)) $((own / 1024))"
}

# --- the same fleet for each tool ------------------------------------------
mkdir -p "$work/runbooks"
steps_yaml() { # count
  for i in $(seq 1 "$1"); do
    echo "  - id: s$i"; echo "    on: fleet"
    [ "$i" -gt 1 ] && echo "    needs: [s$((i - 1))]"
    echo "    run: 'true'"
  done
}
for s in 1 "$S"; do
  { echo "inventory: { path: inventory.ini, known_hosts_file: $work/hosts/known_hosts }"
    echo "steps:"; steps_yaml "$s"; } > "$work/runbooks/fleet$s.yaml"
done
cp "$work/hosts/inventory.ini" "$work/runbooks/inventory.ini"

sed 's/$/ ansible_python_interpreter=\/usr\/bin\/python3/; s/^\[fleet\] .*/[fleet]/' "$work/hosts/inventory.ini" > "$work/ansible-inventory"
cat > "$work/ansible.cfg" <<CFG
[defaults]
host_key_checking = True
inventory = $work/ansible-inventory
forks = $N
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$work/hosts/known_hosts -o IdentitiesOnly=yes
control_path_dir = $work/ansible-cp
CFG
for s in 1 "$S"; do
  { echo "- hosts: fleet"; echo "  gather_facts: false"; echo "  tasks:"
    for i in $(seq 1 "$s"); do echo "    - command: /bin/true"; done; } > "$work/play$s.yml"
done

{ echo "fleet = ["
  while IFS=$'\t' read -r name addr port; do
    echo "    ('$name', {'ssh_hostname': '$addr', 'ssh_port': $port, 'ssh_user': '$user', 'ssh_key': '$work/hosts/client_key', 'ssh_known_hosts_file': '$work/hosts/known_hosts', 'ssh_strict_host_key_checking': 'yes'}),"
  done < "$work/hosts/hosts.tsv"
  echo "]"; } > "$work/inventory.py"
for s in 1 "$S"; do
  { echo "from pyinfra.operations import server"
    for i in $(seq 1 "$s"); do echo "server.shell(name='s$i', commands=['true'])"; done; } > "$work/deploy$s.py"
done

row() { # name wall1 wallS peak own
  local setup per
  setup=$(echo "$2 * 1000 / $N" | bc -l)
  per=$(echo "($3 - $2) * 1000 / ($S - 1)" | bc -l)
  printf '| %-38s | %7.2f s | %7.2f s | %8.1f ms | %8.1f ms | %6s MB | %6s |\n' "$1" "$2" "$3" "$setup" "$per" "$4" "$5"
}
echo "| tool ($N hosts) | 1 step | $S steps | set-up per host | one step on all hosts | peak (tree) | own RSS |"
echo "|---|---|---|---|---|---|---|"
reads=()
for _ in $(seq "${ROUNDS:-1}"); do
  rm -rf "$work/runbooks/../state"
  read -r w1 _ _ < <(cd "$work" && measure "$bin" -q run fleet1 --jobs "$N")
  read -r wS peak own < <(cd "$work" && measure "$bin" -q run fleet"$S" --jobs "$N")
  row "runbook, --jobs $N" "$w1" "$wS" "$peak" "${own} MB"
  if [ -n "${BEFORE:-}" ]; then
    # Another build of runbook (BEFORE=path), on the same hosts in the same run.
    rm -rf "$work/state"
    read -r w1 _ _ < <(cd "$work" && measure "$(realpath "$BEFORE")" -q run fleet1 --jobs "$N")
    read -r wS peak own < <(cd "$work" && measure "$(realpath "$BEFORE")" -q run fleet"$S" --jobs "$N")
    row "runbook BEFORE, --jobs $N" "$w1" "$wS" "$peak" "${own} MB"
  fi
  if [ -n "${PG_URL:-}" ]; then
    # The same fleet with the state in PostgreSQL (bench/state.sh).
    read -r w1 _ _ < <(cd "$work" && RUNBOOK_STATE="$PG_URL" measure "$bin" -q run fleet1 --jobs "$N")
    read -r wS peak own < <(cd "$work" && RUNBOOK_STATE="$PG_URL" measure "$bin" -q run fleet"$S" --jobs "$N")
    row "runbook on PostgreSQL, --jobs $N" "$w1" "$wS" "$peak" "${own} MB"
  fi
  # Reading the run back: N x S instances (1,000 by default).
  for cmd in "status" "status --hosts" "status --json" "handoff"; do
    # shellcheck disable=SC2086
    ms=$( (cd "$work" && t0=$(date +%s%N) && "$bin" $cmd fleet"$S" >/dev/null && t1=$(date +%s%N) && echo $(((t1 - t0) / 1000000))) )
    reads+=("| \`runbook $cmd\` | $((N * S)) instances | $ms ms |")
  done
  if [ -z "${SKIP_PEERS:-}" ]; then
    if [ -z "${SKIP_ANSIBLE:-}" ]; then
      read -r w1 _ _ < <(cd "$work" && ANSIBLE_CONFIG="$work/ansible.cfg" measure "$venv/bin/ansible-playbook" "play1.yml")
      read -r wS peak own < <(cd "$work" && ANSIBLE_CONFIG="$work/ansible.cfg" measure "$venv/bin/ansible-playbook" "play$S.yml")
      row "ansible-playbook, forks=$N" "$w1" "$wS" "$peak" "${own} MB"
    fi
    read -r w1 _ _ < <(cd "$work" && measure "$venv/bin/pyinfra" -y --parallel "$N" inventory.py deploy1.py)
    read -r wS peak own < <(cd "$work" && measure "$venv/bin/pyinfra" -y --parallel "$N" inventory.py "deploy$S.py")
    row "pyinfra, --parallel $N" "$w1" "$wS" "$peak" "${own} MB"
  fi
done
echo
echo "| command | run | wall |"
echo "|---|---|---|"
printf '%s\n' "${reads[@]}"
