"""Faults on the cluster: a worker killed mid-run, a file that kills every worker, a hung decoder.

The faults come from the test-only hooks in ``deid_pipeline.batch`` (``DEID_TEST_KILL_ON``,
``DEID_TEST_SLEEP_ON``, ``DEID_TEST_RAISE_ON``, ``DEID_TEST_HOOK_ONCE_DIR``), which the worker-side task
wrapper reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import support
from pydicom.data import get_testdata_file

from deid_pipeline.batch import HUNG_WORKER_GRACE_S, run_distributed
from deid_pipeline.config import RunContext
from deid_pipeline.discover import walk_inputs
from deid_pipeline.profile import load_profile
from deid_pipeline.types import FileResult

FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "SC_rgb_rle.dcm", "rtdose.dcm", "JPEG2000.dcm"]  # distinct SOP Instance UIDs: a shared one names outputs by arrival order
KEY = b"fault-test-key-0123456789abcdef01234567"


def small_tree(root: Path) -> Path:
    """Six pydicom test files and one junk file, in two folders."""
    for i, name in enumerate(FILES):
        dest = root / f"s{i % 2}" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(get_testdata_file(name), dest)
    (root / "s0" / "junk.txt").write_text("not dicom\n")
    return root


deid = functools.partial(support.deid, timeout=120)
manifest = support.read_manifest


def outcome(records: list[dict]) -> list[tuple]:
    return sorted(
        ((r["input_sha256"], r["status"], (r["reason"] or {}).get("code"), r["output_path"], r["output_sha256"]) for r in records),
        key=str,
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, subprocess.CompletedProcess[str]]:
    base = tmp_path_factory.mktemp("faults")
    inp = small_tree(base / "in")
    key = base / "k.key"
    support.write_key(key, KEY)
    ref = base / "ref"
    proc = deid("run", str(inp), str(ref), "--workers", "2", "--key-file", str(key), "--pixels", "none", "--quiet", "--batch-size", "3")
    return inp, key, ref, proc


def test_worker_killed_once_is_retried(setup, tmp_path: Path) -> None:
    inp, key, ref, ref_proc = setup
    assert ref_proc.returncode == 0, ref_proc.stderr[-2000:]
    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "out"
    env = {"DEID_TEST_KILL_ON": "MR_small.dcm", "DEID_TEST_HOOK_ONCE_DIR": str(marks)}
    proc = deid("run", str(inp), str(out), "--workers", "2", "--key-file", str(key), "--pixels", "none", "--quiet", "--batch-size", "3", env=env)
    assert (marks / "DEID_TEST_KILL_ON-MR_small.dcm").exists()  # the kill did happen
    assert proc.returncode == ref_proc.returncode, proc.stderr[-2000:]
    records = manifest(out)
    assert len(records) == len(list(walk_inputs(inp)))
    assert outcome(records) == outcome(manifest(ref))


def test_a_batch_that_raises_is_retried_and_its_details_withheld(tmp_path: Path) -> None:
    """A task that raises once (a bug whose message names its file): Dask's worker logs the task's
    arguments and the message (``Compute Failed``), here the patient-named folder, even with --quiet;
    deid withholds them, retries the files one by one, and every file is written."""
    inp = small_tree(tmp_path / "DOE^JANE")
    key = support.write_key(tmp_path / "k.key", KEY)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"DEID_TEST_RAISE_ON": "MR_small.dcm", "DEID_TEST_HOOK_ONCE_DIR": str(marks)}
    proc = deid("run", str(inp), str(tmp_path / "out"), "--workers", "1", "--key-file", str(key), "--pixels", "none",
                "--quiet", "--batch-size", "3", env=env)
    assert (marks / "DEID_TEST_RAISE_ON-MR_small.dcm").exists()  # the task did raise
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "raised RuntimeError; its arguments and message withheld" in proc.stderr
    assert "DOE" not in proc.stderr and "MR_small" not in proc.stderr and "simulated" not in proc.stderr
    assert sorted(r["status"] for r in manifest(tmp_path / "out")) == ["skipped"] + ["written"] * len(FILES)


def test_file_that_kills_every_worker_ends_failed(setup, tmp_path: Path) -> None:
    inp, key, ref, _ = setup
    out = tmp_path / "out"
    env = {"DEID_TEST_KILL_ON": "MR_small.dcm", "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    proc = deid("run", str(inp), str(out), "--workers", "2", "--key-file", str(key), "--pixels", "none", "--quiet", "--batch-size", "3", env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    records = manifest(out)
    assert len(records) == len(list(walk_inputs(inp)))
    failed = [r for r in records if r["status"] == "failed"]
    # the killer alone ends worker-crashed: with ALLOWED_FAILURES=0 a file that happened to be queued
    # on the worker it killed was condemned with it (collateral) until such files ran again, alone, at
    # the end; never written half-done
    journal = [json.loads(line) for line in (out.parent / f"{out.name}.private" / "journal.jsonl").read_text().splitlines()]
    assert [(j["input"], j["reason"]) for j in journal if j["status"] == "failed"] == [("s1/MR_small.dcm", "worker-crashed")]
    killer = (inp / "s1" / "MR_small.dcm").read_bytes()  # keyed as every read input is (the driver hashed it)
    assert [(r["input_sha256"], r["input_size"]) for r in failed] == [(hashlib.sha256(killer).hexdigest(), len(killer))]
    ref_written = {r["output_path"] for r in manifest(ref) if r["status"] == "written"}
    written = {r["output_path"] for r in records if r["status"] == "written"}
    assert len(written) == len(ref_written) - 1 and written < ref_written


@pytest.mark.slow  # ~10 s: two runs and a resume
def test_failed_inputs_are_redone_by_a_resume_that_retries_them(setup, tmp_path: Path) -> None:
    """A run left with failed records (a file that killed every worker): the same command resumed keeps
    them; with ``--retry-failed`` they are processed again, their records replaced: the outputs and
    records a clean run gives, one record per input, the chain verified under the key, verify clean."""
    import json

    inp, key, ref, ref_proc = setup
    out = tmp_path / "out"
    args = ("run", str(inp), str(out), "--workers", "2", "--key-file", str(key), "--pixels", "none", "--batch-size", "3")
    env = {"DEID_TEST_KILL_ON": "MR_small.dcm", "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    assert deid(*args, "--quiet", env=env).returncode == 3
    failed = [r for r in manifest(out) if r["status"] == "failed"]
    assert failed
    plain = deid(*args)  # resumed as before: every input has a record, nothing is redone; the summary says how to
    assert f"deid: {len(failed)} inputs failed" in plain.stderr and "--retry-failed" in plain.stderr
    assert plain.returncode == 3 and outcome(manifest(out)) != outcome(manifest(ref))
    assert sum(r["status"] == "failed" for r in manifest(out)) == len(failed)
    retried = deid(*args, "--quiet", "--retry-failed")
    assert retried.returncode == ref_proc.returncode == 0, retried.stderr[-2000:]
    records = manifest(out)
    assert len(records) == len(list(walk_inputs(inp))) and outcome(records) == outcome(manifest(ref))
    info = json.loads((out / "run.json").read_text())
    assert info["failed_retried"] == {"worker-crashed": len(failed)} and info["files_this_session"] == len(failed)
    assert any("failed inputs taken out" in n for n in info["notes"])
    assert deid("audit", "verify", str(out), "--key-file", str(key)).returncode == 0
    for folder in (out, ref):  # the pydicom files' own findings (a vendor name that is also the institution's) aside
        deid("verify", str(folder), "--against", str(inp), "--key-file", str(key), "--no-rescan", "--workers", "0")
    report, ref_report = (json.loads((f / "verify.json").read_text()) for f in (out, ref))
    assert report["checked_outputs"] == ref_report["checked_outputs"] == len(FILES)
    assert report["counts"] == ref_report["counts"] and set(report["counts"]) <= {"identifying-value-in-header"}


@pytest.mark.parametrize("batch_size", [pytest.param(2, marks=pytest.mark.slow), 7])  # 7: the whole tree in one
# batch, its limit still per file (2, ~9 s, in the slow suite)
def test_hung_file_times_out_and_the_run_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture, batch_size: int) -> None:
    """The hung file ends ``failed`` ``timeout``, the rest written; each hung worker is killed by its
    nanny after deid's short grace (Dask's restart waited 4 s for a close that never comes) and replaced."""
    caplog.set_level(logging.INFO, logger="distributed.nanny")
    inp = small_tree(tmp_path / "in")
    monkeypatch.setenv("DEID_TEST_SLEEP_ON", "rtplan.dcm")
    monkeypatch.setenv("DEID_TEST_SLEEP_S", "600")
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="none",
                     batch_size=batch_size)
    results: list[FileResult] = []
    t0 = time.monotonic()
    run_distributed(inp, walk_inputs(inp), ctx, results.append, workers=2, file_timeout=1.5)
    elapsed = time.monotonic() - t0
    assert elapsed < 60
    by_name = {Path(r.rel_input).name: r for r in results}
    assert len(results) == len(by_name) == len(FILES) + 1
    hung = by_name.pop("rtplan.dcm")
    assert (hung.status, hung.reason_code) == ("failed", "timeout")
    assert hung.reason == "processing took longer than 1.5 s (a scan: one of its steps); the file was not written"
    assert hung.input_sha256 == "" and hung.input_size == 0  # hung before it was read: no key to give
    assert by_name.pop("junk.txt").status == "skipped"
    assert {r.status for r in by_name.values()} == {"written"}
    nanny = [r.getMessage() for r in caplog.records if r.name == "distributed.nanny"]
    asked = sorted(m.rsplit("Reason: ", 1)[1] for m in nanny if m.startswith("Nanny asking worker to close"))
    assert asked == ["deid-batch-timeout"] * 2 + ["nanny-close"] * 2, nanny  # the batch, the file alone; the run's end
    assert nanny.count(f"Worker process still alive after {0.8 * HUNG_WORKER_GRACE_S:.1f} seconds, killing") == 2, nanny
    assert [m for m in nanny if m.startswith("Restarting worker")] == ["Restarting worker (status=Status.running)"] * 2


@pytest.mark.parametrize("batch_size", [1, 3])  # 3: the hung file beside others, named by its worker
def test_a_file_that_hangs_after_it_is_hashed_keeps_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture, batch_size: int) -> None:
    """A file that hangs in its parse (after its worker hashed it) times out keyed by its sha256 and
    size, which its worker kept (a single file's task also sent it) before the hang: the driver does
    not read a file that may sit on a mount that hangs. In a batch, the worker, asked before it is
    killed, names the file that hung: it is recorded at once, not run again alone (a second time
    limit and a second worker restart), and only the batch's other files run again."""
    caplog.set_level(logging.INFO, logger="distributed.nanny")
    inp = small_tree(tmp_path / "in")
    monkeypatch.setenv("DEID_TEST_SLEEP_ON", "rtplan.dcm")
    monkeypatch.setenv("DEID_TEST_SLEEP_AFTER_HASH", "1")
    monkeypatch.setenv("DEID_TEST_SLEEP_S", "600")
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="none",
                     batch_size=batch_size)
    results: list[FileResult] = []
    run_distributed(inp, walk_inputs(inp), ctx, results.append, workers=2, file_timeout=1.5)
    nanny = [r.getMessage() for r in caplog.records if r.name == "distributed.nanny"]
    asked = [m.rsplit("Reason: ", 1)[1] for m in nanny if m.startswith("Nanny asking worker to close")]
    assert asked.count("deid-batch-timeout") == 1, nanny  # one worker killed: the hung file's, once
    by_name = {Path(r.rel_input).name: r for r in results}
    assert len(results) == len(by_name) == len(FILES) + 1
    hung = by_name.pop("rtplan.dcm")
    data = get_testdata_file("rtplan.dcm", read=False)
    raw = Path(str(data)).read_bytes()
    assert (hung.status, hung.reason_code) == ("failed", "timeout")
    assert (hung.input_sha256, hung.input_size) == (hashlib.sha256(raw).hexdigest(), len(raw))
    assert by_name.pop("junk.txt").status == "skipped"
    assert {r.status for r in by_name.values()} == {"written"}


def test_the_withheld_line_keeps_the_exception_type_only() -> None:
    """Dask's ``Compute Failed`` record rewritten: the key and the exception's type, from the repr's
    ``Type(`` only; anything else (no type to read) gives no word of it."""
    import logging

    from deid_pipeline.batch import _WithholdTaskDetails

    def shown(exception_text: str) -> str:
        record = logging.LogRecord("distributed.worker", logging.ERROR, "worker.py", 1,
                                   "Compute Failed\nKey:       %s\nState:     %s\nTask:  %s\nException: %r\nTraceback: %r\n",
                                   ("k-1", "executing", "_run_batch_task('/in/DOE^JANE', ...)", exception_text, "tb"), None)
        assert _WithholdTaskDetails().filter(record)
        return record.getMessage()

    assert shown("RuntimeError('cannot read DOE^JANE/IM1')") == (
        "Compute Failed: task k-1 raised RuntimeError; its arguments and message withheld (they may name inputs)")
    assert "pkg.mod.MyError;" in shown("pkg.mod.MyError()")
    for text in ("DOE^JANE has no type", ""):
        assert "raised an exception;" in shown(text) and "DOE" not in shown(text)


@pytest.mark.parametrize("message", ["get data", "heartbeat"])
def test_connections_the_driver_closed_log_no_traceback_on_its_own_workers(monkeypatch: pytest.MonkeyPatch,
                                                                          message: str) -> None:
    """Interrupted (or ending) while fetching a result or while a worker heartbeats, the driver closes
    its connections: the worker's ``failed during get data`` / ``Failed to communicate with scheduler
    during heartbeat`` tracebacks (on the run's stderr after 'interrupted'; seen in a CI run and in 3 of
    ~95 SIGTERMs) are dropped on deid's own local workers when the peer closed the comm; any other
    failure, and any record on a --scheduler cluster's workers, is still logged."""
    import logging
    import sys

    from distributed import worker as dask_worker
    from distributed.comm.core import CommClosedError

    from deid_pipeline.batch import _GET_DATA_FAILED, _HEARTBEAT_FAILED, QUICK_EXIT_ENV, _WithholdTaskDetails

    text = {"get data": _GET_DATA_FAILED, "heartbeat": _HEARTBEAT_FAILED}[message]
    assert text in open(dask_worker.__file__, encoding="utf-8").read()  # still Dask's message

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            info = sys.exc_info()
        return logging.LogRecord("distributed.worker", logging.ERROR, "worker.py", 1, text,
                                 ("tcp://127.0.0.1:1", None) if "%s" in text else (), info)

    keep = _WithholdTaskDetails().filter
    closed = CommClosedError("in <TCP (closed)>: Stream is closed")
    monkeypatch.delenv(QUICK_EXIT_ENV, raising=False)
    assert keep(record(closed))  # a --scheduler cluster's worker: its own log keeps it
    monkeypatch.setenv(QUICK_EXIT_ENV, "1")  # a worker of deid's local cluster
    assert not keep(record(closed))
    assert keep(record(OSError(5, "Input/output error")))
    other = logging.LogRecord("distributed.worker", logging.ERROR, "worker.py", 1, "something else %s", ("x",), None)
    assert keep(other)


def test_dask_errors_about_what_deid_handles_are_debug_detail(capsys: pytest.CaptureFixture[str]) -> None:
    """A worker killed by a file makes Dask's client and scheduler log errors ("Couldn't gather keys",
    "... marked as failed because 4 workers died ...") that deid handles itself (it warns, retries the
    batch's files one by one, records the killer ``worker-crashed``): under ``--quiet`` they printed as
    ``deid: ERROR:`` lines in a run that ended as it should. Debug now, shown with ``--verbose`` only;
    other errors of Dask's and deid's own still show."""
    import logging

    from deid_pipeline.cli.logs import setup_logging

    def emit() -> None:
        logging.getLogger("distributed.client").error("Couldn't gather keys: {'_run_batch_task-1': 'memory'}")
        logging.getLogger("distributed.scheduler").error("Task _run_batch_task-2 marked as failed because 4 workers died while trying to run it")
        logging.getLogger("distributed.core").error("some other failure")
        logging.getLogger("deid_pipeline.batch").error("deid's own")

    root = logging.getLogger()
    names = ("", "distributed", "tornado", "asyncio", "bokeh", "presidio-analyzer", "pydicom")
    saved = root.handlers[:], {n: logging.getLogger(n).level for n in names}
    try:
        for quiet, verbose in ((True, False), (False, False), (False, True)):
            setup_logging(quiet=quiet, verbose=verbose)
            logging.getLogger("distributed").setLevel(logging.DEBUG)  # as Dask's own set-up leaves it, imported later
            emit()
            err = capsys.readouterr().err
            assert "deid: ERROR: some other failure" in err and "deid: ERROR: deid's own" in err
            if verbose:
                assert "deid: DEBUG: Couldn't gather keys" in err and "deid: DEBUG: Task _run_batch_task-2 marked" in err
            else:
                assert "gather keys" not in err and "workers died" not in err
    finally:
        root.handlers[:] = saved[0]
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def test_a_file_queued_beside_a_killer_is_run_again_alone_and_written(tmp_path: Path) -> None:
    """One worker, Dask allowed no failure: the killer's batch is split into single files, and the file
    queued on the worker behind the killer died with it (``KilledWorker`` for both). It was recorded
    ``worker-crashed`` with the killer; now the single files whose worker died run once more at the end,
    each alone, and only the killer ends failed."""
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("MR_small.dcm", "rtdose.dcm", "rtplan.dcm"):  # the killer first in its batch
        shutil.copy(get_testdata_file(name), inp / name)
    key = tmp_path / "k.key"
    support.write_key(key, KEY)
    out = tmp_path / "out"
    env = {"DEID_TEST_KILL_ON": "MR_small.dcm", "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    proc = deid("run", str(inp), str(out), "--workers", "1", "--key-file", str(key), "--pixels", "none", "--quiet", "--batch-size", "3", env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    journal = [json.loads(line) for line in (tmp_path / "out.private" / "journal.jsonl").read_text().splitlines()]
    assert sorted((j["input"], j["status"], j["reason"]) for j in journal) == [
        ("MR_small.dcm", "failed", "worker-crashed"), ("rtdose.dcm", "written", ""), ("rtplan.dcm", "written", "")]


def test_the_driver_hashes_a_failed_input_it_can_read_and_leaves_the_key_empty_otherwise(tmp_path: Path) -> None:
    """``_hash_failed_input``: the key and size of a readable input; an unreadable one (gone, or a
    read past the time allowed) keeps the empty key, and the run goes on."""
    from deid_pipeline.batch import _hash_failed_input

    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (tmp_path / "a.dcm").write_bytes(data)
    ok = FileResult(rel_input="a.dcm", input_sha256="", input_size=0, status="failed", reason_code="worker-crashed")
    gone = FileResult(rel_input="gone.dcm", input_sha256="", input_size=0, status="failed", reason_code="worker-crashed")
    _hash_failed_input(tmp_path, ok)
    _hash_failed_input(tmp_path, gone)
    assert (ok.input_sha256, ok.input_size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (gone.input_sha256, gone.input_size) == ("", 0)
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)  # opening it for reading blocks: the limit gives up on it
    slow = FileResult(rel_input="pipe.dcm", input_sha256="", input_size=0, status="failed", reason_code="worker-crashed")
    _hash_failed_input(tmp_path, slow, limit=0.2)
    assert slow.input_sha256 == ""
    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # lets the blocked reader go (it reads nothing)


@pytest.mark.slow  # the default suite keeps under 10 minutes (make test-slow runs it)
def test_a_scan_of_many_frames_outlasting_the_limit_is_not_a_hung_file(tmp_path: Path) -> None:
    """The limit counts from the scan's last step (each detector call, each frame decided), not from its
    start: a multi-frame file whose scan takes several limits (240 distinct 64 x 64 frames, ~10 s on
    one worker here, against 4 s) is written; before, it ended ``failed`` ``timeout`` whatever its
    progress (a cine of a few thousand frames at the default 300 s)."""
    import numpy as np
    import pydicom

    root = tmp_path / "in"
    root.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds[0xFFFCFFFC]
    frames = np.random.default_rng(5).poisson(20, (240, 64, 64)).astype(np.uint16)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 64, 64, len(frames)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = frames.tobytes()
    ds.save_as(root / "frames.dcm", enforce_file_format=True)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="all")
    results: list[FileResult] = []
    run_distributed(root, walk_inputs(root), ctx, results.append, workers=1, file_timeout=4.0)
    [res] = results
    assert (res.status, res.reason_code) == ("written", "")
    assert res.pixel["frames_scanned"] == len(frames)
    scan_ms = sum(res.timings_ms.get(stage, 0.0) for stage in ("prepare", "detect", "decide"))
    if scan_ms <= 4000:
        pytest.skip(f"this machine scanned the frames in {scan_ms:.0f} ms, within one limit: nothing shown")
