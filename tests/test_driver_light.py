"""A run that scans no pixels keeps its driver light: no torch import, one worker per core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from deid_pipeline.batch import default_workers

from support import write_key

PROBE = """
import json, sys
sys.argv = ["deid", "run", sys.argv[1], sys.argv[2], "--profile", "safe-harbor", "--key-file", sys.argv[3],
            "--workers", "1", "--quiet"] + sys.argv[4:]
from deid_pipeline.cli.main import main
if __name__ == "__main__":
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def _probe(tmp_path: Path, extra: list[str], name: str) -> dict:
    import json

    inp = tmp_path / "in"
    if not inp.exists():
        inp.mkdir()
        for n in ("CT_small.dcm", "MR_small.dcm"):
            (inp / n).write_bytes(Path(get_testdata_file(n)).read_bytes())
    key = write_key(tmp_path / "k", b"driver-light-key-0123456789abcdef")
    script = tmp_path / "probe.py"  # a file, not -c: Dask's spawned workers re-import the main module
    script.write_text(PROBE)
    proc = subprocess.run([sys.executable, str(script), str(inp), str(tmp_path / name), str(key), *extra],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_header_only_run_never_imports_torch_in_the_driver(tmp_path: Path) -> None:
    res = _probe(tmp_path, ["--pixels", "none"], "out-none")
    assert res == {"code": 0, "torch": False}
    from dask.system import CPU_COUNT

    assert default_workers(gpu=False) == max(1, CPU_COUNT)


def test_default_workers_follow_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """One worker per usable CPU (affinity, a container's quota), as Dask counts them, not per host core."""
    import dask.system

    monkeypatch.setattr(dask.system, "CPU_COUNT", 3)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the host's cores
    assert default_workers(gpu=False) == 3
    monkeypatch.setattr(dask.system, "CPU_COUNT", 0)
    assert default_workers(gpu=False) == 1


def test_a_scanning_run_asks_torch_only_where_a_gpu_could_be(tmp_path: Path) -> None:
    """A run that scans pixels probes for CUDA in the driver (one worker per GPU): through torch on a host
    with a GPU driver's device nodes, not at all on one without (torch's import costs ~1.5 s there)."""
    from deid_pipeline.detect.device import gpu_possible

    res = _probe(tmp_path, [], "out-scan")
    assert res["code"] == 0 and res["torch"] is gpu_possible()


def test_an_explicit_cuda_request_always_asks_torch(tmp_path: Path) -> None:
    """The checks above can fail: ``--device cuda`` imports torch in the driver whatever the host looks
    like (and, without CUDA, is a configuration error, exit status 2)."""
    from deid_pipeline.detect.device import cuda_available

    res = _probe(tmp_path, ["--device", "cuda", "--workers", "0"], "out-cuda")
    assert res["torch"] is True and res["code"] == (0 if cuda_available(quick=False) else 2)


def test_gpu_possible_reads_the_driver_device_nodes(monkeypatch) -> None:
    from deid_pipeline.detect import device

    present: set[str] = set()
    monkeypatch.setattr(device.sys, "platform", "linux")
    monkeypatch.setattr(device.os.path, "exists", lambda p: p in present)
    assert device.gpu_possible() is False and device.cuda_available() is False  # no torch asked
    for node in ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd", "/dev/nvhost-ctrl"):
        present = {node}
        assert device.gpu_possible() is True, node
    monkeypatch.setattr(device.sys, "platform", "darwin")
    present = set()
    assert device.gpu_possible() is True  # elsewhere torch decides


def test_a_header_only_batch_leaves_the_detector_modules_unloaded(tmp_path: Path) -> None:
    """A worker's header-only batch imported the scan module (OpenCV: ~0.3 s of its first task and
    ~17 MiB) to scan nothing; now it does not (checked in a fresh interpreter, as a worker is)."""
    code = """
import sys
from pathlib import Path
from deid_pipeline.config import RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.pipeline import process_batch
from deid_pipeline.profile import load_profile
ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=Path(sys.argv[2]), pixels="none")
[r] = process_batch(Path(sys.argv[1]), [Candidate("CT_small.dcm")], ctx)
print(r.status, "cv2" in sys.modules, "deid_pipeline.scan" in sys.modules)
"""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "CT_small.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    out = subprocess.run([sys.executable, "-c", code, str(inp), str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["written", "False", "False"], out.stderr[-2000:]
