"""OpenCV's thread pool in deid's workers follows the worker's ``OMP_NUM_THREADS``.

Dask starts local workers with ``OMP_NUM_THREADS=1`` (one task thread per core); the OpenCV wheels'
pthreads pool ignores it, so every worker ran the glyph finder and the DB post-process on as many
OpenCV threads as the machine has cores. A task that may scan pixels now applies the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deid_pipeline import batch


@pytest.fixture
def fresh_limit(monkeypatch: pytest.MonkeyPatch):
    """The once-per-process state cleared, and OpenCV's own count restored afterwards."""
    import cv2

    before = cv2.getNumThreads()
    monkeypatch.setattr(batch, "_OPENCV_THREADS_SET", [])
    yield
    cv2.setNumThreads(before)


def test_applies_omp_num_threads_once(fresh_limit: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    cv2.setNumThreads(4)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert batch.limit_opencv_threads() == 1
    assert cv2.getNumThreads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # later changes are not re-read: once per process
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


@pytest.mark.parametrize("pixels", ["all", "none"])
def test_local_worker_task(tmp_path: Path, pixels: str) -> None:
    """A real local worker: a pixel-scanning task puts OpenCV on the worker's one thread; a
    header-only task leaves it as it was."""
    from deid_pipeline.config import RunContext
    from deid_pipeline.profile import load_profile

    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path, pixels=pixels, device="cpu")
    assert ctx.scans_pixels is (pixels == "all")
    with batch.dask_client(1, None, "cpu", detector=ctx.scans_pixels) as client:
        before = list(client.run(_worker_state).values())[0]
        assert before[0] == "1" and before[2] == []
        out = client.submit(batch._run_batch_task, str(tmp_path), [], batch._pack_context(ctx), "t", pure=False).result()
        assert out == []
        after = list(client.run(_worker_state).values())[0]
    assert after == (("1", 1, [1]) if pixels == "all" else before)
