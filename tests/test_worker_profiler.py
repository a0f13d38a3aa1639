"""Worker memory over long runs: the local clusters deid starts run without Dask's statistical profiler.

With it on (Dask's default), every worker keeps one call tree per second of work, twice, in
1,000-entry deques: a busy worker's RSS climbs for ~17 minutes and ends ~60 MiB higher (the growth
of the 100k-file soak; ``LOCAL_CLUSTER_CONFIG`` in ``deid_pipeline.batch``). These tests look at the
worker processes themselves: the setting they run with, and whether the profiler's periodic
callbacks (the sampler and the per-second cycle into the deques) exist at all, also after a restart
(deid restarts the worker of a timed-out batch), and that the driver's own config and environment
are as before once the cluster is closed. A cluster of the user's (``--scheduler``) is left as it is.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydicom.data import get_testdata_file

from support import deid, read_manifest, write_key

PROFILER_CALLBACKS = {"profile", "profile-cycle"}


def _profiler_state(dask_worker: Any) -> tuple[bool, list[str], int, float, int]:
    """The worker process's setting, its profiler callbacks, the profile trees it holds, its event-loop
    tick interval (s), its pid."""
    import dask

    return (
        bool(dask.config.get("distributed.worker.profile.enabled")),
        sorted(PROFILER_CALLBACKS & set(dask_worker.periodic_callbacks)),
        len(dask_worker.profile_history) + len(dask_worker.profile_keys_history),
        dask_worker._tick_interval,
        os.getpid(),
    )


def _busy(seconds: float) -> int:
    """A task that keeps the worker's thread busy for more than one profile cycle (1 s)."""
    import time

    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += sum(range(1000))
    return n


def _memory_thresholds(dask_worker) -> tuple:  # type: ignore[no-untyped-def]
    """On the worker: its spill thresholds (None: off), pause fraction and the nannies' restart fraction."""
    import dask

    m = dask_worker.memory_manager
    return (m.memory_target_fraction or None, m.memory_spill_fraction or None, m.memory_pause_fraction,
            dask.config.get("distributed.worker.memory.terminate"))


def test_local_workers_run_without_the_profiler() -> None:
    import dask
    import distributed  # noqa: F401  (loads distributed's config defaults)

    from deid_pipeline.batch import LOCAL_CLUSTER_CONFIG, LOW_LEVEL_LOG_LENGTH, dask_client

    assert LOCAL_CLUSTER_CONFIG["distributed.worker.profile.enabled"] is False
    ours = dask.config.get("distributed.worker.profile.enabled")
    our_tick = dask.config.get("distributed.admin.tick.interval")
    our_logs = dask.config.get("distributed.admin.low-level-log-length")
    assert LOW_LEVEL_LOG_LENGTH < our_logs
    env = {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")}
    with dask_client(1, None, "cpu", detector=False) as client:
        assert client.cluster.scheduler._tick_interval == 0.5  # the scheduler, in this process
        # the logs of recent messages that kept every task's run context: the client's, the scheduler's
        streams = [client.scheduler_comm, *client.cluster.scheduler.stream_comms.values()]
        assert len(streams) == 2 and all(b.recent_message_log.maxlen == LOW_LEVEL_LOG_LENGTH for b in streams)
        assert client.cluster.scheduler.transition_log.maxlen == LOW_LEVEL_LOG_LENGTH
        assert all(n._tick_interval == 0.5 for n in client.cluster.workers.values())  # the nannies
        client.submit(_busy, 1.5, pure=False).result()
        # no spilling of task results (they name inputs) to the scratch folder; pausing and restarts stay
        (limits,) = client.run(_memory_thresholds).values()
        assert limits == (None, None, 0.8, 0.95), limits
        ((address, before),) = client.run(_profiler_state).items()
        assert before[:4] == (False, [], 0, 0.5)
        client.restart_workers([address], timeout=60)  # as after a timed-out batch
        client.submit(_busy, 1.5, pure=False).result()
        (after,) = client.run(_profiler_state).values()
        assert after[4] != before[4]  # a new worker process
        assert after[:4] == (False, [], 0, 0.5)
    assert dask.config.get("distributed.worker.profile.enabled") == ours  # the driver's own config is untouched
    assert dask.config.get("distributed.admin.tick.interval") == our_tick
    assert dask.config.get("distributed.admin.low-level-log-length") == our_logs
    # and its environment: a nanny copies its workers' malloc settings into it at each (re)start
    assert {k: os.environ.get(k) for k in env} == env


def test_a_users_cluster_keeps_its_settings() -> None:
    """``--scheduler``: deid changes nothing on a cluster it did not start."""
    from distributed import LocalCluster

    from deid_pipeline.batch import dask_client

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with dask_client(None, cluster.scheduler_address, "cpu") as client:
            (state,) = client.run(_profiler_state).values()
    assert state[:2] == (True, sorted(PROFILER_CALLBACKS)) and state[3] == 0.02  # Dask's own 20 ms tick


#: Distinct SOP Instance UIDs: two inputs with one UID would race for one output name across workers.
INPUTS = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "SC_rgb.dcm", "emri_small.dcm", "rtdose.dcm"]


def outcome(records: list[dict]) -> list[tuple]:
    return sorted((r["input_sha256"], r["status"], r["output_path"], r["output_sha256"]) for r in records)


def test_a_local_run_is_unchanged(tmp_path: Path) -> None:
    """Local workers without the profiler: one record per input, every file written, the same
    records and bytes as an in-process run."""
    tree = tmp_path / "in"
    for i, name in enumerate(INPUTS):
        (tree / f"P{i % 3}").mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), tree / f"P{i % 3}" / name)
    key = write_key(tmp_path / "k", b"recycle-test-key-0123456789abcdef01234567")
    runs = {}
    for workers in ("0", "2"):
        out = tmp_path / f"out{workers}"
        proc = deid("run", str(tree), str(out), "--workers", workers, "--pixels", "none", "--key-file", str(key),
                    "--quiet", "--batch-size", "2")
        assert proc.returncode == 0, proc.stderr[-2000:]
        records = read_manifest(out)
        assert len(records) == len(INPUTS) and {r["status"] for r in records} == {"written"}
        assert len({r["input_sha256"] for r in records}) == len(INPUTS)
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.dcm")}
        assert sorted(files) == sorted(r["output_path"] for r in records)
        runs[workers] = (outcome(records), files)
    assert runs["0"] == runs["2"]
