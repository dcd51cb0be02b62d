#!/usr/bin/env bash
# Remote step benchmark (issue 3): 100 trivial remote steps against a local
# sshd, as a chain and as a wide DAG, compared with plain ssh, ssh with
# ControlMaster, one ssh session for all commands, and tuned Ansible.
# Usage: bench/ssh.sh            (SKIP_ANSIBLE=1 to leave Ansible out,
#        BIN=path/to/runbook to time that binary instead of building one,
#        ROUNDS=n to run the runbook rows n times, ONLY_RUNBOOK=1 to skip
#        the plain ssh rows, MARGINAL_ONLY=1 for the marginal rows alone)
# The marginal rows (issue 26): one more step of a remote chain,
# (T(100 steps) - T(10 steps)) / 90, beside one more `sh -c true` fed to one
# open ssh session, (T(1000) - T(100)) / 900 (more commands, as the
# connection's set-up, in both, varies more than 90 commands cost),
# measured one after the other, MROUNDS=n times (default 3), each figure
# the median of its rounds.
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

if [ -z "${ONLY_RUNBOOK:-}${MARGINAL_ONLY:-}" ]; then
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
  [ -n "${MARGINAL_ONLY:-}" ] && break
  rm -rf "$work/state"
  (cd "$work" && t0=$(now) && "$bin" -q run chain >/dev/null && t1=$(now) && row "runbook, $N-step chain" "$(per "$t0" "$t1")")
  (cd "$work" && t0=$(now) && "$bin" -q run wide --jobs 8 >/dev/null && t1=$(now) && row "runbook, $N-step wide DAG, --jobs 8" "$(per "$t0" "$t1")")
done

# --- marginal cost of one more step (issue 26) -----------------------------
chain() { # chain N: a runbook of N remote `true` steps in a chain
  { echo "$host_yaml"; echo "steps:"; for i in $(seq 1 "$1"); do
    echo "  - id: s$i"; [ "$i" -gt 1 ] && echo "    needs: [s$((i-1))]"; echo "    on: box"; echo "    run: 'true'"; done; } > "$work/runbooks/m$1.yaml"
}
chain 10; chain 100
t_chain() { rm -rf "$work/state"; (cd "$work" && t0=$(now) && "$bin" -q run "m$1" >/dev/null && t1=$(now) && echo "$t1 - $t0" | bc -l); }
t_session() { t0=$(now); for _ in $(seq "$1"); do echo 'sh -c true'; done | ssh "${ssh_opts[@]}" "$user@127.0.0.1" sh; t1=$(now); echo "$t1 - $t0" | bc -l; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
steps=(); cmds=()
for _ in $(seq "${MROUNDS:-3}"); do
  a=$(t_chain 10); b=$(t_chain 100); steps+=("$(echo "($b - $a) * 1000 / 90" | bc -l)")
  a=$(t_session 100); b=$(t_session 1000); cmds+=("$(echo "($b - $a) * 1000 / 900" | bc -l)")
done
step=$(printf '%s\n' "${steps[@]}" | median); cmd=$(printf '%s\n' "${cmds[@]}" | median)
row "marginal: one more remote step (chain)" "$step"
row "marginal: one more sh -c true, one session" "$cmd"
printf '| %-44s | %8.1f ×  |\n' "ratio (target ≤ 2.5)" "$(echo "$step / $cmd" | bc -l)"
echo "(load: $(cut -d' ' -f1-3 /proc/loadavg); rounds: ${steps[*]} / ${cmds[*]})" >&2
[ -n "${MARGINAL_ONLY:-}" ] && exit 0

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
