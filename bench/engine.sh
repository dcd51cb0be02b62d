#!/usr/bin/env bash
# Engine overhead benchmark (issue 2): 1,000 local `true` steps as a chain and
# as a wide fan-out, and validate + plan of a 10,000-step runbook.
# Usage: bench/engine.sh   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="$PWD/target/release/runbook"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/runbooks"

gen_chain() { # n
  echo "steps:"
  for i in $(seq 0 $(($1 - 1))); do
    echo "  - id: s$i"
    [ "$i" -gt 0 ] && echo "    needs: [s$((i - 1))]"
    echo "    run: 'true'"
  done
}
gen_fan() { # n: one root, n-2 leaves, one join
  echo "steps:"
  echo "  - id: root"
  echo "    run: 'true'"
  leaves=""
  for i in $(seq 1 $(($1 - 2))); do
    echo "  - id: l$i"
    echo "    needs: [root]"
    echo "    run: 'true'"
    leaves="$leaves${leaves:+, }l$i"
  done
  echo "  - id: join"
  echo "    needs: [$leaves]"
  echo "    run: 'true'"
}
gen_chain 1000 > "$work/runbooks/chain.yaml"
gen_fan 1000 > "$work/runbooks/fan.yaml"
gen_chain 10000 > "$work/runbooks/big.yaml"

now() { date +%s.%N; }
cd "$work"
# The commands' own time: 1,000 `sh -c true` one after another.
t0=$(now); for _ in $(seq 1000); do sh -c true; done; t1=$(now)
base=$(echo "($t1 - $t0) / 1000 * 1000" | bc -l)
printf 'sh -c true alone:          %.2f ms per command\n' "$base"

for rb in chain fan; do
  for jobs in 1 4; do
    [ "$rb" = chain ] && [ "$jobs" = 4 ] && continue
    rm -rf state
    t0=$(now); /usr/bin/time -f '%M' -o mem "$bin" -q run "$rb" --jobs "$jobs" >/dev/null; t1=$(now)
    wall=$(echo "($t1 - $t0) * 1000 / 1000" | bc -l)
    own=$(echo "$base / $jobs" | bc -l)
    printf '%-5s 1000 steps, --jobs %s: %.2f ms per step wall, %.2f ms engine overhead per step, peak %s MB\n' \
      "$rb" "$jobs" "$wall" "$(echo "$wall - $own" | bc -l)" "$(( $(cat mem) / 1024 ))"
  done
done

t0=$(now); /usr/bin/time -f '%M' -o mem "$bin" validate big >/dev/null; t1=$(now)
printf 'validate + plan, 10000 steps: %.0f ms, peak %s MB\n' "$(echo "($t1 - $t0) * 1000" | bc -l)" "$(( $(cat mem) / 1024 ))"
