#!/usr/bin/env bash
# tools/gpu-kit.sh: builds here, for a lent GPU machine, everything tools/gpu-check.sh --kit runs there.
# The GPU machine (one H100 or H200, 16 cores) has CUDA, CMake, ninja and PyTorch but none of wsm's
# C++ libraries (HDF5, ZeroMQ, Protobuf, spdlog, OpenBLAS, ...), and reaches no registry, so nothing
# can be built there. This script:
#   1. configures $BUILD (default build-gpu-kit: Release, CUDA for sm_$CUDA_ARCH, the CUDA runtime
#      linked statically, MPI off, RPATH $ORIGIN/../lib alone, as DT_RPATH so that it also covers the
#      libraries' own dependencies) and builds only wsm and the GPU test binaries;
#   2. gathers them, stripped, into bin/ with every shared library they load (and oneDNN, which the
#      trainer dlopens) in lib/, except the base system's (glibc, libstdc++, libgcc_s) and the CUDA
#      driver; cuBLAS is not carried (over 500 MB): gpu-check.sh finds the machine's own;
#   3. checks that every library each binary loads resolves into lib/ or to the base system set;
#   4. adds the training text (data/) and MANIFEST.txt, packs it all into $KIT/wsm-gpu-kit.tar.xz (24
#      MiB; 120 MiB unpacked, most of it OpenBLAS and oneDNN: the working tree that travels may hold
#      64 MiB in all) and fails if the kit plus the tracked tree would not travel.
# tools/gpu-kit.sh --selftest then unpacks the packed kit into a minimal root (the base system set
# copied from this machine, nothing else) and runs its CPU parts there with chroot in a private mount
# namespace (needs root), the cuBLAS loader test against this machine's cuBLAS (mounted read-only,
# standing in for the GPU machine's), then a control that must fail (wsm without the kit's libzmq):
# a library missing from the kit fails here, not on the GPU machine.
#
# On the GPU machine (the device tool's `run`, from the repository root; the logs come back in $OUT):
#   run(command="LOG=/tmp/gcl bash tools/gpu-check.sh --kit gpu-kit; rc=$?; tar -C /tmp -czf $OUT/gpu-check-logs.tgz gcl; exit $rc",
#       carry=["gpu-kit"], timeout_s=480)
#
# Environment: BUILD (default build-gpu-kit), KIT (default gpu-kit), CUDA_ARCH (90), JOBS (1: the
# CUDA build is heavy; raise it on a quiet machine).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-gpu-kit}
KIT=${KIT:-$ROOT/gpu-kit}
CUDA_ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-1}
TESTS=(kernels_merge_cuda kernels_cublas_loader kernels_merge_cpu trainer_cuda)  # what gpu-check.sh runs
TARGETS=(wsm "${TESTS[@]}")
PACK=wsm-gpu-kit.tar.xz
TRAVEL_LIMIT=$((64 << 20))   # the device tool's limit on the working tree plus carried paths
# Loaded by dlopen, so ldd does not list them: carried when present here.
DLOPENED=(libdnnl.so.2 libopenblas.so.0)
# The base system of any x86-64 Linux with a GPU driver: glibc's libraries (some use GLIBC_PRIVATE
# symbols, so they must come from the machine's own glibc), the GCC runtime every C++ program uses,
# and the driver's libraries. Everything else travels in the kit.
SYSTEM_RE='^(linux-vdso\.so|ld-linux-x86-64\.so|libc\.so|libm\.so|libmvec\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so|libnsl\.so|libnss_|libBrokenLocale\.so|libthread_db\.so|libstdc\+\+\.so|libgcc_s\.so|libcuda\.so|libnvidia-)'

die() { echo "gpu-kit: $*" >&2; exit 1; }
cuda_compiler_file() { compgen -G "$BUILD/CMakeFiles/*/CMakeCUDACompiler.cmake" | head -1 | grep .; }
is_system() { [[ $1 =~ $SYSTEM_RE ]]; }

# ldd of a binary as "soname path" lines (path "not-found" when unresolved), the search path cleared.
resolved() {
  env -u LD_LIBRARY_PATH -u LD_PRELOAD ldd "$1" | awk '
    /=> not found/ {print $1, "not-found"; next}
    /=> \// {print $1, $3; next}
    /^\t\/.*ld-linux/ {n=split($1, p, "/"); print p[n], $1}'
}

build() {
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  local cudart=/usr/local/cuda/lib64/libcudart_static.a
  [[ -f $cudart ]] || die "no $cudart: the kit needs the CUDA toolkit (nvcc) here"
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSM_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" -DWSM_MPI=OFF -DCUDA_cudart_LIBRARY="$cudart" \
      -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN/../lib' \
      -DCMAKE_EXE_LINKER_FLAGS=-Wl,--disable-new-dtags "${launcher[@]}" || die "configure failed"
  fi
  cuda_compiler_file >/dev/null || die "$BUILD has no CUDA compiler: nvcc not found"
  nice -n 15 ninja -C "$BUILD" -j"$JOBS" "${TARGETS[@]}" || die "build failed"
}

# Copies bin/ and every non-system library any of them loads into $1 (a fresh stage folder).
gather() {
  local stage=$1 b soname path
  mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
  cp "$BUILD/wsm" "$stage/bin/"
  for b in "${TESTS[@]}"; do cp "$BUILD/tests/$b" "$stage/bin/"; done
  strip --strip-unneeded "$stage"/bin/*
  local extra=()
  for soname in "${DLOPENED[@]}"; do
    path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ {print $NF; exit}')
    [[ -n $path ]] && extra+=("$path") && cp -L "$path" "$stage/lib/$soname"
  done
  for b in "$stage"/bin/* "${extra[@]}"; do
    while read -r soname path; do
      [[ $path == not-found ]] && die "$(basename "$b") needs $soname, which is not installed here"
      is_system "$soname" || [[ -f $stage/lib/$soname ]] || cp -L "$path" "$stage/lib/$soname"
    done < <(resolved "$b")
  done
  chmod -R u+w "$stage/lib"
  strip --strip-unneeded "$stage"/lib/* 2>/dev/null
}

# Every library each kit binary loads resolves into the kit's lib/ or to the base system set.
check_resolution() {
  local stage=$1 b soname path bad=0
  for b in "$stage"/bin/*; do
    while read -r soname path; do
      if [[ $path == not-found ]]; then echo "gpu-kit: $(basename "$b"): $soname not found" >&2; bad=1
      elif is_system "$soname"; then :
      elif [[ $(readlink -f "$path") != "$(readlink -f "$stage/lib")"/* ]]; then
        echo "gpu-kit: $(basename "$b"): $soname resolves outside the kit, to $path" >&2; bad=1
      fi
    done < <(resolved "$b")
  done
  return $bad
}

# The highest symbol version of glibc and libstdc++ any kit file needs (the GPU machine must have them).
needed_version() {  # stage prefix
  objdump -T "$1"/bin/* "$1"/lib/* 2>/dev/null | grep -o "$2[0-9.]*" | sort -uV | tail -1
}

# The training text of gpu-check.sh's GPU vs CPU run: the repository's own docs and sources.
write_data() {
  local stage=$1
  cat "$ROOT"/docs/*.md "$ROOT"/README.md "$ROOT"/trainer/*.cpp "$ROOT"/merger/*/*.cpp >"$stage/data/train.txt"
  cat "$ROOT"/protocol/*/*.cpp >"$stage/data/val.txt"
}

write_manifest() {
  local stage=$1 commit dirty
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (uncommitted changes)")
  {
    echo "wsm GPU kit, built $(date -u +%Y-%m-%dT%H:%MZ) from commit $commit$dirty"
    echo "cuda: nvcc $(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\(.*\)")/\1/p' "$(cuda_compiler_file)"), sm_$CUDA_ARCH, CUDA runtime linked statically"
    echo "cublas: $(grep -ao 'libcublas\.so\.[0-9]*' "$stage/bin/wsm" | head -1) (loaded at first use from the machine's CUDA)"
    echo "needs: $(needed_version "$stage" GLIBC_) $(needed_version "$stage" GLIBCXX_)"
    echo "system libraries not carried: glibc's, libstdc++, libgcc_s, the CUDA driver"
    echo "files:"
    (cd "$stage" && find bin lib data -type f -printf '  %p %s\n' | sort)
  } >"$stage/MANIFEST.txt"
}

make_kit() {
  build
  local stage=$BUILD/kit-stage
  rm -rf "$stage" && mkdir -p "$stage"
  gather "$stage"
  check_resolution "$stage" || die "the kit does not hold every library its binaries load"
  write_data "$stage"
  write_manifest "$stage"
  mkdir -p "$KIT"
  rm -f "$KIT/$PACK.tmp"
  tar -C "$stage" --sort=name -cf - MANIFEST.txt bin lib data | xz -T"$JOBS" -6 >"$KIT/$PACK.tmp" || die "packing failed"
  mv "$KIT/$PACK.tmp" "$KIT/$PACK"
  cp "$stage/MANIFEST.txt" "$KIT/MANIFEST.txt"
  local kit_bytes tree_bytes unpacked
  kit_bytes=$(du -sb "$KIT" | cut -f1)
  tree_bytes=$(git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 du -cb 2>/dev/null) | tail -1 | cut -f1)
  unpacked=$(du -sb "$stage" | cut -f1)
  awk -v k="$kit_bytes" -v u="$unpacked" -v t="$tree_bytes" -v p="$KIT/$PACK" 'BEGIN {
    m = 1048576; printf "gpu-kit: %s: %.1f MiB packed (%.1f MiB unpacked); with the tracked tree (%.1f MiB) %.1f of 64 MiB travel\n", p, k/m, u/m, t/m, (k+t)/m }'
  ((kit_bytes + tree_bytes < TRAVEL_LIMIT)) || die "the kit and the tree exceed the 64 MiB that travel"
}

# ---- --selftest: the packed kit's CPU parts in a root holding only the base system set ------------------
selftest() {
  [[ -f $KIT/$PACK ]] || die "no $KIT/$PACK: run tools/gpu-kit.sh first"
  [[ $(id -u) == 0 ]] || die "--selftest needs root (chroot in a private mount namespace)"
  local root
  root=$(mktemp -d "${TMPDIR:-/tmp}/wsm-gpu-kit-root.XXXXXX")
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$root"/{kit,lib64,lib/x86_64-linux-gnu,proc,sys,dev,tmp}
  tar -C "$root/kit" -xJf "$KIT/$PACK" || die "cannot unpack $KIT/$PACK"
  # The base system: the system-set libraries the kit's binaries load, from this machine.
  local b soname path
  for b in "$root"/kit/bin/* "$root"/kit/lib/*; do
    while read -r soname path; do
      is_system "$soname" && [[ $path != not-found ]] && cp -L "$path" "$root/lib/x86_64-linux-gnu/$soname"
    done < <(resolved "$b")
  done
  # and the rest of glibc's that any system has, which the machine's cuBLAS loads.
  for soname in libdl.so.2 librt.so.1 libpthread.so.0 libm.so.6; do
    path=$(ldconfig -p | awk -v s="$soname" '$1 == s && /x86-64/ {print $NF; exit}')
    [[ -n $path ]] && cp -L "$path" "$root/lib/x86_64-linux-gnu/$soname"
  done
  mv "$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$root/lib64/" || die "no dynamic loader found"
  echo "gpu-kit selftest: minimal root $root: $(ls "$root/lib/x86_64-linux-gnu" | paste -sd' ') + the kit"
  local cuda_lib
  cuda_lib=$(dirname "$(ldconfig -p | awk '$1 ~ /^libcublas\.so\.[0-9]+$/ && /x86-64/ {print $NF; exit}')")
  compgen -G "$cuda_lib/libcublasLt.so.*" >/dev/null || die "no cuBLAS here to stand in for the machine's"
  mkdir -p "$root/cuda-lib"
  unshare --mount --propagation private -- bash -s "$root" "$(command -v chroot)" "$(readlink -f "$cuda_lib")" <<'EOF'
root=$1 chroot=$2 cuda_lib=$3
mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" && mount --rbind -o ro /sys "$root/sys" &&
  mount -t tmpfs tmpfs "$root/tmp" && mount --bind -o ro "$cuda_lib" "$root/cuda-lib" ||
  { echo "gpu-kit selftest: mounts failed"; exit 1; }
fails=0
# check name patterns [VAR=value...] command...: passes when the command exits 0 and its output matches every
# pattern of "A&&B"; shows the last line matching the last one.
run_in_root() {  # [VAR=value...] command...
  local vars=()
  while [[ $1 == *=* && $1 != /* ]]; do vars+=("$1"); shift; done
  timeout 300 env -i PATH=/kit/bin HOME=/tmp OMP_NUM_THREADS=2 "${vars[@]}" "$chroot" "$root" "$@" 2>&1
}
check() {
  local name=$1 patterns=$2 out rc p ok=1
  shift 2
  out=$(run_in_root "$@")
  rc=$?
  IFS='&' read -ra list <<<"${patterns//&&/&}"
  for p in "${list[@]}"; do grep -qE "$p" <<<"$out" || ok=0; done
  if [[ $rc == 0 && $ok == 1 ]]; then
    printf '  %-38s PASS  %s\n' "$name" "$(grep -E "$p" <<<"$out" | tail -1 | cut -c1-90)"
  else
    printf '  %-38s FAIL  rc %s, wanted %s\n' "$name" "$rc" "$patterns"; sed 's/^/      /' <<<"$out" | tail -15; fails=1
  fi
}
check "wsm --version" "^[0-9]+\.[0-9]+" /kit/bin/wsm --version
check "kernels_merge_cpu" "PASSED" /kit/bin/kernels_merge_cpu
for t in kernels_merge_cuda trainer_cuda; do
  check "$t (loads, no GPU)" "PASSED|SKIPPED" /kit/bin/$t
done
# cuBLAS is the machine's (gpu-check.sh puts its folder on LD_LIBRARY_PATH): here this machine's
# CUDA library folder, mounted read-only, stands in for it. Loading it needs no device.
check "kernels_cublas_loader (this cuBLAS)" "PASSED  \] 1 test" LD_LIBRARY_PATH=/cuda-lib /kit/bin/kernels_cublas_loader
check "bench merge --kernel-only cpu" "merge M=1" /kit/bin/wsm bench merge --kernel-only --backend cpu --size-mb 16 --inputs 4 --repeats 1
check "bench merge files cpu (HDF5)" "merge M=1" /kit/bin/wsm bench merge --backend cpu --size-mb 8 --inputs 2 --repeats 1 --format h5 --dir /tmp
check "train tiny 20 steps cpu (oneDNN)" "GEMMs by oneDNN&&step +20/20" /kit/bin/wsm train --preset tiny --steps 20 --every 10 \
  --seed 1 --device cpu --threads 2 --eval-positions 0 --out /tmp/run --data /kit/data/train.txt --val /kit/data/val.txt
# The control: this root really lacks the Debian libraries, so a kit without one of them fails.
mv "$root/kit/lib/libzmq.so.5" "$root/tmp/"
out=$(run_in_root /kit/bin/wsm --version)
if [[ $? != 0 ]] && grep -q "libzmq.so.5" <<<"$out"; then
  printf '  %-38s PASS  %s\n' "control: kit without libzmq.so.5" "fails: $(head -1 <<<"$out" | cut -c1-80)"
else
  printf '  %-38s FAIL  ran without it: the root is not minimal\n' "control: kit without libzmq.so.5"; fails=1
fi
exit $fails
EOF
  local rc=$?
  ((rc == 0)) && echo "gpu-kit selftest: PASS (every kit binary loads and its CPU parts run without the Debian libraries)" ||
    echo "gpu-kit selftest: FAIL"
  return $rc
}

case ${1:-} in
  "") make_kit ;;
  --selftest) selftest ;;
  -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *) die "unknown argument $1 (use no argument to build the kit, --selftest to check it)" ;;
esac
