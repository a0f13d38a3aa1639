"""``deid report``: a PHI-free, self-contained HTML QA page of a run (and originals only on request)."""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import support

REPO = Path(__file__).resolve().parent.parent
FILES = ["DOE^JOHN/20240101/IM0001", "NGUYEN^WEI/US/IM0001", "GARCIA^MARIA/20220630/US/cine"]
CANARY = "CANARY^QXZWV"
JUNK = "WOJCIK^ANNA/notes.txt"  # a non-DICOM input: a record with a reason, and a path that must not leak
PNG = re.compile(r'<img class="thumb (redacted|original)"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


deid = functools.partial(support.deid, timeout=300)


def report_cmd(*args: str) -> int:
    """``deid report`` in-process (the command is light; a subprocess would only add start-up time)."""
    from click.testing import CliRunner

    from deid_pipeline.cli.main import cli

    return CliRunner().invoke(cli, ["report", *args]).exit_code


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("report")
    inp = base / "in"
    for rel in FILES:
        dest = inp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        ds = pydicom.dcmread(REPO / "sample_data" / rel)
        ds.PatientName = CANARY
        ds.save_as(dest)
    (inp / JUNK).parent.mkdir(parents=True)
    (inp / JUNK).write_text("not a DICOM file\n")
    key = base / "k"
    support.write_key(key, b"report-test-key-0123456789abcdef")
    out = base / "out"
    proc = deid("run", str(inp), str(out), "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return inp, out


@pytest.fixture(scope="module")
def report(run_dirs: tuple[Path, Path]) -> Path:
    _, out = run_dirs
    assert report_cmd(str(out), "--quiet") == 0
    return out / "report.html"


def _pngs(text: str, kind: str) -> list[np.ndarray]:
    import cv2

    return [cv2.imdecode(np.frombuffer(base64.b64decode(b), np.uint8), cv2.IMREAD_COLOR)
            for k, b in PNG.findall(text) if k == kind]


def test_report_is_private_self_contained_and_complete(run_dirs: tuple[Path, Path], report: Path) -> None:
    inp, out = run_dirs
    text = report.read_text(encoding="utf-8")
    assert stat.S_IMODE(report.stat().st_mode) == 0o640
    assert not list(out.glob(".report.html.tmp-*"))
    # no PHI: the planted name, the input paths and their parts appear nowhere (thumbnails stripped
    # for the path checks, since base64 could by chance spell a short word)
    assert CANARY not in text and "CANARY" not in text
    plain = PNG.sub("", text)
    for rel in FILES + [JUNK]:
        for part in Path(rel).parts:
            assert part not in plain, part
    assert str(inp) not in plain
    # nothing is fetched: no scripts, no external URLs
    assert "<script" not in text.lower()
    assert not re.search(r"(src|href)=\"(?!data:)", text)
    # summary counts are run.json's
    run = json.loads((out / "run.json").read_text())
    for status, n in run["counts"].items():
        assert f'data-count="{status}">{n}<' in text
    for code, n in run["reasons"].items():
        assert f'data-reason="{code}">{n}<' in text
    assert run["counts"]["written"] == 3 and run["reasons"].get("not-dicom") == 1
    # one card per redacted file; single-frame files one thumbnail, multi-frame at most four
    recs = support.read_manifest(out)
    redacted = [i for i, r in enumerate(recs, 1) if r["status"] == "written" and any(r["pixel"]["boxes_per_frame"])]
    assert redacted and len(redacted) == len(FILES)
    cards = re.findall(r'<figure class="card" data-line="(\d+)">(.*?)</figure>', text, re.S)
    assert sorted(int(line) for line, _ in cards) == redacted
    for line, body in cards:
        rec = recs[int(line) - 1]
        with_boxes = sum(1 for b in rec["pixel"]["boxes_per_frame"] if b)
        assert body.count('class="thumb redacted"') == min(with_boxes, 4)
        assert rec["output_path"].split("/")[-1] in body
    thumbs = _pngs(text, "redacted")
    assert all(t is not None and max(t.shape[:2]) <= 256 and t.std() > 0 for t in thumbs)
    assert any((t == (255, 0, 255)).all(axis=-1).any() for t in thumbs)  # boxes outlined in magenta
    # grouped by series: one section per patient/study/series of the output paths
    series = {tuple(recs[i - 1]["output_path"].split("/")[:3]) for i in redacted}
    assert text.count('<details class="series"') == len(series)
    assert 'class="thumb original"' not in text and "ORIGINAL images" not in text


def test_originals_only_on_request(run_dirs: tuple[Path, Path], report: Path) -> None:
    inp, out = run_dirs
    before = report.read_bytes()
    assert report_cmd(str(out), "--with-originals") == 2  # needs --against
    assert report_cmd(str(out), "--against", str(inp)) == 2  # --against alone is a mistake
    assert report_cmd(str(out), "--with-originals", "--against", str(inp), "--quiet") == 0
    private = out.parent / f"{out.name}.private" / "report-with-originals.html"
    assert report.read_bytes() == before  # the PHI-bearing page never lands in OUTPUT
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    text = private.read_text(encoding="utf-8")
    assert "ORIGINAL images" in text
    originals, redacted = _pngs(text, "original"), _pngs(text, "redacted")
    assert len(originals) == len(redacted) > 0
    assert any(o.shape != r.shape or not np.array_equal(o, r) for o, r in zip(originals, redacted))
    assert CANARY not in text
    custom = out.parent / "elsewhere.html"
    assert report_cmd(str(out), "--out", str(custom), "--quiet") == 0
    assert 'class="thumb original"' not in custom.read_text(encoding="utf-8")


def test_originals_are_never_written_into_output_or_input(run_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    """A report with originals holds the images before redaction: an ``--out`` inside the OUTPUT it reports
    on (what is shared) or inside INPUT (never modified), directly or through a link, is a configuration
    error (exit 2) and nothing is written (before: the page was written into OUTPUT, mode 600)."""
    from click.testing import CliRunner

    from deid_pipeline.cli.main import cli

    inp, out = run_dirs
    (tmp_path / "to-output").symlink_to(out)
    before = {p: p.stat().st_mtime_ns for p in [*out.rglob("*"), *inp.rglob("*")]}
    for target, folder in ((out / "originals.html", "OUTPUT"), (inp / "DOE^JOHN" / "originals.html", "INPUT"),
                           (tmp_path / "to-output" / "originals.html", "OUTPUT")):
        result = CliRunner().invoke(cli, ["report", str(out), "--with-originals", "--against", str(inp), "--out", str(target)])
        assert result.exit_code == 2, result.output
        assert f"a report with originals must be outside {folder}" in result.output
        assert str(tmp_path) not in result.output and "DOE" not in result.output
        assert not target.exists()
    assert {p: p.stat().st_mtime_ns for p in [*out.rglob("*"), *inp.rglob("*")]} == before
    assert report_cmd(str(out), "--with-originals", "--against", str(inp), "--out", str(tmp_path / "o.html"), "--quiet") == 0


def test_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    import cv2

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,2400",
         "--user-data-dir=" + str(tmp_path / "profile"), report.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.exists(), proc.stderr[-2000:]
    img = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (2400, 1200)
    assert float(img.std()) > 10.0  # not a blank page
    magenta = (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] > 200)
    assert int(magenta.sum()) > 50  # the thumbnails and their box outlines were drawn
