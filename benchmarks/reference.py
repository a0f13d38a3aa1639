"""What this machine allows, measured in the same run as deid: a plain pydicom read-and-write loop.

Issue 5 states the header target against such a loop ("above that plain loop"), and this VM's speed
drifts by up to 2x between sessions, so a ratio to a loop timed minutes apart on the same corpus says
more than a files/s figure. The loop does no de-identification: ``pydicom.dcmread`` then ``save_as`` to
one flat folder, one file at a time.

:func:`plain_loop` runs it in ``procs`` processes at once over equal shares of the files (spawned,
pydicom imported, then started together): files/s over the loop alone, start-up excluded. From 1 to 2
processes it is the speed-up this machine gives a CPU-bound Python loop with no coordination at all:
the ceiling for deid's 1 -> 2 worker speed-up (whose driver, scheduler and nannies share the same cores).

    python benchmarks/reference.py FOLDER [--procs 1 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _loop(paths: list[str], out: str, ready: Any, go: Any, done: Any) -> None:
    import pydicom

    ready.put(True)
    go.wait()
    t = time.perf_counter()
    try:
        for i, p in enumerate(paths):
            pydicom.dcmread(p).save_as(f"{out}/{i}.dcm", enforce_file_format=False)
    except Exception as exc:  # the type only: a message could quote a value
        done.put(type(exc).__name__)
        return
    done.put(time.perf_counter() - t)


def plain_loop(files: list[Path], procs: int = 1, work: Path | None = None) -> dict[str, float]:
    """files/s of ``procs`` plain read-and-write loops over equal shares of ``files``, started together:
    all files over the time until the last loop ends (start-up and imports excluded)."""
    ctx = mp.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    base = Path(tempfile.mkdtemp(prefix="plain-loop-", dir=work))
    workers: list[Any] = []
    try:
        for k in range(procs):
            out = base / str(k)
            out.mkdir()
            share = [str(f) for f in files[k::procs]]
            workers.append(ctx.Process(target=_loop, args=(share, str(out), ready, go, done)))
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=120)
        t = time.perf_counter()
        go.set()
        loops: list[float | str] = []
        while len(loops) < len(workers):
            try:
                loops.append(done.get(timeout=1.0))
            except queue.Empty:
                if sum(w.exitcode is not None for w in workers) > len(loops):  # one died without a word
                    loops.append("died")
        wall = time.perf_counter() - t
        for w in workers:
            w.join()
        failed = [x for x in loops if isinstance(x, str)]
        if failed:
            raise RuntimeError(f"the plain loop failed: {', '.join(failed)}")
        return {"procs": procs, "files": len(files), "files_per_s": len(files) / wall,
                "slowest_loop_s": max(loops), "wall_s": wall}
    finally:
        for w in workers:  # one stuck or failed before the start: not left running
            if w.is_alive():
                w.terminate()
                w.join()
        shutil.rmtree(base, ignore_errors=True)


def reference(files: list[Path], procs: list[int], repeats: int = 3, work: Path | None = None) -> dict[str, Any]:
    """Median (min, max) files/s of the plain loop per process count, repeats interleaved, and the
    speed-up from the fewest processes to the most."""
    rates: dict[int, list[float]] = {n: [] for n in procs}
    for _ in range(repeats):
        for n in procs:
            rates[n].append(plain_loop(files, n, work)["files_per_s"])
    out: dict[str, Any] = {"what": "pydicom dcmread + save_as, no de-identification, flat output folder",
                           "files": len(files), "repeats": repeats,
                           "files_per_s": {str(n): {"median": statistics.median(r), "min": min(r), "max": max(r)}
                                           for n, r in rates.items()}}
    if len(procs) > 1:
        lo, hi = min(procs), max(procs)
        out["speedup_procs"] = [lo, hi]
        out["speedup"] = statistics.median(rates[hi]) / statistics.median(rates[lo])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="DICOM files under it (any depth)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    files = sorted(p for p in args.folder.rglob("*") if p.is_file())
    res = reference(files, args.procs, args.repeats)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
