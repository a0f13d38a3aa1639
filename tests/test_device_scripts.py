"""The one-call GPU check (``scripts/device``): it runs where CI never does, so its parts are checked here."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deid_pipeline.types import Region

REPO = Path(__file__).resolve().parents[1]
DEVICE = REPO / "scripts" / "device"
sys.path.insert(0, str(DEVICE))

import parity  # noqa: E402

#: What the GPU machine's image already holds (its package list in the device tool's notes) or what
#: the check does without (gdcm: a codec the synthetic CT corpus does not need; presidio: phi-text mode).
ON_THE_IMAGE = {"torch", "numpy", "opencv-python-headless", "onnxruntime", "pyyaml", "click", "rich"}
NOT_NEEDED_THERE = {"python-gdcm", "presidio-analyzer"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_runtime_dependency_reaches_the_gpu_machine() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    deps = {_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    carried = {_name(line) for line in (DEVICE / "wheels.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"dask", "distributed"} <= carried  # dask[distributed]: the extra's package travels too
    missing = {d for d in deps if d not in carried | ON_THE_IMAGE | NOT_NEEDED_THERE}
    assert not missing, f"add to scripts/device/wheels.txt: {sorted(missing)}"
    assert all("==" in line for line in (DEVICE / "wheels.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#"))  # one version each: two stop the install there


def test_gpu_check_script_parses() -> None:
    for script in ("gpu_check.sh", "fetch_wheels.sh", "stage_shared.sh"):
        assert subprocess.run(["bash", "-n", str(DEVICE / script)]).returncode == 0


def test_compare_regions() -> None:
    a = [Region(10, 10, 40, 12, 0.9, "model"), Region(100, 50, 20, 20, 0.8, "glyph")]
    same = parity.compare(a, list(reversed(a)), (200, 200), 2)
    assert same["exact"] and same["close"] and same["mask_iou"] == 1.0
    moved = parity.compare(a, [Region(11, 9, 40, 13, 0.9, "model"), a[1]], (200, 200), 2)
    assert not moved["exact"] and moved["close"] and 0.9 < moved["mask_iou"] < 1.0
    lost = parity.compare(a, a[:1], (200, 200), 2)
    assert not lost["close"] and lost["boxes"] == [2, 1] and lost["px_only_cpu"] == 400 and lost["px_only_cuda"] == 0


@pytest.mark.skipif(not __import__("deid_pipeline.detect", fromlist=["is_available"]).is_available(),
                    reason="text detector weights or torch missing")
def test_parity_runs_cpu_against_cpu(tmp_path: Path) -> None:
    """The script end to end on two synthetic cases, the CPU against itself: every frame exact."""
    out = tmp_path / "parity.json"
    rc = parity.main(["--synthetic", "2", "--against", "cpu", "--detectors", "deid-textseg", "--out", str(out)])
    report = json.loads(out.read_text())["detectors"]["deid-textseg"]
    assert rc == 0 and report["frames"] >= 2 and report["exact"] == report["frames"] == report["close"]
