#!/bin/bash
# Ingest with many tiny tensors (issue 12, item 9), two `wsm` binaries side by side: the wall time of
# `wsm bench ingest --tensors 30000 --size-mb 4 --checkpoints 2 --repeats 1` (6 checkpoints of
# 30,000 tensors each: 2 warm-up, 2 snapshots, 2 owned buffers, plus the raw ZeroMQ runs),
# interleaved, 3 rounds; prints each time and the medians.
#   usage: tools/bench-many-tensors.sh WSM_A WSM_B [TENSORS]
set -euo pipefail
a=$1 b=$2 tensors=${3:-30000}
declare -A times
for round in 1 2 3; do
  for which in "$a" "$b"; do
    start=$(date +%s.%N)
    "$which" bench ingest --tensors "$tensors" --size-mb 4 --checkpoints 2 --repeats 1 > /dev/null 2>&1
    t=$(echo "$(date +%s.%N) - $start" | bc)
    echo "round $round $which: $t s"
    times[$which]+="$t "
  done
done
for which in "$a" "$b"; do
  echo "median $which: $(echo "${times[$which]}" | tr ' ' '\n' | grep . | sort -n | sed -n 2p) s"
done
