#!/usr/bin/env bash
# Copy, here, the shared real files gpu_check.sh reads into .device-shared/ (git-ignored), leaving out
# the 13 MB cine so that the working tree, the wheels and these stay under the device's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC="${1:-../shared/data}"
rm -rf .device-shared && mkdir -p .device-shared/data
cp -r "$SRC/burned_in_text" "$SRC/no_text_controls" .device-shared/data/
rm -f .device-shared/data/burned_in_text/GREYSCALE_CINE.*
echo "stage_shared: $(du -sh .device-shared | cut -f1) in .device-shared"
