"""Header profiles: generated from PS3.15 Table E.1-1, layered, validated, fast to query."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import time
from pathlib import Path

import pytest
import yaml
from pydicom import datadict
from pydicom.sr.codedict import codes

from deid_pipeline.errors import ProfileError
from deid_pipeline.profile import ElementRef, Profile, Rule, list_profiles, load_profile, load_recorded, record_profile
from deid_pipeline.resources import configs_dir

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
TABLE = json.loads((CONFIGS / "standard" / "table_E.1-1.json").read_text(encoding="utf-8"))
SAFE = json.loads((CONFIGS / "standard" / "table_E.3.10-1.json").read_text(encoding="utf-8"))
PRIVATE_ROW = "(gggg,eeee) where gggg is odd"

OPTIONS = {
    "retain-safe-private": ("retain_safe_private", "113111"),
    "retain-uids": ("retain_uids", "113110"),
    "retain-device-identity": ("retain_device_identity", "113109"),
    "retain-institution-identity": ("retain_institution_identity", "113112"),
    "retain-patient-characteristics": ("retain_patient_characteristics", "113108"),
    "retain-long-full-dates": ("retain_longitudinal_full_dates", "113106"),
    "retain-long-modified-dates": ("retain_longitudinal_modified_dates", "113107"),
    "clean-descriptors": ("clean_descriptors", "113105"),
    "clean-structured-content": ("clean_structured_content", "113104"),
    "clean-graphics": ("clean_graphics", "113103"),
}


def ref(tag: int, vr: str = "", creator: str | None = None, depth: int = 0) -> ElementRef:
    keyword = "" if (tag >> 16) & 1 else (datadict.keyword_for_tag(tag) or "")
    return ElementRef(tag, vr, keyword, creator, depth, ())


def table_ref(tag_text: str) -> ElementRef:
    """An element a Table E.1-1 row is about (x -> 0 for the repeating groups)."""
    tag = int(tag_text[1:5].replace("x", "0") + tag_text[6:10].replace("x", "0"), 16)
    vr = datadict.dictionary_VR(tag).split(" or ")[0] if datadict.dictionary_has_tag(tag) else ""
    return ref(tag, vr)


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def basic() -> Profile:
    return load_profile("basic")


# --------------------------------------------------------------------------- generated data


def test_tables_are_the_recorded_edition() -> None:
    for name in ("table_E.1-1.json", "table_E.1-1a.json", "table_E.3.10-1.json"):
        data = json.loads((CONFIGS / "standard" / name).read_text(encoding="utf-8"))
        canonical = json.dumps(data["rows"], sort_keys=True, separators=(",", ":")).encode()
        assert hashlib.sha256(canonical).hexdigest() == data["content_sha256"], name
        assert data["edition"] == "2026d"
    readme = (CONFIGS / "standard" / "README.md").read_text(encoding="utf-8")
    assert "2026d" in readme and "© NEMA" in readme
    assert len(TABLE["rows"]) == 657
    basic_doc = yaml.safe_load((CONFIGS / "profiles" / "basic.yaml").read_text(encoding="utf-8"))
    assert basic_doc["standard"]["edition"] == "2026d"


def test_basic_has_every_table_row_with_its_code(basic: Profile) -> None:
    doc = yaml.safe_load((CONFIGS / "profiles" / "basic.yaml").read_text(encoding="utf-8"))
    rows = {r["tag"]: r["action"] for r in doc["rows"]}
    table = {r["tag"]: r for r in TABLE["rows"] if r["tag"] != PRIVATE_ROW}
    assert len(doc["rows"]) == len(table) == 656
    assert rows == {t: r["basic_profile"] for t, r in table.items()}
    retired = {r["tag"] for r in doc["rows"] if r.get("retired")}
    assert retired == {t for t, r in table.items() if r["retired"]}
    for tag, row in table.items():
        rule = basic.rule_for(table_ref(tag))
        assert rule.action == row["basic_profile"], tag
        assert rule.origin.startswith("basic:(")
    # the private-attributes row is a setting
    assert basic.settings.private == "remove"
    assert basic.rule_for(ref(0x00091010, "LO", "ACME")) == Rule("X", "default:private")
    assert basic.codes == (("DCM", "113100", "Basic Application Confidentiality Profile"),)
    assert basic.layers == ("basic",)


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_profiles", REPO / "scripts" / "gen_profiles.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    written = gen.generate(CONFIGS / "standard", tmp_path)
    assert len(written) == 3 + 1 + 1 + len(OPTIONS)
    for path in written:
        rel = path.relative_to(tmp_path)
        assert path.read_bytes() == (CONFIGS / rel).read_bytes(), f"{rel} differs: run scripts/gen_profiles.py"


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_option_overlay_changes_exactly_its_rows(basic: Profile, name: str) -> None:
    column, code = OPTIONS[name]
    prof = load_profile(name)
    assert prof.layers == ("basic", name)
    changed = {}
    for row in TABLE["rows"]:
        if row["tag"] == PRIVATE_ROW:
            continue
        before = basic.rule_for(table_ref(row["tag"]))
        after = prof.rule_for(table_ref(row["tag"]))
        if after != before:
            changed[row["tag"]] = after.action
            assert after.origin.startswith(f"{name}:")
    expected = {r["tag"]: r["options"][column] for r in TABLE["rows"] if column in r["options"]}
    expected.pop(PRIVATE_ROW, None)
    assert changed == expected
    assert [c[1] for c in prof.codes] == ["113100", code]
    assert all(c[0] == "DCM" for c in prof.codes)


def test_option_codes_carry_pydicom_meanings() -> None:
    keywords = {
        "113100": "BasicApplicationConfidentialityProfile",
        "113101": "CleanPixelDataOption",
        "113103": "CleanGraphicsOption",
        "113104": "CleanStructuredContentOption",
        "113105": "CleanDescriptorsOption",
        "113106": "RetainLongitudinalTemporalInformationFullDatesOption",
        "113107": "RetainLongitudinalTemporalInformationModifiedDatesOption",
        "113108": "RetainPatientCharacteristicsOption",
        "113109": "RetainDeviceIdentityOption",
        "113110": "RetainUidsOption",
        "113111": "RetainSafePrivateOption",
        "113112": "RetainInstitutionIdentityOption",
    }
    for name in [*OPTIONS, "basic", "safe-harbor"]:
        for scheme, value, meaning in load_profile(name).codes:
            code = getattr(codes.DCM, keywords[value])
            assert (scheme, value, meaning) == (code.scheme_designator, code.value, code.meaning)


def test_option_settings() -> None:
    assert load_profile("retain-safe-private").settings.private == "retain-safe"
    assert load_profile("retain-long-modified-dates").settings.dates == "shift"
    assert load_profile("clean-graphics").settings.graphics == "clean"
    assert load_profile("retain-uids").settings == load_profile("basic").settings


def test_retain_safe_private_uses_table_e3_10_1() -> None:
    prof = load_profile("retain-safe-private")
    row = SAFE["rows"][0]  # (7053,xx00) Philips PET Private Group
    group, byte = int(row["tag"][1:5], 16), int(row["tag"][8:10], 16)
    tag = (group << 16) | 0x1000 | byte
    assert prof.rule_for(ref(tag, row["vr"], row["private_creator"])).action == "K"
    assert prof.rule_for(ref(tag, row["vr"], "SOMEONE ELSE")).action == "X"
    assert prof.rule_for(ref(tag | 0x0F, "LO", row["private_creator"])).action == "X"
    assert prof.rule_for(ref((group << 16) | 0x0010, "LO", row["private_creator"])).action == "K"
    assert prof.rule_for(ref(0x00091010, "LO", "ACME")).action == "X"
    assert load_profile("basic").rule_for(ref(tag, row["vr"], row["private_creator"])).action == "X"


# --------------------------------------------------------------------------- layering and specs


def test_combined_spec_equals_user_file(tmp_path: Path) -> None:
    combined = load_profile("basic+retain-uids+clean-descriptors")
    assert combined.name == "basic+retain-uids+clean-descriptors"
    assert combined.layers == ("basic", "retain-uids", "clean-descriptors")
    assert [c[1] for c in combined.codes] == ["113100", "113110", "113105"]
    user = load_profile(
        str(
            write(
                tmp_path / "mine.yaml",
                {"name": "mine", "version": "3", "extends": ["retain-uids", "clean-descriptors"], "rows": []},
            )
        )
    )
    assert user.layers == ("basic", "retain-uids", "clean-descriptors", "mine")
    assert user.name == "mine" and user.version == "3"
    for row in TABLE["rows"][:200]:
        r = table_ref(row["tag"]) if row["tag"] != PRIVATE_ROW else ref(0x00091010, "LO")
        assert user.rule_for(r).action == combined.rule_for(r).action
    assert combined.sha256 == load_profile("basic+retain-uids+clean-descriptors").sha256
    assert combined.sha256 != load_profile("basic").sha256
    assert len(combined.sha256) == 64


def test_layers_dedupe_and_later_layer_wins() -> None:
    a = load_profile("retain-long-full-dates+retain-long-modified-dates")
    assert a.layers == ("basic", "retain-long-full-dates", "retain-long-modified-dates")
    assert a.rule_for(ref(0x00080020, "DA")) == Rule("C", "retain-long-modified-dates:(0008,0020)")
    # the full-dates option no longer holds, so its code is not claimed
    assert [c[1] for c in a.codes] == ["113100", "113107"]


def test_precedence_inside_and_across_layers(tmp_path: Path) -> None:
    doc = {
        "name": "prec",
        "version": "1",
        "extends": "basic",
        "rows": [
            {"keyword": "PatientName", "action": "K"},
            {"tag": "(0010,0010)", "action": "D"},  # tag beats keyword for the same element
            {"vr": "PN", "action": "X"},  # beats basic's exact rows (later layer) ...
            {"vr": "LO", "action": "C"},  # ... and never applies to private elements
            {"tag": "(60xx,xxxx)", "action": "K"},
            {"tag": "(60xx,3000)", "action": "Z"},  # fewer x wins
            {"tag": "(0009,xx10)", "action": "D"},
            {"tag": '(0009,"ACME 1.0",10)', "action": "K"},  # private creator beats the pattern
            {"tag": "(50xx,0010)", "action": "K"},
        ],
    }
    prof = load_profile(str(write(tmp_path / "prec.yaml", doc)))
    assert prof.rule_for(ref(0x00100010, "PN")) == Rule("D", "prec:(0010,0010)")
    assert prof.rule_for(ref(0x00081050, "PN")) == Rule("X", "prec:vr=PN")
    assert prof.rule_for(ref(0x00081030, "LO")) == Rule("C", "prec:vr=LO")  # basic: X
    assert prof.rule_for(ref(0x60003000, "OW")).action == "Z"
    assert prof.rule_for(ref(0x60023000, "OW")).action == "Z"
    assert prof.rule_for(ref(0x60000010, "US")) == Rule("K", "prec:(60xx,xxxx)")
    assert prof.rule_for(ref(0x60014000, "LT")) == Rule("X", "default:private")  # odd group: not 60xx
    assert prof.rule_for(ref(0x00091010, "LO", "ACME 1.0")) == Rule("K", 'prec:(0009,"ACME 1.0",10)')
    assert prof.rule_for(ref(0x00091110, "LO", "OTHER")) == Rule("D", "prec:(0009,xx10)")
    assert prof.rule_for(ref(0x00091011, "LO", "OTHER")) == Rule("X", "default:private")
    assert prof.rule_for(ref(0x50000010, "US")).action == "K"
    assert prof.rule_for(ref(0x50002000, "OW")) == Rule("X", "basic:(50xx,xxxx)")
    # a private creator given in the other notation
    doc2 = {"name": "prec2", "version": "1", "extends": str(tmp_path / "prec.yaml"),
            "rows": [{"tag": '(0009,"ACME 1.0",xx10)', "action": "X"}, {"vr": "PN", "action": "Z"}]}
    prof2 = load_profile(str(write(tmp_path / "prec2.yaml", doc2)))
    assert prof2.layers == ("basic", "prec", "prec2")
    assert prof2.rule_for(ref(0x00091010, "LO", "ACME 1.0")).action == "X"
    assert prof2.rule_for(ref(0x00100010, "PN")) == Rule("Z", "prec2:vr=PN")  # later layer's VR row


def test_defaults_from_settings(tmp_path: Path, basic: Profile) -> None:
    assert basic.rule_for(ref(0x00181003, "LO")) == Rule("K", "default:unlisted-keep")
    assert basic.rule_for(ref(0x00280002, "US")) == Rule("K", "default:unlisted-keep")
    assert basic.rule_for(ref(0x00180050, "UN")) == Rule("X", "default:un")
    assert basic.rule_for(ref(0x00190010, "LO", "ACME")) == Rule("X", "default:private-creator")
    assert basic.rule_for(ref(0x60000010, "US")) == Rule("X", "default:graphics")
    assert load_profile("clean-graphics").rule_for(ref(0x60000010, "US")) == Rule("K", "default:graphics-clean")
    doc = {"name": "strict", "version": "1", "extends": "basic",
           "settings": {"unlisted_public": "remove", "keep_list": ["Modality"]}}
    strict = load_profile(str(write(tmp_path / "strict.yaml", doc)))
    assert strict.rule_for(ref(0x00080060, "CS")) == Rule("K", "default:keep-list")
    assert strict.rule_for(ref(0x00280002, "US")) == Rule("X", "default:unlisted")
    sh = load_profile("safe-harbor")
    assert sh.rule_for(ref(0x00181003, "LO")) == Rule("X", "default:unlisted-text")
    assert sh.rule_for(ref(0x00080060, "CS")) == Rule("K", "default:keep-list")
    assert sh.rule_for(ref(0x00280002, "US")) == Rule("K", "default:unlisted-keep")
    # locators of the site's copy or of a person, and any person's name, go even where unlisted is kept
    assert basic.rule_for(ref(0x00081190, "UR")) == Rule("X", "default:unlisted-locator")  # Retrieve URL
    assert basic.rule_for(ref(0x0074100C, "LO")) == Rule("X", "default:unlisted-locator")  # Contact Display Name
    assert basic.rule_for(ref(0x00142006, "PN")) == Rule("X", "default:unlisted-person-name")  # Evaluator Name
    assert basic.rule_for(ref(0x0008010E, "UR")) == Rule("K", "default:unlisted-keep")  # Coding Scheme URL
    doc = {"name": "urls", "version": "1", "extends": "basic", "rows": [{"keyword": "RetrieveURL", "action": "K"}]}
    assert load_profile(str(write(tmp_path / "urls.yaml", doc))).rule_for(ref(0x00081190, "UR")).action == "K"


# --------------------------------------------------------------------------- safe harbor


def test_safe_harbor() -> None:
    sh = load_profile("safe-harbor")
    s = sh.settings
    assert (s.pixels, s.pixel_mode, s.dates, s.unlisted_public, s.private, s.graphics) == (
        "all", "all-text", "year", "remove-text", "remove", "remove"
    )
    assert s.encapsulated_documents == "quarantine" and s.max_age_years == 89
    assert sh.layers == ("basic", "safe-harbor")
    assert [c[1] for c in sh.codes] == ["113100", "113101"]
    assert sh.rule_for(ref(0x00080020, "DA")).action == "C"  # StudyDate -> year
    assert sh.rule_for(ref(0x0040A121, "DA")).action == "C"  # unlisted Date -> year
    assert sh.rule_for(ref(0x00080030, "TM")).action == "C"
    assert sh.rule_for(ref(0x00100030, "DA")).action in {"X", "Z"}  # birth date removed
    assert sh.rule_for(ref(0x00101010, "AS")).action == "C"  # age kept, capped
    assert sh.rule_for(ref(0x00101040, "LO")).action == "X"  # address
    assert sh.rule_for(ref(0x00880200, "SQ")).action == "X"  # icon
    assert sh.rule_for(ref(0x00700001, "SQ")).action == "X"  # graphic annotations
    assert sh.rule_for(ref(0x00080070, "LO", depth=1)).action == "K"  # Manufacturer (keep list)
    assert sh.rule_for(ref(0x00201041, "UN")).action == "X"
    assert sh.rule_for(ref(0x00291010, "UN", "SIEMENS CSA HEADER")).action == "X"
    assert sh.rule_for(ref(0x00080018, "UI")).action == "U"
    # re-listed rows keep basic's action, except the documented changes
    basic_doc = yaml.safe_load((CONFIGS / "profiles" / "basic.yaml").read_text(encoding="utf-8"))
    basic_rows = {r["tag"]: r["action"] for r in basic_doc["rows"]}
    sh_doc = yaml.safe_load((CONFIGS / "profiles" / "safe-harbor.yaml").read_text(encoding="utf-8"))
    changed = set()
    for row in sh_doc["rows"]:
        if "keyword" in row:
            tag = datadict.tag_for_keyword(row["keyword"])
            key = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        elif "tag" in row:
            key = row["tag"]
        else:
            continue
        if basic_rows[key] != row["action"]:
            changed.add(key)
    assert changed == {"(0010,1010)", "(0070,0001)"}  # Patient's Age C, Graphic Annotation X
    # the keep list only names unlisted text attributes
    listed = {r["tag"] for r in TABLE["rows"]}
    for kw in s.keep_list:
        tag = datadict.tag_for_keyword(kw)
        assert f"({tag >> 16:04X},{tag & 0xFFFF:04X})" not in listed, kw
        assert datadict.dictionary_VR(tag) in {"AE", "AS", "CS", "DS", "IS", "LO", "LT", "SH", "ST", "UC", "UT"}, kw
    # options stacked underneath do not survive; stacked on top they are claimed
    assert [c[1] for c in load_profile("retain-device-identity+safe-harbor").codes] == ["113100", "113101"]
    assert "113110" in [c[1] for c in load_profile("safe-harbor+retain-uids").codes]


def test_claims_follow_behaviour(tmp_path: Path) -> None:
    doc = {"name": "nopix", "version": "1", "extends": "safe-harbor", "settings": {"pixels": "triage"}}
    assert [c[1] for c in load_profile(str(write(tmp_path / "nopix.yaml", doc))).codes] == ["113100"]
    doc = {"name": "keepname", "version": "1", "extends": "basic",
           "rows": [{"keyword": "PatientName", "action": "K"}]}
    assert load_profile(str(write(tmp_path / "keepname.yaml", doc))).codes == ()
    doc = {"name": "safepriv", "version": "1", "extends": "basic", "settings": {"private": "retain-safe"}}
    assert load_profile(str(write(tmp_path / "safepriv.yaml", doc))).codes == ()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"tag": "(0010,0010)", "action": "Q"}], "row 0 (tag (0010,0010)): unknown action code 'Q'"),
        ([{"keyword": "PatientName", "action": "X"}, {"tag": "(0010,001G)", "action": "X"}],
         "row 1 (tag (0010,001G)): bad tag syntax"),
        ([{"keyword": "PatientNom", "action": "X"}], "row 0 (keyword PatientNom): unknown keyword"),
        ([{"vr": "ZZ", "action": "X"}], "row 0 (vr ZZ): unknown VR"),
        ([{"tag": "(0010,0010)", "keyword": "PatientID", "action": "X"}], "row 0 (tag (0010,0010)): keyword"),
        ([{"tag": "(0010,0010)", "action": "X", "acton": "K"}], "row 0 (tag (0010,0010)): acton"),
        ([{"action": "X"}], "row 0 (no tag, keyword or vr)"),
        ([{"tag": "(0010,0010)", "action": "X"}, {"tag": "(0010,0010)", "action": "Z"}], "duplicate of row 0"),
        ([{"tag": '(0010,"ACME",10)', "action": "K"}], "odd group"),
        ([{"tag": 100010, "action": "K"}], "row 0 (tag 100010): bad tag syntax"),
        ([{"vr": "PN", "keyword": "PatientName", "action": "K"}], "not both"),
    ],
)
def test_invalid_rows_name_file_and_row(tmp_path: Path, rows: list, needle: str) -> None:
    path = write(tmp_path / "bad.yaml", {"name": "bad", "version": "1", "extends": "basic", "rows": rows})
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert str(path) in str(err.value)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"extends": "nope"}, "unknown extends 'nope'"),
        ({"extends": "basic", "settings": {"pixelz": "all"}}, "unknown setting(s) pixelz"),
        ({"extends": "basic", "settings": {"dates": "weekly"}}, "settings: dates"),
        ({"extends": "basic", "settings": {"keep_list": ["NotAKeyword"]}}, "NotAKeyword"),
        ({"extends": "basic", "colour": "red"}, "colour"),
        ({"extends": "basic", "name": "basic"}, "taken by a built-in"),
    ],
)
def test_invalid_profiles(tmp_path: Path, doc: dict, needle: str) -> None:
    path = write(tmp_path / "bad.yaml", {"name": "bad", "version": "1", **doc})
    with pytest.raises(ProfileError) as err:
        load_profile(str(path))
    assert str(path) in str(err.value) and needle in str(err.value)


def test_cycles_and_unknown_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.yaml", {"name": "a", "version": "1", "extends": "b.yaml"})
    write(tmp_path / "b.yaml", {"name": "b", "version": "1", "extends": "a.yaml"})
    with pytest.raises(ProfileError, match="cycle"):
        load_profile(str(tmp_path / "a.yaml"))
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        load_profile("basic+nope")
    with pytest.raises(ProfileError, match="no such file"):
        load_profile(str(tmp_path / "missing.yaml"))
    # built-ins can form cycles too
    configs = tmp_path / "configs"
    (configs / "profiles").mkdir(parents=True)
    write(configs / "profiles" / "x.yaml", {"name": "x", "version": "1", "extends": "y"})
    write(configs / "profiles" / "y.yaml", {"name": "y", "version": "1", "extends": ["x"]})
    monkeypatch.setenv("DEID_CONFIGS_DIR", str(configs))
    assert configs_dir() == configs
    with pytest.raises(ProfileError, match=r"profiles/y.yaml: extends cycle x -> y -> x"):
        load_profile("x")


def test_not_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="mapping"):
        load_profile(str(path))
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="YAML"):
        load_profile(str(path))


# --------------------------------------------------------------------------- API


def test_list_profiles() -> None:
    listed = list_profiles()
    names = [n for n, _, _ in listed]
    assert names[:2] == ["basic", "safe-harbor"]
    assert set(names) == {"basic", "safe-harbor", *OPTIONS}
    assert all(version and description for _, version, description in listed)


def test_table_and_pickle(basic: Profile) -> None:
    rows = load_profile("safe-harbor").table()
    by_match = {r["tag"] or f"vr={r['vr']}": r for r in rows}
    assert by_match["(0010,0010)"]["action"] == "Z" and by_match["(0010,0010)"]["layer"] == "safe-harbor"
    assert by_match["(0008,0020)"]["origin"] == "safe-harbor:vr=DA"
    assert by_match["vr=UN"]["kind"] == "vr"
    assert by_match["(0008,0050)"]["keyword"] == "AccessionNumber"
    assert {"tag", "vr", "kind", "keyword", "name", "action", "origin", "layer", "retired"} <= set(rows[0])
    clone = pickle.loads(pickle.dumps(basic))
    assert clone.sha256 == basic.sha256 and clone.rule_for(ref(0x00100010, "PN")).action == "Z"


def test_rule_for_is_fast(basic: Profile) -> None:
    refs = [table_ref(r["tag"]) for r in TABLE["rows"] if r["tag"] != PRIVATE_ROW]
    refs += [ref(0x00091000 | i, "LO", "ACME") for i in range(50)]
    sh = load_profile("safe-harbor")
    start = time.perf_counter()
    for _ in range(100):
        for r in refs:
            sh.rule_for(r)
    assert time.perf_counter() - start < 2.0  # ~70k lookups


@pytest.mark.parametrize("spec", ["basic", "safe-harbor", "basic+retain-uids+clean-descriptors",
                                  "safe-harbor+retain-safe-private+retain-long-modified-dates"])
def test_a_recorded_profile_rebuilds_the_same_rules(spec: str) -> None:
    """What a run keeps of its profile (each layer's text, base first) rebuilds a profile with the
    same sha256 (its rows, settings and codes) through JSON, without the files."""
    profile = load_profile(spec)
    doc = json.loads(json.dumps(record_profile(profile)))
    again = load_recorded(doc)
    assert again.sha256 == profile.sha256 == doc["sha256"] and again.name == profile.name
    assert again.settings == profile.settings and again.layers == profile.layers


def test_a_recorded_user_profile_outlives_its_files(tmp_path: Path) -> None:
    """A user profile extending another file by a relative path: recorded, then the files changed or
    gone, the record still gives the run's rules; a file changed between load and record is refused
    (the record would not be the rules the run used)."""
    (tmp_path / "mid.yaml").write_text("name: mid\nversion: '1'\nextends: basic\nrows:\n  - keyword: StationName\n    action: K\n")
    site = tmp_path / "site.yaml"
    site.write_text("name: site\nversion: '2'\nextends: mid.yaml\nsettings:\n  audio: keep\nrows: []\n")
    profile = load_profile(str(site))
    doc = json.loads(json.dumps(record_profile(profile)))
    assert [layer["name"] for layer in doc["layers"]] == ["basic", "mid", "site"]
    assert str(tmp_path) not in json.dumps(doc)  # the texts, not where they were
    site.write_text("name: site\nversion: '3'\nextends: basic\nrows: []\n")
    with pytest.raises(ProfileError, match="site.yaml: the file changed while the run was starting"):
        record_profile(profile)  # site.yaml is not the file that was loaded any more
    (tmp_path / "mid.yaml").unlink()
    again = load_recorded(doc)
    assert again.sha256 == profile.sha256 and again.settings.audio == "keep"
    station = ElementRef(datadict.tag_for_keyword("StationName"), "SH", "StationName", None, 0, ())
    assert again.rule_for(station).action == "K" != load_profile(str(site)).rule_for(station).action
    doc["layers"][1]["text"] = "name: mid\nversion: '1'\nrows:\n  - keyword: StationName\n    action: NOPE\n"
    with pytest.raises(ProfileError, match=r"mid \(as the run recorded it\): row 0"):
        load_recorded(doc)
