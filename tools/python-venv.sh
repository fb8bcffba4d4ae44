#!/usr/bin/env bash
# Makes a virtual environment for the Python client's tests and installs protocol/python into it the
# way a user does (pip install; no PYTHONPATH, no protoc):
#   python-venv.sh pypi   DIR   current releases from PyPI for every declared dependency (+ safetensors,
#                               used by the tests as an independent writer)
#   python-venv.sh debian DIR   Debian's python3-* packages (--system-site-packages), the client installed
#                               without dependencies; then every declared dependency must be met by them
#   python-venv.sh hf     DIR   the client with its [hf] extra (PyPI torch and transformers) + safetensors, for
#                               the Hugging Face Trainer test. torch is large (its CUDA libraries come with
#                               it from PyPI), so DIR is a cache kept between runs (CTest puts it under
#                               $WSM_VENV_CACHE, default ~/.cache/wsm): only what it lacks is installed,
#                               and the client again (delete DIR for newer releases). Any failure fails
#                               the caller.
#   python-venv.sh peers  DIR   pinned mergekit, torch, transformers, safetensors and numpy for
#                               tools/bench-peers.py (no wsm client). Cached like hf (same lock rule);
#                               torch comes from PyPI unless WSM_TORCH_INDEX_URL names another index
#                               (e.g. PyTorch's CPU-only wheels, a tenth of the download).
# The package is copied first, so the build leaves nothing in the source tree.
set -euo pipefail
mode=$1
dir=$2
src=$(cd "$(dirname "$0")/.." && pwd)/protocol/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/pkg"
export PIP_DISABLE_PIP_VERSION_CHECK=1
case "$mode" in
  pypi)
    [ -x "$dir/bin/python" ] || /usr/bin/python3 -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade "$work/pkg" safetensors
    "$dir/bin/pip" install -q --upgrade --upgrade-strategy eager "$work/pkg"  # newest releases of every dependency
    ;;
  debian)
    [ -x "$dir/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$dir"
    "$dir/bin/pip" install -q --force-reinstall --no-deps --no-build-isolation "$work/pkg"
    # By import, not by dist metadata: Debian names h5py's "h5py._debian_h5py_serial" and gives xxhash 0.0.0.
    "$dir/bin/python" - <<'PY'
import importlib, importlib.metadata as md, re, sys
modules = {"pyzmq": "zmq", "protobuf": "google.protobuf"}
missing = []
for req in md.requires("wsm-client"):
    if "extra ==" in req:
        continue
    name = re.match(r"[A-Za-z0-9_.-]+", req).group(0)
    try:
        importlib.import_module(modules.get(name, name))
    except ImportError:
        missing.append(req)
if missing:
    sys.exit("python-venv.sh: Debian's packages lack declared dependencies: " + ", ".join(missing))
PY
    ;;
  hf)
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9  # two builds (or CI runs) sharing the cache take turns
    "$dir/bin/python" -c '' 2>/dev/null || { rm -rf "$dir"; /usr/bin/python3 -m venv "$dir"; }
    # Installs what the cache lacks (everything, the first time: minutes of downloads); nothing else.
    "$dir/bin/pip" install -q "$work/pkg[hf]" safetensors
    # The client as it is now (the cached venv may hold an older one of the same version).
    "$dir/bin/pip" install -q --force-reinstall --no-deps "$work/pkg"
    "$dir/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
    ;;
  peers)
    mkdir -p "$(dirname "$dir")"
    exec 9>"$dir.lock"
    flock 9
    "$dir/bin/python" -c '' 2>/dev/null || { rm -rf "$dir"; /usr/bin/python3 -m venv "$dir"; }
    # Versions that work together (mergekit 0.1.5 asks for transformers 5.x, accelerate >= 1.6).
    pins=(torch==2.15.0 mergekit==0.1.5 transformers==5.25.0 accelerate==1.16.0 safetensors==0.8.0 numpy==2.4.6)
    if [ -n "${WSM_TORCH_INDEX_URL:-}" ]; then
      "$dir/bin/pip" install -q --index-url "$WSM_TORCH_INDEX_URL" "${pins[0]}"
    fi
    "$dir/bin/pip" install -q "${pins[@]}"
    "$dir/bin/python" -c 'import importlib.metadata as m; print(" ".join(p + " " + m.version(p) for p in ("mergekit", "torch", "transformers", "safetensors", "numpy")))'
    exit 0
    ;;
  *)
    echo "usage: python-venv.sh pypi|debian|hf|peers DIR" >&2
    exit 2
    ;;
esac
"$dir/bin/python" -c 'import wsm_client, google.protobuf, numpy, zmq; print("wsm_client", wsm_client.__version__, "protobuf", google.protobuf.__version__, "numpy", numpy.__version__, "pyzmq", zmq.__version__)'
