"""Manifest ledger, resume reconciliation, tamper-evident chain, discovery and sniffing."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from deid_pipeline.discover import walk_inputs
from deid_pipeline.manifest import (Ledger, atomic_write_json, key_fingerprint, parse_public_key, public_key_pem, run_digest,
                                   signing_key, verify_chain)
from deid_pipeline.pipeline import sniff
from deid_pipeline.types import FileResult

from support import deid

KEY = b"k" * 32
PROFILE = {"name": "t", "version": "1", "sha256": "0" * 64}


def _ledger(tmp: Path) -> Ledger:
    (tmp / "out").mkdir(exist_ok=True)
    (tmp / "priv").mkdir(exist_ok=True)
    return Ledger(tmp / "out", tmp / "priv", KEY, dict(PROFILE), "0.1.0")


def _result(i: int, status: str = "written") -> FileResult:
    return FileResult(rel_input=f"Doe^John/{i}", input_sha256=f"{i:064x}", input_size=i, status=status,
                      output_path=f"P/{i}.dcm" if status == "written" else "", output_sha256="ab" * 32 if status == "written" else "")


def _finish(ledger: Ledger) -> None:
    ledger.close()
    run = {"records": ledger.records, "workers": 2, "profile": dict(PROFILE)}
    atomic_write_json(ledger.output_dir / "run.json", {**run, "chain": ledger.chain(run)})


def _finished(tmp: Path, records: int) -> Path:
    """OUTPUT of a finished run of ``records`` written files (manifest and ``run.json``)."""
    ledger = _ledger(tmp)
    ledger.open()
    for i in range(records):
        ledger.add(_result(i))
    _finish(ledger)
    return ledger.output_dir


def test_chain_intact_and_every_tamper_found(tmp_path: Path) -> None:
    out = _finished(tmp_path, 6)
    assert verify_chain(out, KEY) == []
    manifest = out / "manifest.jsonl"
    original = manifest.read_bytes()
    lines = original.splitlines(keepends=True)

    def check(data: bytes) -> list[int]:
        manifest.write_bytes(data)
        return [p.line for p in verify_chain(out, KEY)]

    edited = lines[2].replace(b'"status":"written"', b'"status":"skipped"')
    assert 3 in check(b"".join(lines[:2] + [edited] + lines[3:])) or 4 in check(b"".join(lines[:2] + [edited] + lines[3:]))
    assert 3 in check(b"".join(lines[:2] + lines[3:]))  # deleted line 3: line 3 (old 4) breaks
    assert 2 in check(b"".join([lines[0], lines[0]] + lines[1:]))  # inserted
    assert 2 in check(b"".join([lines[0], lines[2], lines[1]] + lines[3:]))  # reordered
    assert check(b"".join(lines[:-1]))  # truncated tail
    manifest.write_bytes(original)
    assert verify_chain(out, b"another key" * 3)  # HMAC fails under another key
    assert verify_chain(out, KEY) == []


def test_resume_keeps_common_prefix_and_drops_torn_lines(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.open()
    for i in range(5):
        ledger.add(_result(i))
    ledger.close()
    # simulate a kill: journal lost its last line; manifest has a torn extra line
    jp = ledger.journal_path
    jp.write_bytes(b"".join(jp.read_bytes().splitlines(keepends=True)[:4]))
    with open(ledger.manifest_path, "ab") as fh:
        fh.write(b'{"schema_version":"1.0","input_sha')
    again = _ledger(tmp_path)
    assert again.open() == 4
    assert [again.is_done(f"Doe^John/{i}") for i in range(6)] == [True] * 4 + [False] * 2
    again.add(_result(4))
    _finish(again)
    assert verify_chain(again.output_dir, KEY) == []
    assert len(again.manifest_path.read_text().splitlines()) == 5
    assert oct(os.stat(again.journal_path).st_mode & 0o777) == oct(0o600)


def _failed(i: int, code: str = "unreadable") -> FileResult:
    r = _result(i, "failed")
    r.reason_code, r.reason = code, "the input could not be read: Input/output error"
    return r


def test_retry_failed_takes_failed_records_out_and_relinks_the_chain(tmp_path: Path) -> None:
    """``open(retry_failed=True)``: the failed records leave the manifest and the journal, the rest are
    linked again and renumbered; redone, each input still has one record and the chain verifies."""
    import json

    ledger = _ledger(tmp_path)
    ledger.open()
    for r in (_result(0), _failed(1), _result(2), _failed(3, "worker-crashed"), _result(4)):
        ledger.add(r)
    _finish(ledger)
    before = ledger.manifest_path.read_bytes()
    plain = _ledger(tmp_path)  # a plain resume keeps them
    assert plain.open() == 5 and plain.is_done("Doe^John/1") and not plain.retried
    plain.close()
    assert ledger.manifest_path.read_bytes() == before
    again = _ledger(tmp_path)
    assert again.open(retry_failed=True) == 3
    assert again.retried == {"unreadable": 1, "worker-crashed": 1}
    assert [again.is_done(f"Doe^John/{i}") for i in range(5)] == [True, False, True, False, True]
    again.add(_result(1))
    again.add(_result(3))
    _finish(again)
    assert verify_chain(again.output_dir, KEY) == []
    records = [json.loads(line) for line in again.manifest_path.read_text().splitlines()]
    journal = [json.loads(line) for line in again.journal_path.read_text().splitlines()]
    assert [r["status"] for r in records] == ["written"] * 5
    assert sorted(j["input"] for j in journal) == [f"Doe^John/{i}" for i in range(5)]  # one record per input
    assert [j["line"] for j in journal] == [1, 2, 3, 4, 5]
    assert [j["input_sha256"] for j in journal] == [r["input_sha256"] for r in records]
    assert oct(os.stat(again.journal_path).st_mode & 0o777) == oct(0o600)
    assert oct(os.stat(again.manifest_path).st_mode & 0o777) == oct(0o640)
    assert not [p for p in (again.output_dir, again.private_dir) for p in p.iterdir() if "retry" in p.name]
    nothing = _ledger(tmp_path)  # nothing failed: the files are not replaced
    inode = os.stat(nothing.manifest_path).st_ino
    assert nothing.open(retry_failed=True) == 5 and not nothing.retried
    nothing.close()
    assert os.stat(nothing.manifest_path).st_ino == inode


def test_retry_failed_interrupted_between_its_two_renames_recovers(tmp_path: Path, monkeypatch) -> None:
    """Killed after the manifest was replaced, before the journal: the next open keeps the agreeing
    prefix (up to the first dropped record), and the records after it are redone."""
    from deid_pipeline import manifest as manifest_mod

    ledger = _ledger(tmp_path)
    ledger.open()
    for r in (_result(0), _failed(1), _result(2), _result(3)):
        ledger.add(r)
    _finish(ledger)
    real, calls = os.replace, []

    def replace_once(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here
        return real(src, dst)

    monkeypatch.setattr(manifest_mod.os, "replace", replace_once)
    try:
        _ledger(tmp_path).open(retry_failed=True)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(manifest_mod.os, "replace", real)
    left = [p.name for p in ledger.private_dir.iterdir() if ".retry-" in p.name]
    assert left and left[0].startswith(".journal.jsonl.retry-")  # the journal's rewrite, never renamed
    assert _ledger(tmp_path).open() == 1 and not [  # the leftover removed by the next open, retrying or not
        p for p in ledger.private_dir.iterdir() if ".retry-" in p.name]
    again = _ledger(tmp_path)
    assert again.open() == 1  # record 0 agrees; the journal still names input 1 where the manifest has input 2
    assert [again.is_done(f"Doe^John/{i}") for i in range(4)] == [True, False, False, False]
    for i in (1, 2, 3):
        again.add(_result(i))
    _finish(again)
    assert verify_chain(again.output_dir, KEY) == []
    assert len(again.manifest_path.read_text().splitlines()) == 4


def test_duplicate_inputs_are_skipped_not_written_twice(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.open()
    a = ledger.add(_result(1))
    dup = _result(1)
    dup.rel_input = "elsewhere/copy"
    b = ledger.add(dup)
    ledger.close()
    assert a["status"] == "written"
    assert b["status"] == "skipped" and b["reason"]["code"] == "duplicate-input"
    assert b["output_path"] == a["output_path"]


def test_records_hold_no_input_path(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.open()
    ledger.add(_result(7))
    ledger.close()
    text = ledger.manifest_path.read_text()
    assert "Doe^John" not in text
    assert "Doe^John" in ledger.journal_path.read_text()


def test_sniff_by_content() -> None:
    assert sniff(Path(get_testdata_file("CT_small.dcm")).read_bytes()) == "part10"
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    buf = io.BytesIO()
    del ds.file_meta
    ds.preamble = None
    ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert buf.getvalue()[128:132] != b"DICM"
    assert sniff(buf.getvalue()) == "raw"
    assert sniff(raw) == "part10"
    assert sniff(b"Patient notes\n" * 20) == "not-dicom"
    assert sniff(b"") == "not-dicom"
    assert sniff(b"%PDF-1.4 " + b"x" * 300) == "not-dicom"


@pytest.mark.parametrize("streamed", [False, True])
def test_archives_of_dicom_files_are_named_as_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        streamed: bool) -> None:
    """A PACS export holding ZIP, tar or compressed files of DICOM (a web viewer's download, a study
    gzipped for transfer): each skipped as an ``archive`` naming its format, so the end-of-run table
    shows that studies were left unopened, not only "not DICOM"; a text file stays ``not-dicom``."""
    import bz2
    import gzip
    import lzma
    import tarfile
    import zipfile

    from deid_pipeline import pipeline
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.profile import load_profile

    if streamed:  # the path of inputs over 64 MiB (hashed, then sniffed from the file)
        monkeypatch.setattr(pipeline, "STREAM_ABOVE_BYTES", 0)
    root = tmp_path / "in"
    root.mkdir()
    ct = Path(get_testdata_file("CT_small.dcm"))
    with zipfile.ZipFile(root / "study.zip", "w") as z:
        z.write(ct, "IM0001")
    with tarfile.open(root / "study.tar", "w") as t:
        t.add(ct, "IM0001")
    with tarfile.open(root / "study.tgz", "w:gz") as t:
        t.add(ct, "IM0001")
    data = ct.read_bytes()
    (root / "IM0001.gz").write_bytes(gzip.compress(data))
    (root / "IM0001.bz2").write_bytes(bz2.compress(data))
    (root / "IM0001.xz").write_bytes(lzma.compress(data))
    (root / "study.7z").write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(200))
    (root / "study.rar").write_bytes(b"Rar!\x1a\x07\x01\x00" + bytes(200))
    (root / "notes.txt").write_bytes(b"Patient notes\n" * 20)
    names = ["study.zip", "study.tar", "study.tgz", "IM0001.gz", "IM0001.bz2", "IM0001.xz", "study.7z", "study.rar",
             "notes.txt"]
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="none")
    results = pipeline.process_batch(root, [Candidate(n) for n in names], ctx)
    got = [(r.status, r.reason_code, r.reason.split(" archive")[0]) for r in results]
    assert got == [("skipped", "archive", "a ZIP"), ("skipped", "archive", "a tar"), ("skipped", "archive", "a gzip"),
                   ("skipped", "archive", "a gzip"), ("skipped", "archive", "a bzip2"), ("skipped", "archive", "a xz"),
                   ("skipped", "archive", "a 7-Zip"), ("skipped", "archive", "a RAR"),
                   ("skipped", "not-dicom", "not a DICOM file (no preamble and no data set at the start)")]
    assert all("unpack it" in r.reason for r in results[:-1])
    assert all(r.input_sha256 == hashlib.sha256((root / n).read_bytes()).hexdigest() for r, n in zip(results, names))


def test_walk_is_sorted_recursive_and_does_not_leave_input(tmp_path: Path) -> None:
    root = tmp_path / "in"
    (root / "b" / "c").mkdir(parents=True)
    (root / "a.dcm").write_bytes(b"1")
    (root / "b" / "c" / "x").write_bytes(b"2")
    (tmp_path / "outside").write_bytes(b"3")
    os.symlink(tmp_path / "outside", root / "b" / "link")
    os.symlink(root / "a.dcm", root / "b" / "inner")
    os.symlink(tmp_path, root / "loop")  # a linked folder: not descended, recorded
    found = {c.rel: c.unread for c in walk_inputs(root)}
    assert found == {"a.dcm": "", "b/link": "link-outside-input", "b/inner": "", "b/c/x": "", "loop": "linked-folder"}
    assert [c.rel for c in walk_inputs(root)] == ["a.dcm", "loop", "b/inner", "b/link", "b/c/x"]  # files, then folders


def test_retry_failed_reads_the_manifest_once_and_copies_the_records_before_the_first_failed(tmp_path: Path, monkeypatch) -> None:
    """``open(retry_failed=True)`` is one pass over the manifest and the journal (a run of millions of
    records was read three times: to find a failed record, to rewrite, to index); the records before the
    first failed one keep their bytes."""
    from deid_pipeline import manifest as manifest_mod

    ledger = _ledger(tmp_path)
    ledger.open()
    for r in (_result(0), _result(1), _failed(2), _result(3), _failed(4, "worker-crashed"), _result(5)):
        ledger.add(r)
    _finish(ledger)
    lines = ledger.manifest_path.read_bytes().splitlines(keepends=True)
    jlines = ledger.journal_path.read_bytes().splitlines(keepends=True)
    passes = []
    real = manifest_mod._valid_prefix

    def counted(*args):
        passes.append(args)
        return real(*args)

    monkeypatch.setattr(manifest_mod, "_valid_prefix", counted)
    again = _ledger(tmp_path)
    assert again.open(retry_failed=True) == 4
    again.close()
    assert len(passes) == 1
    assert again.retried == {"unreadable": 1, "worker-crashed": 1}
    after = again.manifest_path.read_bytes().splitlines(keepends=True)
    assert after[:2] == lines[:2] and again.journal_path.read_bytes().splitlines(keepends=True)[:2] == jlines[:2]
    assert len(after) == 4 and after[2] != lines[3]  # record 3 linked again, after record 1
    assert json.loads(after[2])["input_sha256"] == json.loads(lines[3])["input_sha256"]
    assert [json.loads(j)["line"] for j in again.journal_path.read_bytes().splitlines()] == [1, 2, 3, 4]
    head = manifest_mod.GENESIS
    for line in after:
        assert json.loads(line)["prev_record_sha256"] == head
        head = hashlib.sha256(line[:-1]).hexdigest()
    assert again.head == head


def _rebuilt(out: Path, edit: bytes, to: bytes, signer: bytes | None) -> None:
    """What someone who can write OUTPUT but holds no run key can do: edit a record, relink every line
    after it, write the new head and count into run.json, and (``signer``) sign it with a key of their own."""
    prev, lines = "0" * 64, []
    for line in (out / "manifest.jsonl").read_bytes().replace(edit, to).splitlines():
        rec = json.loads(line)
        rec["prev_record_sha256"] = prev
        data = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        prev = hashlib.sha256(data).hexdigest()
        lines.append(data + b"\n")
    (out / "manifest.jsonl").write_bytes(b"".join(lines))
    run = json.loads((out / "run.json").read_text())
    run["chain"].update(records=len(lines), head_sha256=prev)
    if signer is not None:
        forged = Ledger(out, out.parent / "priv", signer, dict(PROFILE), "0.1.0")
        forged.head, forged.records = prev, len(lines)
        run["chain"] = forged.chain({k: v for k, v in run.items() if k != "chain"})
    (out / "run.json").write_text(json.dumps(run))


@pytest.mark.parametrize("forger_signs", [False, True])
def test_a_rebuilt_chain_is_found_by_the_public_key_alone(tmp_path: Path, forger_signs: bool) -> None:
    """An edited record with the chain relinked after it passes the hash chain; the site's public key
    (no run key, which makes the pseudonyms, in the recipient's hands) finds it, re-signed or not."""
    out = _finished(tmp_path, 5)
    public = parse_public_key(public_key_pem(KEY).encode())
    assert public == bytes.fromhex(json.loads((out / "run.json").read_text())["chain"]["ed25519_public_key"])
    assert verify_chain(out, None, public) == [] and verify_chain(out, KEY, public) == []
    _rebuilt(out, b'"status":"written"', b'"status":"skipped"', b"f" * 32 if forger_signs else None)
    assert verify_chain(out, None) == []  # the hash chain alone cannot tell
    problems = [p.problem for p in verify_chain(out, None, public)]
    assert len(problems) == 1 and ("another key" if forger_signs else "does not verify") in problems[0], problems
    assert verify_chain(out, KEY)  # the run key finds it too (HMAC)
    if forger_signs:  # both keys named by fingerprint
        forger = parse_public_key(public_key_pem(b"f" * 32).encode())
        assert key_fingerprint(forger) in problems[0] and key_fingerprint(public) in problems[0]


def test_audit_cli_prints_the_public_key_and_checks_with_it(tmp_path: Path) -> None:
    """`deid audit public-key` prints PEM only (never the key); `audit verify --public-key` exits 0 on the
    run's chain, 1 on one signed by another key, 2 on a file that holds no public key."""
    out = str(_finished(tmp_path, 1))
    key_file = tmp_path / "site.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o600)
    proc = deid("audit", "public-key", "--key-file", str(key_file))
    assert proc.returncode == 0 and proc.stdout == public_key_pem(KEY) and KEY.decode() not in proc.stdout + proc.stderr
    pub = tmp_path / "site.pub"
    pub.write_text(proc.stdout)
    proc = deid("audit", "verify", out, "--public-key", str(pub))
    assert proc.returncode == 0 and "signed by the trusted key" in proc.stdout, proc.stdout + proc.stderr
    pub.write_text(public_key_pem(b"g" * 32))
    proc = deid("audit", "verify", out, "--public-key", str(pub))
    assert proc.returncode == 1 and "signed by another key" in proc.stdout
    pub.write_text("not a key")
    proc = deid("audit", "verify", out, "--public-key", str(pub))
    assert proc.returncode == 2 and "public key" in proc.stderr


def test_public_key_forms_and_an_unsigned_head(tmp_path: Path) -> None:
    """PEM and 64 hex digits read alike; anything else is refused; a head without a signature (an earlier
    deid's run.json) is a problem only where a public key is given."""
    pem = public_key_pem(KEY)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    raw = parse_public_key(pem.encode())
    assert parse_public_key(raw.hex().encode() + b"\n") == raw != parse_public_key(public_key_pem(b"x" * 32).encode())
    for bad in (b"", b"00" * 31, b"zz" * 32, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"):
        with pytest.raises(ValueError):
            parse_public_key(bad)
    out = _finished(tmp_path, 1)
    run = json.loads((out / "run.json").read_text())
    for field in ("ed25519_signature", "ed25519_public_key"):
        del run["chain"][field]
    (out / "run.json").write_text(json.dumps(run))
    assert verify_chain(out, KEY) == [] and verify_chain(out, None) == []
    assert ["holds no signature" in p.problem for p in verify_chain(out, None, raw)] == [True]


def test_every_field_of_run_json_is_signed_with_the_chain_head(tmp_path: Path) -> None:
    """An edit of any field of run.json beside the chain (a count, a setting, the profile) is found: by
    the digest alone, and by the HMAC and signature, whose message holds it; taking the digest out does
    not make the head an earlier deid's (the signature was made over the digest)."""
    out = _finished(tmp_path, 3)
    public = parse_public_key(public_key_pem(KEY).encode())
    original = json.loads((out / "run.json").read_text())
    assert original["chain"]["run_sha256"] == run_digest(original)
    assert verify_chain(out, KEY, public) == []
    for field, value in (("workers", 1), ("profile", {**PROFILE, "name": "other"}), ("records", 4), ("added", "x")):
        run = json.loads(json.dumps(original))
        run[field] = value
        (out / "run.json").write_text(json.dumps(run))
        assert [p.problem for p in verify_chain(out, None)] == [
            "run.json's fields do not match the digest its chain head signs: run.json was edited"], field
        run["chain"]["run_sha256"] = run_digest(run)  # the digest made again: the HMAC and signature find it
        (out / "run.json").write_text(json.dumps(run))
        assert verify_chain(out, None) == []
        assert any("HMAC does not verify" in p.problem for p in verify_chain(out, KEY)), field
        assert any("signature does not verify" in p.problem for p in verify_chain(out, None, public)), field
        del run["chain"]["run_sha256"]  # an earlier deid's form: the head alone was not what was signed
        (out / "run.json").write_text(json.dumps(run))
        assert any("HMAC does not verify" in p.problem for p in verify_chain(out, KEY)), field
        assert any("signature does not verify" in p.problem for p in verify_chain(out, None, public)), field


def test_an_earlier_deid_s_head_signed_alone_still_verifies(tmp_path: Path) -> None:
    """run.json of an earlier deid (HMAC and signature over the head and count only, no run digest)
    checks as it did: intact under the key and the public key, and an edited head is still found."""
    out = _finished(tmp_path, 2)
    run = json.loads((out / "run.json").read_text())
    chain = run["chain"]
    del chain["run_sha256"]
    message = f"deid-manifest-chain:{chain['head_sha256']}:{chain['records']}".encode()
    chain["hmac_sha256"] = hmac.new(KEY, message, hashlib.sha256).hexdigest()
    chain["ed25519_signature"] = signing_key(KEY).sign(message).hex()
    (out / "run.json").write_text(json.dumps(run))
    public = parse_public_key(public_key_pem(KEY).encode())
    assert verify_chain(out, KEY) == [] and verify_chain(out, None, public) == []
    chain["records"] = 1
    (out / "run.json").write_text(json.dumps(run))
    assert verify_chain(out, KEY, public)


def _record_after(prev: str) -> bytes:
    """A canonical skipped record linked to ``prev``."""
    from deid_pipeline.manifest import canonical

    return canonical({"input_sha256": "ab" * 32, "status": "skipped", "prev_record_sha256": prev})


def test_an_over_long_line_is_hashed_in_pieces_never_held_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest line over MAX_LINE_BYTES (a corrupt or planted file) comes as its size and sha256, read
    in pieces (memory near the limit, not the line); the chain check names it and links the record after
    it through its hash; resume's valid prefix ends before it."""
    import tracemalloc

    from deid_pipeline import manifest as M

    monkeypatch.setattr(M, "MAX_LINE_BYTES", 1 << 20)
    junk = b"z" * (32 << 20)
    first = _record_after("0" * 64)
    third = _record_after(hashlib.sha256(junk).hexdigest())
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(first + b"\n" + junk + b"\n" + third + b"\n")
    tracemalloc.start()
    lines = list(M.read_lines(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == [first, M.LongLine(len(junk), hashlib.sha256(junk).hexdigest()), third]
    assert peak < 8 << 20, peak  # the 32 MiB line never in memory whole (the old reader: 32 MiB and more)
    assert list(M.read_lines(path, limit=len(junk))) == [first, junk, third]  # at the limit: read as a line
    problems = verify_chain(tmp_path, None)
    assert [(p.line, p.problem) for p in problems if p.line] == [(2, f"a line of {len(junk)} bytes: not a deid record")]
    journal = tmp_path / "journal.jsonl"
    journal.write_bytes(b"".join(json.dumps({"input_sha256": json.loads(r)["input_sha256"]}).encode() + b"\n"
                                 for r in (first, third, third)))
    assert len(list(M._valid_prefix(path, journal))) == 1


def test_a_run_json_over_its_bound_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run.json over MAX_RUN_JSON_BYTES (deid's are a few kB) is not read: the chain check says its head
    cannot be checked; under the bound the same content verifies."""
    from deid_pipeline import manifest as M

    out = _finished(tmp_path, 2)
    text = (out / "run.json").read_text()
    assert verify_chain(out, KEY) == []
    monkeypatch.setattr(M, "MAX_RUN_JSON_BYTES", len(text) + 10)
    (out / "run.json").write_text(text + " " * 11)  # the same JSON, one byte over the bound
    with pytest.raises(ValueError):
        M.read_run_json(out / "run.json")
    assert [p.problem for p in verify_chain(out, KEY)] == ["run.json does not read as JSON: the chain head cannot be checked"]
    (out / "run.json").write_text(text + " " * 10)
    assert verify_chain(out, KEY) == []
