#!/usr/bin/env bash
# tools/gpu-check.sh: everything that needs a GPU, in one go, for when a machine with one is lent.
#   1. builds only what the GPU checks need (wsm and the GPU test binaries), CUDA for sm_90 by default
#   2. runs every GPU test: kernels_merge_cuda, kernels_cublas_loader, trainer_cuda (and the CPU merge
#      test, whose `auto` backend picks CUDA when a device is present)
#   3. `wsm bench merge --kernel-only --backend cuda`: the fused merge kernel's share of the device's
#      D2D memcpy bandwidth
#   4. a short `small` training run on the GPU next to the same run on the CPU: per-interval losses
#      (on Austen if data/cache/austen is there, else on the repository's own text)
# and prints one summary table. Sized to finish in under 8 minutes on a 16-core H200 machine.
# Without a GPU it still builds, then says "no GPU" and exits 0 (exit 1 only when a step fails).
#
# Environment: BUILD (default build-gpu), CUDA_ARCH (90), JOBS (nproc), STEPS (training steps, 200),
#              LOSS_TOL (largest allowed |GPU - CPU| interval loss, 0.05).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
STEPS=${STEPS:-200}
LOSS_TOL=${LOSS_TOL:-0.05}
LOG=$BUILD/gpu-check-logs
TARGETS=(wsm kernels_merge_cuda kernels_cublas_loader kernels_merge_cpu trainer_cuda)

ROWS=()   # "check|status|detail|seconds"
FAILED=0
row() { ROWS+=("$1|$2|$3|$4"); [[ $2 == FAIL ]] && FAILED=1; return 0; }

summary() {
  echo
  printf '%-34s %-6s %8s  %s\n' "check" "status" "seconds" "detail"
  printf '%-34s %-6s %8s  %s\n' "-----" "------" "-------" "------"
  local r
  for r in "${ROWS[@]}"; do
    IFS='|' read -r name status detail secs <<<"$r"
    printf '%-34s %-6s %8s  %s\n' "$name" "$status" "$secs" "$detail"
  done
  echo "logs: $LOG"
}

# gtest binary -> one row: passed/skipped/failed counts from its summary lines.
run_gtest() {
  local bin=$1 t0 rc out
  t0=$(date +%s)
  out=$LOG/$bin.log
  timeout 300 "$BUILD/tests/$bin" >"$out" 2>&1
  rc=$?
  local passed skipped failed
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  local detail="passed ${passed:-0}, skipped ${skipped:-0}, failed ${failed:-0}"
  [[ $rc == 124 ]] && detail="timed out after 300 s; $detail"
  if [[ $rc != 0 ]]; then row "test $bin" FAIL "$detail (rc $rc)" $(($(date +%s) - t0))
  elif [[ ${skipped:-0} != 0 ]]; then row "test $bin" SKIP "$detail" $(($(date +%s) - t0))
  else row "test $bin" PASS "$detail" $(($(date +%s) - t0)); fi
}

mkdir -p "$LOG"
cd "$ROOT" || exit 1

# ---- 1. build ----------------------------------------------------------------------------------
t0=$(date +%s)
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
if cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSM_CUDA=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" "${launcher[@]}" >"$LOG/configure.log" 2>&1 &&
   cmake --build "$BUILD" -j"$JOBS" --target "${TARGETS[@]}" >"$LOG/build.log" 2>&1; then
  cuda_on=$(grep -c "CUDA backends ON" "$LOG/configure.log")
  row "build (sm_$CUDA_ARCH, -j$JOBS)" PASS "$( ((cuda_on)) && echo "CUDA on" || echo "nvcc not found: CPU only")" \
    $(($(date +%s) - t0))
else
  row "build (sm_$CUDA_ARCH, -j$JOBS)" FAIL "see $LOG/configure.log, build.log" $(($(date +%s) - t0))
  summary
  exit 1
fi

# ---- is there a device? ------------------------------------------------------------------------
gpu=""
if command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
if [[ -z $gpu ]]; then
  row "GPU" SKIP "no GPU (nvidia-smi finds no device): GPU tests, bench and training not run" 0
  summary
  echo "no GPU"
  exit 0
fi
row "GPU" PASS "$gpu" 0

# ---- 2. GPU tests ------------------------------------------------------------------------------
for bin in kernels_merge_cuda kernels_cublas_loader kernels_merge_cpu trainer_cuda; do run_gtest "$bin"; done

# ---- 3. merge bandwidth ------------------------------------------------------------------------
t0=$(date +%s)
if timeout 300 "$BUILD/wsm" bench merge --kernel-only --backend cuda --size-mb 512 --inputs 4 >"$LOG/bench.log" 2>&1; then
  frac=$(grep -E "fused kernel" "$LOG/bench.log" | sed -n 's/.* \([0-9]*%\) of D2D.*/\1/p' | paste -sd' ')
  row "bench merge (fused, M=1 M=3)" PASS "${frac:-?} of device D2D memcpy bandwidth" $(($(date +%s) - t0))
else
  row "bench merge" FAIL "see $LOG/bench.log" $(($(date +%s) - t0))
fi

# ---- 4. short training run: GPU vs CPU ---------------------------------------------------------
# Austen when its cache is there (fetching it needs the network, which a lent GPU machine may lack);
# otherwise the repository's own docs and sources as the text.
data_args=()
if [[ ! -s $ROOT/data/cache/austen/train.txt ]]; then
  cat "$ROOT"/docs/*.md "$ROOT"/README.md "$ROOT"/trainer/*.cpp "$ROOT"/merger/*.cpp >"$LOG/train.txt"
  cat "$ROOT"/protocol/*/*.cpp >"$LOG/val.txt"
  data_args=(--data "$LOG/train.txt" --val "$LOG/val.txt")
fi
train() {  # device -> log
  local dev=$1 out
  out=$(mktemp -d)
  timeout 300 "$BUILD/wsm" train --preset small --steps "$STEPS" --every 50 --seed 1 --device "$dev" \
    --threads "$JOBS" --no-checkpoints --eval-positions 0 --out "$out" "${data_args[@]}" >"$LOG/train-$dev.log" 2>&1
  local rc=$?
  rm -rf "$out"
  return $rc
}
losses() { sed -n 's/.*loss \([0-9.]*\) .*/\1/p' "$LOG/train-$1.log" | paste -sd' '; }
toks() { sed -n 's/.*tok\/s \([0-9]*\) .*/\1/p' "$LOG/train-$1.log" | tail -1; }
t0=$(date +%s)
if train cuda && train cpu; then
  gl=$(losses cuda) cl=$(losses cpu)
  diff=$(python3 -c 'import sys; g=[float(x) for x in sys.argv[1].split()]; c=[float(x) for x in sys.argv[2].split()]
print("%.4f" % max(abs(a-b) for a,b in zip(g,c)) if g and len(g)==len(c) else "nan")' "$gl" "$cl")
  ok=$(python3 -c "import sys; d=sys.argv[1]; print(int(d!='nan' and float(d)<=float(sys.argv[2])))" "$diff" "$LOSS_TOL")
  detail="max |gpu-cpu| interval loss $diff (tol $LOSS_TOL); gpu [$gl] cpu [$cl]; tok/s gpu $(toks cuda) cpu $(toks cpu)"
  row "train small $STEPS steps, cuda vs cpu" "$( ((ok)) && echo PASS || echo FAIL)" "$detail" $(($(date +%s) - t0))
else
  row "train small, cuda vs cpu" FAIL "see $LOG/train-cuda.log, train-cpu.log" $(($(date +%s) - t0))
fi

summary
exit $FAILED
