"""Run ``pipeline.process_batch`` over an input tree with Dask, streaming results to the driver.

Default: a ``LocalCluster`` of worker processes (one thread each) sized to the machine, or one
worker per GPU with dask-cuda when it is installed and CUDA is present. ``--scheduler`` uses a
cluster the user already has. A bounded window of batches is in flight, so millions of inputs never
sit in memory at once. A batch lost with its worker is retried by Dask; when it keeps failing, its
files are retried one by one and a file that still kills its worker is recorded as ``failed``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from .config import RunContext
from .discover import Candidate
from .pipeline import process_batch
from .types import FileResult

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker per GPU when CUDA is present, else one per core."""
    try:
        import torch

        if torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
    except Exception:
        pass
    return max(1, os.cpu_count() or 1)


def _chunks(items: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@contextmanager
def dask_client(workers: int | None, scheduler: str | None, device: str) -> Iterator[Any]:
    """A distributed Client: the user's scheduler, or a local cluster we own and close."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="30s")
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    cluster: Any = None
    if device in ("auto", "cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                from dask_cuda import LocalCUDACluster  # type: ignore[import-not-found]

                cluster = LocalCUDACluster(n_workers=min(n, torch.cuda.device_count()), threads_per_worker=1, dashboard_address=None)
        except ImportError:
            cluster = None
    if cluster is None:
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _crashed(batch: list[Candidate]) -> list[FileResult]:
    return [
        FileResult(
            rel_input=c.rel,
            input_sha256="",
            input_size=0,
            status="failed",
            reason_code="worker-crashed",
            reason="the worker processing this file died repeatedly; the file was not written",
        )
        for c in batch
    ]


def run_distributed(
    root: Path,
    candidates: Iterable[Candidate],
    ctx: RunContext,
    on_result: Callable[[FileResult], None],
    workers: int | None = None,
    scheduler: str | None = None,
) -> int:
    """Process every candidate on Dask; ``on_result`` is called in the driver for each result."""
    from distributed import as_completed

    with dask_client(workers, scheduler, ctx.device) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or (workers or 1))
        window = n_workers * 4
        ctx_future = client.scatter(ctx, broadcast=True)
        batches = _chunks(candidates, ctx.batch_size)
        pending: dict[Any, tuple[list[Candidate], bool]] = {}
        ac = as_completed()

        def submit(batch: list[Candidate], single: bool) -> None:
            fut = client.submit(process_batch, str(root), batch, ctx_future, pure=False, retries=1)
            pending[fut] = (batch, single)
            ac.add(fut)

        for batch in islice(batches, window):
            submit(batch, False)
        for fut in ac:
            batch, single = pending.pop(fut)
            try:
                results: list[FileResult] = fut.result()
            except Exception as exc:
                log.warning("a batch failed on its worker (%s); retrying its files one by one", type(exc).__name__)
                if single or len(batch) == 1:
                    results = _crashed(batch)
                else:
                    for c in batch:
                        submit([c], True)
                    results = []
            fut.release()
            for r in results:
                on_result(r)
            nxt = next(batches, None)
            if nxt is not None:
                submit(nxt, False)
    return n_workers


def run_inline(root: Path, candidates: Iterable[Candidate], ctx: RunContext, on_result: Callable[[FileResult], None]) -> int:
    """Process in the driver process (``--workers 0``): for debugging and tiny inputs."""
    for batch in _chunks(candidates, ctx.batch_size):
        for r in process_batch(root, batch, ctx):
            on_result(r)
    return 0
