#!/usr/bin/env bash
# Command-line behaviour of the binaries: a bad flag, a bad value, an unknown
# model and a missing data file each end the program with exactly one line on
# stderr naming the problem and a non-zero exit code; --help documents every
# flag. Usage: cli_checks.sh BUILD_DIR
set -u
bin="$1"
fail=0
expect_error() {  # expect_error "what is expected in the line" command...
  local want="$1"; shift
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  local lines; lines=$(printf '%s\n' "$err" | grep -c .)
  if [ "$rc" -eq 0 ] || [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -qF -- "$want"; then
    echo "FAIL: $* -> rc=$rc, $lines line(s): $err (wanted one line with '$want')"; fail=1
  else
    echo "ok: $* -> $err"
  fi
}
expect_error "unknown flag --nope" "$bin/train_image" --nope 1
expect_error "--lr expects a number" "$bin/train_image" --lr fast --list-models
expect_error "unknown model 'nope'" "$bin/train_image" --model nope --dataset synthetic --steps 1 --out "$(mktemp -d)"
expect_error "unknown mixer 'nope'" "$bin/train_image" --mixer nope --dataset synthetic --steps 1 --out "$(mktemp -d)"
expect_error "--batch-size must be positive" "$bin/train_image" --batch-size 0 --dataset synthetic --out "$(mktemp -d)"
expect_error "train-images-idx3-ubyte" "$bin/train_image" --dataset fashion-mnist --data-root /nonexistent --out "$(mktemp -d)"
expect_error "no checkpoint" "$bin/train_image" --resume --dataset synthetic --out "$(mktemp -d)"
expect_error "expected 'cpu', 'cuda' or 'cuda:N'" "$bin/train_image" --device tpu --dataset synthetic --out "$(mktemp -d)"
expect_error "BLOCKxSTRIDE" "$bin/mixing_analyzer" --levels 8-1
expect_error "unknown flag --nope" "$bin/train_lra" --nope 1
expect_error "--micro-batches must be at least 1" "$bin/train_lra" --micro-batches 0 --out "$(mktemp -d)"
expect_error "basic_train.tsv" "$bin/train_lra" --task listops --data /nonexistent --steps 4 --threads 1 --out "$(mktemp -d)"
help=$("$bin/train_image" --help)
for flag in model mixer dataset data-root epochs steps batch-size optimizer lr weight-decay schedule seed threads out resume device eval-only; do
  printf '%s' "$help" | grep -qE -- "--$flag( |$)" || { echo "FAIL: --help does not document --$flag"; fail=1; }
done
help=$("$bin/train_lra" --help)
for flag in task data steps batch-size threads out resume device micro-batches zero1 bucket-mb dist-timeout; do
  printf '%s' "$help" | grep -qE -- "--$flag( |$)" || { echo "FAIL: train_lra --help does not document --$flag"; fail=1; }
done
[ $fail -eq 0 ] && echo "all command-line checks passed"
exit $fail
