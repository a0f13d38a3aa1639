"""--linkage writes an encrypted table outside OUTPUT; encapsulated documents are quarantined."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from support import deid, write_key

from deid_pipeline.pseudonym import read_linkage


@pytest.fixture(scope="module")
def linked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    base = tmp_path_factory.mktemp("link")
    inp = base / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    ds.PatientID = "ZQLINK0001"
    ds.save_as(inp / "plan.dcm")
    pdf = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    pdf.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    pdf.SOPInstanceUID = generate_uid()
    pdf.file_meta.MediaStorageSOPClassUID = pdf.SOPClassUID
    pdf.file_meta.MediaStorageSOPInstanceUID = pdf.SOPInstanceUID
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4 Patient ZQLINK0001 report\n%%EOF\n"
    pdf.save_as(inp / "report.dcm")
    key = base / "k"
    write_key(key, b"linkage-test-key-0123456789abcdef")
    out = base / "out"
    linkage = base / "broker" / "linkage.bin"
    linkage.parent.mkdir()
    proc = deid("run", str(inp), str(out), "--workers", "0", "--key-file", str(key), "--linkage", str(linkage), "--quiet")
    assert proc.returncode == 3, proc.stderr[-2000:]  # the PDF is quarantined
    return out, linkage, key, inp


def test_linkage_is_encrypted_and_readable_with_the_key(linked_run) -> None:
    out, linkage, key, _ = linked_run
    data = linkage.read_bytes()
    assert b"ZQLINK0001" not in data
    rows = read_linkage(linkage, key.read_bytes().strip())
    assert any("ZQLINK0001" in json.dumps(r) for r in rows)
    written = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines() if '"written"' in x]
    pseudonym_folder = written[0]["output_path"].split("/")[0]
    assert any(pseudonym_folder in json.dumps(r) for r in rows)
    for p in out.rglob("*"):
        if p.is_file():
            assert b"ZQLINK0001" not in p.read_bytes()


def test_linkage_inside_output_is_refused(linked_run, tmp_path: Path) -> None:
    _, _, key, inp = linked_run
    out = tmp_path / "o"
    proc = deid("run", str(inp), str(out), "--key-file", str(key), "--linkage", str(out / "l.bin"))
    assert proc.returncode == 2 and not out.exists()


def test_encapsulated_document_is_quarantined(linked_run) -> None:
    out, _, _, _ = linked_run
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    codes = {r["reason"]["code"] for r in recs if r["reason"]}
    assert "encapsulated-document" in codes
    assert sum(r["status"] == "written" for r in recs) == 1


def test_recognizable_visual_features_quarantined_by_safe_harbor(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.RecognizableVisualFeatures = "YES"
    ds.save_as(inp / "face.dcm")
    key = tmp_path / "k"
    write_key(key, b"face-test-key-0123456789abcdef")
    proc = deid("run", str(inp), str(tmp_path / "o"), "--workers", "0", "--key-file", str(key), "--quiet", "--pixels", "none")
    assert proc.returncode == 3
    rec = json.loads((tmp_path / "o" / "manifest.jsonl").read_text())
    assert rec["status"] == "quarantined" and rec["reason"]["code"] == "recognizable-visual-features"
    proc = deid("run", str(inp), str(tmp_path / "o2"), "--profile", "basic", "--workers", "0", "--key-file", str(key), "--quiet", "--pixels", "none")
    assert proc.returncode == 0


def _audio_run(tmp_path: Path, profile: str) -> tuple[Path, Path, Path, int]:
    """``deid run`` (header only) of :func:`_audio_inputs` under ``profile``: input, output, key, exit code."""
    inp = tmp_path / "in"
    inp.mkdir()
    _audio_inputs(inp)
    key = tmp_path / "k"
    write_key(key, b"audio-test-key-0123456789abcdef")
    out = tmp_path / "o"
    proc = deid("run", str(inp), str(out), "--profile", profile, "--workers", "0", "--key-file", str(key),
                "--quiet", "--pixels", "none")
    return inp, out, key, proc.returncode


def _audio_inputs(inp: Path) -> None:
    """A dictation (Basic Voice Audio), an ECG carrying a mu-law channel group, and a plain ECG."""
    ecg = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    ecg.PatientName = "Quartermaine^Zebulon"
    ecg.save_as(inp / "ecg.dcm")
    voice = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    voice.SOPClassUID = voice.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.4.1"
    voice.SOPInstanceUID = voice.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    voice.WaveformSequence = voice.WaveformSequence[:1]
    voice.save_as(inp / "dictation.dcm")
    mixed = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    mixed.SOPInstanceUID = mixed.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    mixed.WaveformSequence[1].WaveformSampleInterpretation = "MB"  # mu-law: a sound channel group
    mixed.save_as(inp / "ecg_with_sound.dcm")


@pytest.mark.parametrize("profile", ["basic", "safe-harbor"])
def test_sound_recordings_are_quarantined(tmp_path: Path, profile: str) -> None:
    """A sound recording says names aloud and a voice identifies (HIPAA's voice prints); no stage
    listens to one, so a file holding one is quarantined with reason ``audio``; basic wrote both."""
    inp, out, key, code = _audio_run(tmp_path, profile)
    assert code == 3
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted((r["status"], (r["reason"] or {}).get("code")) for r in recs) == [
        ("quarantined", "audio"), ("quarantined", "audio"), ("written", None)]
    assert len(list(out.rglob("*.dcm"))) == 1


def test_a_profile_may_keep_sound_and_verify_reports_it(tmp_path: Path) -> None:
    """``audio: keep`` writes the recordings as they came; ``deid verify`` names each one."""
    user = tmp_path / "voices.yaml"
    user.write_text("name: voices\nversion: '1'\nextends: basic\nsettings:\n  audio: keep\nrows: []\n")
    inp, out, key, code = _audio_run(tmp_path, str(user))
    assert code == 0
    assert len(list(out.rglob("*.dcm"))) == 3
    bare = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan")
    assert bare.returncode == 1 and "the run used" not in bare.stderr, bare.stderr[-2000:]  # the recorded profile
    proc = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan",
                "--profile", str(user))
    report = json.loads((out / "verify.json").read_text())
    kinds = [f["kind"] for f in report["findings"]]
    assert kinds.count("audio-kept") == 2 and proc.returncode == 1, kinds
    assert report["profile"]["sha256"] == report["run_profile_sha256"] and "the run used" not in proc.stderr
    other = deid("verify", str(out), "--against", str(inp), "--key-file", str(key), "--workers", "0", "--no-rescan",
                 "--profile", "basic")  # judged by another profile's rules: said so
    assert other.returncode == 1 and "the run used voices" in other.stderr, other.stderr[-2000:]
