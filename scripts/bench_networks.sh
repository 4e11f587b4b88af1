#!/usr/bin/env bash
# Runs dimix's bench_networks and the PyTorch peer (scripts/bench_torch.py,
# Debian's python3-torch) on the same networks, batches and threads, and
# prints the speed ratio (PyTorch time / dimix time). The two alternate
# network by network, so that each pair is timed minutes apart at most: on a
# shared VM the speed of both drifts by up to 2x over a quarter of an hour.
#   bash scripts/bench_networks.sh [--only a,b] [--batches 32,128] [--threads 2] [--reps N]
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
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only="$2"; shift 2 ;;
    --only=*) only="${1#--only=}"; shift ;;
    *) rest+=("$1"); shift ;;
  esac
done
names=$("$BUILD_DIR/bench_networks" --list ${only:+--only "$only"})
out=$(mktemp -d)
for name in $names; do
  "$BUILD_DIR/bench_networks" --json "$out/dimix-$name.json" --only "$name" "${rest[@]}"
  # PyTorch may not fit (the dense patch-1 ViT at batch 128 needs more than
  # 24 GiB): its rows are then left out of the table, not the rest.
  /usr/bin/python3 scripts/bench_torch.py --json "$out/torch-$name.json" --only "$name" "${rest[@]}" ||
    echo "# PyTorch failed on $name (exit $?): no ratio for it"
done
/usr/bin/python3 - "$out" $names <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
print(f"\n{'network':26s} {'batch':>5s} {'dimix ms':>9s} {'torch ms':>9s} {'speed-up':>9s} {'fwd speed-up':>13s}")
for name in names:
    ours = json.load(open(f"{out}/dimix-{name}.json"))["rows"]
    try:
        peer = {r["batch"]: r for r in json.load(open(f"{out}/torch-{name}.json"))["rows"]}
    except (OSError, ValueError):
        peer = {}
    for o in ours:
        p = peer.get(o["batch"])
        if p is None: continue
        print(f"{name:26s} {o['batch']:5d} {o['train_ms']:9.1f} {p['train_ms']:9.1f} {p['train_ms']/o['train_ms']:8.2f}x "
              f"{p['fwd_ms']/o['fwd_ms']:12.2f}x")
PY
