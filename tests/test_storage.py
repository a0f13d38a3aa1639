"""An OUTPUT whose file system takes no more writes (full, over quota, read-only) stops the run with
exit status 4; the file that met it is not recorded, so the same command, once there is room, resumes
and writes everything (before, every later file was recorded ``failed`` and a resume never redid it)."""

from __future__ import annotations

import errno
import sqlite3
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from support import read_manifest, write_key

from deid_pipeline import pipeline
from deid_pipeline.errors import StorageError, storage_error
from deid_pipeline.manifest import Ledger
from deid_pipeline.runner import RunOptions, execute
from deid_pipeline.verify import verify_run

KEY = b"storage-test-key-0123456789abcdef0"


def _inputs(root: Path, n: int) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for i in range(n):
        ds.PatientID = f"STORAGE{i:03d}"
        ds.SOPInstanceUID = f"1.2.3.4.{i + 1}"
        folder = root / f"PATIENT{i:03d}"
        folder.mkdir(parents=True)
        ds.save_as(folder / "im.dcm", enforce_file_format=True)


def _opts(tmp_path: Path) -> RunOptions:
    return RunOptions(input_dir=tmp_path / "in", output_dir=tmp_path / "out", key_file=write_key(tmp_path / "k.key", KEY),
                      workers=0, pixels="none", quiet=True, batch_size=2)


@pytest.mark.parametrize("where", ["output-file", "manifest"])
def test_a_full_output_stops_the_run_and_the_same_command_resumes_it(tmp_path: Path, monkeypatch, where: str) -> None:
    _inputs(tmp_path / "in", 8)
    calls = [0]
    if where == "output-file":
        real = pipeline.write_exclusive

        def write(*args, **kwargs):
            calls[0] += 1
            if calls[0] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        monkeypatch.setattr(pipeline, "write_exclusive", write)
    else:
        real_add = Ledger.add

        def add(self, result):
            calls[0] += 1
            if calls[0] > 3:
                raise OSError(errno.EDQUOT, "Disk quota exceeded")
            return real_add(self, result)

        monkeypatch.setattr(Ledger, "add", add)
    with pytest.raises(StorageError):
        execute(_opts(tmp_path))
    kept = read_manifest(tmp_path / "out")
    assert len(kept) == 3 and all(r["status"] == "written" for r in kept)
    monkeypatch.undo()  # room again
    summary = execute(_opts(tmp_path))
    assert summary.exit_code == 0 and summary.data["records_before_resume"] == 3
    records = read_manifest(tmp_path / "out")
    assert len(records) == 8 and all(r["status"] == "written" for r in records)
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 8
    report = verify_run(tmp_path / "out", tmp_path / "in", tmp_path / "out.private", KEY, workers=0, rescan=False)
    assert report["counts"] == {} and report["checked_outputs"] == 8


def test_the_command_line_says_why_and_exits_4(tmp_path: Path, monkeypatch, capsys) -> None:
    from deid_pipeline.cli import main as cli_main

    _inputs(tmp_path / "in", 2)
    monkeypatch.setattr(pipeline, "write_exclusive", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "x")))
    key = write_key(tmp_path / "k.key", KEY)
    monkeypatch.setattr(sys, "argv", ["deid", "run", str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "0",
                                      "--pixels", "none", "--key-file", str(key), "--quiet"])
    with pytest.raises(SystemExit) as stop:
        cli_main.main()
    err = capsys.readouterr().err
    assert stop.value.code == 4 and "Read-only file system" in err and "run the same command again" in err
    assert read_manifest(tmp_path / "out") == []


def _sqlite_holds(pages: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite database opened from now on (the private folder's index) grows to ``pages`` pages at most:
    past them SQLite answers "database or disk is full" (SQLITE_FULL), as on a full file system."""
    real = sqlite3.connect

    def connect(*args, **kwargs):
        db = real(*args, **kwargs)
        db.execute(f"PRAGMA max_page_count={pages}")
        return db

    monkeypatch.setattr(sqlite3, "connect", connect)


def test_a_full_private_folder_met_by_the_index_stops_the_run_with_status_4(tmp_path: Path, monkeypatch, capsys) -> None:
    """The private folder's SQLite index is made as the run starts: a full file system there ends the run with
    exit status 4 and the same command resumes it once there is room (before: an internal error, exit 1)."""
    from deid_pipeline.cli import main as cli_main

    _inputs(tmp_path / "in", 2)
    _sqlite_holds(1, monkeypatch)  # the schema's page only: the index's first table does not fit
    opts = _opts(tmp_path)
    monkeypatch.setattr(sys, "argv", ["deid", "run", str(opts.input_dir), str(opts.output_dir), "--workers", "0",
                                      "--pixels", "none", "--key-file", str(opts.key_file), "--quiet"])
    with pytest.raises(SystemExit) as stop:
        cli_main.main()
    err = capsys.readouterr().err
    assert stop.value.code == 4 and "No space left on device" in err and "internal error" not in err, err
    assert not list((tmp_path / "out").iterdir())  # nothing recorded
    monkeypatch.undo()  # room again
    summary = execute(_opts(tmp_path))
    assert summary.exit_code == 0 and len(read_manifest(tmp_path / "out")) == 2


@pytest.mark.parametrize("message,storage", [("database or disk is full", "No space left on device"),
                                             ("disk I/O error", "Input/output error"),
                                             ("database is locked", None), ("no such table: inputs", None)])
def test_sqlite_s_full_disk_and_io_errors_are_storage_errors(message: str, storage: str | None) -> None:
    """Made as Python before 3.11 raises them, with their message only (3.11+ adds the error code, which
    the test above meets); other SQLite errors stay what they are (an internal error)."""
    found = storage_error(sqlite3.OperationalError(message))
    assert (None if found is None else str(found)) == storage
