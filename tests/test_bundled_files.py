"""Every file pydicom bundles (under 3 MB: 12 transfer syntaxes, big endian, deflated, SR, waveforms,
malformed ones) through ``deid run`` and ``deid verify``: each ends with a stated reason, none with an
internal error, and what verify reports is explained."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from support import deid, installed_test_files, read_manifest, write_key

from deid_pipeline.profile import load_profile
from deid_pipeline.tags import collect_phi_terms, rule_for, walk
from deid_pipeline.verify import _found, _searchable

KEY = b"bundled-files-key-0123456789abcdef"
STATUSES = {"written", "skipped", "quarantined"}


def _bundled(dest: Path) -> int:
    """Copies of pydicom's and pydicom-data's installed test files."""
    dest.mkdir(parents=True)
    n = 0
    for i, path in enumerate(installed_test_files()):
        if path.stat().st_size < 3_000_000 and path.suffix in (".dcm", ""):
            shutil.copy(path, dest / f"{i:03d}_{path.name}")
            n += 1
    return n


@pytest.fixture(scope="module")
def header_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, int]:
    base = tmp_path_factory.mktemp("bundled")
    inp, out = base / "in", base / "out"
    n = _bundled(inp)
    key = write_key(base / "k", KEY)
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet")
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    return inp, out, key, n


def test_every_bundled_file_ends_with_a_stated_reason(header_run) -> None:
    inp, out, key, n = header_run
    recs = read_manifest(out)
    assert n > 100 and len(recs) == n
    assert {r["status"] for r in recs} <= STATUSES, Counter(r["status"] for r in recs)
    assert all(r["reason"] and r["reason"]["code"] != "internal-error" for r in recs if r["status"] != "written")
    assert sum(r["status"] == "written" for r in recs) > 100


def test_verify_on_every_bundled_file_finds_only_values_the_profile_keeps(header_run) -> None:
    """pydicom's files reuse values across elements (InstitutionName and Manufacturer both TOSHIBA, a
    patient named Test whose report says Test): verify reports such a value in the header, rightly,
    as it cannot tell them apart. Each one it reports must sit in an element the profile keeps, with
    the value the input had there; anything else it reports is a defect of the run or of verify."""
    inp, out, key, n = header_run
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan")
    report = json.loads((out / "verify.json").read_text())
    assert proc.returncode == (1 if report["findings"] else 0)
    # on a Dask worker (four batches of 16 in flight at most, the others submitted as those end): the same report
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "1", "--no-rescan")
    assert proc.returncode == (1 if report["findings"] else 0), proc.stderr[-2000:]
    assert json.loads((out / "verify.json").read_text()) == report and report["checked_outputs"] > 4 * 16
    assert set(report["counts"]) <= {"identifying-value-in-header"}, report["counts"]
    profile = load_profile("safe-harbor")
    recs = read_manifest(out)
    journal = [json.loads(x) for x in (out.parent / "out.private" / "journal.jsonl").read_text().splitlines()]
    explained = 0
    for line in sorted({f["line"] for f in report["findings"]}):
        src = pydicom.dcmread(inp / journal[line - 1]["input"], force=True)
        data = (out / recs[line - 1]["output_path"]).read_bytes()
        ds = pydicom.dcmread(io.BytesIO(data))
        header, _ = _searchable(data, ds, str(out / recs[line - 1]["output_path"]))
        originals: dict[str, str] = {}

        def record(c, e, ref, path, originals=originals) -> bool:
            if e.VR != "SQ":
                originals[path] = str(e.value)
            return e.VR == "SQ"

        walk(src, record)
        for term in (t for t in collect_phi_terms(src, profile) if len(t) >= 4 and _found(t, header, header.lower())):
            holders: list[tuple[str, str, str]] = []

            def visit(c, e, ref, path, term=term, holders=holders) -> bool:
                if e.VR == "SQ":
                    return True
                if term.lower() in str(e.value).lower():
                    holders.append((path, rule_for(profile, ref).action, str(e.value)))
                return False

            walk(ds, visit)
            assert holders, "a reported value that no element holds"
            for path, action, value in holders:
                assert action == "K" and originals.get(path) == value, f"{path} action {action}"
            explained += 1
    assert explained >= len(report["findings"])
    # verify's own account of each finding agrees: every element holding the value is kept as it was
    for f in report["findings"]:
        holders = f["detail"].split(" in ", 1)[1].split("; ")
        assert all(h.removesuffix(" (only inside longer words)").endswith(" (kept by the profile, as in the input)")
                   for h in holders), f["detail"]


@pytest.mark.slow
def test_every_bundled_file_with_pixels_scanned(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    n = _bundled(inp)
    proc = deid("run", str(inp), str(out), "--workers", "2", "--key-file", str(write_key(tmp_path / "k", KEY)), "--quiet")
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    recs = read_manifest(out)
    assert len(recs) == n and {r["status"] for r in recs} <= STATUSES
    assert all(r["reason"] and r["reason"]["code"] != "internal-error" for r in recs if r["status"] != "written")


def test_image_attributes_that_are_no_number_quarantine_the_file(tmp_path: Path) -> None:
    """Rows written as an IS string that is no number (a malformed export): quarantined with its reason,
    not an internal error; an unreadable Number of Frames counts as one frame (pydicom's badVR.dcm above)."""
    from pydicom.data import get_testdata_file
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    inp = tmp_path / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds._dict[Tag(0x00280010)] = RawDataElement(Tag(0x00280010), "IS", 2, b"1A", 0, False, True)
    ds.save_as(inp / "rows.dcm")
    out = tmp_path / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(write_key(tmp_path / "k", KEY)), "--quiet")
    assert proc.returncode == 3, proc.stderr[-2000:]
    (rec,) = read_manifest(out)
    assert (rec["status"], rec["reason"]["code"]) == ("quarantined", "invalid-image-attributes")
