#!/usr/bin/env bash
# Installs the built tree into a fresh prefix, then builds tests/consumer against it twice: with CMake's
# find_package (shared and static) and with pkg-config (shared and --static), and runs each program on a
# fixture. Usage: run.sh BUILD_DIR MODEL_DIR EXPECTED.safetensors
set -euo pipefail
build=$1 model=$2 expected=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
echo "installed into $prefix:"
(cd "$prefix" && find . -path ./lib/python3* -prune -o \( -type f -o -type l \) -print | grep -v '/include/dinov3/' | sort)

echo "== find_package"
cmake -S "$here" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/build" -j2 >/dev/null
"$work/build/consumer_shared" "$model" "$expected"
libs=$(ldd "$work/build/consumer_shared")  # whole, before grep: grep -q under pipefail can fail ldd with SIGPIPE
grep -q "libdinov3.so.0 => $prefix" <<<"$libs" || { echo "consumer_shared does not use $prefix's libdinov3.so.0"; exit 1; }
"$work/build/consumer_static" "$model" "$expected"

echo "== pkg-config"
libdir=$(dirname "$(find "$prefix" -name dinov3.pc)")/..
export PKG_CONFIG_PATH=$libdir/pkgconfig
echo "pkg-config dinov3 $(pkg-config --modversion dinov3): $(pkg-config --cflags --libs dinov3)"
# shellcheck disable=SC2046
g++ -O1 "$here/main.cpp" -o "$work/pc_shared" $(pkg-config --cflags --libs dinov3) -Wl,-rpath,"$libdir"
"$work/pc_shared" "$model" "$expected"
# shellcheck disable=SC2046
g++ -O1 "$here/main.cpp" -o "$work/pc_static" $(pkg-config --cflags dinov3) "$libdir/libdinov3.a" \
    $(pkg-config --static --libs dinov3 | sed 's/-ldinov3 //')
"$work/pc_static" "$model" "$expected"
