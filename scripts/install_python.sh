#!/usr/bin/env bash
# Builds the library and the Python package, then installs the package for Debian's python3 into
# PREFIX/lib/python3.X/dist-packages (PREFIX: /usr/local, where /usr/bin/python3 looks), so that
# `/usr/bin/python3 -c "import dinov3"` works. Usage: scripts/install_python.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
source scripts/cmake_env.sh
prefix=${1:-/usr/local}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDINOV3_BUILD_PYTHON=ON -DPython3_EXECUTABLE=/usr/bin/python3 >/dev/null
cmake --build build -j"$jobs" --target dinov3_python
SUDO=""
if [ ! -w "$prefix" ] && [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO cmake --install build --component python --prefix "$prefix"
dest=$prefix/lib/$(/usr/bin/python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')/dist-packages
# Checked from / so the source tree is not what gets imported (PYTHONPATH only matters for another PREFIX).
(cd / && PYTHONPATH=$dest /usr/bin/python3 -c "import dinov3; print('dinov3', dinov3.__version__, 'installed:', dinov3.__file__)")
