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
    largest_rss: int = 0  # the largest process of the whole tree, the driver included


def _is_worker(proc: psutil.Process) -> bool:
    """A Dask worker process, with no children: spawned by multiprocessing, or forked by its fork server (a
    fork keeps the server's command line: a worker is such a process under the server); not the resource
    tracker, not the server itself."""
    cmd = " ".join(proc.cmdline())
    if "multiprocessing" not in cmd or "resource_tracker" in cmd or proc.children():
        return False
    parent = proc.parent()
    return "forkserver" not in cmd or (parent is not None and "forkserver" in " ".join(parent.cmdline()))


class TreeSampler:
    """Samples the resident memory of process ``pid`` and its descendants every ``interval`` seconds in a
    thread, from entering the ``with`` block until leaving it or the process's end: :attr:`samples`.
    Workers are the Dask worker processes (children of the nannies) or, failing that, every descendant."""

    def __init__(self, pid: int, interval: float, t0: float, extra: Callable[[], dict] | None = None) -> None:
        self.samples: list[Sample] = []
        self.seen: set[int] = set()  # every descendant's pid, as sampled
        self._interval, self._t0, self._extra = interval, t0, extra
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(pid,), daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                driver = proc.memory_info().rss
                kids = proc.children(recursive=True)
            except psutil.Error:
                break
            self.seen.update(k.pid for k in kids)
            rss: dict[psutil.Process, int] = {}
            workers: list[int] = []
            for k in kids:
                try:
                    rss[k] = k.memory_info().rss
                    if _is_worker(k):
                        workers.append(rss[k])
                except psutil.Error:
                    pass
            workers = workers or list(rss.values())
            self.samples.append(Sample(time.perf_counter() - self._t0, driver, sorted(workers, reverse=True),
                                       self._extra() if self._extra else {}, max([driver, *rss.values()])))
            self._stop.wait(self._interval)


def run_sampled(cmd: list[str], interval: float = 0.2, extra: Callable[[], dict] | None = None,
                env: dict | None = None, cwd: Path | None = None) -> tuple[int, list[Sample], float]:
    """Run ``cmd``; return its exit status, the samples and the wall time."""
    t0 = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    with TreeSampler(popen.pid, interval, t0, extra) as sampler:
        _, err = popen.communicate()
    wall = time.perf_counter() - t0
    if popen.returncode not in (0, 3):
        raise SystemExit(f"{cmd[3:5]} failed ({popen.returncode}): {err.decode(errors='replace')[-800:]}")
    return popen.returncode, sampler.samples, wall


def manifest_lines(out: Path) -> int:
    """Records written so far (cheap: counts newlines)."""
    try:
        with open(out / "manifest.jsonl", "rb") as fh:
            return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


MiB = 2**20
