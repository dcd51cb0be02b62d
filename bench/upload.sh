#!/usr/bin/env bash
# Upload benchmark: a folder of N small files (default 1,000, in 20 folders)
# put on a host over SSH, then again unchanged, then with one file changed,
# by runbook's `upload` and by rsync over ssh (the peer), side by side.
# Usage: bench/upload.sh    (N=1000; BIN=path to time another build; DELETE=false
#                           for a build without `delete`)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then cargo build --release --quiet; fi
bin="${BIN:-$PWD/target/release/runbook}"
N=${N:-1000}
command -v rsync >/dev/null || { echo "rsync is not installed (apt-get install rsync)" >&2; exit 2; }
work=$(mktemp -d /tmp/rbbench.XXXXXX)
cleanup() { [ -f "$work/sshd.pid" ] && kill "$(cat "$work/sshd.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
. bench/sshd-lib.sh

mkdir -p "$work/runbooks/src"
for i in $(seq 1 "$N"); do
  d="$work/runbooks/src/d$((i % 20))"; mkdir -p "$d"
  head -c $((200 + i % 800)) /dev/urandom | base64 > "$d/f$i.txt"
done
{ echo "$host_yaml"; echo "steps:"; echo "  - id: put"; echo "    on: box"
  echo "    upload: { src: src, dest: $work/dest-runbook$([ "${DELETE:-true}" = true ] && echo ', delete: true') }"; } > "$work/runbooks/up.yaml"

now() { date +%s.%N; }
ms() { echo "($2 - $1) * 1000" | bc -l; }
row() { printf '| %-40s | %9.0f ms | %9.0f ms | %9.0f ms |\n' "$1" "$2" "$3" "$4"; }
rb() { (cd "$work" && "$bin" -q run up --fresh >/dev/null); }
rs() { rsync -a --delete -e "ssh ${ssh_opts[*]}" "$work/runbooks/src/" "$user@127.0.0.1:$work/dest-rsync/"; }
touch_one() { echo changed >> "$work/runbooks/src/d1/f1.txt"; }

echo "| $N files | first | unchanged | one changed |"
echo "|---|---|---|---|"
for tool in rb rs; do
  t0=$(now); $tool; t1=$(now); $tool; t2=$(now); touch_one; $tool; t3=$(now)
  name=$([ $tool = rb ] && echo "runbook upload (delete: ${DELETE:-true})" || echo "rsync -a --delete over ssh")
  row "$name" "$(ms "$t0" "$t1")" "$(ms "$t1" "$t2")" "$(ms "$t2" "$t3")"
done
diff -r "$work/dest-runbook" "$work/dest-rsync" >/dev/null && echo "(both destinations are identical)"
