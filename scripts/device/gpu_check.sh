#!/usr/bin/env bash
# One call on a lent GPU machine: install the carried wheels, check the CUDA path, benchmark it.
#
# Here, once:   bash scripts/device/fetch_wheels.sh          # .whl/ (CPython 3.12 wheels, ~26 MB)
#               bash scripts/device/stage_shared.sh          # .device-shared/ (real files, no 13 MB cine)
# Device call:  run(command="bash scripts/device/gpu_check.sh", carry=[".whl", ".device-shared"], timeout_s=480)
# Comes back:   $OUT/gpu_check.log and $OUT/device-results.tar.gz (every JSON/markdown result, the GPU
#               utilisation samples, the py-spy profile); unpack into benchmarks/results/ what is kept.
#
# Steps, most wanted first, each under its own time limit and all within BUDGET seconds (default 420, so that a second call still fits the session's device time):
#   env        nvidia-smi, versions, the detectors' availability on cuda
#   detector   bench_pixels.py --detector-only per detector, batches 1..256 (network and post-process apart)
#   e2e        bench_pixels.py --corpora ct, deid run end to end, 4, 12 and 1 workers on the one GPU, utilisation sampled
#   parity     scripts/device/parity.py: CPU against CUDA regions on the real files and 40 synthetic cases
#   tests      tests/test_detect.py (CPU tests, test_cuda_matches_cpu, the GPU-failure fallback)
#   profile    py-spy over one in-process deid run (--workers 0) on the same corpus: where the time goes
# DEVICE=cpu QUICK=1 runs the same flow here (no GPU; sizes cut) to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/deid-device-out}"
DEVICE="${DEVICE:-cuda}"
QUICK="${QUICK:-0}"
PY="${PY:-python3}"
RES="$(mktemp -d /tmp/deid-device-res.XXXX)"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
BUDGET="${BUDGET:-420}"  # seconds for the whole script: each step's limit is cut to what is left
DEADLINE=$(( $(date +%s) + BUDGET ))
step() { echo; echo "=== $(date -u +%T) $* ($(( DEADLINE - $(date +%s) )) s left)"; }
# limit N: N seconds, or what is left before the deadline (less 15 s for packing the results)
limit() { local left=$(( DEADLINE - $(date +%s) - 15 )); [ "$left" -lt "$1" ] && echo $(( left > 1 ? left : 1 )) || echo "$1"; }
finish() {
    [ -n "${SMI_PID:-}" ] && kill "$SMI_PID" 2>/dev/null
    tar -czf "$OUT/device-results.tar.gz" -C "$RES" . && echo "=== results: $OUT/device-results.tar.gz ($(du -h "$OUT/device-results.tar.gz" | cut -f1))"
}
trap finish EXIT
if [ "$QUICK" = 1 ]; then VIEWS=32; BATCHES="1 8 32"; CT=16; SYN=4; WORKERS="1"; REPEATS=1
else VIEWS=256; BATCHES="1 8 32 128 256"; CT=512; SYN=40; WORKERS="${WORKERS:-4 12 1}"; REPEATS=2; fi

step install
WHL="${WHL:-.whl}"
if ls "$WHL"/*.whl >/dev/null 2>&1; then
    t0=$(date +%s)
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/deid-site "$WHL"/*.whl || exit 1
    export PYTHONPATH="/tmp/deid-site:$PWD" PATH="/tmp/deid-site/bin:$PATH"
    echo "installed $(ls "$WHL"/*.whl | wc -l) wheels in $(( $(date +%s) - t0 )) s"
else
    export PYTHONPATH="$PWD"
fi
if [ -d .device-shared/data ] && [ ! -e ../shared ]; then ln -s "$PWD/.device-shared" ../shared; fi
SHARED=../shared/data

step env
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
$PY - <<PYEOF || exit 1
import json, platform, torch, numpy, cv2, pydicom, monai, dask
from deid_pipeline import __version__
from deid_pipeline.detect import detector_problem, get_detector
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "numpy": numpy.__version__, "opencv": cv2.__version__,
        "pydicom": pydicom.__version__, "monai": monai.__version__, "dask": dask.__version__, "deid": __version__,
        "cpus": __import__("os").cpu_count()}
if torch.cuda.is_available():
    info["gpu"] = torch.cuda.get_device_name(0)
for name in ("ppocrv4-det", "deid-textseg", "auto"):
    info[f"detector {name}"] = detector_problem(name) or str(get_detector(name, "$DEVICE").device)
print(json.dumps(info, indent=1))
open("$RES/env.json", "w").write(json.dumps(info, indent=1))
PYEOF

step detector
for det in deid-textseg ppocrv4-det auto; do
    mkdir -p "$RES/detector-$det"
    # shellcheck disable=SC2086
    timeout $(limit 90) $PY benchmarks/bench_pixels.py --detector-only --device "$DEVICE" --detector "$det" \
        --batch-sizes $BATCHES --views "$VIEWS" --repeats 3 --results "$RES/detector-$det" 2>&1 | grep -v '^\[bench' | tail -14
done

step e2e
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used --format=csv,noheader -lms 250 \
        > "$RES/gpu_util.csv" 2>/dev/null &
    SMI_PID=$!
fi
# one call per worker count, each under its own limit and writing its own results (the corpus is made once
# and reused): a slow start of many workers costs only its own numbers. Several workers share the GPU:
# the CPU stages of a file (read, decode, header, the glyph finder, write) bound one worker's rate.
for w in $WORKERS; do
    mkdir -p "$RES/e2e-w$w"
    timeout $(limit 90) $PY benchmarks/bench_pixels.py --corpora ct --ct "$CT" --workers "$w" --repeats "$REPEATS" \
        --device "$DEVICE" --work /tmp/deid-e2e --results "$RES/e2e-w$w" 2>&1 | grep -E '^\| ct|^\[bench_pixels\] ct'
done
[ -n "${SMI_PID:-}" ] && kill "$SMI_PID" 2>/dev/null && SMI_PID=
[ -s "$RES/gpu_util.csv" ] && $PY - "$RES/gpu_util.csv" <<'PYEOF'
import statistics, sys
u = [float(l.split(",")[1].strip().split()[0]) for l in open(sys.argv[1]) if l.count(",") >= 3]
busy = [x for x in u if x > 0]
print(f"GPU utilisation over the e2e runs: {len(u)} samples, median {statistics.median(u):.0f} %, "
      f"median while busy {statistics.median(busy) if busy else 0:.0f} %, max {max(u):.0f} %")
PYEOF

step parity
if [ "$DEVICE" = cuda ]; then
    timeout $(limit 150) $PY scripts/device/parity.py --real $SHARED/burned_in_text $SHARED/no_text_controls \
        --synthetic "$SYN" --out "$RES/parity.json"
else
    timeout $(limit 150) $PY scripts/device/parity.py --real $SHARED/no_text_controls --synthetic "$SYN" --against cpu \
        --detectors deid-textseg --out "$RES/parity.json"
fi

step tests
timeout $(limit 150) $PY -m pytest -q -p no:cacheprovider -rs tests/test_detect.py 2>&1 | tail -15

step profile
if [ -d /tmp/deid-e2e/in-ct ] && command -v py-spy >/dev/null; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > /tmp/deid-prof.key; chmod 600 /tmp/deid-prof.key
    rm -rf /tmp/deid-prof-out /tmp/deid-prof-out.private
    timeout $(limit 90) py-spy record -r 200 -f raw -o "$RES/profile-e2e.pyspy.txt" -- $PY -m deid_pipeline.cli run \
        /tmp/deid-e2e/in-ct /tmp/deid-prof-out --profile safe-harbor --workers 0 --device "$DEVICE" \
        --key-file /tmp/deid-prof.key --quiet >/dev/null 2>&1
    echo "deid --workers 0: exit $?, $(grep -o '"files_per_s": [0-9.]*' /tmp/deid-prof-out/run.json 2>/dev/null)"
    [ -s "$RES/profile-e2e.pyspy.txt" ] && $PY - "$RES/profile-e2e.pyspy.txt" <<'PYEOF'
import collections, re, sys
incl, own, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
    total += int(n); own[frames[-1]] += int(n)
    for f in set(frames): incl[f] += int(n)
print(f"{total} samples; inclusive, deid and torch frames:")
for f, n in incl.most_common(400):
    if ("deid_pipeline" in f or "torch" in f or "cv2" in f) and "<module>" not in f and n / total > 0.02:
        print(f"  {100 * n / total:5.1f} %  {f[:110]}")
print("self time, top 12:")
for f, n in own.most_common(12):
    print(f"  {100 * n / total:5.1f} %  {f[:110]}")
PYEOF
else
    echo "skipped (no corpus or no py-spy)"
fi
step done
