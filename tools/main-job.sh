#!/usr/bin/env bash
# The main job, on embedded defaults: install what wsm needs, build it, fetch the Austen corpus, and run
# the product end to end on the `small` GPT:
#   1. `wsm serve` on loopback, emulating linear, cosine and 1-sqrt decays over the last WINDOW steps;
#   2. `wsm compare study`: one constant-LR trunk streamed to that daemon (online merges), WSD branches
#      that really decay over the same WINDOW steps, offline merges of the trunk's checkpoints, all
#      scored on the same held-out positions, with a report (table, verdict, pictures);
#   3. the daemon's own merged outputs at the last step, scored the same way beside the report's.
#   STEPS=600 EVERY=10 WINDOW=120 SEEDS=1 bash tools/main-job.sh   (the defaults)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target wsm -j"$(nproc)"

steps=${STEPS:-600}
every=${EVERY:-10}
window=${WINDOW:-120}
seeds=${SEEDS:-1}
out=${OUT:-out/main-job}
rm -rf "$out"
mkdir -p "$out"

# Loopback only; pick a free port so two jobs on one machine do not collide.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="tcp://127.0.0.1:$port"

./build/wsm serve --listen "$endpoint" --out "$out/merged" --store "$out/store" \
  --emulate "linear@$window" "cosine@$window" "1-sqrt@$window" --every "$window" 2>"$out/serve.log" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT

# One trunk per seed (streamed to the daemon as run "seed<N>"), then WSD branches over the same window,
# two training processes at once (one thread each), so the three branches overlap.
./build/wsm compare study --preset small --steps "$steps" --every "$every" --seeds "$seeds" \
  --durations "$window" --jobs 2 --merger "$endpoint" --out "$out/compare"

kill -INT "$serve_pid"
wait "$serve_pid" || true
trap - EXIT

echo
echo "== the daemon's online merges at step $steps (same window, same positions), after the raw trunk =="
# The raw trunk checkpoint first, as the baseline; the daemon's outputs carry the model config the
# trainer sent, so each is scored on its own.
./build/wsm eval "$out/compare/runs/seed1/trunk/step_$(printf %012d "$steps").h5" "$out"/merged/*/*/step_*"$steps".h5
echo
echo "report: $out/compare/report.md (pictures beside it)"
