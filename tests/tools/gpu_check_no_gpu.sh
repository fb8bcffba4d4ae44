#!/usr/bin/env bash
# tools/gpu-check.sh --kit on a machine without a GPU, from a kit folder holding this build's wsm and
# GPU test binaries (the real kit, built with CUDA by tools/gpu-kit.sh, runs on a lent GPU machine):
# every GPU row says "no GPU", every CPU row passes with the figures parsed from wsm's output (so the
# script's parsing cannot go stale unnoticed before a GPU is lent), and it exits 0. A missing kit fails
# naming the problem. Exit 77 (skipped) where a GPU is present. Usage: gpu_check_no_gpu.sh BUILD_DIR
set -uo pipefail
build=$(cd "${1:?usage: gpu_check_no_gpu.sh BUILD_DIR}" && pwd) || exit 1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  echo "a GPU is present: this test covers the no-GPU path"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; echo "$out"; exit 1; }

out=$(bash "$root/tools/gpu-check.sh" --kit "$tmp/none" 2>&1) && fail "a missing kit was accepted"
grep -q "no bin/wsm nor wsm-gpu-kit.tar.xz" <<<"$out" || fail "a missing kit is not named"

kit=$tmp/kit
mkdir -p "$kit/bin" "$kit/data"
ln -s "$build/wsm" "$kit/bin/wsm"
for t in kernels_merge_cuda kernels_cublas_loader kernels_merge_cpu trainer_cuda; do ln -s "$build/tests/$t" "$kit/bin/$t"; done
cat "$root"/docs/*.md >"$kit/data/train.txt"
cat "$root"/README.md >"$kit/data/val.txt"
printf 'wsm GPU kit, built for this test\nneeds: GLIBC_2.2.5\n' >"$kit/MANIFEST.txt"
out=$(STEPS=10 SIZE_MB=8 JOBS=2 LOG=$tmp/log bash "$root/tools/gpu-check.sh" --kit "$kit" 2>&1)
rc=$?
[[ $rc == 0 ]] || fail "exit $rc without a GPU"
expect() { grep -qE "$1" <<<"$out" || fail "no line matching: $1"; }
expect '^kit +PASS .*every library resolves'
expect '^GPU +SKIP .*no GPU'
for t in kernels_merge_cuda trainer_cuda; do expect "^test $t +SKIP .*no GPU \(binary loads; passed [0-9]+, skipped [1-9][0-9]*, failed 0\)"; done
expect '^test kernels_cublas_loader +(PASS|SKIP) .*failed 0'  # skips in a build without CUDA
expect '^test kernels_merge_cpu +PASS .*failed 0'
expect '^bench merge --kernel-only, cpu +PASS .*M=1 [0-9.]+s, M=3 [0-9.]+s'
expect '^bench merge files, cpu +PASS .*M=1 [0-9.]+s, M=3 [0-9.]+s'
expect '^train small 10 steps, cpu +PASS .*losses \[[0-9]+\.[0-9]+\]; tok/s [0-9]+'
for r in 'bench merge --kernel-only, cuda' 'merge in memory, cuda vs cpu' 'merge files, cuda vs cpu' 'train small, cuda vs cpu'; do
  expect "^$r +SKIP +0 +no GPU"
done
grep -q " FAIL " <<<"$out" && fail "a row failed"
echo "gpu-check --kit without a GPU: every GPU row says no GPU, the CPU rows pass"
