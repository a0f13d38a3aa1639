"""Keyed, deterministic pseudonyms and the encrypted linkage table.

Every pseudonym is HMAC-SHA256 of a secret key and the original value, with a short domain prefix
(``uid:``, ``pid:``, ``date:``) so that one value never yields the same bytes in two roles. The
``Pseudonymizer`` holds nothing but the key: every worker, on every machine, in every run with the
same key, gives the same UIDs, IDs and date offsets, so Dask workers need no shared state.

The linkage table (original patient ID / study UID -> pseudonyms) is the only place originals are
written; it is encrypted with AES-256-GCM under a key derived from the key file with HKDF.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydicom.dataset import Dataset

from .errors import ConfigError

log = logging.getLogger(__name__)

#: Date offsets lie in [-MAX_OFFSET_DAYS, -1]: always into the past, never zero.
MAX_OFFSET_DAYS = 3650
PSEUDO_ID_PREFIX = "DEID-"

_LINKAGE_MAGIC = b"DEIDLNK1"
_LINKAGE_INFO = b"deid linkage table v1"


class Pseudonymizer:
    """Pure, keyed pseudonyms. Holds only the key; every worker agrees."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ConfigError("the pseudonymisation key is empty")
        self._key = bytes(key)

    def _mac(self, domain: str, value: str) -> bytes:
        return hmac.digest(self._key, f"{domain}:{value}".encode("utf-8"), "sha256")  # one-shot, in C

    def uid(self, original: str) -> str:
        """A ``2.25.<decimal>`` UID from the first 128 bits of the HMAC (at most 44 characters)."""
        return "2.25." + str(int.from_bytes(self._mac("uid", original.strip())[:16], "big"))

    def patient_id(self, original: str) -> str:
        """``DEID-`` and 10 base32 characters (50 bits): short enough for LO and folder names."""
        digest = self._mac("pid", original)
        return PSEUDO_ID_PREFIX + base64.b32encode(digest).decode("ascii")[:10]

    def patient_name(self, original: str) -> str:
        """The same string as :meth:`patient_id` of the same identity (one pseudonym per patient)."""
        return self.patient_id(original)

    def date_offset_days(self, patient_identity: str) -> int:
        """A per-patient shift in days, in [-MAX_OFFSET_DAYS, -1]."""
        value = int.from_bytes(self._mac("date", patient_identity)[:8], "big")
        return -(1 + value % MAX_OFFSET_DAYS)


def patient_identity(ds: Dataset) -> str:
    """The original identity a patient's pseudonyms derive from.

    PatientID with IssuerOfPatientID, else PatientName, else StudyInstanceUID (a patient with no
    identity at all is at least consistent within a study). Same format as the pipeline's folder key.
    """
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return "id:" + pid + "|" + str(ds.get("IssuerOfPatientID", "") or "").strip()
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return "name:" + name
    return "study:" + str(ds.get("StudyInstanceUID", "") or "")


def linkage_row(ds: Dataset, pseudo: Pseudonymizer) -> dict[str, str]:
    """One linkage row for a data set *before* de-identification (originals and their pseudonyms)."""
    identity = patient_identity(ds)
    study = str(ds.get("StudyInstanceUID", "") or "")
    return {
        "patient_id": str(ds.get("PatientID", "") or ""),
        "issuer_of_patient_id": str(ds.get("IssuerOfPatientID", "") or ""),
        "pseudo_patient_id": pseudo.patient_id(identity),
        "study_instance_uid": study,
        "pseudo_study_instance_uid": pseudo.uid(study) if study else "",
    }


def _aes_key(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LINKAGE_INFO).derive(bytes(key))


def write_linkage(path: str | os.PathLike[str], key: bytes, rows: Iterable[Mapping[str, Any]]) -> None:
    """Encrypt ``rows`` (JSON) with AES-256-GCM and write them atomically (temp file, ``os.replace``).

    File layout: magic (8 bytes) | nonce (12 bytes) | ciphertext+tag; the magic is the associated data.
    """
    payload = json.dumps(
        {"version": 1, "rows": [dict(r) for r in rows]}, sort_keys=True, ensure_ascii=False
    ).encode("utf-8")
    nonce = secrets.token_bytes(12)
    blob = _LINKAGE_MAGIC + nonce + AESGCM(_aes_key(key)).encrypt(nonce, payload, _LINKAGE_MAGIC)
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.info("linkage table written: %d bytes", len(blob))


def read_linkage(path: str | os.PathLike[str], key: bytes) -> list[dict[str, Any]]:
    """Decrypt a linkage table; ``ConfigError`` when the file is not one or the key is wrong."""
    blob = Path(path).read_bytes()
    if not blob.startswith(_LINKAGE_MAGIC) or len(blob) < len(_LINKAGE_MAGIC) + 12 + 16:
        raise ConfigError("not a deid linkage file")
    nonce = blob[len(_LINKAGE_MAGIC) : len(_LINKAGE_MAGIC) + 12]
    try:
        payload = AESGCM(_aes_key(key)).decrypt(nonce, blob[len(_LINKAGE_MAGIC) + 12 :], _LINKAGE_MAGIC)
    except InvalidTag:
        raise ConfigError("the linkage file does not decrypt with this key") from None
    return list(json.loads(payload.decode("utf-8"))["rows"])
