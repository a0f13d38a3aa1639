"""OpenCV's thread pool in deid's workers: the host's cores shared between the local workers.

Dask starts local workers with ``OMP_NUM_THREADS=1`` (one task thread per core); the OpenCV wheels'
pthreads pool ignores it, so every worker ran the glyph finder and the DB post-process on as many
OpenCV threads as the machine has cores. The driver now gives its local cluster's workers
``cores // workers`` OpenCV threads each (one GPU worker on a many-core host keeps them all); on a
cluster of the user's, the worker's ``OMP_NUM_THREADS`` is applied.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from deid_pipeline import batch


@pytest.fixture
def fresh_limit(monkeypatch: pytest.MonkeyPatch):
    """No count applied yet in this process, and OpenCV's own count restored afterwards."""
    import cv2

    before = cv2.getNumThreads()
    monkeypatch.setattr(batch, "_OPENCV_THREADS_SET", [])
    yield
    cv2.setNumThreads(before)


@pytest.mark.parametrize(("workers", "cpus", "expect"), [(1, 16, 16), (2, 2, 1), (3, 8, 2), (4, 2, 1), (0, 4, 4)])
def test_local_share_of_the_cores(workers: int, cpus: int, expect: int) -> None:
    assert batch.local_opencv_threads(workers, cpus) == expect


def test_applies_the_drivers_count(fresh_limit: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the driver's count wins over the variable
    assert batch.limit_opencv_threads(3) == 3
    assert cv2.getNumThreads() == 3
    assert batch.limit_opencv_threads(1) == 1  # a later run on the same worker with another count
    assert cv2.getNumThreads() == 1


def test_applies_omp_num_threads_without_a_count(fresh_limit: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    cv2.setNumThreads(4)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert batch.limit_opencv_threads() == 1
    assert cv2.getNumThreads() == 1


@pytest.mark.parametrize("value", [None, "", "0", "-2", "two"])
def test_leaves_opencv_alone_without_a_usable_value(fresh_limit: None, monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    import cv2

    cv2.setNumThreads(3)
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert batch.limit_opencv_threads() is None
    assert cv2.getNumThreads() == 3


def _worker_state() -> tuple[str | None, int, list[int]]:
    """In a worker: its OMP_NUM_THREADS, OpenCV's thread count, what ``limit_opencv_threads`` applied."""
    import cv2

    return os.environ.get("OMP_NUM_THREADS"), cv2.getNumThreads(), list(batch._OPENCV_THREADS_SET)


@pytest.mark.parametrize(("pixels", "threads"), [("all", 1), ("all", None), ("none", 1)])
def test_local_worker_task(tmp_path: Path, pixels: str, threads: int | None) -> None:
    """A real local worker: a pixel-scanning task applies the context's count (or, without one, the
    worker's OMP_NUM_THREADS, 1); a header-only task leaves OpenCV as it was."""
    from deid_pipeline.config import RunContext
    from deid_pipeline.profile import load_profile

    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path, pixels=pixels,
                     device="cpu", opencv_threads=threads)
    assert ctx.scans_pixels is (pixels == "all")
    with batch.dask_client(1, None, "cpu", detector=ctx.scans_pixels) as client:
        before = list(client.run(_worker_state).values())[0]
        assert before[0] == "1" and before[2] == []
        out = client.submit(batch._run_batch_task, str(tmp_path), [], batch._pack_context(ctx), "t", pure=False).result()
        assert out == []
        after = list(client.run(_worker_state).values())[0]
    assert after == (("1", 1, [1]) if pixels == "all" else before)


def test_run_distributed_sizes_its_local_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The context the driver sends to its own two local workers carries cores // 2 OpenCV threads."""
    import shutil

    from dask.system import CPU_COUNT

    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import walk_inputs
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "a.dcm")
    sent: list[RunContext] = []
    pack = batch._pack_context
    monkeypatch.setattr(batch, "_pack_context", lambda c: (sent.append(c), pack(c))[1])
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path / "out", pixels="none", device="cpu")
    results = []
    n = batch.run_distributed(src, walk_inputs(src), ctx, results.append, workers=2)
    assert n == 2 and [r.status for r in results] == ["written"]
    assert [c.opencv_threads for c in sent] == [max(1, CPU_COUNT // 2)]


def _deid_log_level() -> int:
    import logging

    return logging.getLogger("deid_pipeline").level


def test_quiet_is_set_per_task_on_a_worker(tmp_path: Path) -> None:
    """A worker outlives a run on a ``--scheduler`` cluster: a ``--quiet`` run's level must not stay for the next."""
    import logging

    from deid_pipeline.config import RunContext
    from deid_pipeline.profile import load_profile

    profile = load_profile("safe-harbor")
    with batch.dask_client(1, None, "cpu", detector=False) as client:
        levels = []
        for quiet in (True, False):
            ctx = RunContext(profile=profile, key=b"k" * 32, output_dir=tmp_path, pixels="none", quiet=quiet)
            assert client.submit(batch._run_batch_task, str(tmp_path), [], batch._pack_context(ctx), "t", pure=False).result() == []
            levels += list(client.run(_deid_log_level).values())
    assert levels == [logging.ERROR, logging.NOTSET]
