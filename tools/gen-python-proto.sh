#!/usr/bin/env bash
# Regenerates protocol/python/wsm_client/wsm_pb2.py from protocol/wire/wsm.proto. Use Debian 12's protoc
# (3.21): its output runs on every protobuf runtime from 4.21 to 7.x, while a newer protoc's output
# refuses older runtimes. The test python_client_* fails while the two disagree.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PROTOC:-protoc}" --proto_path=protocol/wire --python_out=protocol/python/wsm_client protocol/wire/wsm.proto
