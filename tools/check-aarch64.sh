#!/usr/bin/env bash
# tools/check-aarch64.sh: the CPU backends build on aarch64 (Grace). Compiles every CPU source of
# kernels/ and trainer/ with the aarch64 cross compiler (syntax and template instantiation only: no
# aarch64 libraries are needed), so an x86 intrinsic outside its architecture check fails here.
# Needs g++-aarch64-linux-gnu (tools/install-deps.sh). Exit 0: all compile; 1: one does not; 2: no compiler.
# Environment: CXX_AARCH64 (default aarch64-linux-gnu-g++), JOBS (nproc).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CXX=${CXX_AARCH64:-aarch64-linux-gnu-g++}
JOBS=${JOBS:-$(nproc)}
if ! command -v "$CXX" >/dev/null; then
  echo "check-aarch64: $CXX not found (apt-get install g++-aarch64-linux-gnu)" >&2
  exit 2
fi

# The tree's include folders, then the host's architecture-independent headers (spdlog, fmt, CBLAS,
# HDF5, ...) after the cross compiler's own, so its libc and libstdc++ are the aarch64 ones.
flags=(-std=c++20 -fsyntax-only -fopenmp -Wall -Wextra -Werror -I"$ROOT")
for inc in "$ROOT"/*/include "$ROOT"/protocol/*/include; do flags+=(-I"$inc"); done
for inc in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/hdf5/serial; do
  [[ -d $inc ]] && flags+=(-idirafter "$inc")
done
flags+=(-idirafter /usr/include)

cd "$ROOT" || exit 1
mapfile -t sources < <(ls kernels/*.cpp trainer/*.cpp)
printf '%s\n' "${sources[@]}" |
  xargs -P "$JOBS" -I{} sh -c '"$0" "$@" {} 2>&1 || { echo "check-aarch64: FAILED {}"; exit 1; }' "$CXX" "${flags[@]}"
rc=$?
if [[ $rc == 0 ]]; then
  echo "check-aarch64: ${#sources[@]} CPU sources of kernels/ and trainer/ compile for aarch64 ($($CXX -dumpversion))"
  exit 0
fi
exit 1
