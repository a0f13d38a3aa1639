"""``deid verify``: evidence that a run left nothing behind.

For every written output, against its input (found through the private journal):
1. header: no element that the profile removes, replaces or cleans still holds its original value,
   nothing the profile removes (action X) is present, no private element outside the retained set;
2. bytes: none of the input's identifying values, in the formats they take, appears in the output
   file's bytes (header always; pixel bytes for long terms) or in its path;
3. pixels: where ``all-text`` applied, the detector run again on the redacted frames finds no text
   outside the redacted boxes;
4. accounting: every input has exactly one record, each output's sha256 matches its record, no
   output lacks a record, and the manifest's hash chain holds.
Findings name tags, record lines and categories, never values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from .discover import walk_inputs
from .manifest import JOURNAL_NAME, MANIFEST_NAME, RUN_NAME, atomic_write_json, verify_chain

log = logging.getLogger(__name__)

# Elements deid itself writes or must keep for the image to decode; checked elsewhere.
_WRITTEN_BY_DEID = {
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "LongitudinalTemporalInformationModified", "BurnedInAnnotation", "PatientID", "PatientName",
    "CodeValue", "CodingSchemeDesignator", "CodeMeaning", "SpecificCharacterSet",
}
_HEADER_MIN_TERM = 4
_PIXEL_MIN_TERM = 8
_OWN_FILES = {MANIFEST_NAME, RUN_NAME, "verify.json", "report.html"}


@dataclass(frozen=True)
class Finding:
    """One problem: the manifest line it concerns, a stable kind, and a value-free detail."""

    line: int
    kind: str
    detail: str


def _header_bytes(path: str) -> bytes:
    """The output's bytes up to its pixel data: what a header search must cover."""
    import io

    head = pydicom.dcmread(path, stop_before_pixels=True)
    buf = io.BytesIO()
    head.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _encodings(term: str) -> set[bytes]:
    out = set()
    for variant in {term, term.upper(), term.lower()}:
        for enc in ("utf-8", "latin-1", "utf-16-le"):
            try:
                out.add(variant.encode(enc))
            except UnicodeEncodeError:
                pass
    return out


def _values(ds: Dataset) -> dict[str, Any]:
    """Tag path -> value for every non-sequence element (nested included)."""
    from .tags import walk

    out: dict[str, Any] = {}

    def visit(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if elem.VR == "SQ":
            return True
        out[path] = elem.value
        return False

    walk(ds, visit)
    return out


def check_pair(input_path: str, output_path: str, line: int, pixel: dict[str, Any], profile: Any, rescan: bool, device: str) -> list[Finding]:
    """All checks of one written output against its input. Pure apart from reading both files."""
    from .tags import collect_phi_terms, date_variants, rule_for, walk

    findings: list[Finding] = []
    year_mode = profile.settings.dates == "year"
    src = pydicom.dcmread(input_path, force=True)
    out_bytes = Path(output_path).read_bytes()
    out = pydicom.dcmread(output_path)
    originals = _values(src)

    def visit(container: Dataset, elem: Any, ref: Any, path: str) -> bool:
        if elem.VR == "SQ":
            return True
        if ref.keyword in _WRITTEN_BY_DEID or ref.tag == 0x7FE00010:
            return False
        rule = rule_for(profile, ref)
        if ref.private_creator is not None and rule.action != "K":
            findings.append(Finding(line, "private-element-kept", path))
        elif rule.action == "X" and elem.value not in (None, "", b"", []):
            findings.append(Finding(line, "removed-attribute-present", f"{path} {ref.keyword}".strip()))
        elif rule.action == "C" and (elem.VR == "AS" or (elem.VR in ("DA", "DT", "TM") and year_mode)):
            pass  # ages under the cap and year-only dates are what C keeps
        elif rule.action not in ("K",) and path in originals and elem.value not in (None, "", b"", []):
            if str(elem.value) == str(originals[path]) and elem.VR not in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS", "CS"):
                findings.append(Finding(line, "original-value-kept", f"{path} {ref.keyword} action {rule.action}".strip()))
        return False

    walk(out, visit)
    terms = set(collect_phi_terms(src, profile))
    if year_mode:  # a date on 1 January survives year reduction unchanged, legitimately
        for value in _values(out).values():
            text = str(value)
            if len(text) >= 8 and text[:8].isdigit() and text[4:8] == "0101":
                terms -= date_variants(text[:8])
    header = _header_bytes(output_path).lower()
    rel_path = output_path.lower()
    for term in sorted(terms):
        if len(term) < _HEADER_MIN_TERM:
            continue
        hits = [enc for enc in _encodings(term) if enc.lower() in header]
        if hits:
            findings.append(Finding(line, "identifying-value-in-header", f"a {len(term)}-character identifying value"))
        elif len(term) >= _PIXEL_MIN_TERM and any(enc in out_bytes for enc in _encodings(term)):
            findings.append(Finding(line, "identifying-value-in-bytes", f"a {len(term)}-character identifying value"))
        if term.lower() in rel_path:
            findings.append(Finding(line, "identifying-value-in-path", f"a {len(term)}-character identifying value"))
    if rescan and pixel.get("scanned") and pixel.get("mode") == "all-text":
        findings += _rescan(out, line, pixel, device)
    return findings


def _rescan(ds: Dataset, line: int, pixel: dict[str, Any], device: str) -> list[Finding]:
    from .detect import get_detector
    from .pixels import decode_frames
    from .scan import scan_frames

    frames = decode_frames(ds)
    regions = scan_frames(ds, frames, get_detector("auto", device), mode="all-text")
    # After all-text redaction the same detector must find nothing at all: text put back inside a
    # redacted box, or left beside one, is a leak either way.
    return [Finding(line, "text-remaining", f"frame {i} box {r.as_list()}") for i, fr in enumerate(regions) for r in fr]


def _check_batch(items: list[tuple[str, str, int, dict[str, Any]]], profile: Any, rescan: bool, device: str) -> list[Finding]:
    out: list[Finding] = []
    for inp, outp, line, pixel in items:
        try:
            out += check_pair(inp, outp, line, pixel, profile, rescan, device)
        except Exception as exc:
            out.append(Finding(line, "check-failed", type(exc).__name__))
    return out


def _chunks(items: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def verify_run(
    output_dir: Path,
    input_dir: Path,
    private_dir: Path,
    key: bytes | None,
    profile_spec: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    rescan: bool = True,
    device: str = "auto",
) -> dict[str, Any]:
    """Run every check; returns the report (also written to ``OUTPUT/verify.json``)."""
    from .profile import load_profile

    findings: list[Finding] = [Finding(p.line, "chain-broken", p.problem) for p in verify_chain(output_dir, key)]
    run_info = json.loads((output_dir / RUN_NAME).read_text(encoding="utf-8"))
    profile = load_profile(profile_spec or run_info["profile"]["name"])
    man = [json.loads(x) for x in (output_dir / MANIFEST_NAME).read_text(encoding="utf-8").splitlines() if x]
    jour = [json.loads(x) for x in (private_dir / JOURNAL_NAME).read_text(encoding="utf-8").splitlines() if x]
    if len(man) != len(jour):
        findings.append(Finding(0, "journal-mismatch", f"{len(man)} manifest records, {len(jour)} journal lines"))
    per_input = Counter(j["input"] for j in jour)
    for cand in walk_inputs(input_dir):
        n = per_input.pop(cand.rel, 0)
        if n != 1:
            findings.append(Finding(0, "input-records", f"an input has {n} records"))
    if per_input:
        findings.append(Finding(0, "records-without-input", f"{len(per_input)} journal entries name no current input"))
    pairs: list[tuple[str, str, int, dict[str, Any]]] = []
    recorded: set[str] = set()
    for i, (rec, j) in enumerate(zip(man, jour), start=1):
        if rec["status"] != "written":
            continue
        if rec.get("output_path") in recorded:
            continue
        recorded.add(rec["output_path"])
        outp = output_dir / rec["output_path"]
        if not outp.exists():
            findings.append(Finding(i, "output-missing", "written record without its file"))
            continue
        if hashlib.sha256(outp.read_bytes()).hexdigest() != rec["output_sha256"]:
            findings.append(Finding(i, "output-sha256-mismatch", "output differs from its record"))
        pairs.append((str(input_dir / j["input"]), str(outp), i, rec.get("pixel") or {}))
    for p in output_dir.rglob("*"):
        rel = p.relative_to(output_dir).as_posix()
        if p.is_file() and rel not in recorded and rel not in _OWN_FILES:
            findings.append(Finding(0, "output-without-record", "a file in OUTPUT that no record names"))
    if workers == 0:
        for batch in _chunks(pairs, 16):
            findings += _check_batch(batch, profile, rescan, device)
    else:
        from distributed import as_completed

        from .batch import dask_client

        with dask_client(workers, scheduler, device) as client:
            futs = [client.submit(_check_batch, b, profile, rescan, device, pure=False) for b in _chunks(pairs, 16)]
            for fut in as_completed(futs):
                findings += fut.result()
    findings.sort(key=lambda f: (f.line, f.kind, f.detail))
    report = {
        "schema_version": "1.0",
        "checked_outputs": len(pairs),
        "records": len(man),
        "findings": [asdict(f) for f in findings],
        "counts": dict(Counter(f.kind for f in findings)),
        "ok": not findings,
        "rescan": rescan,
        "profile": {"name": profile.name, "version": profile.version, "sha256": profile.sha256},
    }
    atomic_write_json(output_dir / "verify.json", report)
    return report
