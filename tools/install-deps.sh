#!/usr/bin/env bash
# Installs every Debian package wsm needs on a fresh Debian 12 machine.
# Idempotent: when everything is already there it prints nothing and exits 0.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler
  libhdf5-dev
  libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  libcli11-dev nlohmann-json3-dev
  libxxhash-dev zlib1g-dev
  libopenblas-dev libomp-dev libdnnl2
  libcairo2-dev
  clang libclang-rt-14-dev clang-format
  g++-aarch64-linux-gnu
  libopenmpi-dev openmpi-bin
  python3 python3-pip python3-numpy python3-h5py python3-zmq python3-protobuf python3-torch python3-venv python3-xxhash
)

# From PyPI into Debian's python3 (Debian 12 packages neither): Hugging Face's safetensors, which
# reads the Hugging Face directories `wsm merge` and `wsm serve --format hf` write in the tests.
# Pinned below 0.6: later releases' torch support needs torch.uint16, which Debian's torch 1.13 lacks
# (importing safetensors.torch then fails).
pip_packages=("safetensors<0.6")
pip_missing=()
for p in "${pip_packages[@]}"; do
  /usr/bin/python3 -c "import ${p%%[<>=]*}.torch" 2>/dev/null || pip_missing+=("$p")
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && [ ${#pip_missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "install-deps: pip installing ${pip_missing[*]} for /usr/bin/python3"
  $SUDO /usr/bin/python3 -m pip install -q --break-system-packages "${pip_missing[@]}"
fi
echo "install-deps: done"
