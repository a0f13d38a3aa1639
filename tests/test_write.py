"""``pipeline.write_exclusive``: atomic, never replacing other content, nothing left beside the output."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file

from deid_pipeline import pipeline

REL = "PATIENT/STUDY/SERIES/1.2.3.dcm"


def _ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def test_written_once_accepted_again_and_a_different_version_kept_apart(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        path, sha = pipeline.write_exclusive(tmp_path, REL, _ct())
        assert path == REL
        data = (tmp_path / REL).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert pydicom.dcmread(tmp_path / REL).PatientName == "CompressedSamples^CT1"
        assert os.stat(tmp_path / REL).st_mode & 0o777 == 0o640 and os.stat(tmp_path / REL).st_nlink == 1
        # the same content again (a resumed run): accepted where it is
        assert pipeline.write_exclusive(tmp_path, REL, _ct()) == (REL, sha)
        # another version of the same SOP instance: beside it, under a name from its hash
        other = _ct()
        other.PatientName = "OTHER^VERSION"
        path2, sha2 = pipeline.write_exclusive(tmp_path, REL, other)
        assert sha2 != sha and path2 == f"PATIENT/STUDY/SERIES/1.2.3.{sha2[:12]}.dcm"
        assert (tmp_path / REL).read_bytes() == data  # the first is never replaced
        # nothing else in the folder: no temporary file left behind
        assert sorted(p.name for p in (tmp_path / REL).parent.iterdir()) == sorted(["1.2.3.dcm", Path(path2).name])
    finally:
        os.umask(old)
