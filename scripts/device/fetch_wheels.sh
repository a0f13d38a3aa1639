#!/usr/bin/env bash
# Download, here, the wheels scripts/device/gpu_check.sh installs on the GPU machine (no network there).
#   bash scripts/device/fetch_wheels.sh            # CPython 3.12 (the GPU image's), into .whl/
#   PYVER=3.11 WHL=/tmp/whl311 bash scripts/device/fetch_wheels.sh   # this machine's, to try the script here
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVER="${PYVER:-3.12}"
WHL="${WHL:-.whl}"
PIP="${PIP:-python3 -m pip}"
mkdir -p "$WHL"
platforms=()
for p in manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 \
         manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
grep -v '^\s*#' scripts/device/wheels.txt | grep -v '^\s*$' | while read -r spec; do
    $PIP download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${platforms[@]}" -d "$WHL" "$spec"
done
n=$(ls "$WHL"/*.whl | wc -l)
echo "fetch_wheels: $n wheels in $WHL ($(du -sh "$WHL" | cut -f1))"
