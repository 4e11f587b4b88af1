#!/usr/bin/env bash
# Runs dimix's bench_networks and the PyTorch peer (scripts/bench_torch.py,
# Debian's python3-torch) on the same networks, batches and threads, one
# after the other, and prints the speed ratio (PyTorch time / dimix time).
#   bash scripts/bench_networks.sh [--only a,b] [--batches 32,128] [--threads 2]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y -qq python3-torch >/dev/null
fi
cmake --build "$BUILD_DIR" --target bench_networks -j "$(nproc)" >/dev/null
out=$(mktemp -d)
"$BUILD_DIR/bench_networks" --json "$out/dimix.json" "$@"
/usr/bin/python3 scripts/bench_torch.py --json "$out/torch.json" "$@"
/usr/bin/python3 - "$out/dimix.json" "$out/torch.json" <<'PY'
import json, sys
ours = {(r["name"], r["batch"]): r for r in json.load(open(sys.argv[1]))["rows"]}
peer = {(r["name"], r["batch"]): r for r in json.load(open(sys.argv[2]))["rows"]}
print(f"\n{'network':26s} {'batch':>5s} {'dimix ms':>9s} {'torch ms':>9s} {'speed-up':>9s} {'fwd speed-up':>13s}")
for key, o in ours.items():
    if key not in peer: continue
    p = peer[key]
    print(f"{key[0]:26s} {key[1]:5d} {o['train_ms']:9.1f} {p['train_ms']:9.1f} {p['train_ms']/o['train_ms']:8.2f}x "
          f"{p['fwd_ms']/o['fwd_ms']:12.2f}x")
PY
