#!/usr/bin/env bash
# One command on a fresh Debian 12 machine: install dependencies, build, and run `dinov3 infer` on a
# bundled sample photo (real weights when found in the Hugging Face cache, else a bundled test model).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh >/dev/null
exec build/bin/dinov3 infer "$@"
