"""Clean (C) asks presidio only about text one of its recognizers could match, and imports it without
torch: a header-only run that cleans text neither waits for presidio's import (3 s here) where no value
needs it nor carries torch (185 MiB a worker) where one does."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from deid_pipeline import clean

from support import read_manifest, write_key

#: One value of each kind the recognizers find (phone, e-mail, the dates presidio knows and those deid
#: adds, SSN, URL, IPv4, IPv6 short and full, with and without digits, a labelled ID): each passes the prefilter and is found.
FOUND = ["call 555-201-4567", "mail jo.doe@example.com", "seen 3/4/2020", "on 12-Nov-2019", "Nov 12, 2019",
         "3 March", "May 3", "Jan '19", "SSN 123-45-6789", "see www.hospital.org", "host hospital.com",
         "at 10.1.2.3", "at fe80::1", "at abcd:ef01::cafe", "at abcd:ef01:2345:6789:abcd:ef01:2345:6789",
         "at dead:beef:cafe:face:abcd:ef:fe:ca", "MRN: A12", "2019-11-12T10:22"]

#: Words and separators that come near what the recognizers find, without a digit
_TOKENS = ["May", "March", "Nov", "Sept", "of", "the", "MRN", "ssn", "id no", "case #", "www", "hospital", "com",
           "org", "uk", "fe", "cafe", "dead", "beef", "abcd", "Dr", "St", "e.g", "i.e", "mm", "T", "Z", "x", "IV"]
_SEPARATORS = [" ", ".", ":", "/", "-", ",", "'", "(", ")", "::", ". ", ": ", "\n", "#", "+", "_", "\u00a0", "\u00e9"]
_TEXT_VRS = ("LO", "LT", "ST", "UT", "SH", "PN", "DA", "TM", "DT", "AS", "CS", "UC")
NEAR_MISSES = st.lists(st.sampled_from(_TOKENS + _SEPARATORS), max_size=14).map("".join)


def _found(text: str) -> list:
    engine = clean._analyzer()
    return engine.analyze(text=text, language="en", entities=list(clean.PRESIDIO_ENTITIES))


@pytest.mark.parametrize("text", FOUND)
def test_what_the_recognizers_find_comes_through_the_prefilter(text: str) -> None:
    assert clean.may_match_a_pattern(text)
    assert [r for r in _found(text) if r.score >= clean.PRESIDIO_MIN_SCORE], text
    assert clean.clean_text(text, frozenset()) != text


@settings(max_examples=300, deadline=None)
@given(NEAR_MISSES)
def test_text_the_prefilter_passes_over_holds_nothing_presidio_finds(text: str) -> None:
    """At any score: the prefilter stands for every recognizer, not only for what clean keeps of them."""
    assume(not clean.may_match_a_pattern(text))
    assert _found(text) == []


def test_no_text_value_of_the_bundled_files_is_cleaned_differently() -> None:
    """Every text value of pydicom's bundled files (about 2,500): those the prefilter passes over hold
    nothing presidio finds, so clean gives each the same value it gave before the prefilter."""
    values = []
    for path in sorted(glob.glob(os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "*.dcm"))):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            values += [str(e.value) for e in ds.iterall() if e.VR in _TEXT_VRS and e.value]
        except Exception:  # noqa: S112 - some bundled files are broken on purpose
            continue
    passed_over = [v for v in values if not clean.may_match_a_pattern(v)]
    assert len(values) > 1000 and 0 < len(passed_over) < len(values)
    assert [v for v in passed_over if _found(v)] == []


_PROBE = """
import json, sys
from deid_pipeline import clean
report = {"plain": clean.clean_text("CT chest without contrast: follow-up", frozenset())}
report["presidio_after_plain"] = "presidio_analyzer" in sys.modules
report["phone"] = clean.clean_text("call 555-201-4567 today", frozenset())
report["presidio_after_phone"] = "presidio_analyzer" in sys.modules
report["torch_after_phone"] = "torch" in sys.modules
import torch
report["torch_works"] = float(torch.ones(3).sum())
report["phone_again"] = clean.clean_text("call 555-201-4567 today", frozenset())
print(json.dumps(report))
"""


def test_presidio_is_imported_for_the_first_value_that_needs_it_and_without_torch() -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(proc.stdout)
    assert report["plain"] == "CT chest without contrast: follow-up"
    assert report["presidio_after_plain"] is False
    assert report["presidio_after_phone"] is True and report["phone"] == "call today"
    assert report["torch_after_phone"] is False
    assert report["torch_works"] == 3.0 and report["phone_again"] == "call today"


_RUN = """
import json, sys
from deid_pipeline.cli.main import main
sys.argv = ["deid", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "presidio": "presidio_analyzer" in sys.modules, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("description", ["CT chest without contrast", "Follow-up, ext 555-201-4567"])
def test_a_header_run_that_cleans_text_imports_presidio_only_for_what_needs_it(tmp_path: Path,
                                                                                description: str) -> None:
    """``basic+clean-descriptors`` in one process over CT_small with a planted name and, in one case, a
    phone number: the name goes either way; presidio is imported only for the phone number, torch never."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    family = str(ds.PatientName.family_name)
    ds.StudyDescription = f"{description} of {family}"
    for elem in list(ds.iterall()):  # no other value presidio could match: the description decides
        if elem.VR in ("LO", "LT", "ST", "UT", "SH") and elem.tag != 0x00081030 and elem.value:
            elem.value = "x"
    inp = tmp_path / "in"
    inp.mkdir()
    ds.save_as(inp / "ct.dcm")
    out = tmp_path / "out"
    key = write_key(tmp_path / "k", b"presidio-probe-key-0123456789abcdef012345")
    proc = subprocess.run([sys.executable, "-c", _RUN, "run", str(inp), str(out), "--workers", "0", "--pixels", "none",
                           "--profile", "basic+clean-descriptors", "--key-file", str(key), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc.stderr[-2000:]
    written = pydicom.dcmread(out / read_manifest(out)[0]["output_path"])
    assert family.lower() not in str(written.StudyDescription).lower()
    assert "555" not in str(written.StudyDescription)
    assert report["presidio"] is ("555" in description)
    assert report["torch"] is False


def test_presidio_answers_a_repeated_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value files repeat (a contrast agent "ISOVUE300/100", a protocol comment) is analysed once per
    process and cleaned the same each time; a long one (a report) is analysed every time, not kept."""
    calls: list[int] = []
    analyzed = clean._analyzed_spans

    def counting(text: str) -> tuple[tuple[int, int], ...]:
        calls.append(len(text))
        return analyzed(text)

    monkeypatch.setattr(clean, "_analyzed_spans", counting)
    clean._remembered_spans.cache_clear()
    value = "ISOVUE300/100 given, call 555-201-4567"
    first = [clean.clean_text(value, frozenset()) for _ in range(3)]
    assert first == ["ISOVUE300/100 given, call"] * 3 and calls == [len(value)]
    report = "Seen 3/4/2020. " + "No change. " * 100
    assert len(report) > clean._REMEMBERED_LENGTH
    assert clean.clean_text(report, frozenset()) == clean.clean_text(report, frozenset()) != report
    assert calls == [len(value), len(report), len(report)]
    clean._remembered_spans.cache_clear()
