#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12's packages (nothing else is downloaded).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libjpeg62-turbo-dev libpng-dev libwebp-dev   # image decoders (libpng also writes the pictures)
  zlib1g-dev                                   # CRC-32 of .pth (zip) records
  libeigen3-dev                                # PCA of dense features
  nlohmann-json3-dev libcli11-dev              # config/header parsing, command line
  libcurl4-openssl-dev libssl-dev              # dinov3 pull: HTTP, sha256 (libcrypto)
  libgtest-dev libgmock-dev libbenchmark-dev   # tests, micro-benchmarks
  clang libclang-rt-14-dev llvm                # sanitizer build and libFuzzer (scripts/test.sh, scripts/fuzz.sh)
  python3-dev pybind11-dev python3-pybind11    # the Python module
  python3-numpy python3-pytest python3-pil python3-setuptools  # the Python package, its tests, pip install
  python3-dask python3-distributed             # dinov3.distributed (dask-scheduler, dask-worker)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
