#!/usr/bin/env bash
# Runs dimix's bench_networks and the PyTorch peer (scripts/bench_torch.py,
# Debian's python3-torch) on the same networks, batches and threads, and
# prints the speed ratio (PyTorch time / dimix time). The two alternate
# network by network, so that each pair is timed minutes apart at most: on a
# shared VM the speed of both drifts by up to 2x over a quarter of an hour.
# With --rounds R each network's pair runs R times in a row (dimix, PyTorch,
# dimix, ...) and the table gives the medians and the range of the R ratios.
#   bash scripts/bench_networks.sh [--only a,b] [--batches 32,128] [--threads 2] [--reps N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq python3-torch >/dev/null
fi
cmake --build "$BUILD_DIR" --target bench_networks -j "$(nproc)" >/dev/null
# The flags without --only (both tools take the rest as they are).
only=""
rounds=1
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only="$2"; shift 2 ;;
    --only=*) only="${1#--only=}"; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --rounds=*) rounds="${1#--rounds=}"; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
case "$rounds" in
  ''|*[!0-9]*|0) echo "bench_networks.sh: --rounds expects a positive integer, got '$rounds'" >&2; exit 2 ;;
esac
names=$("$BUILD_DIR/bench_networks" --list ${only:+--only "$only"})
out=$(mktemp -d)
for name in $names; do
  for r in $(seq "$rounds"); do
    "$BUILD_DIR/bench_networks" --json "$out/dimix-$name-$r.json" --only "$name" "${rest[@]}"
    # PyTorch may not fit (the dense patch-1 ViT at batch 128 needs more than
    # 24 GiB): its rows are then left out of the table, not the rest.
    /usr/bin/python3 scripts/bench_torch.py --json "$out/torch-$name-$r.json" --only "$name" "${rest[@]}" ||
      echo "# PyTorch failed on $name (exit $?): no ratio for it"
  done
done
/usr/bin/python3 - "$out" "$rounds" $names <<'PY'
import json, statistics, sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def rows(path):
    try:
        return {r["batch"]: r for r in json.load(open(path))["rows"]}
    except (OSError, ValueError):
        return {}

print(f"\n{'network':26s} {'batch':>5s} {'dimix ms':>9s} {'torch ms':>9s} {'speed-up':>9s} {'fwd speed-up':>13s}"
      + ("   speed-up range" if rounds > 1 else ""))
for name in names:
    ours = [rows(f"{out}/dimix-{name}-{r}.json") for r in range(1, rounds + 1)]
    peer = [rows(f"{out}/torch-{name}-{r}.json") for r in range(1, rounds + 1)]
    for batch in ours[0]:
        pairs = [(o[batch], p[batch]) for o, p in zip(ours, peer) if batch in o and batch in p]
        if not pairs: continue
        med = lambda f: statistics.median(f(o, p) for o, p in pairs)
        ratios = [p["train_ms"] / o["train_ms"] for o, p in pairs]
        line = (f"{name:26s} {batch:5d} {med(lambda o, p: o['train_ms']):9.1f} {med(lambda o, p: p['train_ms']):9.1f} "
                f"{statistics.median(ratios):8.2f}x {med(lambda o, p: p['fwd_ms'] / o['fwd_ms']):12.2f}x")
        if rounds > 1: line += f"   {min(ratios):6.2f}-{max(ratios):.2f}x"
        print(line)
PY
