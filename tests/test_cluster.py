"""An existing Dask cluster (``deid run --scheduler``): same bytes as a local run, and a worker
of that cluster killed mid-run does not change the outcome.

The cluster is a real ``dask scheduler`` and two ``dask worker`` processes (one thread each) on a
loopback port. Its workers carry the test-only kill hook of ``deid_pipeline.batch`` for one input
name (``KILLME.dcm``) that only the second tree holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from test_faults import deid, manifest, outcome, small_tree

KEY = b"cluster-test-key-0123456789abcdef0123456"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from distributed import Client

    marks = tmp_path_factory.mktemp("marks")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DEID_TEST_KILL_ON": "KILLME.dcm", "DEID_TEST_HOOK_ONCE_DIR": str(marks)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))
        for i in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
                 "--name", f"w{i}", "--host", "127.0.0.1"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            ))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, marks
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "k.key"
    path.write_bytes(KEY)
    path.chmod(0o600)
    return path


def _outputs(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.dcm")}


def _accounting(out: Path) -> tuple[dict, dict, int]:
    info = json.loads((out / "run.json").read_text())
    return info["counts"], info["reasons"], info["records"]


def test_external_cluster_matches_local_run(cluster, key: Path, tmp_path: Path) -> None:
    address, _ = cluster
    inp = small_tree(tmp_path / "in")
    ext, loc = tmp_path / "ext", tmp_path / "loc"
    common = ["--key-file", str(key), "--pixels", "none", "--quiet", "--batch-size", "2"]
    p_ext = deid("run", str(inp), str(ext), "--scheduler", address, *common)
    p_loc = deid("run", str(inp), str(loc), "--workers", "2", *common)
    assert p_ext.returncode == p_loc.returncode == 0, (p_ext.stderr[-2000:], p_loc.stderr[-2000:])
    assert json.loads((ext / "run.json").read_text())["cluster"] == "external"
    assert _outputs(ext) == _outputs(loc) and len(_outputs(ext)) == 6
    assert outcome(manifest(ext)) == outcome(manifest(loc))
    assert _accounting(ext) == _accounting(loc)


def test_external_worker_killed_mid_run(cluster, key: Path, tmp_path: Path) -> None:
    address, marks = cluster
    inp = small_tree(tmp_path / "in")
    shutil.copy(get_testdata_file("rtstruct.dcm"), inp / "s1" / "KILLME.dcm")
    ext, ref = tmp_path / "ext", tmp_path / "ref"
    common = ["--key-file", str(key), "--pixels", "none", "--quiet", "--batch-size", "2"]
    p_ext = deid("run", str(inp), str(ext), "--scheduler", address, *common)
    assert (marks / "DEID_TEST_KILL_ON-KILLME.dcm").exists()  # a worker did die
    p_ref = deid("run", str(inp), str(ref), "--workers", "0", *common)
    assert p_ext.returncode == p_ref.returncode == 0, p_ext.stderr[-2000:]
    records = manifest(ext)
    assert len(records) == 8
    assert outcome(records) == outcome(manifest(ref))
    assert _outputs(ext) == _outputs(ref)


def _malloc_env() -> tuple[str | None, str | None]:
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_")


def test_local_worker_environ_is_what_the_workers_get() -> None:
    """One definition of a local worker's environment (dask_client, and bench_pixels --worker-env)."""
    from deid_pipeline.batch import QUICK_EXIT_ENV, WORKER_MALLOC_ENV, local_worker_environ

    scanning, header_only = local_worker_environ(True), local_worker_environ(False)
    assert WORKER_MALLOC_ENV.items() <= scanning.items() and scanning["OMP_NUM_THREADS"] == "1"
    assert header_only["MALLOC_TRIM_THRESHOLD_"] == "65536" and "MALLOC_MMAP_THRESHOLD_" not in header_only
    assert scanning[QUICK_EXIT_ENV] == header_only[QUICK_EXIT_ENV] == "1"
    assert all(isinstance(v, str) for v in {**scanning, **header_only}.values())


def test_local_workers_get_the_malloc_settings() -> None:
    """Dask's default MALLOC_TRIM_THRESHOLD_=65536 makes CPU detection ~3x slower (benchmarks/README)."""
    from deid_pipeline.batch import WORKER_MALLOC_ENV, dask_client

    with dask_client(1, None, "cpu") as client:
        got = list(client.run(_malloc_env).values())
    assert got == [(WORKER_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"], WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"])]
    with dask_client(1, None, "cpu", detector=False) as client:  # header only: Dask's own default
        assert list(client.run(_malloc_env).values()) == [("65536", None)]


def _quick_exit_env() -> str | None:
    return os.environ.get("DEID_WORKER_QUICK_EXIT")


def test_local_workers_are_told_to_end_quickly_and_the_driver_is_not() -> None:
    from deid_pipeline.batch import QUICK_EXIT_ENV, dask_client

    assert QUICK_EXIT_ENV == "DEID_WORKER_QUICK_EXIT"
    for detector in (True, False):
        with dask_client(1, None, "cpu", detector=detector) as client:
            assert list(client.run(_quick_exit_env).values()) == ["1"]
        assert os.environ.get(QUICK_EXIT_ENV) is None  # restored in the driver


_QUICK_EXIT_SCRIPT = """
import atexit, sys
from distributed.core import Status
from deid_pipeline.batch import quick_exit_after_close

class FakeWorker:
    status = Status.{status}

atexit.register(lambda: print("teardown ran", flush=True))  # an earlier hook: after ours, if ours returns
quick_exit_after_close(FakeWorker())
quick_exit_after_close(FakeWorker())  # once more (after every task): still one hook
sys.stdout.write("written before exit")  # no newline, no flush: the hook flushes it
sys.exit(3)
"""


@pytest.mark.parametrize("status, code, teardown", [("closed", 0, False), ("running", 3, True), ("failed", 3, True)])
def test_quick_exit_only_after_a_clean_close(status: str, code: int, teardown: bool) -> None:
    """A worker closed cleanly ends at once with status 0, its output flushed, skipping later teardown;
    any other state (an error on the way out) ends as the interpreter would have, with its own code."""
    proc = subprocess.run([sys.executable, "-c", _QUICK_EXIT_SCRIPT.format(status=status)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert proc.stdout.startswith("written before exit")
    assert ("teardown ran" in proc.stdout) is teardown
    assert proc.stdout.count("teardown ran") <= 1


def test_task_context_unpickled_once_per_run(tmp_path: Path) -> None:
    """Every task carries the packed context; a worker unpickles it once per run, so the profile its
    rule caches are keyed by stays the same object from batch to batch (and a new run replaces it)."""
    import pickle
    import zlib

    from deid_pipeline import batch
    from deid_pipeline.config import RunContext
    from deid_pipeline.profile import load_profile

    def packed(profile: str) -> tuple[str, bytes]:
        ctx = RunContext(profile=load_profile(profile), key=b"k" * 32, output_dir=tmp_path, pixels="none", device="cpu")
        return batch._pack_context(ctx)

    first = packed("safe-harbor")
    copy = (first[0], zlib.compress(pickle.dumps(pickle.loads(zlib.decompress(first[1])))))  # the same run, pickled again
    a, b = batch._unpack_context(first), batch._unpack_context(copy)
    assert a is b and a.profile is b.profile and a.profile.name == "safe-harbor"
    other = batch._unpack_context(packed("basic"))
    assert other.profile.name == "basic" and batch._unpack_context(first) is not a  # a new run, then the first again
