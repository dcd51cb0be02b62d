#!/usr/bin/env bash
# Remote step benchmark (issue 3): 100 trivial remote steps against a local
# sshd, as a chain and as a wide DAG, compared with plain ssh, ssh with
# ControlMaster, one ssh session for all commands, and tuned Ansible.
# Usage: bench/ssh.sh            (SKIP_ANSIBLE=1 to leave Ansible out,
#        BIN=path/to/runbook to time that binary instead of building one,
#        ROUNDS=n to run the runbook rows n times, ONLY_RUNBOOK=1 to skip
#        the plain ssh rows)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  bin="$PWD/target/release/runbook"
else
  bin=$(realpath "$BIN")
fi
N=${N:-100}
work=$(mktemp -d /tmp/rbbench.XXXXXX)
cleanup() { [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# --- a local sshd with its own keys -------------------------------------
. bench/sshd-lib.sh

now() { date +%s.%N; }
per() { echo "($2 - $1) * 1000 / $N" | bc -l; }
row() { printf '| %-44s | %8.1f ms |\n' "$1" "$2"; }

echo "| case ($N commands) | per command |"
echo "|---|---|"

if [ -z "${ONLY_RUNBOOK:-}" ]; then
t0=$(now); for _ in $(seq "$N"); do ssh "${ssh_opts[@]}" "$user@127.0.0.1" true; done; t1=$(now)
row "(a) plain ssh, one connection per command" "$(per "$t0" "$t1")"

cm=(-o ControlMaster=auto -o ControlPath="$work/cm-%C" -o ControlPersist=60)
ssh "${ssh_opts[@]}" "${cm[@]}" "$user@127.0.0.1" true
t0=$(now); for _ in $(seq "$N"); do ssh "${ssh_opts[@]}" "${cm[@]}" "$user@127.0.0.1" true; done; t1=$(now)
row "(b) ssh with ControlMaster/ControlPersist" "$(per "$t0" "$t1")"
ssh "${ssh_opts[@]}" "${cm[@]}" -O exit "$user@127.0.0.1" 2>/dev/null || true

t0=$(now); for _ in $(seq "$N"); do echo true; done | ssh "${ssh_opts[@]}" "$user@127.0.0.1" sh; t1=$(now)
row "(c) one ssh session running all commands" "$(per "$t0" "$t1")"
fi

mkdir -p "$work/runbooks"
host="$host_yaml"
{ echo "$host"; echo "steps:"; for i in $(seq 1 "$N"); do
  echo "  - id: s$i"; [ "$i" -gt 1 ] && echo "    needs: [s$((i-1))]"; echo "    on: box"; echo "    run: 'true'"; done; } > "$work/runbooks/chain.yaml"
{ echo "$host"; echo "steps:"; for i in $(seq 1 "$N"); do
  echo "  - id: s$i"; echo "    on: box"; echo "    run: 'true'"; done; } > "$work/runbooks/wide.yaml"
for _ in $(seq "${ROUNDS:-1}"); do
  rm -rf "$work/state"
  (cd "$work" && t0=$(now) && "$bin" -q run chain >/dev/null && t1=$(now) && row "runbook, $N-step chain" "$(per "$t0" "$t1")")
  (cd "$work" && t0=$(now) && "$bin" -q run wide --jobs 8 >/dev/null && t1=$(now) && row "runbook, $N-step wide DAG, --jobs 8" "$(per "$t0" "$t1")")
done

if [ -z "${SKIP_ANSIBLE:-}" ]; then
  if [ ! -x "$HOME/.cache/runbook-bench-venv/bin/ansible-playbook" ]; then
    python3 -m venv "$HOME/.cache/runbook-bench-venv"
    "$HOME/.cache/runbook-bench-venv/bin/pip" install -q ansible-core
  fi
  cat > "$work/inventory" <<INV
box ansible_host=127.0.0.1 ansible_port=$port ansible_user=$user ansible_ssh_private_key_file=$work/client_key ansible_python_interpreter=/usr/bin/python3
INV
  cat > "$work/ansible.cfg" <<CFG
[defaults]
host_key_checking = True
inventory = $work/inventory
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$work/known_hosts -o IdentitiesOnly=yes
control_path_dir = $work/ansible-cp
CFG
  { echo "- hosts: box"; echo "  gather_facts: false"; echo "  tasks:";
    for i in $(seq 1 "$N"); do echo "    - command: /bin/true"; done; } > "$work/play.yml"
  (cd "$work" && t0=$(now) && ANSIBLE_CONFIG="$work/ansible.cfg" "$HOME/.cache/runbook-bench-venv/bin/ansible-playbook" play.yml >/dev/null && t1=$(now) \
    && row "(d) ansible-playbook, pipelining + ControlPersist" "$(per "$t0" "$t1")")
fi
