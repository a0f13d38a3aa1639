"""The provenance manifest, the private journal and ``run.json``.

Only the driver writes these. ``OUTPUT/manifest.jsonl`` holds one record per input and no PHI; each
record carries the sha256 of the record before it, so the file is a hash chain whose head
``run.json`` authenticates, with the digest of its other fields, by an HMAC under the run key and an
Ed25519 signature by a key derived from it: a recipient checks the signature with the site's public
key (``deid audit public-key``) without holding the run key, which makes the pseudonyms. The private
journal (outside OUTPUT, mode 0600) maps records to input paths; resume reads both and keeps their
common prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from .types import FileResult

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.0"
GENESIS = "0" * 64
MANIFEST_NAME = "manifest.jsonl"
RUN_NAME = "run.json"
JOURNAL_NAME = "journal.jsonl"
PROFILE_RECORD_NAME = "profile.json"  # in the private folder: the run's profile files (profile.record_profile)
INDEX_NAME = "index.sqlite"  # in the private folder; rebuilt from the journal at every open


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces) used for hashing and records."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def run_digest(run_info: dict[str, Any]) -> str:
    """sha256 of ``run.json``'s canonical form less its ``chain``: the run's counts, settings, profile
    and notes, which the chain head's HMAC and signature cover beside the head."""
    return hashlib.sha256(canonical({k: v for k, v in run_info.items() if k != "chain"})).hexdigest()


def _chain_message(head: str, count: int, run_sha256: str | None = None) -> bytes:
    tail = "" if run_sha256 is None else f":run:{run_sha256}"  # None: an earlier deid's head (no run digest)
    return f"deid-manifest-chain:{head}:{count}{tail}".encode()


def chain_hmac(key: bytes, head: str, count: int, run_sha256: str | None = None) -> str:
    """HMAC-SHA256 over the chain head, record count and run digest (:func:`run_digest`), under the run key."""
    return hmac.new(key, _chain_message(head, count, run_sha256), hashlib.sha256).hexdigest()


def signing_key(key: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key that signs chain heads, derived from the run key with HKDF (its own ``info``: it
    reveals nothing of the run key nor of the pseudonym keys derived beside it)."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"deid-audit-signing-v1").derive(key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(key: bytes) -> bytes:
    """The raw 32-byte public key of :func:`signing_key`."""
    return signing_key(key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def public_key_pem(key: bytes) -> str:
    """:func:`signing_key`'s public key as PEM (SubjectPublicKeyInfo), the form a site publishes."""
    return signing_key(key).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def parse_public_key(data: bytes) -> bytes:
    """A raw 32-byte Ed25519 public key from PEM or 64 hex digits (ValueError: neither)."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        pub = load_pem_public_key(text)
        if not isinstance(pub, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw = bytes.fromhex(text.decode("ascii", "replace"))
    if len(raw) != 32:
        raise ValueError("not 32 bytes")
    return raw


def key_fingerprint(public: bytes) -> str:
    """A short fingerprint of a raw public key (sha256, 16 hex digits), for messages."""
    return hashlib.sha256(public).hexdigest()[:16]


def key_id(key: bytes) -> str:
    """A public fingerprint of the key: tells runs with the same key apart, reveals nothing."""
    return hmac.new(key, b"deid-key-id", hashlib.sha256).hexdigest()[:16]


def record_for(result: FileResult, profile_info: dict[str, str], tool_version: str, prev: str) -> dict[str, Any]:
    """The manifest record of one result (no input path, no values)."""
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "input_sha256": result.input_sha256,
        "input_size": result.input_size,
        "status": result.status,
        "reason": {"code": result.reason_code, "message": result.reason} if result.reason_code else None,
        "output_path": result.output_path or None,
        "output_sha256": result.output_sha256 or None,
        "profile": profile_info,
        "tool_version": tool_version,
        "pixel": result.pixel,
        "actions": dict(sorted(result.actions.items())),
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
        "prev_record_sha256": prev,
    }
    return rec


def atomic_write_json(path: Path, obj: Any, mode: int = 0o640) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _valid_prefix(manifest: Path, journal: Path) -> Iterator[tuple[bytes, dict[str, Any], dict[str, Any], int, int]]:
    """Pairs of complete, parseable, agreeing manifest and journal lines, streamed (a run of millions
    of records is never held in memory); each with the byte offsets just past it. A torn or
    disagreeing line ends the prefix."""
    if not manifest.exists() or not journal.exists():
        return
    m_off = j_off = 0
    with open(manifest, "rb") as fm, open(journal, "rb") as fj:
        while (mline := fm.readline(MAX_LINE_BYTES + 1)) and (jline := fj.readline(MAX_LINE_BYTES + 1)):
            if not mline.endswith(b"\n") or not jline.endswith(b"\n"):
                return  # torn by a kill (or a line over MAX_LINE_BYTES: no record of deid's)
            try:
                rec, jrec = json.loads(mline), json.loads(jline)
            except ValueError:
                return
            if not isinstance(rec, dict) or not isinstance(jrec, dict) or rec.get("input_sha256") != jrec.get("input_sha256"):
                return
            m_off += len(mline)
            j_off += len(jline)
            yield mline[:-1], rec, jrec, m_off, j_off


def _truncate(path: Path, size: int, mode: int) -> None:
    """Cut ``path`` to ``size`` bytes (creating it empty when missing) and make it durable."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def _name_bytes(rel: str) -> bytes:
    """An input's relative path as the bytes of its name on disk: a file name that is not UTF-8 (a
    Latin-1 export's) is a ``str`` with lone surrogates, which SQLite cannot take as text."""
    return rel.encode("utf-8", "surrogateescape")


class _Index:
    """Which inputs already have a record, and the first output of each input content: kept in SQLite
    in the private folder (it names inputs), so the driver's memory stays flat over millions of files.
    Rebuilt from the journal at every open: a cache, never the record of truth."""

    def __init__(self, path: Path) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=MEMORY", "cache_size=-8192"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE inputs (rel BLOB PRIMARY KEY) WITHOUT ROWID")  # bytes: a name need not be UTF-8
        self._db.execute("CREATE TABLE outputs (sha TEXT PRIMARY KEY, path TEXT NOT NULL) WITHOUT ROWID")
        self._db.execute("BEGIN")
        self._pending = 0

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= 10_000:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._pending = 0

    def add_input(self, rel: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO inputs VALUES (?)", (_name_bytes(rel),))
        self._tick()

    def has_input(self, rel: str) -> bool:
        return self._db.execute("SELECT 1 FROM inputs WHERE rel = ?", (_name_bytes(rel),)).fetchone() is not None

    def first_output(self, sha: str) -> str | None:
        row = self._db.execute("SELECT path FROM outputs WHERE sha = ?", (sha,)).fetchone()
        return None if row is None else str(row[0])

    def add_output(self, sha: str, path: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO outputs VALUES (?, ?)", (sha, path))
        self._tick()

    def close(self) -> None:
        self._db.execute("COMMIT")
        self._db.close()


class _Rewrite:
    """The manifest and the journal without their ``failed`` records (a disk error, a crashed or timed-out
    worker, a file too big for the memory limit then: nothing the input itself is to blame for), for a
    run resumed with ``--retry-failed``: what precedes the first such record is copied as it is, the
    records kept after it are linked again into one chain and the journal renumbered (:meth:`add`), so
    there is still one record per input once the inputs are redone. Both files are replaced whole
    (written, synced, renamed: :meth:`replace`); a crash between the two renames leaves a journal that
    disagrees with the manifest from the first dropped record on, and the records from there are redone
    (their outputs are already in place, identical)."""

    def __init__(self, manifest: Path, journal: Path, m_head: int, j_head: int) -> None:
        self._pairs: list[tuple[IO[bytes], Path, Path, int]] = []
        for path, head, mode in ((manifest, m_head, 0o640), (journal, j_head, 0o600)):  # the journal names inputs
            tmp = path.with_name(f".{path.name}.retry-{os.getpid()}")
            out = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb")
            with open(path, "rb") as src:
                _copy_bytes(src, out, head)
            self._pairs.append((out, tmp, path, mode))

    def add(self, rec: dict[str, Any], jrec: dict[str, Any]) -> bytes:
        """Write one kept record and its journal line; returns the record's line (no newline)."""
        line = canonical(rec)
        self._pairs[0][0].write(line + b"\n")
        self._pairs[1][0].write(canonical(jrec) + b"\n")
        return line

    def abort(self) -> None:
        for out, tmp, _, _ in self._pairs:
            out.close()
            tmp.unlink(missing_ok=True)

    def replace(self) -> None:
        for out, _, _, _ in self._pairs:
            out.flush()
            os.fsync(out.fileno())
            out.close()
        for _, tmp, path, mode in self._pairs:  # the manifest first
            os.replace(tmp, path)
            os.chmod(path, mode)  # whatever the umask


def _copy_bytes(src: IO[bytes], dst: IO[bytes], size: int, chunk: int = 1 << 20) -> None:
    """The first ``size`` bytes of ``src`` to ``dst``."""
    while size > 0:
        block = src.read(min(chunk, size))
        if not block:
            raise OSError("file shorter than its records")
        dst.write(block)
        size -= len(block)


@dataclass
class Ledger:
    """Appends records to the manifest and the journal, and keeps the run's counts."""

    output_dir: Path
    private_dir: Path
    key: bytes
    profile_info: dict[str, str]
    tool_version: str
    status_counts: Counter[str] = field(default_factory=Counter)
    reason_counts: Counter[str] = field(default_factory=Counter)
    records: int = 0
    head: str = GENESIS
    images: int = 0
    retried: Counter[str] = field(default_factory=Counter)  # reason codes of the failed records taken out
    _manifest: IO[bytes] | None = None
    _journal: IO[bytes] | None = None
    _index: _Index | None = None

    @property
    def manifest_path(self) -> Path:
        return self.output_dir / MANIFEST_NAME

    @property
    def journal_path(self) -> Path:
        return self.private_dir / JOURNAL_NAME

    def open(self, retry_failed: bool = False) -> int:
        """Open for appending, reconciling what an interrupted run left; returns records kept. With
        ``retry_failed`` the records of failed inputs are taken out (:class:`_Rewrite`), so that those
        inputs are processed again. One pass over the manifest and the journal either way."""
        for path in (self.manifest_path, self.journal_path):  # a retry's rewrite, killed before its rename
            for stale in path.parent.glob(f".{path.name}.retry-*"):
                stale.unlink(missing_ok=True)
        self._index = _Index(self.private_dir / INDEX_NAME)
        rewrite: _Rewrite | None = None
        n = m_off = j_off = 0
        try:
            for mline, rec, jrec, m_end, j_end in _valid_prefix(self.manifest_path, self.journal_path):
                if retry_failed and rec["status"] == "failed":
                    if rewrite is None:
                        rewrite = _Rewrite(self.manifest_path, self.journal_path, m_off, j_off)
                    self.retried[(rec.get("reason") or {}).get("code", "")] += 1
                else:
                    n += 1
                    if rewrite is not None:  # after a dropped record: linked again and renumbered
                        mline = rewrite.add({**rec, "prev_record_sha256": self.head}, {**jrec, "line": n})
                    self._index.add_input(str(jrec["input"]))
                    self._count(rec)
                    if rec["status"] == "written":
                        self._index.add_output(rec["input_sha256"], rec["output_path"])
                    self.head = hashlib.sha256(mline).hexdigest()
                m_off, j_off = m_end, j_end
        except BaseException:
            if rewrite is not None:
                rewrite.abort()
            raise
        if rewrite is not None:
            rewrite.replace()
            log.info("%d failed records taken out to be redone (by reason code in run.json)", sum(self.retried.values()))
        else:
            _truncate(self.manifest_path, m_off, 0o640)
            _truncate(self.journal_path, j_off, 0o600)
        self.records = n
        self._manifest = open(self.manifest_path, "ab")
        self._journal = open(self.journal_path, "ab")
        return n

    def is_done(self, rel_input: str) -> bool:
        """Whether ``rel_input`` already has a record (in this run or an earlier session of it)."""
        assert self._index is not None
        return self._index.has_input(rel_input)

    def _count(self, rec: dict[str, Any]) -> None:
        self.status_counts[rec["status"]] += 1
        if rec.get("reason"):
            self.reason_counts[rec["reason"]["code"]] += 1

    def add(self, result: FileResult) -> dict[str, Any]:
        """Append one result (after de-duplicating identical inputs) and return its record."""
        assert self._manifest is not None and self._journal is not None
        assert self._index is not None
        if result.status == "written":
            first = self._index.first_output(result.input_sha256)
            if first is not None:
                result.status = "skipped"
                result.reason_code = "duplicate-input"
                result.reason = "identical content to an earlier input; its output already exists"
                result.output_path = first
            else:
                self._index.add_output(result.input_sha256, result.output_path)
        rec = record_for(result, self.profile_info, self.tool_version, self.head)
        line = canonical(rec)
        self._manifest.write(line + b"\n")
        self._manifest.flush()
        jrec = {
            "line": self.records + 1,
            "input": result.rel_input,
            "input_sha256": result.input_sha256,
            "status": result.status,
            "reason": result.reason_code,
            "output_path": result.output_path,
        }
        self._journal.write(canonical(jrec) + b"\n")
        self._journal.flush()
        self.head = hashlib.sha256(line).hexdigest()
        self.records += 1
        self._index.add_input(result.rel_input)
        self._count(rec)
        self.images += result.images
        return rec

    def close(self) -> None:
        for fh in (self._manifest, self._journal):
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
        self._manifest = self._journal = None
        if self._index is not None:  # a cache that names inputs: not left behind
            self._index.close()
            self._index = None
            (self.private_dir / INDEX_NAME).unlink(missing_ok=True)

    def chain(self, run_info: dict[str, Any]) -> dict[str, Any]:
        """``run.json``'s ``chain``: the head, and an HMAC and signature over it and ``run_info`` (the rest
        of ``run.json``, which must not change after: :func:`run_digest`)."""
        signer, digest = signing_key(self.key), run_digest(run_info)
        return {
            "records": self.records,
            "head_sha256": self.head,
            "run_sha256": digest,
            "hmac_sha256": chain_hmac(self.key, self.head, self.records, digest),
            "ed25519_public_key": public_key_bytes(self.key).hex(),
            "ed25519_signature": signer.sign(_chain_message(self.head, self.records, digest)).hex(),
        }


@dataclass(frozen=True)
class ChainProblem:
    """Where the record chain breaks: a 1-based line and what is wrong there."""

    line: int
    problem: str


#: The longest manifest or journal line read into memory. deid's records are far shorter (a 60-frame
#: cine with 47 boxes a frame: 42 kB, ~0.7 kB a frame, so 64 MiB is ~90,000 such frames); a longer line
#: (a corrupt or planted file) is hashed in pieces and reported, never held whole.
MAX_LINE_BYTES = 64 << 20


#: The largest ``run.json`` read: deid's are a few kB (counts by reason, the profile, notes); a larger one
#: (planted or corrupt) is refused unread, as one that does not parse.
MAX_RUN_JSON_BYTES = 16 << 20


def read_run_json(path: Path) -> Any:
    """``run.json`` parsed (any JSON value); ValueError for one over :data:`MAX_RUN_JSON_BYTES` (never
    read) or that does not parse, OSError for one that cannot be read."""
    with path.open("rb") as fh:
        data = fh.read(MAX_RUN_JSON_BYTES + 1)
    if len(data) > MAX_RUN_JSON_BYTES:
        raise ValueError(f"over {MAX_RUN_JSON_BYTES} bytes")
    return json.loads(data.decode("utf-8"))


@dataclass(frozen=True)
class LongLine:
    """A line over :data:`MAX_LINE_BYTES`: its length and sha256 (without its newline), read in pieces."""

    size: int
    sha256: str


def read_lines(path: Path, limit: int | None = None) -> Iterator[bytes | LongLine]:
    """The file's lines without their newline, one at a time, as ``read_bytes().split(b"\\n")`` gives them
    (less the empty piece after a final newline): a manifest of millions of records is never held
    whole, and a line over ``limit`` bytes (:data:`MAX_LINE_BYTES`) comes as a :class:`LongLine`."""
    limit = MAX_LINE_BYTES if limit is None else limit
    with path.open("rb") as fh:
        while line := fh.readline(limit + 1):
            if line.endswith(b"\n") or len(line) <= limit:
                yield line[:-1] if line.endswith(b"\n") else line
                continue
            digest, size = hashlib.sha256(line), len(line)
            while (piece := fh.readline(1 << 20)):
                end = piece.endswith(b"\n")
                piece = piece[:-1] if end else piece
                digest.update(piece)
                size += len(piece)
                if end:
                    break
            yield LongLine(size, digest.hexdigest())


def read_records(path: Path) -> Iterator[dict[str, Any] | None]:
    """The records of a JSON-lines file (manifest, journal), one at a time, blank lines skipped; None for a
    line that is no JSON object: an edit, a torn last line, or one over :data:`MAX_LINE_BYTES` (never read
    whole), which the caller reports or passes over."""
    for line in read_lines(path):
        if isinstance(line, LongLine):
            yield None
        elif line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            yield rec if isinstance(rec, dict) else None


def verify_chain(output_dir: Path, key: bytes | None, public_key: bytes | None = None) -> list[ChainProblem]:
    """Check the manifest's hash chain and, with the run key, the HMAC and signature of its head in
    ``run.json``; with a trusted raw ``public_key`` (:func:`parse_public_key`), that the head is signed by it.
    Without either, a chain rebuilt after an edit cannot be told from the run's.

    An edited record breaks the link of the line after it; a deleted, inserted or reordered record
    breaks the link where it happened; a truncated tail changes the head and the record count.
    """
    problems: list[ChainProblem] = []
    prev = GENESIS
    count = 0
    for i, line in enumerate(read_lines(output_dir / MANIFEST_NAME), start=1):
        count = i
        if isinstance(line, LongLine):
            problems.append(ChainProblem(i, f"a line of {line.size} bytes: not a deid record"))
            prev = line.sha256
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            problems.append(ChainProblem(i, "not a JSON record"))
            prev = hashlib.sha256(line).hexdigest()
            continue
        if rec.get("prev_record_sha256") != prev:
            problems.append(ChainProblem(i, "previous-record hash does not match: a record before this line was edited, removed, inserted or moved"))
        if canonical(rec) != line:
            problems.append(ChainProblem(i, "record is not in canonical form: edited"))
        prev = hashlib.sha256(line).hexdigest()
    run_path = output_dir / RUN_NAME
    if not run_path.exists():
        problems.append(ChainProblem(0, "run.json missing"))
        return problems
    try:
        run_info = read_run_json(run_path)
    except (OSError, ValueError):  # torn, edited or over the bound: no head to check the chain against
        problems.append(ChainProblem(0, "run.json does not read as JSON: the chain head cannot be checked"))
        return problems
    chain = run_info.get("chain") if isinstance(run_info, dict) else None
    if not isinstance(chain, dict) or not chain:
        problems.append(ChainProblem(0, "run.json holds no chain head (run unfinished?)"))
        return problems
    if chain.get("records") != count:
        problems.append(ChainProblem(count, f"run.json counts {chain.get('records')} records, the manifest holds {count}"))
    if chain.get("head_sha256") != prev:
        problems.append(ChainProblem(count, "the last record does not match the chain head in run.json"))
    digest = chain.get("run_sha256")  # absent: an earlier deid's run.json, whose head alone is signed
    if digest is not None and digest != run_digest(run_info):
        problems.append(ChainProblem(0, "run.json's fields do not match the digest its chain head signs: run.json was edited"))
    if key is not None and not hmac.compare_digest(str(chain.get("hmac_sha256", "")), chain_hmac(
            key, str(chain.get("head_sha256", "")), _int(chain.get("records")), None if digest is None else str(digest))):
        problems.append(ChainProblem(0, "the chain head's HMAC does not verify under this key: run.json was altered"))
    if public_key is not None:
        problems.extend(_signature_problems(chain, public_key, "the trusted"))
    elif key is not None and "ed25519_signature" in chain:  # the HMAC authenticates a head an earlier deid left unsigned
        problems.extend(_signature_problems(chain, public_key_bytes(key), "this key's"))
    return problems


def _signature_problems(chain: dict[str, Any], trusted: bytes, whose: str) -> list[ChainProblem]:
    """Whether ``run.json``'s chain head is signed by ``trusted`` (a raw Ed25519 public key)."""
    signature, embedded = chain.get("ed25519_signature"), chain.get("ed25519_public_key")
    if not isinstance(signature, str) or not signature:
        return [ChainProblem(0, "run.json holds no signature of the chain head (a run of an earlier deid, or removed)")]
    if embedded != trusted.hex():
        other = key_fingerprint(bytes.fromhex(embedded)) if _hex(embedded, 32) else "unreadable"
        return [ChainProblem(0, f"the chain head is signed by another key ({other}), not {whose} public key "
                                f"({key_fingerprint(trusted)})")]
    head, count, digest = chain.get("head_sha256"), chain.get("records"), chain.get("run_sha256")
    try:
        Ed25519PublicKey.from_public_bytes(trusted).verify(bytes.fromhex(signature), _chain_message(
            str(head), _int(count), None if digest is None else str(digest)))
    except (InvalidSignature, ValueError, TypeError):
        return [ChainProblem(0, f"the chain head's signature does not verify under {whose} public key: run.json was altered")]
    return []


def _int(value: object) -> int:
    """A record count as run.json states it; anything but an integer is -1 (which no head signs)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _hex(value: object, size: int) -> bool:
    try:
        return isinstance(value, str) and len(bytes.fromhex(value)) == size
    except ValueError:
        return False
