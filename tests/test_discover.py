"""Every entry of an export tree is accounted for: regular files are inputs; links not followed, links
to folders or to nothing, FIFOs, sockets and folders that cannot be listed get a manifest record with
their reason, and none of them stops the run or reaches its output with a path."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from support import deid, read_manifest, write_key

from deid_pipeline import discover
from deid_pipeline.discover import UNREAD, walk_inputs
from deid_pipeline.runner import RunOptions, execute

KEY = b"discover-test-key-0123456789abcdef"


def _dicom(path: Path, name: str) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = name
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _tree(base: Path) -> Path:
    """An export with one of every kind of entry, under folders named after the patient."""
    root = base / "export"
    _dicom(root / "ROE^ALICE" / "im1.dcm", "ROE^ALICE")
    _dicom(base / "elsewhere" / "ROE^ALICE_LINKED" / "im2.dcm", "ROE^ALICE")
    os.symlink(base / "elsewhere" / "ROE^ALICE_LINKED", root / "ROE^ALICE" / "linked-study")  # a folder
    os.symlink(base / "elsewhere" / "ROE^ALICE_LINKED" / "im2.dcm", root / "ROE^ALICE" / "outside.dcm")
    os.symlink(root / "ROE^ALICE" / "im1.dcm", root / "ROE^ALICE" / "inside.dcm")
    os.symlink(base / "nowhere.dcm", root / "ROE^ALICE" / "dangling.dcm")
    os.symlink("self.dcm", root / "ROE^ALICE" / "self.dcm")  # a link to itself
    os.symlink("loop-b", root / "ROE^ALICE" / "loop-a")  # two links to each other
    os.symlink("loop-a", root / "ROE^ALICE" / "loop-b")
    os.mkfifo(root / "ROE^ALICE" / "pipe.dcm")  # opening it would block the run
    return root


EXPECTED = {
    "ROE^ALICE/dangling.dcm": "dangling-link",
    "ROE^ALICE/im1.dcm": "",
    "ROE^ALICE/inside.dcm": "",
    "ROE^ALICE/linked-study": "linked-folder",
    "ROE^ALICE/loop-a": "dangling-link",
    "ROE^ALICE/loop-b": "dangling-link",
    "ROE^ALICE/outside.dcm": "link-outside-input",
    "ROE^ALICE/pipe.dcm": "not-a-regular-file",
    "ROE^ALICE/self.dcm": "dangling-link",
}


def test_every_entry_is_an_input_with_its_reason(tmp_path: Path, monkeypatch) -> None:
    root = _tree(tmp_path)
    monkeypatch.chdir(root / "ROE^ALICE")  # a relative socket name: a long temporary path may pass AF_UNIX's limit
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("sock")
        found = {c.rel: c.unread for c in walk_inputs(root)}
    assert found == {**EXPECTED, "ROE^ALICE/sock": "not-a-regular-file"}
    assert {c.rel for c in walk_inputs(root) if c.outside_link} == {"ROE^ALICE/outside.dcm"}
    assert set(found.values()) - {""} <= set(UNREAD)


def test_a_folder_that_cannot_be_listed_is_recorded_and_the_walk_goes_on(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "in"
    (root / "a" / "locked").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "a" / "locked" / "x.dcm").write_bytes(b"1")
    (root / "b" / "y.dcm").write_bytes(b"2")
    real = os.scandir

    def scandir(path=".", *args):  # as a non-root user meets a folder of mode 000 (os.scandir is shared)
        if isinstance(path, (str, os.PathLike)) and Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real(path, *args)

    monkeypatch.setattr(discover.os, "scandir", scandir)
    assert [(c.rel, c.unread) for c in walk_inputs(root)] == [("a/locked", "folder-unreadable"), ("b/y.dcm", "")]


def test_run_records_every_entry_and_never_stops(tmp_path: Path) -> None:
    """Through the command line with a Dask worker: a link loop once ended the run with a traceback
    naming the input path; now each entry has one record, and ``deid verify`` agrees."""
    root = _tree(tmp_path)
    key = write_key(tmp_path / "k.key", KEY)
    out = tmp_path / "out"
    proc = deid("run", str(root), str(out), "--pixels", "none", "--workers", "1", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ROE" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    records = read_manifest(out)
    assert len(records) == len(EXPECTED)
    reasons = sorted((r["status"], (r["reason"] or {}).get("code", "")) for r in records)
    assert reasons == sorted([("written", "")] + [("skipped", "duplicate-input")]
                             + [(UNREAD[c][0], c) for c in EXPECTED.values() if c])
    assert all("ROE" not in line for line in (out / "manifest.jsonl").read_text().splitlines())
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_an_unlisted_folder_fails_the_run(tmp_path: Path, monkeypatch) -> None:
    """Files that are not in the run make it incomplete: exit status 3, a ``failed`` record."""
    root = tmp_path / "in"
    _dicom(root / "p1" / "a.dcm", "ROE^BOB")
    _dicom(root / "p2" / "b.dcm", "ROE^BOB")
    real = os.scandir

    def scandir(path=".", *args):  # an I/O error listing one folder (os.scandir is shared: fds pass through)
        if isinstance(path, (str, os.PathLike)) and Path(path).name == "p2":
            raise OSError(5, "Input/output error")
        return real(path, *args)

    monkeypatch.setattr(discover.os, "scandir", scandir)
    opts = RunOptions(input_dir=root, output_dir=tmp_path / "out", key_file=write_key(tmp_path / "k.key", KEY),
                      workers=0, pixels="none", quiet=True)
    summary = execute(opts)
    assert summary.exit_code == 3
    records = read_manifest(tmp_path / "out")
    assert sorted((r["status"], (r["reason"] or {}).get("code")) for r in records) == [
        ("failed", "folder-unreadable"), ("written", None)]
    shutil.rmtree(tmp_path / "out")


def test_names_that_are_not_utf8_are_inputs_like_any_other(tmp_path: Path) -> None:
    """A Latin-1 export (``M\\xfcller``) once ended the run with an internal error: the ledger's index
    could not hold a name with lone surrogates. Now: written, verified, and a second run resumes."""
    root = tmp_path / "export"
    root.mkdir()
    folder = os.path.join(os.fsencode(root), b"M\xfcller^Hans")
    _dicom(Path(os.fsdecode(os.path.join(folder, b"IM\xe9001.dcm"))), "MULLER^HANS")
    _dicom(Path(os.fsdecode(os.path.join(os.fsencode(root), b"caf\xe9.dcm"))), "CAFE^ANNE")
    key = write_key(tmp_path / "k.key", KEY)
    out = tmp_path / "out"
    for _ in range(2):  # the second run finds every input recorded
        proc = deid("run", str(root), str(out), "--pixels", "none", "--workers", "1", "--key-file", str(key), "--quiet")
        assert proc.returncode == 0 and "internal error" not in proc.stderr, proc.stderr[-2000:]
        assert sorted(r["status"] for r in read_manifest(out)) == ["written", "written"]
    check = deid("verify", str(out), "--against", str(root), "--key-file", str(key), "--workers", "0")
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
