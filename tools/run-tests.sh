#!/usr/bin/env bash
# Installs what wsm needs, builds it twice (Release with CUDA when nvcc is there; Debug with
# ASan/UBSan on the CPU path) and runs every test. This is exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
jobs=$(nproc)
bash tools/check-format.sh  # the C++ lines of the last commit, as .clang-format says (seconds)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# Sanitizers on the parts that parse untrusted input (files, wire messages) and do the merge math.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DWSM_SANITIZE=ON -DWSM_CUDA=OFF \
  -DWSM_TEST_PARTS="protocol;schedules;kernels;merger"
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE slow
