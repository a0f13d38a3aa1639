"""Local workers forked from the pre-loaded server of ``deid_pipeline.prestart``: the environment a
spawned worker would get, the same outputs, and spawned workers whenever that cannot hold.

The server lives as long as the process that started it, so each case that starts one runs in a
process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deid_pipeline import prestart
from support import deid, read_manifest, write_key

REPO = Path(__file__).resolve().parents[1]


def test_dask_default_is_the_copy_start_for_run_uses() -> None:
    """``start_for_run`` runs before Dask is imported: its copy of Dask's pre-spawn default must hold."""
    import distributed

    defaults = yaml.safe_load((Path(distributed.__file__).parent / "distributed.yaml").read_text())
    dask_default = defaults["distributed"]["nanny"]["pre-spawn-environ"]
    assert prestart.DASK_PRE_SPAWN_DEFAULT == {k: str(v) for k, v in dask_default.items()}


def test_fork_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OMP_NUM_THREADS": "1", prestart.QUICK_EXIT_ENV: "1"}
    monkeypatch.setattr(prestart, "_started_umask", prestart._umask())
    monkeypatch.setattr(prestart, "_started", None)
    assert prestart.fork_environ(env) is None  # no server
    monkeypatch.setattr(prestart, "_started", {**os.environ, **env})
    assert prestart.fork_environ(env) == {}
    monkeypatch.setenv("DEID_TEST_ADDED", "yes")  # set here after the server started: each worker sets it
    assert prestart.fork_environ(env) == {"DEID_TEST_ADDED": "yes"}
    assert prestart.fork_environ({**env, "OMP_NUM_THREADS": "2"}) is None  # read when the process starts
    assert prestart.fork_environ({**env, **prestart.WORKER_MALLOC_ENV}) is None
    monkeypatch.setattr(prestart, "_started", {**os.environ, **env, "DEID_TEST_REMOVED": "x"})
    assert prestart.fork_environ(env) is None  # removed since: a fork would still have it


def test_start_for_run_declines() -> None:
    assert not prestart.start_for_run(0, None, "all")  # in-process
    assert not prestart.start_for_run(2, "tcp://127.0.0.1:8786", "all")  # the user's cluster


_PROBE = """
import json, os, sys
from deid_pipeline import prestart
from deid_pipeline.batch import dask_client

def probe():
    import psutil, sys
    cmd = " ".join(psutil.Process().cmdline())  # a fork keeps its server's command line
    return {{"forked": "multiprocessing.forkserver import main" in cmd and "spawn_main" not in cmd, "torch": "torch" in sys.modules,
            "umask": prestart._umask(), "deid": "deid_pipeline.pixels" in sys.modules,
            "verify": "deid_pipeline.verify" in sys.modules,
            "env": {{k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "OMP_NUM_THREADS",
                                                  prestart.QUICK_EXIT_ENV, "DEID_TEST_LATE", "GDCM_RESOURCES_PATH")}}}}

started = {starter}
if {kill}:  # a server that died: multiprocessing starts another, with the driver's environment of then
    from multiprocessing import forkserver
    os.kill(forkserver._forkserver._forkserver_pid, 9)
if {fail}:  # a cluster whose forked workers fail to start: dask_client spawns them instead
    from deid_pipeline import batch
    real, calls = batch._local_cluster, []
    def failing(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Nanny failed to start.")
        return real(*args)
    batch._local_cluster = failing
import pydicom  # sets GDCM_RESOURCES_PATH here (python-gdcm), after the server started
os.environ["DEID_TEST_LATE"] = "late"
from deid_pipeline.config import RUN_UMASK
if {run_umask}:
    os.umask(RUN_UMASK)  # as runner.execute does before its cluster starts (verify keeps the user's)
with dask_client(1, None, "cpu", detector={detector}) as client:
    got = list(client.run(probe).values())
print(json.dumps({{"started": started, "workers": got, "driver_quick_exit": os.environ.get(prestart.QUICK_EXIT_ENV)}}))
"""


def _probe(pixels: str, detector: bool, kill: bool = False, fail: bool = False, starter: str | None = None) -> dict:
    code = _PROBE.format(detector=detector, kill=kill, fail=fail, run_umask=starter is None,
                         starter=starter or f"prestart.start_for_run(1, None, {pixels!r})")
    proc = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("pixels,detector", [("none", False), ("all", True)])
def test_forked_workers_get_what_a_spawned_one_would(pixels: str, detector: bool) -> None:
    res = _probe(pixels, detector)
    assert res["started"] and res["driver_quick_exit"] is None
    (worker,) = res["workers"]
    assert worker["forked"] and worker["torch"] is detector  # the detector's imports made in the server
    assert worker["deid"]  # and deid's, though the server's sys.path lacks the working folder (the repo)
    assert worker["umask"] == 0o027  # the run's mask, not the one the driver had when the server started
    env = worker["env"]
    assert env["OMP_NUM_THREADS"] == "1" and env[prestart.QUICK_EXIT_ENV] == "1"
    if detector:
        assert (env["MALLOC_TRIM_THRESHOLD_"], env["MALLOC_MMAP_THRESHOLD_"]) == (
            prestart.WORKER_MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"], prestart.WORKER_MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"])
    else:
        assert env["MALLOC_TRIM_THRESHOLD_"] == "65536" and env["MALLOC_MMAP_THRESHOLD_"] is None
    assert env["DEID_TEST_LATE"] == "late"  # set in the driver after the server started
    assert env["GDCM_RESOURCES_PATH"]  # as in a spawned worker


def test_verify_rescans_only_runs_that_scanned_all_text() -> None:
    assert prestart.verify_rescans({"pixels": "all", "pixel_mode": "all-text"}, True)
    assert prestart.verify_rescans({"pixels": "profile", "pixel_mode": "all-text"}, True)
    assert not prestart.verify_rescans({"pixels": "all", "pixel_mode": "all-text"}, False)  # --no-rescan
    assert not prestart.verify_rescans({"pixels": "none", "pixel_mode": "all-text"}, True)  # nothing was scanned
    assert not prestart.verify_rescans({"pixels": "all", "pixel_mode": "phi-text"}, True)  # _rescan skips phi-text
    assert not prestart.start_for_verify(0, None, True) and not prestart.start_for_verify(2, "tcp://127.0.0.1:8786", True)


@pytest.mark.parametrize("detector", [False, True])
def test_verify_workers_are_forked_with_the_checks_loaded(detector: bool) -> None:
    """``deid verify`` starts the server too (with ``deid_pipeline.verify`` loaded, the detector's imports
    only when it rescans), with the driver's own file-creation mask: its workers are forked, not spawned."""
    res = _probe("none", detector, starter=f"prestart.start_for_verify(1, None, {detector})")
    (worker,) = res["workers"]
    assert res["started"] and worker["forked"] and worker["torch"] is detector and worker["verify"]


def test_other_workers_get_their_own_environment() -> None:
    """A server made for detector workers is not used for header ones (their malloc settings differ);
    a server that died is started again by multiprocessing with the nanny's environment of then; forked
    workers that fail to start are spawned instead."""
    mismatch, killed, failed = _probe("all", False), _probe("none", False, kill=True), _probe("none", False, fail=True)
    assert not mismatch["workers"][0]["forked"] and not failed["workers"][0]["forked"]
    for res in (mismatch, killed, failed):
        (worker,) = res["workers"]
        assert not worker["torch"] and worker["env"]["MALLOC_TRIM_THRESHOLD_"] == "65536" and worker["umask"] == 0o027
        assert worker["env"]["MALLOC_MMAP_THRESHOLD_"] is None and worker["env"]["DEID_TEST_LATE"] == "late"


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
@pytest.mark.parametrize("pixels", ["profile", "none"])
def test_forked_and_spawned_runs_write_the_same_files(tmp_path: Path, pixels: str) -> None:
    """``deid run`` with its workers forked (the default) and spawned (``DEID_FORKSERVER=0``): the same
    outputs, byte for byte, and the same records."""
    key = write_key(tmp_path / "k.key", b"prestart-test-key-0123456789abcdef012345")
    outs = {}
    for mode in ("1", "0"):
        out = tmp_path / f"out{mode}"
        proc = deid("run", str(REPO / "sample_data"), str(out), "--workers", "2", "--pixels", pixels, "--key-file", str(key),
                    "--quiet", "--detector", "deid-textseg", env={prestart.ENABLE_ENV: mode})
        assert proc.returncode in (0, 3), proc.stderr[-2000:]
        outs[mode] = sorted((r["input_sha256"], r["status"], r.get("reason_code"), r.get("output_path"), r.get("output_sha256"))
                            for r in read_manifest(out))
    assert outs["1"] == outs["0"] and any(o[4] for o in outs["1"])


def test_memory_sampler_finds_forked_workers(tmp_path: Path) -> None:
    """The benchmarks' RSS sampler counts the forked workers (they keep the server's command line), not
    the server or the resource tracker."""
    import psutil

    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_header
    from rss_monitor import _is_worker

    bench_header.make_corpus(tmp_path / "in", 400, ["CT_small.dcm"])
    key = write_key(tmp_path / "k.key", b"prestart-test-key-0123456789abcdef012345")
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(tmp_path / "in"), str(tmp_path / "out"), "--pixels", "none",
           "--workers", "2", "--batch-size", "4", "--key-file", str(key), "--quiet"]
    popen = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[tuple[int, int]] = []  # (workers, descendants) of each look at the tree
    try:
        while popen.poll() is None and not any(w == 2 for w, _ in seen):
            try:
                kids = psutil.Process(popen.pid).children(recursive=True)
                seen.append((sum(1 for k in kids if _is_worker(k)), len(kids)))
            except psutil.Error:
                pass
    finally:
        assert popen.wait(timeout=300) == 0
    # two workers, never more: neither the resource tracker nor the server is counted
    assert max(w for w, _ in seen) == 2 and max(n for _, n in seen) >= 4


def test_a_server_with_another_mask_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked worker keeps the server's file-creation mask: a run's workers (mask 027) must not be
    forked from a server started with another (their output folders would be readable by others)."""
    env = {"OMP_NUM_THREADS": "1"}
    monkeypatch.setattr(prestart, "_started", {**os.environ, **env})
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(prestart, "_started_umask", 0o027)
        assert prestart.fork_environ(env) == {}
        monkeypatch.setattr(prestart, "_started_umask", 0o022)
        assert prestart.fork_environ(env) is None
    finally:
        os.umask(old)


_ONE_THREAD = """
import multiprocessing, os, psutil
from deid_pipeline import prestart

def nothing():
    pass

if __name__ == "__main__":
    assert prestart.start_for_run(1, None, "all")
    p = multiprocessing.get_context("forkserver").Process(target=nothing)
    p.start()  # forked once the server has made its imports
    p.join()
    (server,) = [c for c in psutil.Process().children() if "forkserver import main" in " ".join(c.cmdline())]
    print(server.num_threads())
"""


def test_the_server_has_one_thread_after_its_imports(tmp_path: Path) -> None:
    """A fork copies only the calling thread: a preloaded module that started a thread pool would leave
    every worker with a pool whose threads do not exist."""
    script = tmp_path / "one_thread.py"
    script.write_text(_ONE_THREAD)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "1"


_CMDLINE = """
import os, sys, time, psutil
sys.path.insert(0, os.getcwd())  # as ``python -m`` puts the working folder first
from deid_pipeline import prestart
assert prestart.start_for_run(1, None, "none")
time.sleep(0.5)
(server,) = [c for c in psutil.Process().children() if "forkserver import main" in " ".join(c.cmdline())]
print(" ".join(server.cmdline()))
print(sys.path[0] == os.getcwd())
"""


def test_the_server_command_line_leaves_out_the_working_folder(tmp_path: Path) -> None:
    """multiprocessing puts the server's sys.path on its command line (readable by any local user): a
    working folder named after a patient must not appear there."""
    folder = tmp_path / "ZQCANARY^PATIENT"
    folder.mkdir()
    proc = subprocess.run([sys.executable, "-c", _CMDLINE], capture_output=True, text=True, timeout=300, cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cmdline, path_restored = proc.stdout.strip().splitlines()
    assert "forkserver" in cmdline and "deid_pipeline.batch" in cmdline
    assert "ZQCANARY" not in cmdline and path_restored == "True"
