"""Sample the resident memory of a ``deid`` process and its workers while it runs (shared by the
memory and soak benchmarks)."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil


@dataclass
class Sample:
    t: float  # seconds since start
    driver_rss: int
    worker_rss: list[int]  # one per worker process, largest first
    extra: dict = field(default_factory=dict)


def _workers(proc: psutil.Process) -> list[psutil.Process]:
    """Dask worker processes (children of the nannies) or, failing that, every descendant."""
    try:
        kids = proc.children(recursive=True)
    except psutil.Error:
        return []
    workers = []
    for k in kids:
        try:
            cmd = " ".join(k.cmdline())
            if "multiprocessing" in cmd and "resource_tracker" not in cmd and "forkserver" not in cmd and not k.children():
                workers.append(k)
        except psutil.Error:
            pass
    return workers or kids


def run_sampled(cmd: list[str], interval: float = 0.2, extra: Callable[[], dict] | None = None,
                env: dict | None = None, cwd: Path | None = None) -> tuple[int, list[Sample], float]:
    """Run ``cmd``; return its exit status, the samples and the wall time."""
    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    proc = psutil.Process(popen.pid)
    samples: list[Sample] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                driver = proc.memory_info().rss
            except psutil.Error:
                break
            rss = []
            for w in _workers(proc):
                try:
                    rss.append(w.memory_info().rss)
                except psutil.Error:
                    pass
            samples.append(Sample(time.perf_counter() - t0, driver, sorted(rss, reverse=True), extra() if extra else {}))
            stop.wait(interval)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    _, err = popen.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    if popen.returncode not in (0, 3):
        raise SystemExit(f"{cmd[3:5]} failed ({popen.returncode}): {err.decode(errors='replace')[-800:]}")
    return popen.returncode, samples, wall


def manifest_lines(out: Path) -> int:
    """Records written so far (cheap: counts newlines)."""
    try:
        with open(out / "manifest.jsonl", "rb") as fh:
            return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


MiB = 2**20
