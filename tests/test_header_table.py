"""One generated test per row of PS3.15 Table E.1-1, for basic and every option overlay.

Rows come from the resolved profile (``Profile.table()``), never from /work/shared. A value is
planted at the top level and inside an item of a kept sequence; the outcome must be the one the
row's action code gives: X absent, Z present and empty, D present, non-empty and different,
K unchanged, U a different valid UID, C cleaned, compounds present-or-absent with the value gone.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

profile_mod = pytest.importorskip("deid_pipeline.profile")
if not hasattr(profile_mod, "load_profile") or getattr(profile_mod, "__file__", None) is None:
    pytest.skip("profile.py not available yet", allow_module_level=True)

from deid_pipeline import tags  # noqa: E402
from deid_pipeline.pseudonym import Pseudonymizer  # noqa: E402

from deid_pipeline.errors import FileError  # noqa: E402

load_profile = functools.lru_cache(maxsize=None)(profile_mod.load_profile)
KEY = b"t" * 32
FAMILY, GIVEN = "Qzxfam", "Qzxgiv"
OPTIONS = (
    "retain-uids", "retain-device-identity", "retain-institution-identity", "retain-patient-characteristics",
    "retain-long-full-dates", "retain-long-modified-dates", "clean-descriptors", "clean-graphics",
    "clean-structured-content", "retain-safe-private",
)
_TAG_RE = re.compile(r"^\(([0-9A-F]{4}),([0-9A-F]{4})\)$")
PLANT = {
    "AE": "QZXAE", "AS": "045Y", "CS": "QZXCS", "DA": "20170302", "DS": "1.5", "DT": "20170302101112",
    "IS": "7", "LO": f"CHEST {FAMILY}", "LT": f"CHEST {FAMILY}", "SH": f"CHEST {FAMILY}",
    "ST": f"CHEST {FAMILY}", "UC": f"CHEST {FAMILY}", "UT": f"CHEST {FAMILY}", "PN": f"{FAMILY}^{GIVEN}",
    "TM": "101112", "UI": "1.2.3.4.5.6", "UR": "http://qzx.example/x", "OB": b"QZXQ", "UN": b"QZXQ",
    "OW": b"QZXQ", "US": 1, "SS": 1, "UL": 1, "SL": 1, "FL": 1.5, "FD": 1.5,
}


def _rows(spec: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for row in load_profile(spec).table():
        m = _TAG_RE.match(str(row.get("tag", "")))
        if m is None:
            continue
        tag = int(m.group(1) + m.group(2), 16)
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command group / file meta: not in a stored data set (meta tested in test_header)
        out[tag] = str(row["action"])
    return out


def _cases() -> list[Any]:
    try:
        basic = _rows("basic")
    except Exception:  # noqa: BLE001 - collection must not crash while profile.py is in progress
        return []
    cases = [pytest.param("basic", tag, code, id=f"basic-{tag:08X}-{code}") for tag, code in basic.items()]
    for option in OPTIONS:
        spec = f"basic+{option}"
        try:
            rows = _rows(spec)
        except Exception:  # noqa: BLE001
            continue
        for tag, code in rows.items():
            if basic.get(tag) != code:
                cases.append(pytest.param(spec, tag, code, id=f"{option}-{tag:08X}-{code}"))
    return cases


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "LO"


def _value(vr: str) -> Any:
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
        return Sequence([item])
    return PLANT.get(vr, "QZX")


def _base() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.99"
    ds.PatientName = f"{FAMILY}^{GIVEN}"
    ds.PatientID = "QZX123456"
    return ds


def _check(code: str, tag: int, vr: str, before: Any, container: Dataset, top: bool) -> None:
    present = tag in container
    after = container[tag].value if present else None
    if code in ("K",):
        assert present
        if vr != "SQ":
            assert after == before
        return
    if code == "X":
        assert not present
        return
    pseudonymised = top and tag in (0x00100010, 0x00100020)
    if code == "Z":
        assert present
        assert pseudonymised or after in ("", None, b"", []) or (vr == "SQ" and len(after) == 0)
        return
    if code in ("D", "X/D"):
        assert present and after not in ("", None, b"")
        if vr != "SQ":
            assert after != before
        return
    if code in ("Z/D", "X/Z/D", "X/Z"):
        assert present and (vr == "SQ" or after != before)
        return
    if code == "U":
        assert present and str(after) != before and str(after).startswith("2.25.") and len(str(after)) <= 64
        return
    if code in ("X/Z/U*",):
        assert present and vr == "SQ"
        ref = after[0]
        assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
        assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        return
    if code == "C":
        if vr == "SQ" or vr in ("OB", "OW", "US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "AS"):
            return
        if present:
            assert FAMILY.lower() not in str(after).lower()
            if vr in ("DA", "DT"):
                assert after != before
        return
    pytest.fail(f"unexpected action {code}")


@pytest.mark.parametrize(("spec", "tag", "code"), _cases())
def test_row(spec: str, tag: int, code: str) -> None:
    profile = load_profile(spec)
    vr = _vr(tag)
    group = tag >> 16
    if 0x5000 <= group <= 0x60FF and (tag & 0xFFFF) in (0x3000,):
        vr = "OW"
    if tag in tags.PROTECTED_KEYWORDS or vr == "AT":
        pytest.skip("protected")
    if tag == tags.ENCAPSULATED_DOCUMENT and profile.settings.encapsulated_documents == "quarantine":
        ds = _base()
        ds.add_new(tag, vr, _value(vr))
        with pytest.raises(FileError):
            tags.deidentify_header(ds, profile, Pseudonymizer(KEY))
        return
    # top level
    ds = _base()
    before = _value(vr)
    ds.add_new(tag, vr, before)
    tags.deidentify_header(ds, profile, Pseudonymizer(KEY))
    _check(code, tag, vr, before, ds, top=True)
    # inside an item of a kept sequence (Referenced Series Sequence is kept by every layer)
    ds = _base()
    item = Dataset()
    item.add_new(tag, vr, _value(vr))
    parent = _kept_parent(profile)
    ds.add_new(parent, "SQ", Sequence([item]))
    tags.deidentify_header(ds, profile, Pseudonymizer(KEY))
    assert parent in ds and len(ds[parent].value) == 1
    _check(code, tag, vr, _value(vr), ds[parent].value[0], top=False)


def _kept_parent(profile: Any) -> int:
    """A public sequence the profile keeps (its items are walked)."""
    for tag, keyword in ((0x00082218, "AnatomicRegionSequence"), (0x00089215, "DerivationCodeSequence"),
                         (0x00400260, "PerformedProtocolCodeSequence")):
        ref = profile_mod.ElementRef(tag=tag, vr="SQ", keyword=keyword, private_creator=None, depth=0, parents=())
        if tags.rule_for(profile, ref).action == "K":
            return tag
    pytest.skip("no kept sequence to nest in")
