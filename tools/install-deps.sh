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
  clang libclang-rt-14-dev
  g++-aarch64-linux-gnu
  python3 python3-numpy python3-h5py python3-zmq python3-protobuf python3-torch python3-venv
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
