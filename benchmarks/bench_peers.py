"""deid against its peers on the same generated corpora: speed as a ratio to deid, and what each tool left.

Peers, each installed by this script into its own virtual environment under ``benchmarks/work/venvs/<peer>``
(``python3 -m venv`` + pip; a peer that fails to install is reported as "not installed: <reason>"):

* ``deid``: pydicom's deid (PyPI ``deid``), header only: ``get_identifiers`` + ``replace_identifiers`` with
  its default recipe (``DeidRecipe()``, the "dicom" recipe), one file per call.
* ``dicognito``: header only, one ``Anonymizer()`` for the whole run, ``anonymize(ds)``, saved as
  ``<new SOPInstanceUID>.dcm`` like its CLI.
* ``dicom-anonymizer``: header only, ``anonymize_dicom_file(in, out, None, delete_private_tags=True)`` (what
  its ``anonymize()`` calls per file, without the per-call progress bar).
* ``presidio``: Presidio's ``DicomImageRedactorEngine`` on the pixel corpus, ``redact(ds, fill="contrast",
  use_metadata=True)``. Offline, so no spaCy model: the analyzer gets a blank English spaCy pipeline
  (tokens, no NER); names are found through the metadata deny list and the pattern recognizers. Needs the
  ``tesseract`` binary (``apt-get install tesseract-ocr``).
* ``plain``: not a peer but the issue's yardstick: a plain pydicom read-and-write loop (``dcmread`` then
  ``save_as``, no de-identification) over the header corpus; its ratio says whether deid runs "above that plain
  loop". Leaks are not counted for it (it removes nothing).

Each peer runs in one process on one core (OMP/BLAS thread variables = 1) through a driver this script writes to
the work folder; only its processing loop is timed (``files/s``), its process wall is kept too. deid runs
through its CLI: header corpus ``--pixels none --workers 1`` and ``--workers 2`` (and ``--workers 0``, in one
process like the peers, with ``--in-process``), pixel corpus ``--workers 1`` (safe-harbor's own pixel mode); its ``files/s`` is ``files_per_s`` from ``OUTPUT/run.json``. Every run's CPU time
comes from ``wait4`` and its peak resident memory from sampling the process tree (deid's driver and largest
worker apart), see :func:`run_measured`.

Corpora (made here, no downloads):

* header: ``bench_header.make_corpus(..., extra_phi=True)``: copies of pydicom's test files, each with its
  own name, ID, birth date, institution, referring physician, accession, free text naming the patient, the ID
  in a sequence item and the name in a private element.
* pixel: 512x512 16-bit CT slices with burned-in text from ``deid_pipeline.synth`` (boxes + text masks kept).

Leaks (one rule for every tool, deid included): the raw bytes of every output file (case-folded) and its path
under the output folder are searched for the planted values of its own input (outputs are matched to inputs
through the driver's map, or deid's manifest ``input_sha256``) and for any planted token of any input.
Text removal (pixel corpus): a ground-truth box counts as removed when >= 95 % (``eval_text.COVER``) of its text
pixels are hidden: changed, or set to the value the tool filled the box with (a fill in the text's own colour
hides the text without changing it). Also kept: PHI-box recall, mean share of text pixels hidden, share of boxes
with >= 90 % of pixels changed, and the share of non-text pixels (> 3 px from every box) changed.

    python benchmarks/bench_peers.py --header-files 1000 --pixel-files 40 --repeats 3 \
        [--peers deid dicognito dicom-anonymizer presidio] [--work DIR] [--in-process]

``--pixel-files 0`` runs the header corpus only (Presidio, whose corpus is the pixel one, is left out).

Writes ``benchmarks/results/peers-<date>[-N].json`` and ``.md`` (the table is printed too; ``-N`` keeps an earlier run's).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _p in (str(HERE), str(REPO)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import bench_header  # noqa: E402
from result_names import free_stem  # noqa: E402

RESULTS = HERE / "results"
WORK = HERE / "work"
OURS = "deid (this repo)"

THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OMP_THREAD_LIMIT": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
}

PEERS: dict[str, dict[str, Any]] = {
    "deid": {"label": "pydicom/deid", "pip": ["deid"], "dists": ["deid", "pydicom"], "corpus": "header"},
    "dicognito": {"label": "dicognito", "pip": ["dicognito"], "dists": ["dicognito", "pydicom"], "corpus": "header"},
    "dicom-anonymizer": {"label": "dicom-anonymizer", "pip": ["dicom-anonymizer"],
                         "dists": ["dicom-anonymizer", "pydicom"], "corpus": "header"},
    "presidio": {"label": "presidio DicomImageRedactorEngine", "pip": ["presidio-image-redactor", "pytesseract"],
                 "dists": ["presidio-image-redactor", "presidio-analyzer", "spacy", "pytesseract", "pydicom"],
                 "corpus": "pixel", "binaries": ["tesseract"]},
    # the yardstick, not a peer: read and write each file unchanged (no leak count: it removes nothing)
    "plain": {"label": "plain pydicom read+write loop (yardstick: no de-identification)", "pip": ["pydicom"],
              "dists": ["pydicom"], "corpus": "header", "yardstick": True},
}

# ----------------------------------------------------------------------------------------------------------
# The driver, written to the work folder and run with each peer's own interpreter.

DRIVER = r'''
"""Run one peer over a list of files in this process; print one JSON line starting with BENCH-RESULT."""
import json, os, sys, time
from collections import Counter

T_START = time.perf_counter()


def setup_deid():
    from deid.config import DeidRecipe
    from deid.dicom import get_identifiers, replace_identifiers

    recipe = DeidRecipe()  # the default "dicom" recipe

    def process(path, out):
        ids = get_identifiers([path])
        done = replace_identifiers(dicom_files=[path], deid=recipe, ids=ids, save=True, output_folder=out,
                                   overwrite=True)
        return done[0]
    return process


def setup_dicognito():
    import pydicom
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()

    def process(path, out):
        with pydicom.dcmread(path) as ds:
            anonymizer.anonymize(ds)
            dest = os.path.join(out, ds.SOPInstanceUID + ".dcm")  # as its CLI's SaveToSOPInstanceUID
            ds.save_as(dest, enforce_file_format=True)
        return dest
    return process


def setup_dicom_anonymizer():
    from dicomanonymizer.simpledicomanonymizer import anonymize_dicom_file

    def process(path, out):
        dest = os.path.join(out, os.path.basename(path))
        anonymize_dicom_file(path, dest, None, True)
        return dest
    return process


def setup_presidio():
    import pydicom
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "en_core_web_lg"}])
    nlp.nlp = {"en": spacy.blank("en")}  # en_core_web_lg cannot be downloaded here: tokens, no NER
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    engine = DicomImageRedactorEngine(image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer))

    def process(path, out):
        ds = pydicom.dcmread(path)
        redacted = engine.redact(ds, fill="contrast", use_metadata=True)
        dest = os.path.join(out, os.path.basename(path))
        redacted.save_as(dest)
        return dest
    return process


def setup_plain():
    import pydicom

    def process(path, out):
        dest = os.path.join(out, os.path.basename(path))
        pydicom.dcmread(path).save_as(dest, enforce_file_format=False)
        return dest
    return process


SETUPS = {"plain": setup_plain, "deid": setup_deid, "dicognito": setup_dicognito,
          "dicom-anonymizer": setup_dicom_anonymizer, "presidio": setup_presidio}


def main():
    tool, list_file, out, map_file = sys.argv[1:5]
    with open(list_file) as fh:
        paths = [line.rstrip("\n") for line in fh if line.strip()]
    os.makedirs(out, exist_ok=True)
    process = SETUPS[tool]()
    t_loop = time.perf_counter()
    errors = Counter()
    mapping = {}
    for path in paths:
        try:
            mapping[path] = str(process(path, out))
        except (Exception, SystemExit) as exc:  # type names only: messages may quote values
            errors[type(exc).__name__] += 1
    t_end = time.perf_counter()
    with open(map_file, "w") as fh:
        json.dump(mapping, fh)
    print("BENCH-RESULT " + json.dumps({
        "tool": tool, "files": len(paths), "ok": len(mapping), "errors": sum(errors.values()),
        "error_types": dict(errors), "setup_s": t_loop - T_START, "loop_s": t_end - t_loop,
        "in_process_s": t_end - T_START,
    }), flush=True)


if __name__ == "__main__":
    main()
'''

# ----------------------------------------------------------------------------------------------------------
# Corpora


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def header_forms(i: int) -> dict[str, list[str]]:
    """The forms each planted header value of file ``i`` can take in an output."""
    v = bench_header.planted(i)
    return {
        "patient_name": [v["patient_name"], f"PATIENT{i:06d}"],
        "patient_id": [v["patient_id"]],
        "birth_date": [v["birth_date"], f"{v['birth_date'][:4]}-{v['birth_date'][4:6]}-{v['birth_date'][6:]}"],
        "institution": [v["institution"], f"BENCHHOSP{i:06d}"],
        "referring_physician": [v["referring_physician"], f"REFER{i:06d}"],
        "accession": [v["accession"]],
    }


# Planted tokens of any header-corpus input (a leak of another file's identity counts too); not inside a longer
# word or number, so that a hex digest ("...9bbacc20749445...") is no match.
_B, _E = rb"(?<![0-9a-z])", rb"(?![0-9])"
HEADER_TOKENS = {
    "patient_name": rb"patient\d{6}" + _E,
    "patient_id": _B + rb"bp\d{8}" + _E,
    "institution": _B + rb"benchhosp\d{6}" + _E,
    "referring_physician": rb"refer\d{6}" + _E,
    "accession": _B + rb"bacc\d{8}" + _E,
}


def make_header_corpus(root: Path, n: int) -> dict[str, Any]:
    """``root/input``: ``n`` files from ``bench_header.make_corpus(extra_phi=True)``; returns the index."""
    index_path = root / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("n") == n and Path(index["input"]).is_dir():
            return index
    shutil.rmtree(root, ignore_errors=True)
    inp = root / "input"
    bench_header.make_corpus(inp, n, bench_header.SOURCES, extra_phi=True)
    files = []
    for i in range(n):
        path = inp / f"BENCH^PATIENT{i // 50:06d}" / f"IM{i:06d}"
        files.append({"path": str(path), "sha256": sha256(path), "forms": header_forms(i),
                      "source": bench_header.SOURCES[i % len(bench_header.SOURCES)]})
    index = {"corpus": "header", "n": n, "input": str(inp), "files": files, "tokens": "header"}
    write_json(index_path, index)
    return index


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def pixel_forms(ds: Any) -> dict[str, list[str]]:
    forms = {
        "patient_name": [str(ds.PatientName)],
        "patient_id": [str(ds.PatientID)],
        "birth_date": [str(ds.PatientBirthDate)],
        "institution": [str(ds.InstitutionName)],
        "referring_physician": [str(ds.ReferringPhysicianName)],
        "accession": [str(ds.AccessionNumber)],
    }
    if "OtherPatientIDsSequence" in ds:
        forms["patient_id"].append(str(ds.OtherPatientIDsSequence[0].PatientID))
    return forms


def make_pixel_corpus(root: Path, n: int, seed: int = 11) -> dict[str, Any]:
    """``root/input``: ``n`` 512x512 int16 CT slices with burned-in text; truth and text masks in ``root/truth``."""
    from deid_pipeline import synth

    index_path = root / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("n") == n and index.get("seed") == seed and Path(index["input"]).is_dir():
            return index
    shutil.rmtree(root, ignore_errors=True)
    inp, truth_dir = root / "input", root / "truth"
    truth_dir.mkdir(parents=True)
    files = []
    for i in range(n):
        case = synth.render_case("ct", seed * 1_000_003 + i, shape=(512, 512))
        name = f"ct_{i:05d}.dcm"
        path = inp / name
        synth.write_case(case.dataset, case.truth, path, truth_dir / f"{name}.groundtruth.json", file_label=name)
        stored = np.asarray(case.dataset.pixel_array)[None]
        mask = stored != case.clean  # the text pixels
        np.savez_compressed(truth_dir / f"{name}.textmask.npz", mask=np.packbits(mask), shape=np.array(mask.shape))
        files.append({"path": str(path), "sha256": sha256(path), "forms": pixel_forms(case.dataset),
                      "truth": str(truth_dir / f"{name}.groundtruth.json"),
                      "mask": str(truth_dir / f"{name}.textmask.npz")})
    index = {"corpus": "pixel", "n": n, "seed": seed, "input": str(inp), "files": files, "tokens": None}
    write_json(index_path, index)
    return index


# ----------------------------------------------------------------------------------------------------------
# Leak counting and text scoring (the same for every tool)

NON_DICOM = {"run.json", "manifest.jsonl"}


def output_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def _encodings(value: str) -> set[bytes]:
    """``value`` as bytes in the character sets the corpora use (ASCII, ISO_IR 100, UTF-8), case-folded."""
    out = set()
    for codec in ("utf-8", "latin-1"):
        try:
            out.add(value.encode(codec).lower())
        except UnicodeEncodeError:
            pass
    return out


def _contains(hay: bytes, needle: bytes, bounded: bool) -> bool:
    """``needle`` in ``hay``; ``bounded``: only where no letter or digit touches it on either side."""
    if not bounded:
        return needle in hay
    start = hay.find(needle)
    while start >= 0:
        end = start + len(needle)
        if (start == 0 or not hay[start - 1:start].isalnum()) and (end == len(hay) or not hay[end:end + 1].isalnum()):
            return True
        start = hay.find(needle, start + 1)
    return False


def find_leaks(data: bytes, rel_path: str, forms: dict[str, list[str]] | None,
               tokens: dict[str, bytes] | None, bounded: bool = False) -> set[str]:
    """Fields whose planted value (``forms``) or any planted token shows in ``data`` or ``rel_path``.

    The search is on bytes, case-folded (ASCII letters; other letters must match as planted). ``bounded`` (for
    text sidecars searched for every input's values): a value counts only where it is not part of a longer word
    or number, so that a birth date inside a hex digest is no match.
    """
    hay = data.lower() + b"\0" + rel_path.encode("utf-8", "replace").lower()
    found: set[str] = set()
    for field, values in (forms or {}).items():
        if any(_contains(hay, enc, bounded) for v in values if v for enc in _encodings(v)):
            found.add(field)
    for field, pattern in (tokens or {}).items():
        if field not in found and re.search(pattern, hay):
            found.add(field)
    return found


def leak_locations(path: Path, forms: dict[str, list[str]], tokens: dict[str, bytes] | None) -> dict[str, set[str]]:
    """Where in the parsed header each leaking field sits: keyword, ``Seq>Keyword`` or ``private (gggg,eeee)``."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:
        return {}
    hits: dict[str, set[str]] = {}

    def visit(dset: Any, prefix: str) -> None:
        for elem in dset:
            name = (f"private ({elem.tag.group:04X},{elem.tag.element:04X})" if elem.tag.is_private
                    else elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})")
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item, f"{prefix}{name}>")
                continue
            value = elem.value
            raw = bytes(value) if isinstance(value, (bytes, bytearray)) else str(value).encode("utf-8", "replace")
            for field in find_leaks(raw, "", forms, tokens):
                hits.setdefault(field, set()).add(prefix + name)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            visit(ds.get("file_meta") or [], "meta:")
            visit(ds, "")
    except Exception:
        pass
    return hits


def input_of_outputs(index: dict[str, Any], out: Path, mapping: dict[str, str] | None) -> dict[str, dict]:
    """Output path (resolved) -> index entry of its input, from a driver map or deid's manifest."""
    by_path = {f["path"]: f for f in index["files"]}
    result: dict[str, dict] = {}
    if mapping is not None:
        for src, dst in mapping.items():
            if src in by_path:
                result[str(Path(dst).resolve())] = by_path[src]
        return result
    manifest = out / "manifest.jsonl"
    if manifest.is_file():
        by_sha = {f["sha256"]: f for f in index["files"]}
        for line in manifest.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("output_path") and rec.get("input_sha256") in by_sha:
                result[str((out / rec["output_path"]).resolve())] = by_sha[rec["input_sha256"]]
    return result


def count_leaks(index: dict[str, Any], out: Path, mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """Files with >= 1 leak and leaks per field over every file under ``out``.

    DICOM outputs are searched for their own input's values plus every planted token; an output that maps to
    no input (and the sidecars: manifest, run.json) for every input's values.
    """
    tokens = HEADER_TOKENS if index.get("tokens") == "header" else None
    pairs = input_of_outputs(index, out, mapping)
    every: dict[str, list[str]] = {}
    for f in index["files"]:
        for field, values in f["forms"].items():
            every.setdefault(field, []).extend(values)
    per_field: Counter[str] = Counter()
    locations: Counter[str] = Counter()
    leaky, dicom_files, unmapped, sidecar_leaks = 0, 0, 0, {}
    for path in output_files(out):
        rel = str(path.relative_to(out))
        data = path.read_bytes()
        entry = pairs.get(str(path.resolve()))
        if path.name in NON_DICOM or path.suffix in (".json", ".jsonl", ".md", ".txt", ".log"):
            hits = find_leaks(data, rel, every, tokens, bounded=True)
            if hits:
                sidecar_leaks[rel] = sorted(hits)
            continue
        dicom_files += 1
        if entry is None:
            unmapped += 1
        forms = entry["forms"] if entry else every
        hits = find_leaks(data, rel, forms, tokens)
        if hits:
            leaky += 1
            per_field.update(hits)
            where = leak_locations(path, forms, tokens)
            if find_leaks(b"", rel, forms, tokens):
                where.setdefault("path", set()).add("output path")
            for field, locs in where.items():
                for loc in locs:
                    locations[f"{field}: {loc}"] += 1
    fields = list(index["files"][0]["forms"]) if index["files"] else []
    return {"output_files": dicom_files, "files_with_leaks": leaky, "unmapped_outputs": unmapped,
            "leaks_per_field": {f: per_field.get(f, 0) for f in fields},
            "leak_locations": dict(sorted(locations.items())), "sidecars_with_leaks": sidecar_leaks}


def stored_frames(path: Path) -> np.ndarray:
    import pydicom
    from eval_text import decode

    return np.asarray(decode(pydicom.dcmread(path)))


def score_box(inp: np.ndarray, out: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Is the text of one box gone? ``inp``/``out``: the box's stored values; ``mask``: its text pixels.

    A text pixel is hidden when its value changed, or when it holds the value the tool filled the box with
    (a fill in the text's own colour changes no text pixel but still hides the text). The box counts as
    removed when >= COVER (95 %, as in eval_text.py) of its text pixels are hidden.
    """
    from eval_text import COVER

    changed = inp != out
    if changed.ndim == 3:
        changed = changed.any(axis=-1)
    box_changed = float(changed.mean()) if changed.size else 0.0
    if not mask.any():
        return {"removed": box_changed >= 0.9, "text_hidden": box_changed, "changed": box_changed}
    hidden = changed.copy()
    if changed.any() and out.ndim == 2:
        values, counts = np.unique(out[changed], return_counts=True)
        hidden |= out == values[counts.argmax()]
    share = float(hidden[mask].mean())
    return {"removed": share >= COVER, "text_hidden": share, "changed": box_changed}


NONTEXT_GAP = 3


def score_text(index: dict[str, Any], out: Path, mapping: dict[str, str] | None = None) -> dict[str, Any]:
    """Text-box recall (all boxes and PHI boxes) and the share of non-text pixels changed."""
    pairs = input_of_outputs(index, out, mapping)
    by_input = {entry["path"]: Path(dst) for dst, entry in pairs.items()}
    tot = Counter()
    missing = 0
    for f in index["files"]:
        truth = json.loads(Path(f["truth"]).read_text())
        boxes = truth["annotations"]
        tot["boxes"] += len(boxes)
        tot["phi_boxes"] += sum(bool(b["phi"]) for b in boxes)
        dst = by_input.get(f["path"])
        if dst is None or not dst.is_file():
            missing += 1
            continue
        try:
            before, after = stored_frames(Path(f["path"])), stored_frames(dst)
        except Exception:
            missing += 1
            continue
        if before.shape != after.shape:
            missing += 1
            continue
        z = np.load(f["mask"])
        shape = tuple(int(s) for s in z["shape"])
        mask = np.unpackbits(z["mask"])[: int(np.prod(shape))].reshape(shape).astype(bool)
        near = np.zeros(before.shape[:3], bool)
        for bx in boxes:
            x, y, w, h = bx["x"], bx["y"], bx["w"], bx["h"]
            fr = int(bx.get("frame", 0))
            s = score_box(before[fr, y:y + h, x:x + w], after[fr, y:y + h, x:x + w], mask[fr, y:y + h, x:x + w])
            tot["scored"] += 1
            tot["removed"] += s["removed"]
            tot["hidden"] += s["text_hidden"]
            tot["changed90"] += s["changed"] >= 0.9
            if bx["phi"]:
                tot["phi_scored"] += 1
                tot["phi_removed"] += s["removed"]
                tot["phi_hidden"] += s["text_hidden"]
            near[fr, max(0, y - NONTEXT_GAP): y + h + NONTEXT_GAP, max(0, x - NONTEXT_GAP): x + w + NONTEXT_GAP] = True
        diff = before != after
        if diff.ndim == 4:
            diff = diff.any(axis=3)
        tot["nontext_px"] += int((~near).sum())
        tot["nontext_changed"] += int((diff & ~near).sum())
    return {
        "boxes": tot["boxes"], "phi_boxes": tot["phi_boxes"], "files_unscored": missing,
        # recall over all ground-truth boxes: a box whose file is missing counts as not removed
        "text_recall": tot["removed"] / tot["boxes"] if tot["boxes"] else None,
        "phi_recall": tot["phi_removed"] / tot["phi_boxes"] if tot["phi_boxes"] else None,
        "boxes_changed_90pct": tot["changed90"] / tot["boxes"] if tot["boxes"] else None,
        # mean share of each box's text pixels hidden (partial credit), over the boxes scored
        "text_px_hidden_mean": tot["hidden"] / tot["scored"] if tot["scored"] else None,
        "phi_text_px_hidden_mean": tot["phi_hidden"] / tot["phi_scored"] if tot["phi_scored"] else None,
        "nontext_changed_share": tot["nontext_changed"] / tot["nontext_px"] if tot["nontext_px"] else None,
    }


# ----------------------------------------------------------------------------------------------------------
# Installing and running peers


class Measured:
    """A finished child process: exit status, output, wall and CPU seconds, peak resident memory (MiB)."""

    def __init__(self, returncode: int, stdout: str, stderr: str, wall: float, cpu: float, peak_mib: float,
                 driver_mib: float | None, worker_mib: float | None) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.wall, self.cpu, self.peak_mib = wall, cpu, peak_mib
        self.driver_mib, self.worker_mib = driver_mib, worker_mib


def _adopt_orphans(on: bool) -> bool:
    """Make this process (``on``) or stop it being the reaper of orphaned descendants (Linux
    ``PR_SET_CHILD_SUBREAPER``), so that their CPU time can be counted (:func:`_reap`). deid's workers are
    forked by multiprocessing's fork server, which reaps them and ends after deid's driver: without this
    its CPU time, the workers' included, would count nowhere."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, int(on), 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap(pids: set[int], grace: float = 30.0) -> float:
    """CPU seconds of those of ``pids`` that were reparented here, each reaped as it ends (one still
    running after ``grace`` seconds is left uncounted; a pid that is not our child is skipped)."""
    cpu, end, left = 0.0, time.monotonic() + grace, set(pids)
    while left:
        for pid in list(left):
            try:
                got, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (never reparented here, or reaped by its own parent)
                left.discard(pid)
                continue
            if got:
                cpu += usage.ru_utime + usage.ru_stime
                left.discard(pid)
        if left and time.monotonic() > end:
            break
        time.sleep(0.005)
    return cpu


def run_measured(cmd: list[str], env: dict[str, str], cwd: Path, sample_workers: bool = False) -> Measured:
    """Run ``cmd`` to its end. CPU seconds from ``wait4``: the child and every descendant it waited for, and
    the sampled descendants it left behind (:func:`_adopt_orphans`; where that is refused they are not
    counted).
    Resident memory is sampled every 0.1 s (``rss_monitor.TreeSampler``; ``wait4``'s peak is no use here: a
    child reports its parent's peak at the fork): ``peak_mib`` is the largest process of the tree; with
    ``sample_workers`` (deid's Dask workers), its driver and its largest worker apart too."""
    import tempfile

    from rss_monitor import MiB, TreeSampler

    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        adopting = _adopt_orphans(True)
        try:
            t0 = time.perf_counter()
            popen = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env, cwd=str(cwd))
            with TreeSampler(popen.pid, 0.1, t0) as sampler:
                _, status, usage = os.wait4(popen.pid, 0)
                wall = time.perf_counter() - t0
            popen.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
            orphans_cpu = _reap(sampler.seen) if adopting else 0.0
        finally:
            if adopting:
                _adopt_orphans(False)
        samples = sampler.samples
        driver = max((s.driver_rss for s in samples), default=0)
        worker = max((s.worker_rss[0] for s in samples if s.worker_rss), default=0)
        out_f.seek(0)
        err_f.seek(0)
        return Measured(popen.returncode, out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace"),
                        wall, usage.ru_utime + usage.ru_stime + orphans_cpu, max((s.largest_rss for s in samples), default=0) / MiB,
                        driver / MiB if sample_workers else None,
                        worker / MiB if sample_workers and worker else None)


def venv_python(venvs: Path, peer: str) -> Path:
    return venvs / peer / "bin" / "python"


def install_peer(peer: str, venvs: Path, base_python: str, log: Path) -> str | None:
    """Create the peer's venv and pip-install it (once); None when ready, else the reason it is not."""
    spec = PEERS[peer]
    for binary in spec.get("binaries", []):
        if shutil.which(binary) is None:
            return f"{binary} binary not found on PATH (apt-get install -y tesseract-ocr)"
    venv = venvs / peer
    stamp = venv / ".bench-installed"
    want = " ".join(spec["pip"])
    if stamp.is_file() and stamp.read_text().strip() == want and venv_python(venvs, peer).exists():
        return None
    shutil.rmtree(venv, ignore_errors=True)
    venvs.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        for cmd in ([base_python, "-m", "venv", str(venv)],
                    [str(venv_python(venvs, peer)), "-m", "pip", "install", "--quiet", *spec["pip"]]):
            fh.write(f"$ {' '.join(cmd)}\n")
            fh.flush()
            try:
                proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=1800)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} failed: {type(exc).__name__}"
            fh.write(proc.stderr)
            if proc.returncode != 0:
                lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
                return f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} failed: {(lines or ['rc %d' % proc.returncode])[-1][:300]}"
    stamp.write_text(want + "\n")
    return None


def peer_versions(py: Path, dists: list[str]) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json, sys\nv = {}\nfor d in sys.argv[1:]:\n    try:\n"
            "        v[d] = m.version(d)\n    except Exception:\n        v[d] = None\n"
            "import platform\nv['python'] = platform.python_version()\nprint(json.dumps(v))")
    proc = subprocess.run([str(py), "-c", code, *dists], capture_output=True, text=True)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except Exception:
        return {d: None for d in dists}


def run_peer(peer: str, py: Path, driver: Path, files: list[str], out: Path, runs_dir: Path, tag: str) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    list_file = runs_dir / f"{tag}.list"
    list_file.write_text("\n".join(files) + "\n")
    map_file = runs_dir / f"{tag}.map.json"
    env = {**os.environ, **THREAD_ENV, "MESSAGELEVEL": "ERROR", "PYTHONWARNINGS": "ignore"}
    env.pop("PYTHONPATH", None)
    proc = run_measured([str(py), str(driver), peer, str(list_file), str(out), str(map_file)], env, runs_dir)
    wall, cpu = proc.wall, proc.cpu
    (runs_dir / f"{tag}.stderr.log").write_text(proc.stderr[-200_000:])
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("BENCH-RESULT ")), None)
    if line is None:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        # the exception type of the last traceback line, never its message
        reason = tail[-1].split(":")[0][:120] if tail else f"rc {proc.returncode}"
        return {"failed": f"driver exited {proc.returncode}: {reason}", "wall_s": wall}
    res = json.loads(line[len("BENCH-RESULT "):])
    res.update({"wall_s": wall, "cpu_s": cpu, "files_per_s": res["files"] / res["loop_s"] if res["loop_s"] else None,
                "files_per_s_wall": res["files"] / wall, "map_file": str(map_file), "peak_rss_mib": proc.peak_mib})
    return res


def run_ours(inp: Path, out: Path, workers: int, key: Path, pixels: str | None, runs_dir: Path, tag: str,
             batch_size: int | None = None, detector: str = "auto") -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f"{out.name}.private", ignore_errors=True)
    cmd = [sys.executable, "-m", "deid_pipeline.cli", "run", str(inp), str(out), "--profile", "safe-harbor",
           "--workers", str(workers), "--key-file", str(key), "--quiet"]
    if pixels:
        cmd += ["--pixels", pixels]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    if detector != "auto":
        cmd += ["--detector", detector]
    env = {**os.environ, **THREAD_ENV} if workers <= 1 else dict(os.environ)
    proc = run_measured(cmd, env, REPO, sample_workers=workers > 0)
    wall, cpu = proc.wall, proc.cpu
    (runs_dir / f"{tag}.stderr.log").write_text(proc.stderr[-200_000:])
    if proc.returncode not in (0, 3) or not (out / "run.json").is_file():
        return {"failed": f"deid exited {proc.returncode}", "wall_s": wall}
    info = json.loads((out / "run.json").read_text())
    counts = info.get("counts", {})
    n = sum(counts.values()) or info.get("files_this_session", 0)
    return {"files": n, "ok": counts.get("written", 0), "errors": counts.get("failed", 0) + counts.get("quarantined", 0),
            "error_types": info.get("reasons", {}), "counts": counts, "wall_s": wall, "cpu_s": cpu,
            "files_per_s": info.get("files_per_s"), "files_per_s_wall": n / wall if wall else None,
            "files_per_s_steady": info.get("files_per_s_steady"), "elapsed_s": info.get("elapsed_s"),
            "peak_rss_mib": proc.peak_mib, "peak_driver_rss_mib": proc.driver_mib, "peak_worker_rss_mib": proc.worker_mib}


def summarise_runs(runs: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """Medians and spreads of one tool's runs; ``cores``: the worker count (0, in-process: one core)."""
    cores = max(1, cores)
    good = [r for r in runs if "failed" not in r and r.get("files_per_s")]
    if not good:
        return {"failed": next((r["failed"] for r in runs if "failed" in r), "no runs")}
    fps = [r["files_per_s"] for r in good]
    wall = [r["files_per_s_wall"] for r in good]
    med = statistics.median(fps)
    return {
        "repeats": len(good), "files": good[-1]["files"], "errors": good[-1]["errors"],
        "error_types": good[-1].get("error_types", {}),
        "files_per_s_median": med, "files_per_s_min": min(fps), "files_per_s_max": max(fps),
        "files_per_s_wall_median": statistics.median(wall), "cores": cores, "files_per_s_per_core": med / cores,
        "cpu_s_per_file_median": statistics.median(r["cpu_s"] / max(r["files"], 1) for r in good),
        **{k: max(r[k] for r in good) for k in ("peak_rss_mib", "peak_driver_rss_mib", "peak_worker_rss_mib")
           if all(r.get(k) is not None for r in good)},
        "runs": good,
    } | ({"files_per_s_steady_median": statistics.median(r["files_per_s_steady"] for r in good)}
         if all(r.get("files_per_s_steady") for r in good) else {})


# ----------------------------------------------------------------------------------------------------------
# Report


def steady_note(s: dict[str, Any]) -> str:
    """deid's pace once its workers are up (``files_per_s_steady`` of ``run.json``), when known."""
    return f"; steady {s['files_per_s_steady_median']:.1f}" if "files_per_s_steady_median" in s else ""


def fmt_rate(s: dict[str, Any]) -> str:
    return f"{s['files_per_s_median']:.1f} ({s['files_per_s_min']:.1f}–{s['files_per_s_max']:.1f})"


def fmt_rss(s: dict[str, Any]) -> str:
    """Peak RSS of the tree's largest process; deid's worker and driver apart when sampled."""
    if "peak_rss_mib" not in s:
        return "–"
    if s.get("peak_worker_rss_mib") is None:
        return f"{s['peak_rss_mib']:.0f}"
    return f"{s['peak_rss_mib']:.0f} (worker {s['peak_worker_rss_mib']:.0f}, driver {s['peak_driver_rss_mib']:.0f})"


def pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1%}"


SHORT = {"patient_name": "name", "patient_id": "id", "birth_date": "dob", "institution": "inst",
         "referring_physician": "ref", "accession": "acc"}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    c = result["corpora"]
    lines = [f"# deid vs peers ({result['date']})", "",
             f"Machine: {m['cpus']} CPUs, Python {m['python']}, {m['platform']}; {m.get('tesseract') or 'no tesseract'}. "
             f"Header corpus: {c['header']['n']} files (copies of {', '.join(c['header']['sources'])} with planted PHI); "
             + (f"pixel corpus: {c['pixel']['n']} 512x512 int16 CT slices with burned-in text. " if "pixel" in c else "no pixel corpus. ")
             + f"Median of "
             f"{result['repeats']} run(s), min–max in brackets. Load average before/after: "
             f"{m['loadavg_before'][0]}/{m['loadavg_after'][0]} (shared machine). deid --batch-size: "
             f"{result['deid_batch_size'] or 'CLI default'}.", "",
             "files/s: deid from `run.json` (`files_per_s`), peers over their processing loop (one process, one core, "
             "set-up excluded). Ratio = deid (1 worker) files/s ÷ tool files/s on the same corpus (> 1: deid faster); "
             "in brackets the same from process wall clock (interpreter start, imports, set-up, Dask start included); "
             "'deid steady': deid's `files_per_s_steady` (its workers up, like the peers' loops) ÷ tool files/s; "
             "'deid in-process' (with `--in-process`): deid `--workers 0` (one process, no Dask cluster, like the "
             "peers' loops) files/s ÷ tool files/s, wall clock in brackets.", "",
             "CPU ms/file: CPU time of the whole process tree (deid: driver, scheduler and workers; a peer: its one "
             "process, interpreter start and set-up included) per file, median of the runs; 'per CPU-s' = the "
             "tool's CPU ms/file ÷ deid's (1 worker): the files/s per core that a machine whose every core is busy "
             "would see.", "",
             "Peak RSS MiB: the largest resident set of any one process of the tool's tree, sampled every 0.1 s, the "
             "largest of the runs; for deid with workers also its largest worker and its driver apart.", "",
             "| tool | version | corpus | workers | files | files/s | files/s per core | CPU ms/file | peak RSS MiB "
             "| ratio deid/tool | errors | files with leaks | leaks per field | text recall (PHI) | non-text px changed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        s = row.get("speed", {})
        if "not_installed" in row or "failed" in s:
            why = f"not installed: {row['not_installed']}" if "not_installed" in row else f"failed: {s['failed']}"
            lines.append(f"| {row['tool']} | {row.get('version') or '–'} | {row['corpus']} | {row['workers']} | – | "
                         f"{why} | | | | | | | | | |")
            continue
        leaks = row.get("leaks", {})
        per_field = ", ".join(f"{SHORT.get(k, k)} {v}" for k, v in leaks.get("leaks_per_field", {}).items() if v)
        text = row.get("text")
        text_s = f"{pct(text['text_recall'])} ({pct(text['phi_recall'])})" if text else "–"
        nontext = pct(text["nontext_changed_share"]) if text else "–"
        errs = f"{s['errors']}" + (f" ({', '.join(f'{k} {v}' for k, v in s['error_types'].items())})"
                                   if s.get("error_types") else "")
        if "ratio" in row:
            ratio = f"{row['ratio']:.2f}x ({row['ratio_wall']:.2f}x)" + (
                f"; deid steady: {row['ratio_steady']:.2f}x" if "ratio_steady" in row else "") + (
                f"; per CPU-s: {row['ratio_cpu']:.2f}x" if "ratio_cpu" in row else "") + (
                f"; deid in-process: {row['in_process']:.2f}x ({row['in_process_wall']:.2f}x)"
                + (f", per CPU-s {row['in_process_cpu']:.2f}x" if "in_process_cpu" in row else "")
                if "in_process" in row else "") + "".join(
                f"; with {d}: {v:.2f}x" for d, v in row.get("ratio_by_detector", {}).items())
        elif "vs_one_worker" in row:
            ratio = f"in-process / 1 worker {row['vs_one_worker']:.2f}x ({row['vs_one_worker_wall']:.2f}x)"
        elif "speedup" in row:
            ratio = f"speed-up {row['speedup']:.2f}x ({row['speedup_wall']:.2f}x)"
        elif row.get("detector", "auto") != "auto":
            ratio = "in the peers' rows"
        else:
            ratio = "reference"
        lines.append(
            f"| {row['tool']} | {row.get('version') or '–'} | {row['corpus']} | {row['workers']} | {s['files']} | "
            f"{fmt_rate(s)}{steady_note(s)} | {s['files_per_s_per_core']:.1f} | {1000 * s['cpu_s_per_file_median']:.2f} | "
            f"{fmt_rss(s)} | {ratio} | {errs} | "
            + ("– | not a de-identifier | " if row.get("yardstick") else
               f"{leaks.get('files_with_leaks', '–')}/{leaks.get('output_files', '–')} | {per_field or 'none'} | ")
            + f"{text_s} | {nontext} |")
    lines += ["", "Leaks: the raw bytes of each output file and its path, case-folded, searched for its own input's "
              "planted values (name, ID, birth date, institution, referring physician, accession, in the forms they "
              "can take) and for any planted token. Each tool is scored on the corpus it ran on: the header tools "
              "leave burned-in text by design, and Presidio leaves the header.",
              "",
              "Text recall: share of ground-truth boxes with >= 95 % of their text pixels hidden (changed, or set to "
              "the box's fill value); PHI boxes in brackets. Non-text px changed: pixels > 3 px from every box.", "",
              "Where the leaks sit (field: element, files):", ""]
    for row in result["rows"]:
        locs = row.get("leaks", {}).get("leak_locations")
        if locs:
            lines.append(f"- {row['tool']} ({row['corpus']}): " + "; ".join(f"{k} {v}" for k, v in locs.items()))
        side = row.get("leaks", {}).get("sidecars_with_leaks")
        if side:
            lines.append(f"- {row['tool']} ({row['corpus']}) sidecar files with planted values: {', '.join(side)}")
    return "\n".join(lines) + "\n"


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio`` = deid (1 worker) files/s ÷ the tool's, on the same corpus (> 1: deid faster); ``ratio_wall``
    the same from process wall clock (interpreter start, imports and set-up included); ``ratio_cpu`` the
    tool's CPU seconds per file ÷ deid's (whole process trees); deid's multi-worker rows get ``speedup``
    over 1 worker instead. With an in-process deid row (``--workers 0``, one process like a peer's loop),
    the peers also get ``in_process`` (its files/s ÷ theirs), ``in_process_wall`` and ``in_process_cpu``."""
    ref = {r["corpus"]: r["speed"] for r in rows
           if r["key"] == OURS and r["workers"] == 1 and r.get("detector", "auto") == "auto"
           and "files_per_s_median" in r["speed"]}
    others = [r for r in rows if r["key"] == OURS and r.get("detector", "auto") != "auto" and "files_per_s_median" in r["speed"]]
    alone = {r["corpus"]: r["speed"] for r in rows
             if r["key"] == OURS and r["workers"] == 0 and "files_per_s_median" in r["speed"]}
    for r in rows:
        s, base = r["speed"], ref.get(r["corpus"])
        if base is None or "files_per_s_median" not in s or s is base or r in others:
            continue
        if r["key"] != OURS:  # the same ratio for deid's other text detectors
            r["ratio_by_detector"] = {o["detector"]: o["speed"]["files_per_s_median"] / s["files_per_s_median"]
                                      for o in others if o["corpus"] == r["corpus"]}
        if r["key"] == OURS and r["workers"] == 0:
            r["vs_one_worker"] = s["files_per_s_median"] / base["files_per_s_median"]
            r["vs_one_worker_wall"] = s["files_per_s_wall_median"] / base["files_per_s_wall_median"]
        elif r["key"] == OURS:
            r["speedup"] = s["files_per_s_median"] / base["files_per_s_median"]
            r["speedup_wall"] = s["files_per_s_wall_median"] / base["files_per_s_wall_median"]
        else:
            one = alone.get(r["corpus"])
            if one is not None:  # deid in one process, like the tool's loop
                r["in_process"] = one["files_per_s_median"] / s["files_per_s_median"]
                r["in_process_wall"] = one["files_per_s_wall_median"] / s["files_per_s_wall_median"]
                if s.get("cpu_s_per_file_median") and one.get("cpu_s_per_file_median"):
                    r["in_process_cpu"] = s["cpu_s_per_file_median"] / one["cpu_s_per_file_median"]
            r["ratio"] = base["files_per_s_median"] / s["files_per_s_median"]
            r["ratio_wall"] = base["files_per_s_wall_median"] / s["files_per_s_wall_median"]
            if "files_per_s_steady_median" in base:  # deid once its workers are up, against the tool's loop
                r["ratio_steady"] = base["files_per_s_steady_median"] / s["files_per_s_median"]
            if s.get("cpu_s_per_file_median") and base.get("cpu_s_per_file_median"):  # files per CPU-second
                r["ratio_cpu"] = s["cpu_s_per_file_median"] / base["cpu_s_per_file_median"]


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--header-files", type=int, default=1000)
    ap.add_argument("--pixel-files", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS),
                    help="peers to run (deid = pydicom's deid); this repo's deid always runs")
    ap.add_argument("--work", type=Path, default=WORK / "peers", help="corpora, outputs and logs")
    ap.add_argument("--venvs", type=Path, default=WORK / "venvs", help="one virtual environment per peer")
    ap.add_argument("--venv-python", default="python3", help="interpreter that creates the peer venvs")
    ap.add_argument("--deid-batch-size", type=int, default=None,
                    help="deid --batch-size (default: the CLI's own default; bench_header.py uses 64)")
    ap.add_argument("--deid-pixel-detectors", nargs="+", default=["auto", "deid-textseg"],
                    help="deid --detector values run on the pixel corpus (ratios are to auto)")
    ap.add_argument("--in-process", action="store_true",
                    help="also run deid in one process (--workers 0) on the header corpus, like the peers' loops")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.pixel_files <= 0:  # header corpus only
        args.peers = [p for p in args.peers if PEERS[p]["corpus"] != "pixel"]
        args.deid_pixel_detectors = []

    work = args.work.resolve()
    runs_dir = work / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    driver = work / "peer_driver.py"
    driver.write_text(DRIVER.lstrip())
    key = work / "bench.key"
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode())
    key.chmod(0o600)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    corpora = {"header": make_header_corpus(work / "corpus-header", args.header_files),
               **({"pixel": make_pixel_corpus(work / "corpus-pixel", args.pixel_files)} if args.pixel_files > 0 else {})}
    print(f"corpora ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    installed: dict[str, Path] = {}
    not_installed: dict[str, str] = {}
    versions: dict[str, dict[str, str | None]] = {}
    for peer in args.peers:
        print(f"installing {peer} ...", file=sys.stderr, flush=True)
        reason = install_peer(peer, args.venvs.resolve(), args.venv_python, work / "install.log")
        if reason:
            not_installed[peer] = reason
            print(f"  not installed: {reason}", file=sys.stderr, flush=True)
            continue
        installed[peer] = venv_python(args.venvs.resolve(), peer)
        versions[peer] = peer_versions(installed[peer], PEERS[peer]["dists"])

    import pydicom

    from deid_pipeline import __version__ as ours_version

    versions[OURS] = {"deid_pipeline": ours_version, "pydicom": pydicom.__version__}
    # (name, corpus, kind, param): the order of one repeat; repeats interleave tools to spread machine drift
    jobs: list[tuple[str, str, str, Any, str]] = [(OURS, "header", "ours", 1, "auto"), (OURS, "header", "ours", 2, "auto")]
    jobs += [(OURS, "header", "ours", 0, "auto")] if args.in_process else []
    jobs += [(OURS, "pixel", "ours", 1, d) for d in args.deid_pixel_detectors]
    jobs += [(p, PEERS[p]["corpus"], "peer", None, "auto") for p in installed]
    runs: dict[tuple[str, str, Any, str], list[dict[str, Any]]] = {}
    for r in range(args.repeats):
        for name, corpus, kind, param, det in jobs:
            index = corpora[corpus]
            slug = (f"{'ours' if kind == 'ours' else name}-{corpus}" + (f"-w{param}" if kind == "ours" else "")
                    + ("" if det == "auto" else f"-{det}"))
            out = work / "out" / slug
            out.parent.mkdir(parents=True, exist_ok=True)
            if kind == "ours":
                res = run_ours(Path(index["input"]), out, param, key, "none" if corpus == "header" else None,
                               runs_dir, f"{slug}-r{r}", args.deid_batch_size, det)
            else:
                res = run_peer(name, installed[name], driver, [f["path"] for f in index["files"]], out, runs_dir,
                               f"{slug}-r{r}")
            res["out"] = str(out)
            runs.setdefault((name, corpus, param, det), []).append(res)
            rate = res.get("files_per_s")
            print(f"[{r + 1}/{args.repeats}] {slug}: "
                  + (res["failed"] if "failed" in res else f"{rate:.1f} files/s, {res['errors']} errors, wall {res['wall_s']:.1f} s"),
                  file=sys.stderr, flush=True)

    rows: list[dict[str, Any]] = []
    for (name, corpus, param, det), rs in runs.items():
        cores = param if name == OURS else 1
        speed = summarise_runs(rs, cores)
        label = (name + ("" if det == "auto" else f" --detector {det}")) if name == OURS else PEERS[name]["label"]
        row: dict[str, Any] = {"tool": label, "key": name, "detector": det,
                               "version": (versions.get(name, {}).get("deid_pipeline") if name == OURS
                                           else versions.get(name, {}).get(PEERS[name]["dists"][0])),
                               "corpus": corpus, "workers": param if name == OURS else 1, "speed": speed}
        last = rs[-1]
        if PEERS.get(name, {}).get("yardstick"):
            row["yardstick"] = True
        elif "failed" not in last:
            out = Path(last["out"])
            mapping = json.loads(Path(last["map_file"]).read_text()) if last.get("map_file") else None
            row["leaks"] = count_leaks(corpora[corpus], out, mapping)
            if corpus == "pixel":
                row["text"] = score_text(corpora[corpus], out, mapping)
        rows.append(row)
    add_ratios(rows)
    for peer, reason in not_installed.items():
        rows.append({"tool": PEERS[peer]["label"], "key": peer, "corpus": PEERS[peer]["corpus"], "workers": 1,
                     "not_installed": reason, "speed": {}})

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "tesseract": (subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout
                                  .splitlines() or [None])[0] if shutil.which("tesseract") else None,
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "deid_batch_size": args.deid_batch_size,
        "repeats": args.repeats,
        "corpora": {"header": {"n": corpora["header"]["n"], "sources": bench_header.SOURCES,
                               "fields": list(header_forms(0))},
                    **({"pixel": {"n": corpora["pixel"]["n"], "seed": corpora["pixel"]["seed"], "kind": "ct 512x512 int16"}}
                       if "pixel" in corpora else {})},
        "versions": versions, "not_installed": not_installed,
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "rows": rows,
    }
    for row in rows:  # keep the JSON free of local paths
        for run in row.get("speed", {}).get("runs", []):
            run.pop("out", None)
            run.pop("map_file", None)
    md = markdown(result)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / free_stem(args.results, f"peers-{result['date'][:10]}")
    Path(f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{stem}.md").write_text(md)
    print(md)
    print(f"wrote {stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
