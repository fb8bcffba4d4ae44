#!/usr/bin/env bash
# Builds wsm's libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) in build-fuzz/ and
# runs each for SECONDS, starting from the seeds in tests/protocol/fuzz_seeds/<target>/ plus the
# corpus kept in build-fuzz/corpus/<target>/. Prints, per target, executions and crashes; crash
# inputs are kept in build-fuzz/crashes/<target>/ (reproduce: build-fuzz/fuzz_<target> FILE).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]     default: 60 s each, every target
#   KEEP_GOING=1 tools/fuzz.sh ...          keep fuzzing after a crash (libFuzzer -fork=1)
#   JOBS=N                                  build parallelism (default 2)
#   SKIP_BUILD=1                            run the targets build-fuzz/ already holds
#   RUNS=N                                  stop each target after N executions (SECONDS still caps it)
#
# Targets: safetensors_header daemon_wire assembler hdf5 sharded_index sharded_hello score_parser (docs/fuzzing.md).
# Needs clang and libclang-rt (tools/install-deps.sh installs them); the default build does not.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors_header daemon_wire assembler hdf5 sharded_index sharded_hello score_parser)
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (tools/install-deps.sh installs clang)" >&2; exit 1; }

# Configured once: passing the compilers again to an existing cache makes CMake start it afresh
# (and rebuild everything).
# ccache, when installed, serves a fresh build-fuzz/ from earlier builds (CCACHE_BASEDIR shares them
# between checkouts); without it the sanitizer build of the tree is 25 minutes on 2 cores.
if [ ! -f build-fuzz/CMakeCache.txt ]; then
  san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWSM_CUDA=OFF -DWSM_FUZZ=ON "${launcher[@]}" \
    -DWSM_TEST_PARTS=protocol -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
fi
[ "${SKIP_BUILD:-0}" = 1 ] || cmake --build build-fuzz -j"${JOBS:-2}" --target $(printf 'fuzz_%s ' "${targets[@]}")

# The targets' own logs (spdlog, on stdout: one line per message the daemon refuses) are dropped;
# libFuzzer and the sanitizers write to stderr, which is the log.
# Leaks at exit are not findings here (the helper process and static state are torn down by exit).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
summary=()
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$t crashes=build-fuzz/crashes/$t log=build-fuzz/fuzz-$t.log
  mkdir -p "$corpus" "$crashes"
  seeds=tests/protocol/fuzz_seeds/$t
  [ -d "$seeds" ] || seeds=
  extra=()
  [ "${KEEP_GOING:-0}" = 1 ] && extra=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  [ -n "${RUNS:-}" ] && extra+=(-runs="$RUNS")
  # The HDF5 helper process's sanitizer reports (libhdf5's own heap overflows, a few percent of the
  # inputs) are printed unsymbolized: symbolizing each in a fresh helper cost ~100 ms, 8 times the
  # rest of the input. Module+offset still tell libhdf5's from wsm's; a finding in the fuzzer
  # itself is reproduced symbolized by running its crash input. A smaller quarantine keeps the
  # fuzzer small, and so the fork of a fresh helper (after each of those deaths) cheap: at the
  # default 256 MB the fuzzer grew to 400 MB and forking it was the largest cost left.
  asan=$ASAN_OPTIONS
  [ "$t" = hdf5 ] && asan="$asan:symbolize=0:quarantine_size_mb=16"
  set +e
  start=$(date +%s)
  ASAN_OPTIONS=$asan "build-fuzz/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "${extra[@]}" "$corpus" $seeds >/dev/null 2>"$log" &
  pid=$!
  wait $pid
  rc=$?
  took=$(($(date +%s) - start))
  set -e
  # The fuzzer's own final count is the last one printed (a helper process that dies in a
  # sanitizer report prints one too, with the count it was forked at); fork mode prints none, so
  # there the last progress line counts.
  if [ "${KEEP_GOING:-0}" = 1 ]; then
    execs=$(grep -aoE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  else
    execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -1 | awk '{print $2}' || true)
  fi
  # A finding stops the fuzzer (rc != 0); in fork mode the jobs' crashes are counted by libFuzzer.
  if [ "${KEEP_GOING:-0}" = 1 ]; then
    found=$(grep -aoE 'oom/timeout/crash: [0-9]+/[0-9]+/[0-9]+' "$log" | tail -1 | awk -F'[ /]' '{print $4 + $5 + $6}' || true)
  else
    found=$((rc != 0))
  fi
  # Sanitizer reports from other processes are the HDF5 helper's, contained there (the fuzzer gets
  # an error naming the file; they also leave crash-* files). Those whose faulting frame (#1, the
  # caller of the intercepted memcpy etc.) lies in libhdf5 are libhdf5's own memory errors; any other
  # (wsm's code in the helper), and any UBSan report, is a finding.
  helper=0 helper_other=0 ubsan=0
  if [ "${KEEP_GOING:-0}" != 1 ]; then
    read -r helper helper_other < <(awk -v main="==$pid==" '
      /^==[0-9]+==ERROR: AddressSanitizer/ { inrep = index($0, main) != 1; if (inrep) n++; next }
      inrep && /^ +#1 / { if ($0 !~ /libhdf5/) other++; inrep = 0 }
      END { print n + 0, other + 0 }' "$log")
    ubsan=$(grep -ac 'runtime error:' "$log" || true)
  fi
  summary+=("$t: ${execs:-0} execs in ${took} s, ${found:-0} finding(s), $helper helper-process report(s) ($helper_other not in libhdf5), $ubsan UBSan report(s), exit $rc (log: $log)")
done
printf '%s\n' "${summary[@]}"
