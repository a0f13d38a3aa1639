"""Header de-identification: leaks, determinism, reference integrity, dates, ages, markers, protection."""

from __future__ import annotations

import io
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


# --------------------------------------------------------------------------- profiles


def _install_fake_profile_module() -> None:
    """Until profile.py lands: a stand-in module with the contract's ElementRef / Rule / load_profile."""

    @dataclass(frozen=True)
    class ElementRef:
        tag: int
        vr: str
        keyword: str
        private_creator: str | None
        depth: int
        parents: tuple[int, ...]

    @dataclass(frozen=True)
    class Rule:
        action: str
        origin: str

    table = {
        "PatientName": "Z", "PatientID": "Z/D", "PatientBirthDate": "Z", "PatientSex": "Z",
        "PatientAge": "X", "OtherPatientNames": "X", "InstitutionName": "X/Z/D", "StudyDate": "Z",
        "ContentDate": "Z/D", "AcquisitionDateTime": "X/Z/D", "StudyTime": "Z", "AccessionNumber": "Z",
        "ReferringPhysicianName": "Z", "StudyDescription": "X", "ImageComments": "X",
        "SOPInstanceUID": "U", "StudyInstanceUID": "U", "SeriesInstanceUID": "U",
        "FrameOfReferenceUID": "U", "ReferencedSOPInstanceUID": "U", "ReferencedImageSequence": "X/Z/U*",
        "PersonName": "D", "RequestAttributesSequence": "X", "OperatorsName": "X/Z/D",
    }

    class Settings(types.SimpleNamespace):
        def model_copy(self, update: dict[str, Any]) -> "Settings":
            return Settings(**{**vars(self), **update})

    class Profile:
        def __init__(self, name: str) -> None:
            self.name, self.version = name, "0"
            self.codes = (("DCM", "113100", "Basic Application Confidentiality Profile"),)
            self.settings = Settings(
                dates="shift", unlisted_public="remove-text", keep_list=(), private="remove",
                graphics="remove", encapsulated_documents="quarantine", max_age_years=89,
                pixels="all", pixel_mode="all-text",
            )

        def rule_for(self, ref: ElementRef) -> Rule:
            if ref.tag >> 16 & 1:
                return Rule("X", "fake:private")
            if ref.keyword in table:
                return Rule(table[ref.keyword], "fake:" + ref.keyword)
            if ref.vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "DA", "DT", "TM", "UN", "CS"):
                return Rule("X", "default:unlisted-text")
            return Rule("K", "default:unlisted")

    mod = types.ModuleType("deid_pipeline.profile")
    mod.ElementRef, mod.Rule, mod.Profile = ElementRef, Rule, Profile  # type: ignore[attr-defined]
    mod.load_profile = lambda spec: Profile(spec)  # type: ignore[attr-defined]
    sys.modules["deid_pipeline.profile"] = mod


try:
    from deid_pipeline.profile import load_profile
except ImportError:  # pragma: no cover - only before profile.py exists
    _install_fake_profile_module()
    from deid_pipeline.profile import load_profile

from deid_pipeline import actions, tags  # noqa: E402
from deid_pipeline.clean import clean_text  # noqa: E402
from deid_pipeline.errors import FileError  # noqa: E402
from deid_pipeline.pseudonym import Pseudonymizer, patient_identity  # noqa: E402

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


class WithSettings:
    """A profile with some settings replaced (settings are frozen)."""

    def __init__(self, profile: Any, **update: Any) -> None:
        self._p = profile
        self.settings = profile.settings.model_copy(update=update)
        self.name, self.version, self.codes = profile.name, profile.version, profile.codes

    def rule_for(self, ref: Any) -> Any:
        return self._p.rule_for(ref)


@pytest.fixture(scope="module")
def safe_harbor() -> Any:
    return load_profile("safe-harbor")


@pytest.fixture(scope="module")
def basic() -> Any:
    return load_profile("basic")


def _read(name: str) -> Dataset:
    path = get_testdata_file(name) or get_charset_files(name)[0]
    return pydicom.dcmread(path)


def _roundtrip(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    data = buf.getvalue()
    pydicom.dcmread(io.BytesIO(data))  # must read back
    return data


# --------------------------------------------------------------------------- leak test

ASCII_CANARY = "QZXCANARY"
CANARIES = {
    "CT_small.dcm": ("Qzxfamily", "Qzxgiven"),
    "MR_small.dcm": ("Qzxmrfam", "Qzxmrgiv"),
    "rtplan.dcm": ("Qzxrtfam", "Qzxrtgiv"),
    "nested_priv_SQ.dcm": ("Qzxnestfam", "Qzxnestgiv"),
    "chrRuss.dcm": ("Канарейкин", "Жужелица"),
    "chrH31.dcm": ("鳥籠", "雀太郎"),
}
ENCODINGS = ("utf-8", "latin-1", "iso8859-5", "cp1251", "iso2022_jp", "shift_jis", "euc_jp", "utf-16-le")


def _plant(ds: Dataset, family: str, given: str) -> list[str]:
    """Canaries in public, nested, private and descriptor elements; returns every planted string."""
    n = 0

    def c(prefix: str = ASCII_CANARY) -> str:
        nonlocal n
        n += 1
        return f"{prefix}{n}"

    planted: list[str] = [family, given]
    ds.PatientName = f"{family}^{given}"
    ds.PatientID = c()
    ds.OtherPatientNames = f"{family}^{c()}"
    ds.InstitutionName = c()
    ds.ReferringPhysicianName = f"{c()}^{given}"
    ds.StudyDescription = f"CT HEAD {family} {c()}"
    ds.ImageComments = c()
    ds.AccessionNumber = c()
    ds.PatientBirthDate = "19370214"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    ref.PersonName = f"{family}^{c()}"
    ref.add_new(0x00091010, "LO", c())  # orphan private element (no creator)
    ds.ReferencedImageSequence = Sequence([ref])
    req = Dataset()
    req.RequestedProcedureDescription = c()
    req.RequestedProcedureID = c()
    ds.RequestAttributesSequence = Sequence([req])
    block = ds.private_block(0x0011, "QZX PRIVATE", create=True)
    block.add_new(0x01, "LO", c())
    inner = Dataset()
    inner.add_new(0x00100010, "PN", f"{given}^{c()}")
    block.add_new(0x02, "SQ", Sequence([inner]))
    planted += [v for v in (f"{ASCII_CANARY}{i}" for i in range(1, n + 1))]
    return planted


@pytest.mark.parametrize("name", sorted(CANARIES))
def test_no_canary_survives_safe_harbor(name: str, safe_harbor: Any) -> None:
    ds = _read(name)
    family, given = CANARIES[name]
    planted = _plant(ds, family, given)
    tags.deidentify_header(ds, safe_harbor, Pseudonymizer(KEY))
    data = _roundtrip(ds)
    for canary in planted:
        for enc in ENCODINGS:
            try:
                needle = canary.encode(enc)
            except UnicodeEncodeError:
                continue
            assert needle not in data, f"canary {canary!r} survived in {enc}"
            assert needle.upper() not in data.upper() or not canary.isascii()


def test_non_ascii_name_removed_and_charset_consistent(safe_harbor: Any) -> None:
    ds = _read("chrH31.dcm")
    tags.deidentify_header(ds, safe_harbor, Pseudonymizer(KEY))
    back = pydicom.dcmread(io.BytesIO(_roundtrip(ds)))
    assert str(back.PatientName).startswith("DEID-") or str(back.PatientName) == ""
    for elem in back.iterall():
        if isinstance(elem.value, str) and not elem.value.isascii():
            assert back.SpecificCharacterSet == "ISO_IR 192"


# --------------------------------------------------------------------------- determinism, references


def _pair() -> tuple[Dataset, Dataset]:
    a = _read("CT_small.dcm")
    b = _read("CT_small.dcm")
    b.SOPInstanceUID = a.SOPInstanceUID + ".9"
    item = Dataset()
    item.ReferencedSOPClassUID = a.SOPClassUID
    item.ReferencedSOPInstanceUID = a.SOPInstanceUID
    b.ReferencedImageSequence = Sequence([item])
    return a, b


def test_reference_integrity(safe_harbor: Any, basic: Any) -> None:
    for profile in (basic, safe_harbor):
        a, b = _pair()
        sop_class = a.SOPClassUID
        tags.deidentify_header(a, profile, Pseudonymizer(KEY))
        tags.deidentify_header(b, profile, Pseudonymizer(KEY))
        ref = b.ReferencedImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == a.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == sop_class
        assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
        assert a.StudyInstanceUID == b.StudyInstanceUID
        assert a.SOPInstanceUID.startswith("2.25.") and len(a.SOPInstanceUID) <= 64


def _deid(key: bytes, profile: Any) -> Dataset:
    ds = _read("CT_small.dcm")
    ds.StudyDate = "20170302"
    tags.deidentify_header(ds, profile, Pseudonymizer(key))
    return ds


def test_determinism(safe_harbor: Any) -> None:
    profile = WithSettings(safe_harbor, dates="shift")
    one, two, other = _deid(KEY, profile), _deid(KEY, profile), _deid(OTHER_KEY, profile)
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        if kw in one:
            assert one.get(kw) == two.get(kw)
            assert one.get(kw) != other.get(kw)
    src = _read("CT_small.dcm")
    identity = patient_identity(src)
    assert Pseudonymizer(KEY).date_offset_days(identity) == Pseudonymizer(KEY).date_offset_days(identity)
    assert Pseudonymizer(KEY).date_offset_days(identity) != Pseudonymizer(OTHER_KEY).date_offset_days(identity)


# --------------------------------------------------------------------------- dates, ages


class _Ref:
    def __init__(self, vr: str, keyword: str = "X", depth: int = 0) -> None:
        self.vr, self.keyword, self.depth, self.tag = vr, keyword, depth, 0x00990099


def _ctx(dates: str, offset: int = -10) -> actions.ActionContext:
    return actions.ActionContext(
        settings=types.SimpleNamespace(dates=dates), pseudo=Pseudonymizer(KEY),
        date_offset_days=offset, patient_pseudonym="DEID-XXXXXXXXXX",
    )


@pytest.mark.parametrize(
    ("vr", "value", "dates", "code", "expected"),
    [
        ("DA", "20170302", "shift", "C", "20170220"),
        ("DA", "20170302", "year", "C", "20170101"),
        ("DA", "20170302", "remove", "C", ""),
        ("DA", "20170302", "remove", "D", "19000101"),
        ("DA", "20170302", "shift", "D", "20170220"),
        ("DA", "2017.03.02", "shift", "C", "20170220"),
        ("DT", "20170302101112.5+0100", "shift", "C", "20170220101112.5+0100"),
        ("DT", "20170302101112", "year", "C", "20170101"),
        ("TM", "101112", "shift", "C", "101112"),
        ("TM", "101112", "year", "C", ""),
        ("DA", "not a date", "shift", "C", ""),
    ],
)
def test_date_actions(vr: str, value: str, dates: str, code: str, expected: str) -> None:
    elem = pydicom.DataElement(0x00990099, vr, value)
    _, out = actions.apply(code, elem, _Ref(vr), _ctx(dates))
    assert out == expected


def test_age_cap_units() -> None:
    assert actions.cap_age("095Y", 89) == "090Y"
    assert actions.cap_age("999M", 89) != "090Y"  # 83 years
    assert actions.cap_age("089Y", 89) == "089Y"
    assert actions.cap_age("095Y", None) == "095Y"


@pytest.mark.parametrize("value, expected", [
    ("95Y", "090Y"), ("0095Y", "090Y"), ("095y", "090Y"), ("95", "090Y"), (" 095Y ", "090Y"),
    ("1200M", "090Y"), ("5000W", "090Y"), ("40000D", "090Y"), ("1074M", "090Y"),  # 100, 96, 110, 89.5 years
    ("030Y", "030Y"), ("012M", "012M"), ("089Y", "089Y"), ("", ""),
    ("95 years", ""), ("ninety", ""), ("89Y6M", ""),  # no age a reader can be sure is 89 or under
    (["030Y", "095Y"], ["030Y", "090Y"]),
])
def test_an_age_over_89_is_aggregated_however_it_is_written(value: Any, expected: Any) -> None:
    """AS is three digits and a unit, but files write ages otherwise too: each over 89 years is 090Y."""
    assert actions.cap_age(value, 89) == expected


def test_age_cap_applied(safe_harbor: Any) -> None:
    ds = _read("CT_small.dcm")
    ds.PatientAge = "095Y"
    tags.deidentify_header(ds, WithSettings(safe_harbor, max_age_years=89), Pseudonymizer(KEY))
    assert ds.get("PatientAge", "") in ("", "090Y")


def test_compound_resolution() -> None:
    assert actions.resolve("X/Z", _Ref("LO")) == "Z"
    assert actions.resolve("X/D", _Ref("LO")) == "D"
    assert actions.resolve("X/Z/D", _Ref("LO", "OperatorsName")) == "Z"
    assert actions.resolve("Z/D", _Ref("DA", "ContentDate")) == "D"
    assert actions.resolve("X/Z/U*", _Ref("SQ")) == "U*"


def test_well_known_uids_untouched() -> None:
    ctx = _ctx("shift")
    assert actions.replace_uid("1.2.840.10008.1.2.1", ctx) == "1.2.840.10008.1.2.1"
    assert actions.replace_uid("1.2.3.4", ctx).startswith("2.25.")


# --------------------------------------------------------------------------- markers, protection, inspect


def test_markers_and_temporal(basic: Any) -> None:
    for dates, expected in (("shift", "MODIFIED"), ("remove", "REMOVED"), ("year", "REMOVED")):
        ds = _read("CT_small.dcm")
        profile = WithSettings(basic, dates=dates)
        result = tags.deidentify_header(ds, profile, Pseudonymizer(KEY))
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod.startswith(f"deid {profile.name}")
        codes = [(i.CodingSchemeDesignator, i.CodeValue) for i in ds.DeidentificationMethodCodeSequence]
        assert codes == [(s, v) for s, v, _ in profile.codes]
        assert ds.LongitudinalTemporalInformationModified in (expected, "UNMODIFIED")
        assert sum(result.action_counts.values()) > 0


def test_image_pixel_module_protected(safe_harbor: Any) -> None:
    ds = _read("CT_small.dcm")
    keep = {kw: ds.get(kw) for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                                      "PixelRepresentation", "PhotometricInterpretation", "SamplesPerPixel")}
    pixels = ds.PixelData
    tags.deidentify_header(ds, safe_harbor, Pseudonymizer(KEY))
    assert {kw: ds.get(kw) for kw in keep} == keep
    assert ds.PixelData == pixels
    ds.pixel_array  # still decodes


def test_icon_and_encapsulated(safe_harbor: Any) -> None:
    ds = _read("CT_small.dcm")
    icon = Dataset()
    icon.Rows = 1
    ds.IconImageSequence = Sequence([icon])
    tags.deidentify_header(ds, safe_harbor, Pseudonymizer(KEY))
    assert "IconImageSequence" not in ds
    doc = _read("CT_small.dcm")
    doc.EncapsulatedDocument = b"%PDF-1.4 "
    with pytest.raises(FileError) as err:
        tags.deidentify_header(doc, WithSettings(safe_harbor, encapsulated_documents="quarantine"), Pseudonymizer(KEY))
    assert err.value.code == "encapsulated-document"


def test_inspect_is_dry_and_has_paths(safe_harbor: Any) -> None:
    _, b = _pair()
    before = b.to_json_dict()
    rows = tags.inspect_dataset(b, safe_harbor)
    assert b.to_json_dict() == before
    paths = {r.path for r in rows}
    assert "(0008,1140)[0].(0008,1155)" in paths
    assert all(r.value is None for r in rows)
    shown = tags.inspect_dataset(b, safe_harbor, show_values=True)
    assert any(r.value for r in shown)


def test_an_unreadable_element_is_logged_by_its_tag_only_when_the_dictionary_knows_it(safe_harbor: Any,
                                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A malformed file's "tag" may be 4 bytes of a value: an unreadable element whose tag the public
    dictionary does not know is logged by where its value starts, never by its tag (before: the text "ZQXI"
    was logged as (515A,4958)); a public element keeps its tag in the line."""
    import struct

    buf = io.BytesIO()
    _read("CT_small.dcm").save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    at = data.index(struct.pack("<HH", 0x7FE0, 0x0010))
    junk = b"ZQXI" + b"AN" + struct.pack("<H", 2) + b"ZZ"  # no VR deid or pydicom knows
    public = struct.pack("<HH", 0x0018, 0x1170) + b"US" + struct.pack("<H", 3) + b"abc"  # Generator Power: 3 bytes of US
    ds = pydicom.dcmread(io.BytesIO(data[:at] + junk + public + data[at:]))
    caplog.set_level("WARNING", logger="deid_pipeline.tags")
    tags.deidentify_header(ds, safe_harbor, Pseudonymizer(KEY))
    lines = [r.getMessage() for r in caplog.records if "unreadable element" in r.getMessage()]
    assert len(lines) == 2 and 0x515A4958 not in ds and 0x00181170 not in ds
    assert not any("515A" in line or "4958" in line for line in lines)
    assert "unreadable element (0018,1170) removed" in lines and any(f"value at byte {at + 8};" in line for line in lines)


def test_phi_terms() -> None:
    ds = _read("CT_small.dcm")
    ds.PatientName = "Doe^John^Q"
    ds.PatientBirthDate = "20170302"
    ds.AccessionNumber = "ACC123"
    terms = tags.collect_phi_terms(ds, load_profile("basic"))
    for t in ("Doe", "John", "20170302", "03/02/2017", "02.03.2017", "2017-03-02", "ACC123"):
        assert t in terms


def test_clean_takes_out_only_what_identifies() -> None:
    """A report with nothing identifying comes back as it was (line breaks, the closing full stop);
    a removal takes its word and the separators beside it, nothing else of the value."""
    terms = frozenset({"Doe", "John"})
    report = "Findings:\r\n\r\nNo mass seen.\r\nImpression: normal."
    assert clean_text(report, terms) == report
    assert clean_text("  padded ", terms) == "  padded "
    assert clean_text("Protocol for Doe, John", terms) == "Protocol for"
    assert clean_text("Seen by John Doe.\r\nNo mass.", terms) == "Seen by.\r\nNo mass."
    assert clean_text("Dr Doe reviewed", terms) == "Dr reviewed"


@pytest.mark.parametrize("text, left", [
    ("prior Nov 12, 2019 stable", "prior stable"), ("prior 12 November 2019", "prior"), ("on 3rd March 2021", "on"),
    ("seen Jan 2019", "seen"), ("seen on 2019-11-12T10:22", "seen on"), ("seen 5 Dec", "seen"),
    ("MRN: 1234", "MRN"), ("acc# 8812A", "acc#"), ("Patient ID: 4411", "Patient ID"), ("SSN 123-45-6789", "SSN"),
    ("mass may 2 cm", "mass may 2 cm"), ("Series 2 of 5", "Series 2 of 5"), ("ID 3", "ID 3"),
    ("compression ratio 0.084906", "compression ratio 0.084906"), ("ref 1.2.840.113619.2", "ref 1.2.840..2"),
])
def test_clean_takes_dates_and_identifiers_in_their_written_forms(text: str, left: str) -> None:
    """Dates written with month names or a time, an identifier after its label, an SSN whatever its
    number (presidio's own recognizers leave these); clinical words and small counts stay."""
    assert clean_text(text, frozenset()) == left


def test_a_value_kept_as_read_holds_none_of_the_terms() -> None:
    """T keeps a value as read when its bytes show none of the file's terms (``terms_absent``): never
    when :func:`remove_terms` would take something out of it (random terms and values)."""
    import random

    from deid_pipeline.actions import ActionContext
    from deid_pipeline.clean import remove_terms
    from deid_pipeline.tags import Deidentifier

    rng = random.Random(7)
    kept = codes = 0
    for i in range(4000):
        alphabet = ("abXY01 .-_^'/", "ctmrCTMR19 -_")[i % 2]
        terms = frozenset("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(rng.randint(1, 5)))
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        visitor = Deidentifier.__new__(Deidentifier)
        visitor.ctx = ActionContext.__new__(ActionContext)
        visitor.ctx.phi_terms = terms
        visitor.patterns = False  # a profile that leaves what patterns find in the text it keeps
        if visitor.terms_absent(value.encode()):
            kept += 1
            assert remove_terms(value, terms) == value, (sorted(terms), value)
        if not visitor._may_hold_term(value.encode(), inflected=False):  # a code (CS): whole names only
            codes += 1
            assert remove_terms(value, terms, inflected=False) == value, (sorted(terms), value)
    assert kept > 1000 and codes > 1000  # the check lets most values through as read


def test_a_code_that_is_no_whole_run_of_a_term_is_not_read_against_them() -> None:
    """Modality ``CT`` where the patient ID is ``1CT1`` (pydicom's test files) or a date falls in
    October (``oct``): a run of the value inside a term's run is no term (remove_terms finds terms as whole
    words), so the file's term patterns are not built for it (~0.66 ms a file)."""
    from deid_pipeline.actions import ActionContext
    from deid_pipeline.tags import Deidentifier

    visitor = Deidentifier.__new__(Deidentifier)
    visitor.ctx = ActionContext.__new__(ActionContext)
    visitor.ctx.phi_terms = frozenset({"1CT1", "12-Oct-1965", "DOE^JOHN", "DOE JOHN"})
    assert not any(visitor._may_hold_term(v, inflected=False) for v in (b"CT", b"MR", b"ORIGINAL\\PRIMARY", b"OC"))
    assert all(visitor._may_hold_term(v, inflected=False) for v in (b"1CT1", b"OCT", b"X_DOE", b"JOHN\\Y"))


def test_clean_text() -> None:
    terms = frozenset({"Doe", "John", "03/02/2017"})
    out = clean_text("CT CHEST John DOE 03/02/2017 call 555-123-4567 id 00079241539 w/contrast", terms)
    for bad in ("John", "DOE", "2017", "555", "00079241539"):
        assert bad not in out
    for good in ("CT", "CHEST", "w/contrast"):
        assert good in out


def _run_one(tmp_path: Path, ds: Dataset, profile: str, pixels: str) -> tuple[Any, bytes]:
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    (tmp_path / "in").mkdir(exist_ok=True)
    ds.save_as(tmp_path / "in" / "f.dcm", enforce_file_format=True)
    ctx = RunContext(profile=load_profile(profile), key=KEY, output_dir=tmp_path / f"out-{profile}-{pixels}",
                     pixels=pixels, device="cpu", detector="deid-textseg")
    [res] = process_batch(tmp_path / "in", [Candidate("f.dcm")], ctx)
    assert res.status == "written", res.reason
    path = tmp_path / f"out-{profile}-{pixels}" / res.output_path
    return pydicom.dcmread(path), path.read_bytes()


def _with_code_meaning(ds: Dataset, meaning: str) -> Dataset:
    """``ds`` with an Anatomic Region Sequence item whose Code Meaning (text safe-harbor keeps, T) is ``meaning``."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "99LOCAL", meaning
    ds.AnatomicRegionSequence = Sequence([item])
    return ds


@pytest.mark.parametrize("pixels", ["none", "all"])  # the header-only path and the full one
@pytest.mark.parametrize("vr, value, expected", [
    ("AS", "1200M", "090Y"),  # 100 years in months
    ("AS", "95Y", "090Y"),
    ("LO", "095Y", "090Y"),  # Patient's Age written as LO: an age all the same
    ("AS", ["030Y", "095Y"], ["030Y", "090Y"]),
    ("AS", "95 years", None),  # unreadable: emptied
    ("AS", "045Y", "045Y"),
])
def test_a_run_aggregates_ages_over_89_written_any_way(tmp_path: Path, vr: str, value: Any, expected: Any,
                                                         pixels: str) -> None:
    from pydicom.dataelem import DataElement

    ds = _read("CT_small.dcm")
    ds.add(DataElement(0x00101010, vr, value))
    out, _ = _run_one(tmp_path, ds, "safe-harbor", pixels)
    age = out.get(0x00101010)
    got = None if age is None or age.value in ("", None) else age.value
    assert (list(got) if isinstance(got, pydicom.multival.MultiValue) else got) == expected


@pytest.mark.parametrize("vr, value, found", [
    ("AS", "1200M", True), ("LO", "095Y", True), ("AS", "95 years", True),
    ("AS", "090Y", False), ("AS", "045Y", False),
])
def test_verify_reports_an_age_over_89_left_in_an_output(tmp_path: Path, vr: str, value: str, found: bool) -> None:
    """An output holding an age the cap would change (one written by a tool that read only ``095Y``)
    is ``age-over-limit``; the aggregated ``090Y`` and ages under the cap are not."""
    from pydicom.dataelem import DataElement

    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in.dcm"
    _read("CT_small.dcm").save_as(src, enforce_file_format=True)
    out_ds = _read("CT_small.dcm")
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(out_ds, kw, "")
    out_ds.add(DataElement(0x00101010, vr, value))
    out = tmp_path / "out.dcm"
    out_ds.save_as(out, enforce_file_format=True)
    kinds = [f.kind for f in verify.check_pair(str(src), str(out), 1, {}, load_profile("safe-harbor"), False, "cpu")]
    assert ("age-over-limit" in kinds) is found, kinds
    assert [f.detail for f in verify.check_pair(str(src), str(out), 1, {}, load_profile("basic"), False, "cpu")
            if f.kind == "age-over-limit"] == []  # basic caps no age (it removes Patient's Age)


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("keyword, value", [
    ("ClinicalTrialSubjectID", "ZQXSUBJ0042"), ("ClinicalTrialSubjectReadingID", "ZQXREAD0042"),
    ("ClinicalTrialSiteName", "ZQXSITENAME"), ("PatientTelecomInformation", "zqx.patient@example.org"),
    ("CurrentPatientLocation", "ZQXWARD 7B"), ("PatientInstitutionResidence", "ZQXCARE HOME"),
])
def test_the_file_s_own_trial_telecom_and_location_values_leave_kept_text(tmp_path: Path, keyword: str, value: str,
                                                                           pixels: str) -> None:
    """Values of the file's own subject ID, site, telecom and location are identifying terms: removed
    from text the profile keeps (a Code Meaning, T) as the patient's ID is, not only from their element."""
    ds = _read("CT_small.dcm")
    setattr(ds, keyword, value)
    _with_code_meaning(ds, f"scan of {value} follow-up")
    out, data = _run_one(tmp_path, ds, "safe-harbor", pixels)
    assert value.split()[0].encode() not in data and value.split()[0].upper().encode() not in data.upper()
    assert "follow-up" in out.AnatomicRegionSequence[0].CodeMeaning  # the rest of the kept text stays


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic", "safe-harbor"])
def test_an_element_written_with_another_vr_is_judged_by_its_meaning(tmp_path: Path, profile: str, pixels: str) -> None:
    """A public element the file writes with a VR other than the dictionary's: a person's name written
    as LO is a name (removed, as every PN), a date written as LO a date (dated as the profile dates);
    text written as bytes (an LO as OB) is removed whatever its row, since no action reads it as text.
    Under safe-harbor an unknown public element of bytes is removed as unlisted text is."""
    from pydicom.dataelem import DataElement

    ds = _read("CT_small.dcm")
    ds.add(DataElement(0x00140104, "LO", "ZQXREVIEWER^ANN"))  # Secondary Reviewer Name (PN)
    ds.add(DataElement(0x00080021, "LO", "19990317"))  # Series Date (DA)
    ds.add(DataElement(0x00201040, "OB", b"ZQXPOSREF\0"))  # Position Reference Indicator (LO)
    ds.add(DataElement(0x0018F0F1, "OB", b"ZQXUNKNOWNOB"))  # no such public element
    ds.add(DataElement(0x00281201, "OW", b"\x00\x01" * 8))  # a palette LUT written as the dictionary has it
    out, data = _run_one(tmp_path, ds, profile, pixels)
    assert b"ZQXREVIEWER" not in data and b"ZQXPOSREF" not in data and b"19990317" not in data
    assert (b"ZQXUNKNOWNOB" in data) is (profile == "basic")  # basic keeps unlisted public elements
    assert out[0x00281201].value == b"\x00\x01" * 8


@pytest.mark.parametrize("pixels", ["none", "all"])
def test_the_file_s_uids_in_text_the_profile_keeps_are_replaced(tmp_path: Path, pixels: str) -> None:
    """A UID written in text the profile keeps (a Code Meaning, T; Filter Type on the keep list) is
    replaced as the header's UIDs are, the same replacement (the link stays); a standard UID stays."""
    ds = _read("CT_small.dcm")
    study, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
    _with_code_meaning(ds, f"prior study {study} (CT Image Storage 1.2.840.10008.5.1.4.1.1.2)")
    ds.FilterType = series
    out, data = _run_one(tmp_path, ds, "safe-harbor", pixels)
    assert study.encode() not in data and series.encode() not in data
    meaning = out.AnatomicRegionSequence[0].CodeMeaning
    assert meaning == f"prior study {out.StudyInstanceUID} (CT Image Storage 1.2.840.10008.5.1.4.1.1.2)"
    assert out.get("FilterType", "") in ("", out.SeriesInstanceUID)


@pytest.mark.parametrize("written", [
    "born 12 November 1937", "November 12, 1937", "1937NOV12", "12th Nov 1937", "Nov-12-1937", "37-11-12",
    "Nov 12 1937", "1937-Nov-12", "12-november-1937",
])
def test_the_birth_date_as_people_write_it_leaves_kept_text(tmp_path: Path, written: str) -> None:
    """The patient's birth date in the forms people type (month names in full, ordinals, the year first
    with a month name, a two-digit year first) is taken out of text the profile keeps; another date stays
    (under basic: safe-harbor takes every date out of such text)."""
    ds = _read("CT_small.dcm")
    ds.PatientBirthDate = "19371112"
    _with_code_meaning(ds, f"{written} and 5 May 1937")
    out, data = _run_one(tmp_path, ds, "basic", "none")
    meaning = out.AnatomicRegionSequence[0].CodeMeaning
    assert "1937" in meaning and meaning.endswith("5 May 1937") and "12" not in meaning.replace("1937", "")


def _with_nested_image(ds: Dataset) -> Dataset:
    """``ds`` with a Source Image Sequence item holding an image of its own (128x128, a name in it)."""
    import numpy as np

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, "1.2.826.0.1.3680043.10.999.1"
    item.SamplesPerPixel, item.PhotometricInterpretation, item.Rows, item.Columns = 1, "MONOCHROME2", 128, 128
    item.BitsAllocated, item.BitsStored, item.HighBit, item.PixelRepresentation = 8, 8, 7, 0
    item.PixelData = (np.arange(128 * 128) % 251).astype(np.uint8).tobytes()
    ds.SourceImageSequence = Sequence([item])
    return ds


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic", "safe-harbor"])
def test_an_image_nested_in_a_sequence_item_is_removed(tmp_path: Path, profile: str, pixels: str) -> None:
    """Pixel Data inside a sequence item the profile keeps is an image no stage scans: removed, the
    item's references kept; the top-level image stays."""
    ds = _with_nested_image(_read("CT_small.dcm"))
    out, _ = _run_one(tmp_path, ds, profile, pixels)
    item = out.SourceImageSequence[0]
    assert "PixelData" not in item and "ReferencedSOPClassUID" in item
    assert out.PixelData is not None and len(out.PixelData) == len(ds.PixelData)


def test_verify_reports_an_image_nested_in_an_output(tmp_path: Path) -> None:
    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    _read("CT_small.dcm").save_as(src, enforce_file_format=True)
    ds = _with_nested_image(_read("CT_small.dcm"))
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(ds, kw, "")
    ds.save_as(out, enforce_file_format=True)
    found = verify.check_pair(str(src), str(out), 1, {}, load_profile("safe-harbor"), False, "cpu")
    assert any(f.kind == "removed-attribute-present" and "PixelData" in f.detail for f in found), found


@pytest.mark.parametrize("written", ["mrn 884213", "MRN-884213", "id 884213 recorded", "ZQX1234567"])
def test_the_patient_id_as_people_write_it_leaves_kept_text(tmp_path: Path, written: str) -> None:
    """An ID of letters and digits (``MRN884213``) written with a space or dash, or its digits alone,
    is taken out of text the profile keeps, as the ID is; another number stays."""
    ds = _read("CT_small.dcm")
    ds.PatientID = "MRN884213"
    ds.OtherPatientIDs = "ZQX-1234567"
    _with_code_meaning(ds, f"{written} series 20 of 884")
    out, data = _run_one(tmp_path, ds, "safe-harbor", "none")
    meaning = out.AnatomicRegionSequence[0].CodeMeaning
    assert "884213" not in meaning and "1234567" not in meaning and meaning.endswith("series 20 of 884")


_OTHERS_IDENTIFIERS = ("555-123-4567", "jdoe@example.org", "http://x.example.org/a", "10.20.30.40", "7654321",
                       "1931-03-04")


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["safe-harbor", "basic"])
def test_safe_harbor_takes_others_identifiers_out_of_the_text_it_keeps(tmp_path: Path, profile: str, pixels: str) -> None:
    """Text safe-harbor keeps (a Code Meaning, T) lost the file's own values only: a phone number, an
    e-mail address, a URL, an IP address, a record number or a date of someone else's was written.
    Now what the Clean action's patterns find goes too (``kept_text_patterns: remove``); basic keeps
    such text as it came (the setting's default)."""
    ds = _with_code_meaning(_read("CT_small.dcm"), "Knee; call 555-123-4567 or jdoe@example.org, "
                            "http://x.example.org/a from 10.20.30.40, MRN 7654321 DOB 1931-03-04")
    out, data = _run_one(tmp_path, ds, profile, pixels)
    meaning = out.AnatomicRegionSequence[0].CodeMeaning
    assert meaning.startswith("Knee; call")
    assert [v for v in _OTHERS_IDENTIFIERS if v.encode() in data] == ([] if profile == "safe-harbor" else list(_OTHERS_IDENTIFIERS))


@pytest.mark.parametrize("meaning, found", [("Knee, call 555-123-4567", True), ("Knee", False),
                                            ("Knee L5 2.5 mm", False)])
def test_verify_reports_others_identifiers_in_kept_text(tmp_path: Path, meaning: str, found: bool) -> None:
    """An output whose kept text holds what the patterns find (written by a tool that took only the
    file's own values out) is ``identifier-in-kept-text`` under safe-harbor, never under basic."""
    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in.dcm"
    _read("CT_small.dcm").save_as(src, enforce_file_format=True)
    out_ds = _with_code_meaning(_read("CT_small.dcm"), meaning)
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(out_ds, kw, "")
    out = tmp_path / "out.dcm"
    out_ds.save_as(out, enforce_file_format=True)
    kinds = {p: [f.kind for f in verify.check_pair(str(src), str(out), 1, {}, load_profile(p), False, "cpu")]
             for p in ("safe-harbor", "basic")}
    assert ("identifier-in-kept-text" in kinds["safe-harbor"]) is found, kinds
    assert "identifier-in-kept-text" not in kinds["basic"]


def _outcome(tmp_path: Path, ds: Dataset, pixels: str, profile: str = "safe-harbor") -> tuple[Any, Any]:
    """``ds`` run alone under ``profile``: (its result, the written data set or None)."""
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    (tmp_path / "in").mkdir(exist_ok=True)
    ds.save_as(tmp_path / "in" / "f.dcm", enforce_file_format=True)
    out = tmp_path / f"out-{pixels}"
    ctx = RunContext(profile=load_profile(profile), key=KEY, output_dir=out, pixels=pixels, device="cpu",
                     detector="deid-textseg")
    [res] = process_batch(tmp_path / "in", [Candidate("f.dcm")], ctx)
    return res, (pydicom.dcmread(out / res.output_path) if res.status == "written" else None)


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("tag, vr, value", [
    (0x00180050, "DS", "ZQXCANARY JOHN"),  # Slice Thickness: a name where a number belongs
    (0x00200011, "IS", "MRN884213"),  # Series Number: a record number
    (0x00080060, "CS", "COMPRESSEDSAMPLES"),  # Modality: the patient's family name, a valid code
    (0x00080064, "CS", "Doe^John"),  # Conversion Type: no code's characters
    (0x00205000, "AT", b"ZQX884213\0\0\0"),  # tags no dictionary knows: text's bytes
    (0x00281052, "DS", "1CT1"),  # Rescale Intercept (the image needs it): the patient's ID
    (0x00080005, "CS", "ZQXCANARYNAME"),  # a character set no codec knows: its text was read as another
    (0x00280004, "CS", "ZQXPHOTOMETRIC"),
    (0x00280106, "US", b"ZQXCANARYNAME\0"),  # Smallest Image Pixel Value: 7 numbers where 1 belongs
])
def test_text_kept_where_a_number_or_a_code_belongs_is_not_written(tmp_path: Path, tag: int, vr: str, value: Any,
                                                                     pixels: str) -> None:
    """A profile keeps numbers and codes (Slice Thickness, Series Number, Modality) because their VR
    holds no name: a device that wrote one there had it written as it came. Now a kept DS, IS, CS or
    binary number is read against its VR (and a CS against the file's identifying values): removed, or,
    where the image or the file needs the element, the file quarantined ``invalid-header-value``
    naming the element, never the value."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    ds = _read("CT_small.dcm")
    raw = value if isinstance(value, bytes) else value.encode()
    padded = raw + (b" " if len(raw) % 2 else b"")
    ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(padded), padded, 0, False, True)  # as a device wrote it
    res, out = _outcome(tmp_path, ds, pixels)
    if keyword_for_tag(tag) in tags.PROTECTED_KEYWORDS:
        # (the pixel stage, first on the full path, finds no way to read an image of that Photometric Interpretation)
        expected = "pixel-decode-failed" if (pixels, tag) == ("all", 0x00280004) else "invalid-header-value"
        assert res.status == "quarantined" and res.reason_code == expected, res.reason
        assert raw.decode("latin-1").strip("\0") not in res.reason
        assert expected != "invalid-header-value" or keyword_for_tag(tag) in res.reason
    else:
        assert res.status == "written" and tag not in out, res.reason
        assert tag == 0x00180050 or out.SliceThickness == ds.SliceThickness  # the rest as it came
    assert not list(tmp_path.glob(f"out-{pixels}/**/*.dcm")) or raw[:9] not in b"".join(
        p.read_bytes() for p in tmp_path.glob(f"out-{pixels}/**/*.dcm"))


@pytest.mark.parametrize("tag, vr, value", [
    (0x00180050, "DS", "1.25e+00"), (0x00200032, "DS", "-125.5\\-130\\7.25 "), (0x00200011, "IS", "+12"),
    (0x00080008, "CS", "ORIGINAL\\PRIMARY\\AXIAL"), (0x00080005, "CS", "ISO IR 100"), (0x00280009, "AT", [0x00181063]),
    (0x00180015, "CS", "Chest-Abdomen"),  # lower case and "-": a common deviation, no name's characters
])
def test_numbers_and_codes_of_their_vr_are_kept(tmp_path: Path, tag: int, vr: str, value: Any) -> None:
    from pydicom.dataelem import DataElement

    ds = _read("CT_small.dcm")
    ds[tag] = DataElement(tag, vr, value)
    res, out = _outcome(tmp_path, ds, "none")
    assert res.status == "written" and out[tag].value == ds[tag].value, res.reason


@pytest.mark.parametrize("pixels", ["none", "all"])
def test_a_user_row_that_cleans_every_lo_leaves_no_device_or_plan_id(tmp_path: Path, pixels: str) -> None:
    """A site profile on safe-harbor with one row cleaning every LO (C) outranks safe-harbor's removal
    of unlisted text: Device ID ``DEVID-4711`` was kept, as clean found nothing in it. A device's ID and
    UDI and a health plan's number are identifying values of the file now: C empties them, and the text
    the profile keeps loses them."""
    site = tmp_path / "site.yaml"
    site.write_text("name: site\nversion: '1'\nextends: safe-harbor\nrows:\n  - vr: LO\n    action: C\n")
    ds = _with_code_meaning(_read("CT_small.dcm"), "Knee, device DEVID-4711")
    ds.DeviceID, ds.InsurancePlanIdentification = "DEVID-4711", "PLAN-AB12"
    ds.UniqueDeviceIdentifier = "(01)0888 UDI-77X"
    res, out = _outcome(tmp_path, ds, pixels, str(site))
    assert res.status == "written", res.reason
    data = b"".join(p.read_bytes() for p in tmp_path.glob(f"out-{pixels}/**/*.dcm"))
    assert [v for v in (b"DEVID-4711", b"PLAN-AB12", b"UDI-77X") if v in data] == []
    assert out.AnatomicRegionSequence[0].CodeMeaning.startswith("Knee, device")


@pytest.mark.parametrize("tag, vr, value, found", [
    (0x00180050, "DS", b"ZQXCANARY JOHN", True), (0x00200011, "IS", b"MRN884213 ", True),
    (0x00180050, "DS", b"1.25", False), (0x00080060, "CS", b"CT", False),
])
def test_verify_reports_a_number_or_code_that_is_no_value_of_its_vr(tmp_path: Path, tag: int, vr: str, value: bytes,
                                                                      found: bool) -> None:
    """An output holding text where a number belongs (written by a tool that trusted the VR) is
    ``invalid-value-kept``, naming the element, never the value."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in.dcm"
    _read("CT_small.dcm").save_as(src, enforce_file_format=True)
    out_ds = _read("CT_small.dcm")
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(out_ds, kw, "")
    out_ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), vr, len(value), value, 0, False, True)
    out = tmp_path / "out.dcm"
    out_ds.save_as(out, enforce_file_format=True)
    kept = [f.detail for f in verify.check_pair(str(src), str(out), 1, {}, load_profile("safe-harbor"), False, "cpu")
            if f.kind == "invalid-value-kept"]
    assert bool(kept) is found and not [d for d in kept if value.decode().strip() in d], kept


# --------------------------------------------------------------------------- identities in other forms


def _with_text(ds: Dataset, text: str) -> Dataset:
    """``ds`` with ``text`` in a Study Description (cleaned, C, under clean-descriptors; removed under
    safe-harbor) and in a Code Meaning (kept without the file's terms, T)."""
    ds.StudyDescription = text
    return _with_code_meaning(ds, text)


def _texts(out: Dataset) -> list[str]:
    return [str(out.get("StudyDescription", "")), str(out.AnatomicRegionSequence[0].CodeMeaning)]


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("written", ["9988 7766", "9988-7766", "99 88 77 66", "9988.7766"])
def test_an_id_with_its_digits_split_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                   written: str) -> None:
    """The patient's ID written with its digits split by spaces, dashes or dots is taken out of the
    text cleaned (C) and kept (T) as the ID is; another number stays."""
    ds = _read("CT_small.dcm")
    ds.PatientID = "99887766"
    out, data = _run_one(tmp_path, _with_text(ds, f"knee {written} series 20 of 884"), profile, pixels)
    texts = _texts(out)
    assert not any("99887766" in "".join(c for c in t if c.isdigit()) for t in texts)
    assert all(t.endswith("series 20 of 884") for t in texts if t)
    assert b"7766" not in data


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("written", ["9 9 8 8 7 7 6 6", "9-9-8-8-7-7-6-6", "9 98 8 7 7 6 6"])
def test_an_id_written_digit_by_digit_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                    written: str) -> None:
    """The patient's ID written one digit at a time (runs of one character, which the check of a kept
    value's bytes passed over) is taken out of the text cleaned and kept; single digits that spell no
    number of the file's stay."""
    ds = _read("CT_small.dcm")
    ds.PatientID = "99887766"
    out, data = _run_one(tmp_path, _with_text(ds, f"knee {written} views 1 2 3"), profile, pixels)
    texts = _texts(out)
    assert not any("99887766" in "".join(c for c in t if c.isdigit()) for t in texts)
    assert all(t == "knee views 1 2 3" for t in texts if t), texts


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("keyword, value, written", [
    ("PatientTelephoneNumbers", "555-123-4567", "555 1234567"),
    ("PatientTelephoneNumbers", "555-123-4567", "5551 234 567"),
    ("PatientTelephoneNumbers", "(555) 123-4567", "555.1234.567"),
    ("OtherPatientIDs", "123-45-6789", "12 345 6789"),
    ("PatientBirthDate", "19650312", "0312 1965"),  # 03/12/1965
    ("PatientBirthDate", "19650312", "12 031965"),  # 12/03/1965
    ("PatientTelephoneNumbers", "+1 555 123 4567", "555-123-4567"),  # without its country code
    ("PatientTelephoneNumbers", "+1 555 123 4567", "(555) 1234567"),
    ("PatientTelephoneNumbers", "+44 20 7946 0958", "020 7946 0958"),  # with the trunk 0 at home
    ("PatientTelephoneNumbers", "0044 (0)20 7946 0958", "020-7946-0958"),
])
def test_a_number_regrouped_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str, keyword: str,
                                                         value: str, written: str) -> None:
    """A telephone number, an ID or a date of the file's written with its digits grouped otherwise than
    in the header ("555 1234567" for 555-123-4567), an international number without its country code
    ("555-123-4567" for +1 555 123 4567, "020 7946 0958" for +44 20 7946 0958), is taken out of the text
    cleaned and kept, when its digits are the value's; other numbers stay."""
    ds = _read("CT_small.dcm")
    setattr(ds, keyword, value)
    out, _ = _run_one(tmp_path, _with_text(ds, f"call {written} re knee, 2 views 120 kV"), profile, pixels)
    digits = "".join(c for c in value if c.isdigit())
    texts = _texts(out)
    assert not any(digits in "".join(c for c in t if c.isdigit()) for t in texts), texts
    assert all(" ".join(t.replace("(", " ").split()) == "call re knee, 2 views 120 kV" for t in texts if t), texts  # "(" may stay


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("keyword, value, written", [
    ("PatientBirthDate", "20190102", "1 2 2019"),  # 2 January 2019: month day year
    ("PatientBirthDate", "20190102", "2 1 2019"),  # day month year
    ("PatientBirthDate", "20190102", "2019 1 2"),  # year month day
    ("PatientBirthDate", "20190102", "1_2_2019"),
    ("PatientBirthDate", "20190102", "1 / 2 / 2019"),
    ("PatientBirthDate", "20190102", "1. 2. 2019"),
    ("PatientBirthDate", "20190102", "1-2 2019"),
    ("PatientBirthDate", "20190102", "2019.1.2"),
    ("PatientBirthDate", "20190102", "01 02 19"),
    ("PatientBirthDate", "20190102", "19.1.2"),
    ("PatientBirthDate", "20190102", "1_2_19"),
    ("PatientBirthDate", "20190102", "2/1-19"),
    ("StudyDate", "19870923", "1987 9 23"),
    ("StudyDate", "19870923", "23 09 87"),
])
def test_a_date_in_a_short_form_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str, keyword: str,
                                                             value: str, written: str) -> None:
    """A date of the file's written with its day and month unpadded or apart by spaces or other marks than
    the header's formats ("1 2 2019", "2019_1_2", "1 / 2 / 2019"; a 2-digit year with marks between
    or two-digit day and month: "19.1.2", "01 02 19"), fewer digits than a regrouped number needs, is
    taken out of the text cleaned and kept; the numbers round it stay."""
    ds = _read("CT_small.dcm")
    setattr(ds, keyword, value)
    out, _ = _run_one(tmp_path, _with_text(ds, f"knee {written} follow-up, 2 views 120 kV"), profile, pixels)
    assert all(t == "knee follow-up, 2 views 120 kV" for t in _texts(out) if t), _texts(out)


def test_a_date_s_short_forms_take_only_that_date_out() -> None:
    """A date's short forms are the file's own date's only: another date's stay, and so do numbers that
    are as often a list or a measurement ("1 2 19 mm": a 2-digit year apart by spaces from an unpadded
    day and month) and a dotted number holding one ("2019.1.2.5")."""
    terms = tags.usable_terms(set(tags.date_variants("20190102")))
    for text in ("Series 1 3 2019 protocol", "1 2 19 mm", "slices 2 1 19", "v 2019.1.2.5", "0.1 2 2019",
                 "2019 1 20 views", "11 2 2019", "21 2 2019"):
        assert clean_text(text, terms, use_presidio=False) == text
    assert clean_text("Series 1 2 2019 protocol", terms, use_presidio=False) == "Series protocol"
    assert clean_text("seen 01 / 02 / 19, 2019-1-2", terms, use_presidio=False) == "seen"
    assert clean_text("seen 2/1-19, 01/02 - 19", terms, use_presidio=False) == "seen"  # two marks


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("written", ["ZQXCANARYs", "ZQXCANARYSONS", "zqxcanaryes", "ZQXCANARY's", "ZQXCANARYs'",
                                     "ZQXGIVENs"])
def test_a_name_with_letters_after_it_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                    written: str) -> None:
    """A part of the patient's name with a plural, a possessive or more letters after it
    ("ZQXCANARYs", "ZQXCANARYSONS") is taken out of the text cleaned and kept; the rest stays."""
    ds = _read("CT_small.dcm")
    ds.PatientName = "ZQXCANARY^ZQXGIVEN"
    out, data = _run_one(tmp_path, _with_text(ds, f"left knee {written} follow-up"), profile, pixels)
    assert b"ZQXCANARY" not in data.upper() and b"ZQXGIVEN" not in data.upper()
    assert all(t.startswith("left knee") and t.endswith("follow-up") for t in _texts(out) if t)


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("name, written", [("ZQXSURNAME^ZQXGIVEN", "ZQXSURNAMEZQXGIVEN"),
                                           ("ZQXSURNAME^ZQXGIVEN", "zqxgivenzqxsurname"),
                                           ("Qzu^Vyx", "QzuVyx")])
def test_a_name_without_its_separator_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                    name: str, written: str) -> None:
    """The patient's name with its parts run together (either order, short parts too) is taken out of
    the text cleaned and kept."""
    ds = _read("CT_small.dcm")
    ds.PatientName = name
    out, data = _run_one(tmp_path, _with_text(ds, f"left knee {written} follow-up"), profile, pixels)
    assert written.upper().encode() not in data.upper()
    assert all(t == "left knee follow-up" for t in _texts(out) if t)


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("name, written", [("O'ZQXBRIEN^ZQXGIVEN", "O'Zqxbriens"), ("O'ZQXBRIEN^ZQXGIVEN", "O'Zqxbrien's"),
                                           ("O'ZQXBRIEN^ZQXGIVEN", "OZqxbrien"), ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "Zqxsmith"),
                                           ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "zqxjones"),
                                           ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "ZqxsmithZqxjones"),
                                           ("ZQXSMITH^ZQXGIVEN", "Zqxsmith-Zqxjones"), ("ZQXSMITH^ZQXGIVEN", "Zqxjones-Zqxsmith"),
                                           ("ZQXCANARY^ZQXGIVEN", "ZQXCANARY2"), ("ZQXCANARY^ZQXGIVEN", "ZQXCANARY_2"),
                                           ("ZQXCANARY^ZQXGIVEN", "Zqxcanarys-2")])
def test_a_name_with_an_apostrophe_hyphen_or_digit_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                                name: str, written: str) -> None:
    """A name with an apostrophe or a hyphen ("O'Briens", "O'Brien's", "OBrien"; a double surname's
    halves, or a surname joined to another by a hyphen) or a digit after it ("ZQXCANARY2") is taken out of
    the text cleaned and kept, whole; the clinical words round it stay."""
    ds = _read("CT_small.dcm")
    ds.PatientName = name
    out, data = _run_one(tmp_path, _with_text(ds, f"left knee {written} T2-weighted follow-up"), profile, pixels)
    assert b"ZQX" not in data.upper()
    assert all(t == "left knee T2-weighted follow-up" for t in _texts(out) if t), _texts(out)


def test_a_name_s_part_takes_only_its_own_forms_out() -> None:
    """Letters after a name's part are taken with it only as ``s`` / ``es`` / ``'s`` after a part of 3
    to 5 letters, as any letters after one of 6 or more: "Leeds" stays for a "Lee", "header" and
    "lumbar" for a "Head" and a "Lumb", "has" for a "Ha"; a number's digits split stay unless they
    are one of the file's numbers of 5 digits or more."""
    terms = tags.usable_terms(set(tags._name_terms("Lee^Head")) | set(tags._name_terms("Lumb^Ha")) | {"12345", "1234"})
    assert clean_text("Leeds header lumbar has. Lees heads Lumbs", terms, use_presidio=False) == "Leeds header lumbar has."
    assert clean_text("dose 12 34 5 and 12 34 mm", terms, use_presidio=False) == "dose and 12 34 mm"
    one = tags.usable_terms(set(tags._name_terms("Zqxcanary")))  # a name of one part is a name too
    assert clean_text("Zqxcanarys knee", one, use_presidio=False) == "knee"


def test_a_name_with_punctuation_or_a_digit_takes_only_its_own_forms_out() -> None:
    """A name part with an apostrophe or a hyphen takes its own forms out and no other word: "Brienz",
    "Smithsonian", "Leeds", "T2-weighted", "b1000" stay for an "O'Brien", a "Smith-Jones", a "Lee"; a
    word hyphened to a name part goes with it ("Head-first" for a "Head")."""
    terms = tags.usable_terms(set(tags._name_terms("O'Brien^Lee")) | set(tags._name_terms("Smith-Jones^Head")))
    text = "Brienz Smithsonian Leeds T2-weighted b1000 DWI2, Obrien Brien's Jones2 Lee_3 Head-first O'Briens."
    assert clean_text(text, terms, use_presidio=False) == "Brienz Smithsonian Leeds T2-weighted b1000 DWI2."


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("name, written", [("O'ZQXBRIEN^ZQXGIVEN", "O\u2019Zqxbrien"), ("O'ZQXBRIEN^ZQXGIVEN", "O\u2018Zqxbrien"),
                                           ("O'ZQXBRIEN^ZQXGIVEN", "O`Zqxbrien"), ("O'ZQXBRIEN^ZQXGIVEN", "O\u2019Zqxbrien\u2019s"),
                                           ("O'ZQXBRIEN^ZQXGIVEN", "O\u02bcZqxbrien"), ("O'ZQXBRIEN^ZQXGIVEN", "O\u00b4Zqxbrien"),
                                           ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "Zqxsmith\u2013Zqxjones"),
                                           ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "Zqxsmith\u2011Zqxjones"),
                                           ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "Zqxsmith\u2212Zqxjones"),
                                           ("O\u2019ZQXBRIEN^ZQXGIVEN", "O'Zqxbrien"),
                                           ("ZQXSMITH\u2013ZQXJONES^ZQXGIVEN", "Zqxsmith-Zqxjones"),
                                           ("ZQXSMITH\u2013ZQXJONES^ZQXGIVEN", "Zqxjones")])
def test_a_name_with_typographic_punctuation_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                           name: str, written: str) -> None:
    """A name with an apostrophe or a hyphen written with a typographic one ("O’Brien", "O`Brien",
    "Smith–Jones" for O'BRIEN, SMITH-JONES), or stored with one and written in ASCII, is taken out of the
    text cleaned and kept whole, its punctuation with it; the clinical words round it stay."""
    ds = _read("CT_small.dcm")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = name
    out, data = _run_one(tmp_path, _with_text(ds, f"left knee {written} T2-weighted follow-up"), profile, pixels)
    assert b"ZQX" not in data.upper()
    assert all(t == "left knee T2-weighted follow-up" for t in _texts(out) if t), [ascii(t) for t in _texts(out)]


def test_a_name_with_typographic_punctuation_takes_only_its_own_forms_out() -> None:
    """Typographic punctuation is read as ASCII for the file's own names only: "Brienz", "Smithsonian",
    "T2‑weighted" stay for an "O'Brien", a "Smith-Jones", and so does the text round a name (an em dash
    sets words apart: "Smith—knee" loses the name, not "knee")."""
    terms = tags.usable_terms(set(tags._name_terms("O'Brien^Lee")) | set(tags._name_terms("Smith-Jones^Head")))
    text = "Brienz Smithsonian Leeds T2\u2011weighted b1000, O\u2019Briens Smith\u2013Jones O`Brien Head\u2010first."
    assert clean_text(text, terms, use_presidio=False) == "Brienz Smithsonian Leeds T2\u2011weighted b1000."
    assert clean_text("Smith\u2014knee", terms, use_presidio=False).endswith("knee")
    curly = tags.usable_terms(set(tags._name_terms("O\u2019Brien^Lee")))
    assert clean_text("Brienz O'Brien's knee", curly, use_presidio=False) == "Brienz knee"


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic", "safe-harbor", "basic+retain-uids"])
def test_the_file_s_own_uid_in_a_class_uid_is_replaced(tmp_path: Path, profile: str, pixels: str) -> None:
    """A Referenced SOP Class UID is kept because it names a class; one holding the file's own Study
    Instance UID (or series, instance, frame of reference) is replaced as that UID is everywhere else
    (the same keyed UID), where the profile replaces UIDs; a standard or a private class stays."""
    ds = _read("CT_small.dcm")
    study = ds.StudyInstanceUID
    refs = []
    for cls in (study, "1.2.840.10008.5.1.4.1.1.2", "1.3.12.2.1107.5.9.1"):
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = cls, "1.2.826.0.1.3680043.10.999.7"
        refs.append(item)
    ds.ReferencedImageSequence = Sequence(refs)
    out, data = _run_one(tmp_path, ds, profile, pixels)
    classes = [str(item.ReferencedSOPClassUID) for item in out.ReferencedImageSequence]
    if profile.endswith("retain-uids"):
        assert classes[0] == study == out.StudyInstanceUID
    else:
        assert study.encode() not in data and classes[0] == out.StudyInstanceUID
    assert classes[1:] == ["1.2.840.10008.5.1.4.1.1.2", "1.3.12.2.1107.5.9.1"]


@pytest.mark.parametrize("meaning, found", [("knee 9988 7766", True), ("knee 99-88-77-66", True), ("knee 9988", False),
                                            ("knee 99887 series 766", False), ("knee 9 9 8 8 7 7 6 6", True),
                                            ("knee 9 9 8 8 views 1 2 3", False)])
def test_verify_reports_an_id_with_its_digits_split_in_an_output(tmp_path: Path, meaning: str, found: bool) -> None:
    """An output whose header holds the input's ID with its digits split (written by a tool that looked
    for the ID as it was) is ``identifying-value-in-header``; part of it, or its digits far apart, are not."""
    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in.dcm"
    src_ds = _read("CT_small.dcm")
    src_ds.PatientID = "99887766"
    src_ds.save_as(src, enforce_file_format=True)
    out_ds = _with_code_meaning(_read("CT_small.dcm"), meaning)
    for kw in ("PatientName", "PatientID", "PatientBirthDate"):
        setattr(out_ds, kw, "")
    out = tmp_path / "out.dcm"
    out_ds.save_as(out, enforce_file_format=True)
    details = [f.detail for f in verify.check_pair(str(src), str(out), 1, {}, load_profile("safe-harbor"), False, "cpu")
               if f.kind == "identifying-value-in-header"]
    assert any("digits split" in d for d in details) is found, details
    assert not any("9988" in d or "7766" in d for d in details)


def _verify_details(tmp_path: Path, keyword: str, value: str, meaning: str, charset: str | None = None,
                    profile: str = "basic") -> tuple[list[str], list[str]]:
    """``deid verify``'s ``identifying-value-in-header`` details (judged by ``profile``) for an input
    holding ``value`` in ``keyword``, against an output without the input's name, ID and birth date whose
    Code Meaning is "knee follow-up" (the base) and then ``meaning``; both files in ``charset``."""
    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in.dcm"
    src_ds = _read("CT_small.dcm")
    if charset:
        src_ds.SpecificCharacterSet = charset
    setattr(src_ds, keyword, value)
    src_ds.save_as(src, enforce_file_format=True)

    def identifying(text: str) -> list[str]:
        out_ds = _with_code_meaning(_read("CT_small.dcm"), text)
        if charset:
            out_ds.SpecificCharacterSet = charset
        for kw in ("PatientName", "PatientID", "PatientBirthDate"):
            setattr(out_ds, kw, "")
        out = tmp_path / "out.dcm"
        out_ds.save_as(out, enforce_file_format=True)
        assert text.encode("utf-8" if charset == "ISO_IR 192" else "ascii") in out.read_bytes()
        return [f.detail for f in verify.check_pair(str(src), str(out), 1, {}, load_profile(profile), False, "cpu")
                if f.kind == "identifying-value-in-header"]

    return identifying("knee follow-up"), identifying(meaning)


@pytest.mark.parametrize("keyword, value, meaning, found", [
    ("OtherPatientIDs", "123-45-6789", "knee 12 345 6789", True),
    ("PatientBirthDate", "19650312", "knee 0312 1965", True),
    ("PatientTelephoneNumbers", "555-123-4567", "knee 5551 234 567", True),
    ("PatientTelephoneNumbers", "555-123-4567", "knee 555-123-4567", True),
    ("PatientBirthDate", "19650312", "knee 0312 1966", False),
    ("OtherPatientIDs", "123-45-6789", "knee 12 345 6788", False),
])
def test_verify_reports_a_number_regrouped_in_an_output(tmp_path: Path, keyword: str, value: str, meaning: str,
                                                        found: bool) -> None:
    """An output whose header holds an input's SSN, date or telephone number with its digits grouped
    otherwise is ``identifying-value-in-header``, once; other digits are not."""
    base, details = _verify_details(tmp_path, keyword, value, meaning)
    assert len(details) == len(base) + found, details
    assert not any(value in d or meaning in d for d in details)


@pytest.mark.parametrize("keyword, value, meaning, found", [
    ("PatientBirthDate", "20190102", "knee 1 2 2019", True),
    ("PatientBirthDate", "20190102", "knee 2019_1_2 follow-up", True),
    ("PatientBirthDate", "20190102", "knee 1 / 2 / 2019", True),
    ("StudyDate", "19870923", "knee 23 09 87", True),
    ("PatientBirthDate", "20190102", "knee 01/02/2019", True),  # a format of the header's: the byte search
    ("PatientBirthDate", "20190102", "knee 1 2 19 mm", False),
    ("PatientBirthDate", "20190102", "knee 1 3 2019", False),
])
def test_verify_reports_a_date_in_a_short_form_in_an_output(tmp_path: Path, keyword: str, value: str, meaning: str,
                                                            found: bool) -> None:
    """An output whose header holds an input's date in a short form (its day and month unpadded, apart
    by spaces or underscores) is ``identifying-value-in-header``, once; another date is not."""
    base, details = _verify_details(tmp_path, keyword, value, meaning)
    assert len(details) == len(base) + found, details
    assert not any(value in d or meaning in d for d in details)


@pytest.mark.parametrize("meaning, found", [("knee 2019\u20131\u20132", True), ("knee 1\u20112\u20112019", True),
                                            ("knee 2019\u20141\u20142", False)])
def test_verify_reports_a_short_date_with_typographic_dashes(tmp_path: Path, meaning: str, found: bool) -> None:
    """A UTF-8 output whose header holds an input's date in a short form with en dashes or non-breaking
    hyphens (which the run takes out as it does ``-``) is ``identifying-value-in-header``; an em dash is
    a word gap, not a date's mark, for the run and for verify alike."""
    base, details = _verify_details(tmp_path, "PatientBirthDate", "20190102", meaning, "ISO_IR 192")
    assert len(details) == len(base) + found, details


@pytest.mark.parametrize("pixels", ["none", "all"])
@pytest.mark.parametrize("profile", ["basic+clean-descriptors", "safe-harbor"])
@pytest.mark.parametrize("name, written", [("ZQXMÜLLER^ZQXJÖRG", "Zqxmueller Zqxjoerg"),
                                           ("ZQXMÜLLER^ZQXJÖRG", "ZQXMULLER, ZQXJORG"),
                                           ("ZQXØRSTED^ZQXSØREN", "Zqxorsted Zqxsoeren"),
                                           ("ZQXDVOŘÁK^ZQXZOË", "zqxdvorak zqxzoe")])
def test_a_name_written_without_its_accents_leaves_cleaned_and_kept_text(tmp_path: Path, profile: str, pixels: str,
                                                                          name: str, written: str) -> None:
    """A patient's name with accented letters (Latin-1) written in ASCII in the text, its accents dropped
    or its umlauts spelt out ("Mueller" for MÜLLER), is taken out of the text cleaned (C) and kept (T)."""
    ds = _read("CT_small.dcm")
    ds.SpecificCharacterSet = "ISO_IR 100" if name.encode("latin-1", "ignore").decode("latin-1") == name else "ISO_IR 192"
    ds.PatientName = name
    out, data = _run_one(tmp_path, _with_text(ds, f"left knee {written} follow-up"), profile, pixels)
    for part in written.replace(",", " ").split():
        assert part.upper().encode() not in data.upper()
    assert all(t.startswith("left knee") and t.endswith("follow-up") for t in _texts(out) if t)


@pytest.mark.parametrize("meaning, found", [("knee Zqxmueller follow-up", True), ("knee ZQXMULLER", True),
                                            ("knee muller follow-up", False)])
def test_verify_reports_a_name_written_without_its_accents(tmp_path: Path, meaning: str, found: bool) -> None:
    """An output whose header holds the input's accented surname in ASCII (a tool that searched for the
    name as it was written) is ``identifying-value-in-header``; another word is not."""
    from deid_pipeline import verify
    from deid_pipeline.profile import load_profile

    src = tmp_path / "in.dcm"
    src_ds = _read("CT_small.dcm")
    src_ds.SpecificCharacterSet = "ISO_IR 100"
    src_ds.PatientName = "ZQXMÜLLER^ZQXJÖRG"
    src_ds.save_as(src, enforce_file_format=True)

    def identifying(text: str) -> int:  # the findings of identifying values (CT_small's own count too)
        out_ds = _with_code_meaning(_read("CT_small.dcm"), text)
        for kw in ("PatientName", "PatientID", "PatientBirthDate"):
            setattr(out_ds, kw, "")
        out = tmp_path / "out.dcm"
        out_ds.save_as(out, enforce_file_format=True)
        return sum(f.kind.startswith("identifying-value-in")
                   for f in verify.check_pair(str(src), str(out), 1, {}, load_profile("safe-harbor"), False, "cpu"))

    assert (identifying(meaning) > identifying("knee follow-up")) is found


@pytest.mark.parametrize("name, meaning, found", [("O'ZQXBRIEN^ZQXGIVEN", "knee OZqxbrien follow-up", True),
                                                  ("O'ZQXBRIEN^ZQXGIVEN", "knee O'Zqxbriens follow-up", True),
                                                  ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "knee Zqxjones follow-up", True),
                                                  ("ZQXCANARY^ZQXGIVEN", "knee ZQXCANARY2 follow-up", True),
                                                  ("ZQXSMITH-ZQXJONES^ZQXGIVEN", "knee Zqxjon follow-up", False)])
def test_verify_reports_a_name_with_an_apostrophe_hyphen_or_digit(tmp_path: Path, name: str, meaning: str,
                                                                   found: bool) -> None:
    """An output whose header holds the input's name without its apostrophe, one half of a double
    surname, or a name part with a digit after it is ``identifying-value-in-header``; another word is not."""
    base, details = _verify_details(tmp_path, "PatientName", name, meaning, profile="safe-harbor")
    assert (len(details) > len(base)) is found


@pytest.mark.parametrize("name, meaning, found", [("O'ZQX^ZQL", "knee O\u2019Zqx follow-up", True),
                                                  ("O'ZQX^ZQL", "knee O`Zqx follow-up", True),
                                                  ("ZQ-XY^ZQL", "knee Zq\u2013Xy follow-up", True),
                                                  ("ZQXSMITH\u2013ZQXJONES^ZQXGIVEN", "knee Zqxjones follow-up", True),
                                                  ("ZQXSMITH\u2013ZQXJONES^ZQXGIVEN", "knee Zqxsmith-Zqxjones", True),
                                                  ("O\u2019ZQX^ZQL", "knee O'Zqx follow-up", True),
                                                  ("O'ZQX^ZQL", "knee O\u2019Zqy follow-up", False)])
def test_verify_reports_a_name_with_typographic_punctuation(tmp_path: Path, name: str, meaning: str, found: bool) -> None:
    """An output whose header holds the input's name with its apostrophe or hyphen written with a
    typographic one ("O’Zqx" for O'ZQX, whose parts are too short to be searched alone), or the ASCII
    form or a half of a name stored with a typographic one, is ``identifying-value-in-header``."""
    base, details = _verify_details(tmp_path, "PatientName", name, meaning, "ISO_IR 192", "safe-harbor")
    assert (len(details) > len(base)) is found
