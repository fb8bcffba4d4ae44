#!/usr/bin/env bash
# tools/gpu-check.sh: everything that needs a GPU, in one go, for when a machine with one is lent.
#
#   tools/gpu-check.sh --kit DIR   runs from a kit made here by tools/gpu-kit.sh (DIR holds its
#                                  wsm-gpu-kit.tar.xz, or an unpacked kit with bin/); never configures
#                                  or builds: what the lent GPU machine runs, since it has none of wsm's
#                                  C++ libraries
#   tools/gpu-check.sh             builds first (wsm and the GPU tests, CUDA for sm_90, in $BUILD), for a
#                                  machine with a GPU and wsm's dev libraries (tools/install-deps.sh)
#
# Steps, one summary table at the end:
#   1. the kit's libraries all resolve (ldd), the GPU (nvidia-smi), the machine's cuBLAS (loaded at
#      first use; the kit does not carry it)
#   2. every GPU test: kernels_merge_cuda, trainer_cuda, kernels_cublas_loader (loads the machine's
#      cuBLAS, needs no device), and the CPU merge test (whose `auto` backend picks CUDA when a device
#      is present)
#   3. `wsm bench merge --kernel-only` on cpu and cuda: the fused kernel's share of the device's D2D
#      memcpy bandwidth, and the in-memory merge on the GPU next to the CPU
#   4. `wsm bench merge` on files (page cache), cuda next to cpu
#   5. a short `small` training run on the GPU next to the same run on the CPU: per-interval losses
# Sized for well under 8 minutes on a 16-core H100/H200 machine: each step has a timeout, and all of
# them together at most BUDGET seconds, so the table prints before the device tool's limit.
# Without a GPU every GPU row says "no GPU" (the GPU test binaries still run: they load, then skip),
# the CPU parts run, and it exits 0; exit 1 only when a step fails.
#
# On the lent machine, with the device tool (the kit carried: tools/gpu-kit.sh made it here):
#   run(command="LOG=/tmp/gcl bash tools/gpu-check.sh --kit gpu-kit; rc=$?; tar -C /tmp -czf $OUT/gpu-check-logs.tgz gcl; exit $rc",
#       carry=["gpu-kit"], timeout_s=480)
#
# Environment: LOG (logs; default $BUILD/gpu-check-logs, or /tmp/wsm-gpu-check-logs with --kit),
#              BUILD (build mode: default build-gpu), CUDA_ARCH (90), JOBS (threads: nproc),
#              STEPS (training steps, 200), LOSS_TOL (largest allowed |GPU - CPU| interval loss, 0.05),
#              SIZE_MB (each of the 4 bench inputs, 256), BUDGET (seconds for all the steps, 420: each
#              step's timeout is cut to what is left, so the table prints before the device's limit).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
STEPS=${STEPS:-200}
LOSS_TOL=${LOSS_TOL:-0.05}
SIZE_MB=${SIZE_MB:-256}
BUDGET=${BUDGET:-420}
KIT_ARG=""
case ${1:-} in
  --kit) KIT_ARG=${2:?"--kit needs the kit folder (tools/gpu-kit.sh makes gpu-kit/)"} ;;
  "") ;;
  -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "gpu-check: unknown argument $1 (--kit DIR, or none to build here)" >&2; exit 2 ;;
esac
[[ -n $KIT_ARG && -d $KIT_ARG ]] && KIT_ARG=$(cd "$KIT_ARG" && pwd)  # the script works from $ROOT
if [[ -n $KIT_ARG ]]; then LOG=${LOG:-${TMPDIR:-/tmp}/wsm-gpu-check-logs}; else LOG=${LOG:-$BUILD/gpu-check-logs}; fi
GPU_TESTS=(kernels_merge_cuda trainer_cuda)
CUBLAS_TESTS=(kernels_cublas_loader)  # needs the machine's cuBLAS, not a device
CPU_TESTS=(kernels_merge_cpu)

ROWS=()   # "check|status|detail|seconds"
FAILED=0
row() { ROWS+=("$1|$2|$3|$4"); [[ $2 == FAIL ]] && FAILED=1; return 0; }
since() { echo $(($(date +%s) - $1)); }
# A step's timeout: its own limit, or what is left of BUDGET if less (at least 1 s).
limit() { local left=$((DEADLINE - $(date +%s))); ((left < $1)) || left=$1; echo $((left > 1 ? left : 1)); }
# limited log command...: runs it under limit's timeout, output to log; a timeout is noted in the log.
limited() {
  local log=$1 rc
  shift
  timeout "$(limit 150)" "$@" >"$log" 2>&1
  rc=$?
  ((rc == 124)) && echo "gpu-check: timed out (step limit 150 s, BUDGET $BUDGET s)" >>"$log"
  return $rc
}
see() {  # logs -> "see LOG", after the timeout note if a step timed out
  local note
  note=$(grep -h "^gpu-check: timed out" "$@" | head -1 | sed 's/^gpu-check: //')
  echo "${note:+$note; }see $*"
}

summary() {
  echo
  printf '%-36s %-6s %8s  %s\n' "check" "status" "seconds" "detail"
  printf '%-36s %-6s %8s  %s\n' "-----" "------" "-------" "------"
  local r name status detail secs
  for r in "${ROWS[@]}"; do
    IFS='|' read -r name status detail secs <<<"$r"
    printf '%-36s %-6s %8s  %s\n' "$name" "$status" "$secs" "$detail"
  done
  echo "logs: $LOG"
}
finish() { summary; exit $FAILED; }

rm -rf "$LOG" && mkdir -p "$LOG" || exit 1
cd "$ROOT" || exit 1

# ---- 1. the binaries: from the kit, or built here --------------------------------------------------
BIN=""        # folder of wsm and the test binaries
DATA_ARGS=()  # the training text
from_kit() {
  local t0 kit=$KIT_ARG
  t0=$(date +%s)
  if [[ ! -x $kit/bin/wsm ]]; then
    [[ -f $kit/wsm-gpu-kit.tar.xz ]] || { row "kit $kit" FAIL "no bin/wsm nor wsm-gpu-kit.tar.xz: run tools/gpu-kit.sh" 0; finish; }
    local dir=${TMPDIR:-/tmp}/wsm-gpu-kit
    rm -rf "$dir" && mkdir -p "$dir"
    if command -v xz >/dev/null; then tar -C "$dir" -xJf "$kit/wsm-gpu-kit.tar.xz"
    else python3 -m tarfile -e "$kit/wsm-gpu-kit.tar.xz" "$dir"; fi >"$LOG/unpack.log" 2>&1 ||
      { row "kit $kit" FAIL "cannot unpack (see $LOG/unpack.log)" "$(since "$t0")"; finish; }
    kit=$dir
  fi
  BIN=$kit/bin
  DATA_ARGS=(--data "$kit/data/train.txt" --val "$kit/data/val.txt")
  # Every library resolves (a missing one, or a glibc/libstdc++ older than the kit needs, shows here).
  local b missing=""
  for b in "$BIN"/*; do
    ldd "$b" >"$LOG/ldd-$(basename "$b").log" 2>&1
    missing+=$(grep -E "not found" "$LOG/ldd-$(basename "$b").log" | sed "s|^|$(basename "$b"): |")
  done
  local built needs
  built=$(head -1 "$kit/MANIFEST.txt" | sed 's/^wsm GPU kit, //')
  needs=$(sed -n 's/^needs: //p' "$kit/MANIFEST.txt")
  if [[ -n $missing ]]; then
    row "kit" FAIL "$built; unresolved: $(tr '\n' ';' <<<"$missing" | cut -c1-300) (kit needs $needs; machine has glibc $(ldd --version | head -1 | awk '{print $NF}'))" "$(since "$t0")"
    finish
  fi
  row "kit" PASS "$built; every library resolves" "$(since "$t0")"
}
from_build() {
  local t0 launcher=()
  t0=$(date +%s)
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  if cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSM_CUDA=ON \
       -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" "${launcher[@]}" >"$LOG/configure.log" 2>&1 &&
     cmake --build "$BUILD" -j"$JOBS" --target wsm "${GPU_TESTS[@]}" "${CUBLAS_TESTS[@]}" "${CPU_TESTS[@]}" >"$LOG/build.log" 2>&1; then
    row "build (sm_$CUDA_ARCH, -j$JOBS)" PASS "$(grep -q "CUDA backends ON" "$LOG/configure.log" && echo "CUDA on" || echo "nvcc not found: CPU only")" "$(since "$t0")"
  else
    row "build (sm_$CUDA_ARCH, -j$JOBS)" FAIL "see $LOG/configure.log, build.log" "$(since "$t0")"
    finish
  fi
  mkdir -p "$LOG/bin"
  ln -sf "$BUILD/wsm" "$LOG/bin/wsm"
  for b in "${GPU_TESTS[@]}" "${CUBLAS_TESTS[@]}" "${CPU_TESTS[@]}"; do ln -sf "$BUILD/tests/$b" "$LOG/bin/$b"; done
  BIN=$LOG/bin
  cat "$ROOT"/docs/*.md "$ROOT"/README.md "$ROOT"/trainer/*.cpp "$ROOT"/merger/*/*.cpp >"$LOG/train.txt"
  cat "$ROOT"/protocol/*/*.cpp >"$LOG/val.txt"
  DATA_ARGS=(--data "$LOG/train.txt" --val "$LOG/val.txt")
}
if [[ -n $KIT_ARG ]]; then from_kit; else from_build; fi
DEADLINE=$(($(date +%s) + BUDGET))  # the steps' budget starts once the binaries are there

# ---- is there a device? and the machine's cuBLAS (loaded at first use) --------------------------------
GPU=""
command -v nvidia-smi >/dev/null &&
  GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
if [[ -n $GPU ]]; then row "GPU" PASS "$GPU; $(nproc) cores" 0
else row "GPU" SKIP "no GPU (nvidia-smi finds no device): the GPU rows below say no GPU" 0; fi
NO_GPU="no GPU"

# The folder holding cuBLAS: "ldconfig" when the loader finds it by name, else a CUDA toolkit's or a
# pip wheel's (PyTorch's nvidia-cublas) folder, put on LD_LIBRARY_PATH.
find_cublas() {
  local soname=$1 d
  ldconfig -p 2>/dev/null | awk -v s="$soname" '$1 == s {f=1} END {exit !f}' && { echo ldconfig; return; }
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
           /usr/local/cuda-*/targets/x86_64-linux/lib; do
    [[ -e $d/$soname ]] && { echo "$d"; return; }
  done
  python3 - "$soname" 2>/dev/null <<'EOF'
import pathlib, site, sys
for sp in site.getsitepackages():
    for p in pathlib.Path(sp).glob("nvidia/**/" + sys.argv[1]):
        print(p.parent)
        sys.exit()
EOF
}
soname=$(grep -ao 'libcublas\.so\.[0-9]*' "$BIN/wsm" | head -1)
cublas_dir=""
[[ -n $soname ]] && cublas_dir=$(find_cublas "$soname")
if [[ -z $soname ]]; then
  row "cuBLAS" "$([[ -n $GPU ]] && echo FAIL || echo SKIP)" "this wsm was built without CUDA" 0
elif [[ -z $cublas_dir ]]; then
  row "cuBLAS ($soname)" "$([[ -n $GPU ]] && echo FAIL || echo SKIP)" "not found (ldconfig, /usr/local/cuda*, pip nvidia-cublas): the cuBLAS paths fail" 0
elif [[ $cublas_dir == ldconfig ]]; then
  row "cuBLAS ($soname)" PASS "found by the loader (ldconfig)" 0
else
  export LD_LIBRARY_PATH=$cublas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  row "cuBLAS ($soname)" PASS "$cublas_dir (on LD_LIBRARY_PATH)" 0
fi

# ---- 2. tests --------------------------------------------------------------------------------------
# gtest binary -> one row: passed/skipped/failed counts from its summary lines. kind: gpu (needs a
# device: without one it still runs, to show it loads, and its row says no GPU), cublas (needs the
# machine's cuBLAS, no device) or cpu.
run_gtest() {
  local bin=$1 kind=$2 t0 rc out passed skipped failed detail
  t0=$(date +%s)
  if [[ $kind == cublas && -n $soname && -z $cublas_dir ]]; then row "test $bin" SKIP "no cuBLAS found on this machine" 0; return; fi
  out=$LOG/$bin.log
  timeout "$(limit 180)" "$BIN/$bin" >"$out" 2>&1
  rc=$?
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
  detail="passed ${passed:-0}, skipped ${skipped:-0}, failed ${failed:-0}"
  [[ $rc == 124 ]] && detail="timed out (step limit 180 s, BUDGET $BUDGET s); $detail"
  if [[ $rc != 0 ]]; then row "test $bin" FAIL "$detail (rc $rc)" "$(since "$t0")"
  elif [[ ${skipped:-0} != 0 && $kind == gpu && -z $GPU ]]; then row "test $bin" SKIP "$NO_GPU (binary loads; $detail)" "$(since "$t0")"
  elif [[ ${skipped:-0} != 0 ]]; then row "test $bin" SKIP "$detail" "$(since "$t0")"
  else row "test $bin" PASS "$detail" "$(since "$t0")"; fi
}
for b in "${GPU_TESTS[@]}"; do run_gtest "$b" gpu; done
for b in "${CUBLAS_TESTS[@]}"; do run_gtest "$b" cublas; done
for b in "${CPU_TESTS[@]}"; do run_gtest "$b" cpu; done

# ---- 3. in-memory merge: the fused kernel's bandwidth, GPU next to CPU -------------------------------
# "merge M=1 (cpu)   0.1234s  12.34 GB/s  ..." -> 0.1234
kernel_time() { sed -n "s/^merge M=$2 ($3) *\([0-9.]*\)s.*/\1/p" "$1" | head -1; }
# PASS when every figure was parsed from wsm's output, FAIL (the format changed) when one is missing.
parsed() { local f; for f in "$@"; do [[ -n $f ]] || { echo FAIL; return; }; done; echo PASS; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "?" }'; }
bench_kernel() {  # backend
  limited "$LOG/bench-kernel-$1.log" "$BIN/wsm" bench merge --kernel-only --backend "$1" --size-mb "$SIZE_MB" --inputs 4 --repeats 3
}
t0=$(date +%s)
if bench_kernel cpu; then
  c1=$(kernel_time "$LOG/bench-kernel-cpu.log" 1 cpu) c3=$(kernel_time "$LOG/bench-kernel-cpu.log" 3 cpu)
  row "bench merge --kernel-only, cpu" "$(parsed "$c1" "$c3")" "4 x $SIZE_MB MB bf16 in memory: M=1 ${c1}s, M=3 ${c3}s ($JOBS threads)" "$(since "$t0")"
else
  row "bench merge --kernel-only, cpu" FAIL "$(see "$LOG/bench-kernel-cpu.log")" "$(since "$t0")"
fi
t0=$(date +%s)
if [[ -z $GPU ]]; then
  row "bench merge --kernel-only, cuda" SKIP "$NO_GPU" 0
  row "merge in memory, cuda vs cpu" SKIP "$NO_GPU" 0
elif log=$LOG/bench-kernel-cuda.log && bench_kernel cuda; then
  fused=$(sed -n 's/.*fused kernel .* \([0-9]*%\) of D2D.*/\1/p' "$log" | paste -sd/)
  cublas=$(sed -n 's/.*cuBLAS (widen+GemmEx+round) .* \([0-9]*%\)$/\1/p' "$log" | paste -sd/)
  d2d=$(sed -n 's/.*device memcpy D2D *\(.*\)/\1/p' "$log" | head -1)
  row "bench merge --kernel-only, cuda" "$(parsed "$fused" "$cublas" "$d2d")" "fused kernel M=1/M=3 ${fused:-?} of D2D memcpy ($d2d); cuBLAS path ${cublas:-?}" "$(since "$t0")"
  g1=$(kernel_time "$log" 1 cuda) g3=$(kernel_time "$log" 3 cuda)
  row "merge in memory, cuda vs cpu" "$(parsed "$g1" "$g3" "$c1")" "host buffers, copies included: M=1 ${g1}s vs ${c1:-?}s = $(ratio "${c1:-0}" "$g1")x, M=3 ${g3}s vs ${c3:-?}s = $(ratio "${c3:-0}" "$g3")x faster on the GPU" 0
else
  row "bench merge --kernel-only, cuda" FAIL "$(see "$log")" "$(since "$t0")"
fi

# ---- 4. file merge (page cache): GPU next to CPU -----------------------------------------------------
# /dev/shm when it has room for the 4 inputs and 3 outputs (with margin), else the disk's page cache.
shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
scratch=/dev/shm
((${shm_kb:-0} > 4 * 1024 * 1024)) || scratch=${TMPDIR:-/tmp}
# "merge M=1 (linear)    0.123s ..." -> 0.123
file_time() { sed -n "s/^merge $2 ([^)]*) *\([0-9.]*\)s.*/\1/p" "$1" | head -1; }
bench_files() {  # backend
  limited "$LOG/bench-files-$1.log" "$BIN/wsm" bench merge --backend "$1" --size-mb "$SIZE_MB" --inputs 4 --repeats 3 --dir "$scratch"
}
t0=$(date +%s)
if bench_files cpu; then
  f1=$(file_time "$LOG/bench-files-cpu.log" M=1) f3=$(file_time "$LOG/bench-files-cpu.log" M=3)
  row "bench merge files, cpu" "$(parsed "$f1" "$f3")" "4 x $SIZE_MB MB bf16 in $scratch: M=1 ${f1}s, M=3 ${f3}s" "$(since "$t0")"
else
  row "bench merge files, cpu" FAIL "$(see "$LOG/bench-files-cpu.log")" "$(since "$t0")"
fi
t0=$(date +%s)
if [[ -z $GPU ]]; then
  row "merge files, cuda vs cpu" SKIP "$NO_GPU" 0
elif bench_files cuda; then
  h1=$(file_time "$LOG/bench-files-cuda.log" M=1) h3=$(file_time "$LOG/bench-files-cuda.log" M=3)
  row "merge files, cuda vs cpu" "$(parsed "$h1" "$h3" "$f1")" "M=1 ${h1}s vs ${f1:-?}s = $(ratio "${f1:-0}" "$h1")x, M=3 ${h3}s vs ${f3:-?}s = $(ratio "${f3:-0}" "$h3")x faster on the GPU" "$(since "$t0")"
else
  row "merge files, cuda vs cpu" FAIL "$(see "$LOG/bench-files-cuda.log")" "$(since "$t0")"
fi

# ---- 5. short training run: GPU vs CPU ---------------------------------------------------------------
train() {  # device
  local out rc
  out=$(mktemp -d)
  limited "$LOG/train-$1.log" "$BIN/wsm" train --preset small --steps "$STEPS" --every 50 --seed 1 --device "$1" \
    --threads "$JOBS" --no-checkpoints --eval-positions 0 --out "$out" "${DATA_ARGS[@]}"
  rc=$?
  rm -rf "$out"
  return $rc
}
losses() { sed -n 's/^step .* loss \([0-9.]*\) .*/\1/p' "$LOG/train-$1.log" | paste -sd' '; }
toks() { sed -n 's/.*tok\/s \([0-9]*\) .*/\1/p' "$LOG/train-$1.log" | tail -1; }
t0=$(date +%s)
if ! train cpu; then
  row "train small $STEPS steps, cpu" FAIL "$(see "$LOG/train-cpu.log")" "$(since "$t0")"
elif [[ -z $GPU ]]; then
  row "train small $STEPS steps, cpu" "$(parsed "$(losses cpu)" "$(toks cpu)")" "losses [$(losses cpu)]; tok/s $(toks cpu)" "$(since "$t0")"
  row "train small, cuda vs cpu" SKIP "$NO_GPU" 0
elif train cuda; then
  gl=$(losses cuda) cl=$(losses cpu)
  diff=$(awk -v g="$gl" -v c="$cl" 'BEGIN { n = split(g, a); m = split(c, b); if (n == 0 || n != m) { print "nan"; exit }
    d = 0; for (i = 1; i <= n; i++) { x = a[i] - b[i]; if (x < 0) x = -x; if (x > d) d = x }; printf "%.4f", d }')
  ok=$(awk -v d="$diff" -v t="$LOSS_TOL" 'BEGIN { print (d != "nan" && d + 0 <= t + 0) }')
  row "train small $STEPS steps, cuda vs cpu" "$( ((ok)) && echo PASS || echo FAIL)" \
    "max |gpu-cpu| interval loss $diff (tol $LOSS_TOL); gpu [$gl] cpu [$cl]; tok/s gpu $(toks cuda) cpu $(toks cpu) = $(ratio "$(toks cuda)" "$(toks cpu)")x" \
    "$(since "$t0")"
else
  row "train small, cuda vs cpu" FAIL "$(see "$LOG/train-cuda.log")" "$(since "$t0")"
fi

[[ -z $GPU ]] && echo "no GPU: the GPU rows were not run"
finish
