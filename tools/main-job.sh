#!/usr/bin/env bash
# The main job, on embedded defaults: install what wsm needs, build it, fetch the Austen corpus, train the
# `small` GPT warmup-stable with `wsm serve` attached on loopback (both started here), and print the
# validation loss of the last raw checkpoint beside each merged output's.
#   STEPS=600 EVERY=25 WINDOW=200 bash tools/main-job.sh   (the defaults; about 7 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target wsm -j"$(nproc)"

steps=${STEPS:-600}
every=${EVERY:-25}
window=${WINDOW:-200}
out=${OUT:-out/main-job}
rm -rf "$out"
mkdir -p "$out"

# Loopback only; pick a free port so two jobs on one machine do not collide.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
endpoint="tcp://127.0.0.1:$port"

./build/wsm serve --listen "$endpoint" --out "$out/merged" --store "$out/store" \
  --emulate "linear:$window,1-sqrt:$window,cosine:$window" --every "$window" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT

./build/wsm train --preset small --steps "$steps" --every "$every" --out "$out/train" --merger "$endpoint"

kill -INT "$serve_pid"
wait "$serve_pid" || true
trap - EXIT

echo
echo "== validation loss: last raw checkpoint vs merged outputs =="
# Merged files are <out>/merged/<run>/<emulation>/step_<N>.h5; the raw checkpoint goes first (eval takes
# the model configuration from it for merged files that do not carry one).
./build/wsm eval "$out/train/step_$(printf %08d "$steps").h5" "$out"/merged/*/*/*.h5
