"""Keyed pseudonyms: deterministic per key, different across keys, valid DICOM values; linkage file."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deid_pipeline.errors import ConfigError
from deid_pipeline.pseudonym import (
    MAX_OFFSET_DAYS,
    Pseudonymizer,
    read_linkage,
    write_linkage,
)

UID_RE = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")
KEY_A = b"a" * 32
KEY_B = b"b" * 32


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=64))
def test_uid_is_valid_and_deterministic(original: str) -> None:
    uid = Pseudonymizer(KEY_A).uid(original)
    assert UID_RE.match(uid) and len(uid) <= 64
    assert uid == Pseudonymizer(KEY_A).uid(original)
    assert uid != Pseudonymizer(KEY_B).uid(original)


def test_uid_differs_per_original() -> None:
    p = Pseudonymizer(KEY_A)
    assert p.uid("1.2.3.4") != p.uid("1.2.3.5")


def test_patient_id_and_name() -> None:
    p = Pseudonymizer(KEY_A)
    pid = p.patient_id("id:12345|")
    assert re.fullmatch(r"DEID-[A-Z2-7]{10}", pid)
    assert p.patient_name("id:12345|") == pid
    assert Pseudonymizer(KEY_B).patient_id("id:12345|") != pid


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_date_offset_range_and_determinism(identity: str) -> None:
    off = Pseudonymizer(KEY_A).date_offset_days(identity)
    assert -MAX_OFFSET_DAYS <= off <= -1
    assert off == Pseudonymizer(KEY_A).date_offset_days(identity)


def test_date_offsets_differ_across_keys() -> None:
    ids = [f"id:{i}|" for i in range(20)]
    a = [Pseudonymizer(KEY_A).date_offset_days(i) for i in ids]
    b = [Pseudonymizer(KEY_B).date_offset_days(i) for i in ids]
    assert a != b


def test_empty_key_refused() -> None:
    with pytest.raises(ConfigError):
        Pseudonymizer(b"")


def test_linkage_round_trip(tmp_path) -> None:
    rows = [{"patient_id": "Äneas 1", "pseudo_patient_id": "DEID-AAAAAAAAAA"}]
    path = tmp_path / "linkage.bin"
    write_linkage(path, KEY_A, rows)
    blob = path.read_bytes()
    assert b"neas" not in blob and b"DEID-" not in blob
    assert read_linkage(path, KEY_A) == rows
    with pytest.raises(ConfigError):
        read_linkage(path, KEY_B)
    path.write_bytes(b"junk")
    with pytest.raises(ConfigError):
        read_linkage(path, KEY_A)
