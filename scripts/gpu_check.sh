#!/usr/bin/env bash
# GPU check: one command for a machine with an NVIDIA GPU.
#
#   scripts/gpu_check.sh            # from the repository root (or anywhere)
#
# 1. configures and builds dimix with CUDA (Release, -j16) in build-gpu/;
# 2. runs the whole ctest suite, so the registry's CUDA parity test
#    ("[registry][cuda]") and every [cuda] test actually run, and prints the
#    [cuda] tests' own output (their skips say "SKIPPED" if no GPU is seen);
# 3. trains a Table III butterfly ViT (vit-p4-l4-butterfly) for a short run
#    on synthetic CIFAR-shaped data, once on the GPU and once on the CPU, from
#    the same seed, and prints both loss curves side by side;
# 4. benchmarks: apps/bench_gpu (kernels vs their simple oracles and floors,
#    AdamW, the Table II / III networks' training steps and peak memory) and,
#    when PyTorch with CUDA is importable, scripts/bench_torch_gpu.py (the
#    same networks and kernels in PyTorch, eager and SDPA); one table with the
#    ratios and the paper's patch-1 ViT figures (scripts/gpu_bench_table.py).
# Outputs (at most 12 small files: build, ctest and CUDA-test logs, both runs'
# logs and metrics, the side-by-side table, both benchmarks' logs and JSON,
# the benchmark table) go to $OUT when it is set, else to gpu_check_out/; run
# directories (checkpoints) stay under the build dir.
#
# Environment knobs: JOBS (16), STEPS (50), BATCH (64), MODEL
# (vit-p4-l4-butterfly), BUILD_DIR (build-gpu), CUDA_ARCHS (80;90),
# DIMIX_CUDA_SYNC=1 to synchronise after every kernel (locates async faults),
# DIMIX_CUDA_SIMPLE=1 to run the part-1 simple kernels instead of the fused
# ones (tells a fused-kernel bug from anything else),
# SKIP_BUILD=1 / SKIP_TESTS=1 / SKIP_BENCH=1 to reuse an existing build / skip
# ctest / skip the benchmarks, BENCH_ARGS (extra bench_gpu flags, e.g.
# "--quick --batches 32"), TORCH_ARGS (extra bench_torch_gpu.py flags),
# PYTHON (python3).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${OUT:-$ROOT/gpu_check_out}"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-gpu}"
JOBS="${JOBS:-16}"
STEPS="${STEPS:-50}"
BATCH="${BATCH:-64}"
MODEL="${MODEL:-vit-p4-l4-butterfly}"
CUDA_ARCHS="${CUDA_ARCHS:-80;90}"
mkdir -p "$OUT_DIR"
status=0

say() { printf '\n==== %s\n' "$*"; }

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi not available"
command -v nvcc >/dev/null && nvcc --version | tail -1

# ---- 1. build -------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
say "configure + build ($BUILD_DIR, CUDA ON, Release, -j$JOBS)"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
start=$(date +%s)
if ! cmake -S "$ROOT" -B "$BUILD_DIR" -DDIMIX_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
     "-DDIMIX_CUDA_ARCHITECTURES=$CUDA_ARCHS" "${launcher[@]}" >"$OUT_DIR/build.log" 2>&1; then
  tail -30 "$OUT_DIR/build.log"
  echo "FAILED: cmake configure (log: $OUT_DIR/build.log)"
  exit 1
fi
if ! cmake --build "$BUILD_DIR" -j "$JOBS" >>"$OUT_DIR/build.log" 2>&1; then
  grep -E "error|Error" "$OUT_DIR/build.log" | head -40
  echo "FAILED: build (log: $OUT_DIR/build.log)"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s"
fi

# ---- 2. tests -------------------------------------------------------------------------
if [ "${SKIP_TESTS:-0}" != 1 ]; then
say "ctest (all tests; CUDA parity included)"
(cd "$BUILD_DIR" && ctest -j "$JOBS" --output-on-failure) >"$OUT_DIR/ctest.log" 2>&1
ctest_rc=$?
tail -25 "$OUT_DIR/ctest.log"
[ $ctest_rc -eq 0 ] || { echo "FAILED: ctest (log: $OUT_DIR/ctest.log)"; status=1; }

say "CUDA tests, verbose (test_ops [cuda], [registry][cuda], [conv2d])"
if [ -x "$BUILD_DIR/tests/test_ops" ]; then
  "$BUILD_DIR/tests/test_ops" "[cuda],[conv2d]" --durations yes >"$OUT_DIR/cuda_tests.log" 2>&1
  cuda_rc=$?
  grep -E "SKIPPED|FAILED|passed|failed" "$OUT_DIR/cuda_tests.log" | tail -40
  [ $cuda_rc -eq 0 ] || status=1
fi
fi

# ---- 3. training: GPU vs CPU ---------------------------------------------------------------
say "training $MODEL on synthetic CIFAR-shaped data, $STEPS steps, batch $BATCH: cuda vs cpu"
TRAIN="$BUILD_DIR/train_image"
if [ ! -x "$TRAIN" ]; then
  echo "SKIPPED: $TRAIN was not built (apps/train_image.cpp missing?); no training comparison"
else
  if ! "$TRAIN" --list-models 2>/dev/null | grep -q "^ *$MODEL "; then
    echo "note: --list-models does not list $MODEL; trying it anyway"
  fi
  for dev in cuda cpu; do
    run_dir="$BUILD_DIR/gpu_check_runs/train_$dev"
    rm -rf "$run_dir"
    t0=$(date +%s)
    "$TRAIN" --model "$MODEL" --dataset synthetic --device "$dev" --steps "$STEPS" --batch-size "$BATCH" \
      --log-every 1 --seed 1 --quiet --out "$run_dir" >"$OUT_DIR/train_$dev.log" 2>&1
    rc=$?
    echo "$dev: exit $rc in $(( $(date +%s) - t0 )) s"
    cp "$run_dir/metrics.jsonl" "$OUT_DIR/metrics_$dev.jsonl" 2>/dev/null
    if [ $rc -ne 0 ]; then
      tail -5 "$OUT_DIR/train_$dev.log"
      status=1
    fi
  done
  # Side by side: step, cuda loss, cpu loss, |difference|.
  python3 - "$OUT_DIR/metrics_cuda.jsonl" "$OUT_DIR/metrics_cpu.jsonl" <<'EOF' | tee "$OUT_DIR/loss_curves.txt"
import json, sys
def losses(path):
    out = {}
    try:
        for line in open(path):
            r = json.loads(line)
            if r.get("type") == "train" and "loss" in r:
                out[r["step"]] = r["loss"]
    except OSError as e:
        print(f"(cannot read {path}: {e})")
    return out
gpu, cpu = losses(sys.argv[1]), losses(sys.argv[2])
print(f"{'step':>5} {'cuda loss':>12} {'cpu loss':>12} {'|diff|':>10}")
worst = 0.0
for s in sorted(set(gpu) | set(cpu)):
    g, c = gpu.get(s), cpu.get(s)
    d = abs(g - c) if g is not None and c is not None else float("nan")
    if d == d: worst = max(worst, d)
    fmt = lambda v: f"{v:12.6f}" if v is not None else f"{'-':>12}"
    print(f"{s:5d} {fmt(g)} {fmt(c)} {d:10.2e}")
print(f"max |cuda - cpu| over {len(set(gpu) & set(cpu))} common steps: {worst:.3e}")
EOF
fi

# ---- 4. benchmarks: dimix vs its oracles, floors and PyTorch -------------------------------
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  PYTHON="${PYTHON:-python3}"
  say "benchmark: bench_gpu (kernels, AdamW, networks)"
  if [ ! -x "$BUILD_DIR/bench_gpu" ]; then
    echo "SKIPPED: $BUILD_DIR/bench_gpu was not built"
  else
    # shellcheck disable=SC2086
    "$BUILD_DIR/bench_gpu" --json "$OUT_DIR/bench_gpu.json" ${BENCH_ARGS:-} >"$OUT_DIR/bench_gpu.log" 2>&1
    rc=$?
    cat "$OUT_DIR/bench_gpu.log"
    [ $rc -eq 0 ] || { echo "FAILED: bench_gpu (exit $rc)"; status=1; }
    say "benchmark: PyTorch peer (scripts/bench_torch_gpu.py)"
    torch_json=""
    if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
      # shellcheck disable=SC2086
      "$PYTHON" "$ROOT/scripts/bench_torch_gpu.py" --json "$OUT_DIR/bench_torch_gpu.json" ${TORCH_ARGS:-} \
        >"$OUT_DIR/bench_torch_gpu.log" 2>&1 && torch_json="$OUT_DIR/bench_torch_gpu.json"
      tail -40 "$OUT_DIR/bench_torch_gpu.log"
    else
      echo "SKIPPED: no PyTorch with CUDA for $PYTHON (pip install torch, or set PYTHON); dimix figures only"
    fi
    if [ -s "$OUT_DIR/bench_gpu.json" ]; then
      say "benchmark table: dimix vs its oracles, the floors and PyTorch (ratios > 1: dimix faster)"
      "$PYTHON" "$ROOT/scripts/gpu_bench_table.py" "$OUT_DIR/bench_gpu.json" $torch_json | tee "$OUT_DIR/bench_table.txt"
    fi
  fi
fi

say "done: outputs in $OUT_DIR"
[ $status -eq 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED (see logs above)"
exit $status
