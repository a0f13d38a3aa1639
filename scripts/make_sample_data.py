"""Write the small synthetic sample set in ``sample_data/`` (or ``--out``), byte for byte the same each run.

Every image comes from :mod:`deid_pipeline.synth` with a fixed kind, seed, size, patient name and
study date; UIDs are name-based, so reruns with the same pydicom / encoder versions give identical
files. Ground truth goes to ``groundtruth/<same relative path>.groundtruth.json`` beside the images
(a de-identification run over the folder skips these JSON files as non-DICOM input).

Usage: python scripts/make_sample_data.py [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydicom.fileset import FileSet
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deid_pipeline import synth  # noqa: E402

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TRUNCATE_FRACTION = 0.6
_TITLE = "# Sample data"
FILESET_UID = "2.25.311708463373216931447315040327186113871"


@dataclass(frozen=True)
class Sample:
    path: str
    kind: str
    seed: int
    shape: tuple[int, int]
    patient: str
    study: date
    description: str
    frames: int | None = None
    syntax: UID | None = None


SAMPLES: tuple[Sample, ...] = (
    Sample("DOE^JOHN/20240101/IM0001", "ct", 11, (256, 256), "DOE^JOHN", date(2024, 1, 1),
           "CT slice, 16-bit signed MONOCHROME2, text burned in at 32767 / high HU, no file extension"),
    Sample("DOE^JOHN/20240101/IM0002", "notext_ct", 12, (256, 256), "DOE^JOHN", date(2024, 1, 1),
           "CT slice with no text in the pixels (false-positive control)"),
    Sample("DOE^JOHN/20240101/dose_report.dcm", "sc_dose", 13, (300, 400), "DOE^JOHN", date(2024, 1, 1),
           "Secondary capture of a CT dose screen: mostly text, 8-bit MONOCHROME2"),
    Sample("SMITH^JANE/MR_BRAIN/IM0001", "mr", 21, (256, 256), "SMITH^JANE", date(2023, 11, 15),
           "MR slice, 12 bits stored, JPEG-LS lossless", syntax=JPEGLSLossless),
    Sample("GARCIA^MARIA/20220630/US/cine", "us_cine", 31, (240, 320), "GARCIA^MARIA", date(2022, 6, 30),
           "Ultrasound cine, 8 frames 240x320 RGB, RLE lossless",
           frames=8, syntax=RLELossless),
    Sample("ROE^RICHARD/CR/IM0001.dcm", "cr", 41, (320, 256), "ROE^RICHARD", date(2021, 3, 9),
           "CR MONOCHROME1, 12 bits stored, text stored as 0 (displays white), JPEG 2000 lossless",
           syntax=JPEG2000Lossless),
    Sample("NGUYEN^WEI/US/IM0001", "us_palette", 51, (240, 320), "NGUYEN^WEI", date(2020, 8, 17),
           "Ultrasound PALETTE COLOR 8-bit; text indices are dark as raw values, white after the LUT"),
)

# Instances of a DICOMDIR file-set: pydicom names the files PTnnnnnn/STnnnnnn/SEnnnnnn/IMnnnnnn.
FILESET: tuple[Sample, ...] = (
    Sample("dicomdir", "us", 61, (240, 320), "KOWALSKI^ANNA", date(2019, 5, 2),
           "Greyscale ultrasound, 8-bit MONOCHROME2, in a DICOMDIR file-set"),
    Sample("dicomdir", "notext_grid", 62, (256, 256), "KOWALSKI^ANNA", date(2019, 5, 2),
           "Grid and ruler without text (false-positive control), in a DICOMDIR file-set"),
)


def _case(s: Sample) -> tuple[Any, dict[str, Any]]:
    ds, truth = synth.make_case(s.kind, s.seed, shape=s.shape, frames=s.frames,
                                patient_name=s.patient, study_date=s.study)
    if s.syntax is not None:
        synth.compress(ds, truth, s.syntax)
    truth["notes"] = f"{s.description}. {truth['notes']}"
    return ds, truth


def _gt_path(out: Path, rel: str) -> Path:
    return out / "groundtruth" / f"{rel}.groundtruth.json"


def build(out: Path) -> list[tuple[str, str]]:
    """Write everything under ``out`` (replaced if present); returns (relative path, description)."""
    if out.exists() and any(out.iterdir()):
        readme = out / "README.md"
        if not (readme.is_file() and readme.read_text(encoding="utf-8").startswith(_TITLE)):
            raise SystemExit(f"refusing to replace {out}: not empty and not a sample_data folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    listing: list[tuple[str, str]] = []
    for s in SAMPLES:
        ds, truth = _case(s)
        synth.write_case(ds, truth, out / s.path, _gt_path(out, s.path), file_label=s.path)
        listing.append((s.path, s.description))

    fs = FileSet()
    fs.ID = "DEIDSAMPLE"
    fs.UID = FILESET_UID
    truths = []
    for s in FILESET:
        ds, truth = _case(s)
        fs.add(ds)
        truths.append((s, truth, str(ds.SOPInstanceUID)))
    fs.write(out / "dicomdir")
    listing.append(("dicomdir/DICOMDIR", "DICOMDIR (media storage directory) for the two files below"))
    by_uid = {inst.SOPInstanceUID: Path(inst.path) for inst in fs}
    for s, truth, sop_uid in truths:
        rel = by_uid[sop_uid].relative_to(out).as_posix()
        truth["file"] = rel
        truth["sha256"] = synth.sha256_file(out / rel)
        synth.write_json(truth, _gt_path(out, rel))
        listing.append((rel, s.description))

    junk = out / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("Not a DICOM file: plain text placed among the inputs.\n", encoding="ascii")
    listing.append(("junk/notes.txt", "plain text file (not DICOM)"))
    (junk / "empty.dcm").write_bytes(b"")
    listing.append(("junk/empty.dcm", "zero-byte file with a .dcm extension"))
    whole = (out / SAMPLES[0].path).read_bytes()
    (junk / "truncated_IM0001").write_bytes(whole[: int(len(whole) * TRUNCATE_FRACTION)])
    listing.append(("junk/truncated_IM0001", f"first {TRUNCATE_FRACTION:.0%} of {SAMPLES[0].path} (truncated DICOM)"))

    (out / "README.md").write_text(_readme(out, listing), encoding="utf-8")
    return listing


#: packages whose versions decide the bytes: the image generator (numpy, OpenCV's Hershey text) and the encoders
BYTE_PACKAGES = ("numpy", "opencv-python-headless", "pydicom", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls")


def generator_versions() -> str:
    """``name version, ...`` of ``BYTE_PACKAGES`` as installed (the README records it)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return ", ".join(f"{name} {v(name)}" for name in BYTE_PACKAGES)


def _readme(out: Path, listing: list[tuple[str, str]]) -> str:
    rows = "\n".join(f"| `{rel}` | {(out / rel).stat().st_size:,} | {desc} |" for rel, desc in listing)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return f"""{_TITLE}

Small synthetic DICOM files for trying `deid` and for its tests. **Every name, ID, date,
institution and image here is synthetic**, made by `scripts/make_sample_data.py` with
`deid_pipeline.synth`; no real patient data was used. Regenerate with

    python scripts/make_sample_data.py

which rewrites this folder byte for byte with the same package versions (the tests check that it
does). Generated with: {generator_versions()}.

Licence: CC0 1.0 (public domain dedication), https://creativecommons.org/publicdomain/zero/1.0/

The folders are named after the synthetic patients (`DOE^JOHN/20240101/IM0001`) and several files
have no extension, as in PACS exports, to show that output paths must not carry input paths.
`junk/` holds inputs that a run must skip or quarantine without stopping.

Ground truth: `groundtruth/<path>.groundtruth.json` for every image, in the format of
`shared/data/burned_in_text/*.groundtruth.json` (boxes tight to the text pixels in the stored frame).
A run over this whole folder sees these JSON files as non-DICOM input and skips them.

| file | bytes | what it is |
|---|---:|---|
{rows}

Total {total:,} bytes, ground truth included, this README excluded.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "sample_data", help="folder to (re)write")
    args = parser.parse_args(argv)
    build(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
