#!/usr/bin/env python
"""Generate deid's PS3.15 header profiles from the standard's own tables.

Reads DICOM PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes), Table E.1-1a
(action codes) and Table E.3.10-1 (safe private attributes) as JSON, checks each table's
``content_sha256``, copies them byte for byte into ``<out>/standard/`` under edition-free names and
writes ``<out>/profiles/basic.yaml`` plus one overlay per option column. The output is a pure
function of the input tables and pydicom's CID 7050 meanings, so running it again on the copies it
made reproduces every file byte for byte (``tests/test_profiles.py`` checks this).

Usage::

    python scripts/gen_profiles.py                       # regenerate from configs/standard itself
    python scripts/gen_profiles.py --source DIR          # import a new edition (e.g. /work/shared/data/standard)
    python scripts/gen_profiles.py --out /tmp/configs    # write somewhere else
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydicom import datadict
from pydicom.sr.codedict import codes

REPO = Path(__file__).resolve().parent.parent

#: (file name written under standard/, glob that finds the source table in --source)
TABLES = {
    "E.1-1": ("table_E.1-1.json", "*table_E.1-1.json"),
    "E.1-1a": ("table_E.1-1a.json", "*table_E.1-1a*.json"),
    "E.3.10-1": ("table_E.3.10-1.json", "*table_E.3.10-1*.json"),
}

#: The row of Table E.1-1 that is not an attribute but a rule for all private attributes; it maps to
#: ``settings.private`` instead of a row (X -> "remove", the option's C -> "retain-safe").
PRIVATE_ROW_TAG = "(gggg,eeee) where gggg is odd"

BASIC_CODE = "BasicApplicationConfidentialityProfile"

#: overlay name -> (Table E.1-1 option column, pydicom CID 7050 keyword, settings the option implies)
OPTIONS: dict[str, tuple[str, str, dict[str, str]]] = {
    "retain-safe-private": ("retain_safe_private", "RetainSafePrivateOption", {"private": "retain-safe"}),
    "retain-uids": ("retain_uids", "RetainUidsOption", {}),
    "retain-device-identity": ("retain_device_identity", "RetainDeviceIdentityOption", {}),
    "retain-institution-identity": ("retain_institution_identity", "RetainInstitutionIdentityOption", {}),
    "retain-patient-characteristics": ("retain_patient_characteristics", "RetainPatientCharacteristicsOption", {}),
    "retain-long-full-dates": (
        "retain_longitudinal_full_dates",
        "RetainLongitudinalTemporalInformationFullDatesOption",
        {},
    ),
    "retain-long-modified-dates": (
        "retain_longitudinal_modified_dates",
        "RetainLongitudinalTemporalInformationModifiedDatesOption",
        {"dates": "shift"},
    ),
    "clean-descriptors": ("clean_descriptors", "CleanDescriptorsOption", {}),
    "clean-structured-content": ("clean_structured_content", "CleanStructuredContentOption", {}),
    "clean-graphics": ("clean_graphics", "CleanGraphicsOption", {"graphics": "clean"}),
}

#: What ``basic`` declares beyond the table (see configs/standard/README.md for the reasons).
BASIC_SETTINGS: dict[str, Any] = {
    "pixels": "triage",
    "pixel_mode": "all-text",
    "dates": "remove",
    "unlisted_public": "keep",
    "keep_list": [],
    "private": "remove",
    "graphics": "remove",
    "encapsulated_documents": "quarantine",
    "audio": "quarantine",
    "max_age_years": None,
}

_TAG_RE = re.compile(r"\(([0-9A-Fa-fx]{4}),([0-9A-Fa-fx]{4})\)")


def _q(value: Any) -> str:
    """A YAML scalar: JSON's double-quoted strings are valid YAML, and never ambiguous."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_q(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _load_table(source: Path, key: str) -> tuple[Path, dict[str, Any]]:
    _, pattern = TABLES[key]
    found = sorted(source.glob(pattern))
    if key == "E.1-1":  # "*table_E.1-1.json" must not pick up E.1-1a
        found = [p for p in found if "E.1-1a" not in p.name]
    if len(found) != 1:
        raise SystemExit(f"expected one file matching {pattern} in {source}, found {len(found)}")
    path = found[0]
    data = json.loads(path.read_text(encoding="utf-8"))
    canonical = json.dumps(data["rows"], sort_keys=True, separators=(",", ":")).encode()
    if hashlib.sha256(canonical).hexdigest() != data["content_sha256"]:
        raise SystemExit(f"{path.name}: rows do not match their content_sha256")
    return path, data


def _code(keyword: str) -> list[str]:
    code = getattr(codes.DCM, keyword)
    return [code.scheme_designator, code.value, code.meaning]


def _tag_sort_key(tag: str) -> str:
    return tag.upper().replace("X", "0")


def _row_line(tag: str, action: str, name: str, retired: bool) -> str:
    fields = [f"tag: {_q(tag)}", f"action: {_q(action)}"]
    m = _TAG_RE.fullmatch(tag)
    if m and "x" not in tag.lower():
        keyword = datadict.keyword_for_tag(int(m.group(1) + m.group(2), 16))
        if keyword:
            fields.append(f"keyword: {_q(keyword)}")
    fields.append(f"name: {_q(name)}")
    if retired:
        fields.append("retired: true")
    return "  - {" + ", ".join(fields) + "}"


def _header(edition: str, sha: str, what: str) -> list[str]:
    return [
        f"# GENERATED by scripts/gen_profiles.py from DICOM PS3.15 {edition} Table E.1-1 -- do not edit;",
        "# change the generator or the tables in configs/standard/ and run it again.",
        f"# {what}",
        f"# Table content_sha256 {sha}.",
        f"# Table content: DICOM PS3.15 {edition}, © NEMA.",
    ]


def render_basic(table: dict[str, Any]) -> str:
    edition, sha = table["edition"], table["content_sha256"]
    rows = [r for r in table["rows"] if r["tag"] != PRIVATE_ROW_TAG]
    private = [r for r in table["rows"] if r["tag"] == PRIVATE_ROW_TAG]
    assert len(private) == 1 and private[0]["basic_profile"] == "X", "the private-attributes row changed"
    lines = _header(edition, sha, "Basic Application Level Confidentiality Profile: one row per attribute.")
    lines += [
        "# Table E.1-1 has one row that is a rule, not an attribute: 'Private Attributes (gggg,eeee) where",
        "# gggg is odd' = X. It is settings.private: remove. Every other row is below, retired ones included.",
        "# Attributes no row lists, and private attributes, follow the settings (deid_pipeline/profile.py).",
        "name: basic",
        f"version: {_q(edition)}",
        "kind: profile",
        f"description: {_q(f'DICOM PS3.15 {edition} Basic Application Level Confidentiality Profile (Table E.1-1)')}",
        f"standard: {{edition: {_q(edition)}, table: \"PS3.15 Table E.1-1\", content_sha256: {_q(sha)}}}",
        "codes:",
        f"  - {_q(_code(BASIC_CODE))}",
        "settings:",
    ]
    lines += [f"  {k}: {_q(v)}" for k, v in BASIC_SETTINGS.items()]
    lines.append("rows:")
    for r in sorted(rows, key=lambda r: (_tag_sort_key(r["tag"]), r["tag"])):
        lines.append(_row_line(r["tag"], r["basic_profile"], r["name"], r["retired"]))
    return "\n".join(lines) + "\n"


def render_option(table: dict[str, Any], name: str) -> str:
    column, code_keyword, settings = OPTIONS[name]
    edition, sha = table["edition"], table["content_sha256"]
    code = _code(code_keyword)
    rows = [r for r in table["rows"] if column in r["options"]]
    lines = _header(edition, sha, f"{code[2]} (column '{column}'): the rows it changes in basic.")
    body = [r for r in rows if r["tag"] != PRIVATE_ROW_TAG]
    for r in rows:
        if r["tag"] == PRIVATE_ROW_TAG:
            lines.append(
                f"# Table row 'Private Attributes (gggg,eeee) where gggg is odd' = {r['options'][column]}: "
                "settings.private: retain-safe"
            )
            lines.append("# (keep the private attributes of Table E.3.10-1, configs/standard/table_E.3.10-1.json).")
    lines += [
        f"name: {name}",
        f"version: {_q(edition)}",
        "kind: option",
        f"description: {_q(f'DICOM PS3.15 {edition} {code[2]}')}",
        f"standard: {{edition: {_q(edition)}, table: \"PS3.15 Table E.1-1\", column: {_q(column)}}}",
        "extends: basic",
        "codes:",
        f"  - {_q(code)}",
    ]
    if settings:
        lines.append("settings:")
        lines += [f"  {k}: {_q(v)}" for k, v in settings.items()]
    lines.append("rows:" if body else "rows: []")
    for r in sorted(body, key=lambda r: (_tag_sort_key(r["tag"]), r["tag"])):
        lines.append(_row_line(r["tag"], r["options"][column], r["name"], r["retired"]))
    return "\n".join(lines) + "\n"


def render_readme(tables: dict[str, dict[str, Any]]) -> str:
    e11 = tables["E.1-1"]
    lines = [
        "# configs/standard — tables from DICOM PS3.15 (GENERATED by scripts/gen_profiles.py; do not edit)",
        "",
        f"Edition **{e11['edition']}**. Table content: DICOM PS3.15 {e11['edition']}, © NEMA. The DICOM Standard is",
        "published free of charge at dicomstandard.org; keep this acknowledgement when redistributing.",
        "",
        "| file | table | edition | rows | content_sha256 |",
        "|---|---|---|---|---|",
    ]
    for key, (fname, _) in TABLES.items():
        t = tables[key]
        lines.append(f"| `{fname}` | {t['table']} | {t['edition']} | {len(t['rows'])} | `{t['content_sha256']}` |")
    lines += [
        "",
        "Source: the JSON transcriptions of NEMA's `part15` HTML made by pymedphys",
        "(`pymedphys/pymedphys: lib/pymedphys/_dicom/deidentify/_standard/`), checked here against each file's",
        "`content_sha256` (sha256 of `json.dumps(rows, sort_keys=True, separators=(',', ':'))`). Provenance of",
        "the copies deid imported: `/work/shared/data/standard/SOURCE.md` at generation time.",
        "",
        "`configs/profiles/basic.yaml` and the ten option overlays are generated from `table_E.1-1.json`;",
        "`deid_pipeline/profile.py` reads `table_E.3.10-1.json` (safe private attributes) at load time.",
        "Nothing reads outside `configs/` at run time.",
        "",
        "## Action codes (Table E.1-1a) and deid's reading of them",
        "",
    ]
    for row in tables["E.1-1a"]["rows"]:
        lines.append(f"- `{row['code']}`: {row['description']}")
    lines += [
        "",
        "deid adds no action codes of its own. The compounds are stored as written; the header stage",
        "(`deid_pipeline/actions.py`) resolves them. Table E.1-1's 'Private Attributes' row is",
        "`settings.private` (X -> `remove`; Retain Safe Private's C -> `retain-safe`: keep the attributes",
        "of Table E.3.10-1, remove the rest).",
        "",
        "## What `basic` declares beyond the table",
        "",
        "- `pixels: triage`, `pixel_mode: all-text`: Basic does not address pixel data (PS3.15 E.2), so",
        "  `basic` does not claim Clean Pixel Data (113101); it still redacts all text in the images the",
        "  triage picks (burned-in annotation likely). `safe-harbor` scans every image.",
        "- `dates: remove`: D and C on DA/DT/TM remove the information (dummy / empty).",
        "- `unlisted_public: keep`: the standard lists what must go; other public attributes are kept,",
        "  with exceptions deid makes in code, which `deid inspect` names: a UID that names an instance",
        "  (Multi-frame Source SOP Instance UID, Target Frame of Reference UID, Retrieve Location UID)",
        "  is replaced as the listed UIDs are, the same keyed UID for the same original (kept under",
        "  `retain-uids`; UIDs that name a kind, such as SOP classes, transfer syntaxes and coding",
        "  schemes, stay); locators of the site's copy or of a person (Retrieve URL/URI, Storage URL, Pixel",
        "  Data Provider URL, file and folder access URIs, Contact URI and Display Name) are removed, as",
        "  the table removes Retrieve AE Title (`default:unlisted-locator`); any person's name (PN) is",
        "  removed (`default:unlisted-person-name`); a date (DA, DT, TM: Study Update DateTime) is",
        "  treated as the listed dates are (removed, shifted or cut to the year; kept only where the",
        "  profile keeps the Study Date); kept free text loses the file's own identifying values (T). A",
        "  row or the keep list that names such an element keeps it.",
        "- `private: remove`, `graphics: remove` (curves 50xx, overlays 60xx), as the table says.",
        "- `encapsulated_documents: quarantine`: the table's D for Encapsulated Document would leave a",
        "  useless dummy; a PDF/CDA may hold PHI anywhere, so such files are not written.",
        "- `audio: quarantine`: a sound recording (Basic Voice Audio, General Audio Waveform, a",
        "  waveform of mu-law or A-law samples in any object, a video whose stream carries sound) says",
        "  names aloud and a voice identifies; no stage listens to one, so such files are not written",
        "  (reason `audio`).",
        "- `max_age_years: null`: Basic removes Patient's Age; no cap unless a profile sets one.",
        "",
    ]
    return "\n".join(lines)


def generate(source: Path, out: Path) -> list[Path]:
    """Write standard/ copies, README and profiles under ``out``; returns the files written."""
    tables: dict[str, dict[str, Any]] = {}
    written: list[Path] = []
    (out / "standard").mkdir(parents=True, exist_ok=True)
    (out / "profiles").mkdir(parents=True, exist_ok=True)
    for key, (fname, _) in TABLES.items():
        path, data = _load_table(source, key)
        tables[key] = data
        dest = out / "standard" / fname
        if path.resolve() != dest.resolve():
            dest.write_bytes(path.read_bytes())
        written.append(dest)
    editions = {t["edition"] for t in tables.values()}
    if len(editions) != 1:
        raise SystemExit(f"tables come from different editions: {sorted(editions)}")
    outputs = {out / "standard" / "README.md": render_readme(tables)}
    outputs[out / "profiles" / "basic.yaml"] = render_basic(tables["E.1-1"])
    for name in OPTIONS:
        outputs[out / "profiles" / f"{name}.yaml"] = render_option(tables["E.1-1"], name)
    for dest, text in outputs.items():
        dest.write_bytes(text.encode("utf-8"))
        written.append(dest)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO / "configs" / "standard", help="folder with the tables")
    parser.add_argument("--out", type=Path, default=REPO / "configs", help="configs folder to write into")
    args = parser.parse_args(argv)
    for path in generate(args.source, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
