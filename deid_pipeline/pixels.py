"""Decode and re-encode Pixel Data in its stored representation.

Decoding goes through pydicom's pixel backends (pylibjpeg with its libjpeg,
openjpeg and rle plugins, pyjpegls, Pillow, GDCM where installed), then, when
all of them fail, through the fallback decoders of ``FALLBACK_DECODERS``
(GDCM's codecs, fed from memory, for 12-bit JPEG Extended and JPEG streams
libjpeg rejects; grayscale only); this module adds a registry that says, per transfer syntax, whether a decoder is installed,
which package provides one, and what ``encode_frames`` writes after redaction.

What ``decode_frames`` returns
    Stored values, shape ``(n, rows, cols[, samples])``, native byte order,
    values within Bits Stored (pydicom masks unused high bits of unsigned data
    and sign-extends signed data, so overlay bits embedded in Pixel Data are
    dropped; see ``embedded_overlay_groups``). Colour is *not* converted,
    except where the codec itself owns the transform:

    * JPEG 2000 / HTJ2K with ``YBR_RCT`` or ``YBR_ICT``: the decoder undoes the
      multiple-component transform, frames are RGB.
    * ``YBR_FULL_422`` (native or JPEG): chroma is up-sampled, frames are
      ``YBR_FULL`` (the stored Y, Cb, Cr values, nothing rounded).

    ``decoded_photometric(ds)`` names the photometric interpretation of the
    frames; ``redact`` uses it to choose the fill and ``encode_frames`` writes
    it. ``display_rgb`` turns colour frames into uint8 RGB for detectors.

What ``encode_frames`` writes (never a new lossy step)
    =========================================  =====================================
    original                                   written
    =========================================  =====================================
    Implicit VR LE, Explicit VR LE, Deflated   same
    Explicit VR Big Endian                     Explicit VR LE (OW/OL/OF/OD/OV swapped)
    RLE Lossless                               RLE Lossless
    JPEG-LS Lossless / Near-Lossless           JPEG-LS Lossless
    JPEG 2000 Lossless / JPEG 2000             JPEG 2000 Lossless
    HTJ2K (all three)                          JPEG 2000 Lossless
    JPEG Baseline / Extended / Lossless        Explicit VR LE
    =========================================  =====================================

    A compressed write is decoded again and compared with the frames; when an
    encoder is missing, refuses the pixel format, or does not round-trip, the
    frames are stored as Explicit VR Little Endian instead. A lossy original
    keeps (or gains) Lossy Image Compression "01" with its method and ratio.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import itertools
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import uid as _uid
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space, get_decoder, get_encoder, pack_bits
from pydicom.uid import UID

from deid_pipeline.errors import FileError
from deid_pipeline.types import PHOTOMETRIC_SAMPLES, PIXEL_DATA_TAGS, Heartbeat

logger = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_SWAP_WIDTH = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_ATTRS_OF_ENCAPSULATION = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")


@dataclass(frozen=True)
class Codec:
    """One transfer syntax: how it decodes, whether it may be lossy, what we write back.

    ``lossy`` is "no", "yes" or "maybe" ("maybe": lossy unless the header says
    Lossy Image Compression "00"). ``lossy_method`` is the defined term for
    Lossy Image Compression Method (0028,2114). ``write_as`` is the syntax
    ``encode_frames`` tries first; ``install`` names the packages that provide
    a decoder when none is installed.
    """

    uid: UID
    lossy: str
    lossy_method: str
    write_as: UID
    install: str

    @property
    def name(self) -> str:
        return self.uid.name

    def is_available(self) -> bool:
        """True when at least one decoder backend (a pydicom plugin or a fallback) is installed."""
        return bool(get_decoder(self.uid).is_available) or any(f.is_available() for f in fallbacks_for(self.uid))

    def missing_dependencies(self) -> list[str]:
        """pydicom's list of backends that are missing, with what each requires."""
        return list(get_decoder(self.uid).missing_dependencies)

    def can_write(self) -> bool:
        """True when ``write_as`` can be written: native, or an encoder is installed."""
        if not self.write_as.is_compressed:
            return True
        return bool(get_encoder(self.write_as).is_available)


_PYLIBJPEG = "pylibjpeg pylibjpeg-libjpeg (or pillow / python-gdcm)"
_OPENJPEG = "pylibjpeg pylibjpeg-openjpeg (or pillow / python-gdcm)"
_JPEGLS = "pyjpegls (or pylibjpeg pylibjpeg-libjpeg / python-gdcm)"

CODECS: dict[str, Codec] = {
    c.uid: c
    for c in (
        Codec(_uid.ImplicitVRLittleEndian, "no", "", _uid.ImplicitVRLittleEndian, "numpy"),
        Codec(_uid.ExplicitVRLittleEndian, "no", "", _uid.ExplicitVRLittleEndian, "numpy"),
        Codec(_uid.DeflatedExplicitVRLittleEndian, "no", "", _uid.DeflatedExplicitVRLittleEndian, "numpy"),
        Codec(_uid.ExplicitVRBigEndian, "no", "", _uid.ExplicitVRLittleEndian, "numpy"),
        Codec(_uid.RLELossless, "no", "", _uid.RLELossless, "numpy (or pylibjpeg pylibjpeg-rle)"),
        Codec(_uid.JPEGBaseline8Bit, "yes", "ISO_10918_1", _uid.ExplicitVRLittleEndian, _PYLIBJPEG),
        Codec(_uid.JPEGExtended12Bit, "yes", "ISO_10918_1", _uid.ExplicitVRLittleEndian, _PYLIBJPEG),
        Codec(_uid.JPEGLossless, "no", "", _uid.ExplicitVRLittleEndian, _PYLIBJPEG),
        Codec(_uid.JPEGLosslessSV1, "no", "", _uid.ExplicitVRLittleEndian, _PYLIBJPEG),
        Codec(_uid.JPEGLSLossless, "no", "", _uid.JPEGLSLossless, _JPEGLS),
        Codec(_uid.JPEGLSNearLossless, "maybe", "ISO_14495_1", _uid.JPEGLSLossless, _JPEGLS),
        Codec(_uid.JPEG2000Lossless, "no", "", _uid.JPEG2000Lossless, _OPENJPEG),
        Codec(_uid.JPEG2000, "maybe", "ISO_15444_1", _uid.JPEG2000Lossless, _OPENJPEG),
        Codec(_uid.HTJ2KLossless, "no", "", _uid.JPEG2000Lossless, "pylibjpeg pylibjpeg-openjpeg>=2.2"),
        Codec(_uid.HTJ2KLosslessRPCL, "no", "", _uid.JPEG2000Lossless, "pylibjpeg pylibjpeg-openjpeg>=2.2"),
        Codec(_uid.HTJ2K, "maybe", "ISO_15444_15", _uid.JPEG2000Lossless, "pylibjpeg pylibjpeg-openjpeg>=2.2"),
    )
}


@dataclass(frozen=True)
class FallbackDecoder:
    """A decoder tried when every pydicom plugin fails (or none is installed).

    ``gdcm``: GDCM's own ``ImageReader`` on a stripped copy of the dataset
    (image attributes and Pixel Data only, in a private temporary file that
    is removed at once). It decodes what pydicom's GDCM plugin refuses:
    12-bit JPEG Extended, and JPEG streams with out-of-range SOS parameters
    that libjpeg rejects. Grayscale only: colour goes through pydicom.
    """

    name: str
    package: str
    module: str
    syntaxes: frozenset[str]

    def is_available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


FALLBACK_DECODERS: tuple[FallbackDecoder, ...] = (
    FallbackDecoder(
        "gdcm-imagereader",
        "python-gdcm",
        "gdcm",
        frozenset(
            {
                _uid.JPEGBaseline8Bit,
                _uid.JPEGExtended12Bit,
                _uid.JPEGLossless,
                _uid.JPEGLosslessSV1,
                _uid.JPEGLSLossless,
                _uid.JPEGLSNearLossless,
                _uid.JPEG2000Lossless,
                _uid.JPEG2000,
            }
        ),
    ),
)


def fallbacks_for(tsuid: str) -> list[FallbackDecoder]:
    """Registered fallback decoders for ``tsuid`` (installed or not)."""
    return [f for f in FALLBACK_DECODERS if tsuid in f.syntaxes]


_GDCM_DTYPES = {"UINT8": "u1", "INT8": "i1", "UINT16": "u2", "INT16": "i2", "UINT32": "u4", "INT32": "i4"}


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


#: What file descriptor 2 was when deid was imported (the process's stderr), None when it was closed.
_STDERR_AT_START = _fd_identity(2)


@contextmanager
def _stderr_withheld(library: str) -> Iterator[None]:
    """File descriptor 2 sent to a private temporary file while ``library``'s C code runs: GDCM's JPEG
    codecs print there ("Unsupported JPEG data precision 12" as it tries 8 bits before 12), which showed
    under ``--quiet``. Logged at debug as a line count, never the text. Left alone unless descriptor 2 is
    still the stderr of deid's start: closed, it may since be a file in use (a daemon's)."""
    if _STDERR_AT_START is None or _fd_identity(2) != _STDERR_AT_START:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                sink.seek(0)
                lines = sink.read().count(b"\n")
                if lines:
                    logger.debug("%s printed %d lines on stderr (withheld)", library, lines)
    finally:
        os.close(saved)


def _gdcm_decode(ds: Dataset, tsuid: UID) -> np.ndarray:
    """All frames via GDCM's codecs, shape ``(n, rows, cols)``, values masked to Bits Stored. The
    fragments reach GDCM in memory (as pydicom's GDCM plugin hands it a frame), never through a file:
    the copy once written to the temporary folder for GDCM's ImageReader, the original image with it,
    stayed there whenever GDCM aborted the process."""
    import gdcm  # type: ignore[import-not-found]
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    gdcm.Trace.WarningOff()  # its codecs print to stderr; failures still raise below

    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotImplementedError("the GDCM fallback decodes grayscale only")
    stream = io.BytesIO(ds.PixelData)
    parse_basic_offsets(stream)
    fragments = gdcm.SequenceOfFragments.New()
    for data in generate_fragments(stream):
        fragment = gdcm.Fragment()
        fragment.SetByteStringValue(data)
        fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    rows, cols, n = int(ds.Rows), int(ds.Columns), frame_count(ds)
    bits = int(ds.get("BitsStored", 8))
    image = gdcm.Image()
    image.SetNumberOfDimensions(3 if n > 1 else 2)
    image.SetDimensions((cols, rows, n))
    image.SetDataElement(element)
    pi = gdcm.PhotometricInterpretation.GetPIType(_normal_pi(ds.get("PhotometricInterpretation", "MONOCHROME2")))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(str.__str__(tsuid))))
    image.SetPixelFormat(gdcm.PixelFormat(1, int(ds.BitsAllocated), bits, int(ds.get("HighBit", bits - 1)),
                                          int(ds.get("PixelRepresentation", 0))))
    with _stderr_withheld("GDCM"):
        buf = image.GetBuffer()
    if buf is None:
        raise ValueError("GDCM could not decode the pixel data")
    scalar = image.GetPixelFormat().GetScalarTypeAsString()
    if scalar not in _GDCM_DTYPES:
        raise ValueError(f"GDCM returned unsupported samples {scalar}")
    raw = buf.encode("utf-8", "surrogateescape")
    arr = np.frombuffer(raw, dtype="<" + _GDCM_DTYPES[scalar])
    if arr.size != n * rows * cols:
        raise ValueError(f"GDCM returned {arr.size} samples for {n} x {rows} x {cols}")
    arr = arr.reshape(n, rows, cols)
    width = arr.dtype.itemsize * 8
    if int(ds.get("PixelRepresentation", 0)) == 1:
        arr = arr.astype(f"=i{arr.dtype.itemsize}")
        if bits < width:
            arr = (arr << (width - bits)) >> (width - bits)  # sign-extend, as pydicom does
    else:
        arr = arr.astype(f"=u{arr.dtype.itemsize}")
        if bits < width:
            arr = arr & ((1 << bits) - 1)
    return arr


def _decode_with_fallbacks(ds: Dataset, codec: Codec, first: int, last: int) -> np.ndarray | None:
    """Frames ``first:last`` from the first installed fallback that decodes them; None when none does."""
    for fallback in fallbacks_for(codec.uid):
        if not fallback.is_available():
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = _gdcm_decode(ds, codec.uid)
        except Exception as exc:
            logger.debug("fallback %s failed for %s (%s)", fallback.name, codec.name, type(exc).__name__)
            continue
        logger.info("%s decoded by the %s fallback", codec.name, fallback.name)
        return arr[first:last]
    return None


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's transfer syntax: file meta first, else the encoding it was read with."""
    meta = getattr(ds, "file_meta", None)
    tsuid = meta.get("TransferSyntaxUID") if meta is not None else None
    if tsuid:
        return UID(str(tsuid))
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = getattr(ds, "is_implicit_VR", None), getattr(ds, "is_little_endian", None)
    if implicit:
        return _uid.ImplicitVRLittleEndian
    return _uid.ExplicitVRLittleEndian if little in (True, None) else _uid.ExplicitVRBigEndian


def codec_for(ds: Dataset) -> Codec:
    """The registry entry for ``ds``; ``FileError("unsupported-transfer-syntax")`` if none."""
    tsuid = transfer_syntax(ds)
    codec = CODECS.get(tsuid)
    if codec is None:
        raise FileError("unsupported-transfer-syntax", f"no pixel decoder for transfer syntax {tsuid.name or 'private'}")
    return codec


def codec_report() -> list[dict[str, Any]]:
    """One row per registered syntax, for ``deid doctor``-style reports: availability and what to install."""
    return [
        {
            "uid": str(c.uid),
            "name": c.name,
            "decoder_available": c.is_available(),
            "backends": (list(get_decoder(c.uid).available_plugins) or (["numpy"] if not c.uid.is_compressed else []))
            + [f.name for f in fallbacks_for(c.uid) if f.is_available()],
            "fallbacks": {f.name: {"package": f.package, "installed": f.is_available()} for f in fallbacks_for(c.uid)},
            "install": "" if c.is_available() else c.install,
            "writes": c.write_as.name,
            "writer_available": c.can_write(),
        }
        for c in CODECS.values()
    ]


def _pixel_keyword(ds: Dataset) -> str | None:
    return next((kw for kw in _PIXEL_KEYWORDS if kw in ds), None)


def has_pixels(ds: Dataset) -> bool:
    """True when the dataset holds a non-empty Pixel Data (or Float / Double Float Pixel Data)."""
    keyword = _pixel_keyword(ds)
    if keyword is None:
        return False
    value = ds[keyword].value
    return value is not None and len(value) > 0


def frame_count(ds: Dataset) -> int:
    """Number of frames (Number of Frames, or 1); 0 when there are no pixels."""
    if not has_pixels(ds):
        return 0
    try:
        n = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        n = 1
    return max(n, 1)


def _normal_pi(value: Any) -> str:
    """A photometric interpretation as a plain upper-case string (pydicom enums, padding, case)."""
    value = getattr(value, "value", value)  # enum members
    return str.__str__(str(value)).strip().rstrip("\x00").strip().upper()


def decoded_photometric(ds: Dataset) -> str:
    """Photometric interpretation of the frames ``decode_frames`` returns (see the module docstring)."""
    pi = _normal_pi(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2")
    if pi in ("YBR_RCT", "YBR_ICT"):
        return "RGB"
    if pi == "YBR_FULL_422":
        return "YBR_FULL"
    return pi


def _frame_shape(ds: Dataset) -> tuple[int, ...]:
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (int(ds.Rows), int(ds.Columns))
    return shape + (spp,) if spp > 1 else shape


# pydicom tries plugins in alphabetical order, which puts GDCM first once python-gdcm is installed;
# keep the decoders the values were validated with first, so installing GDCM changes no output.
_PLUGIN_ORDER = ("pylibjpeg", "pyjpegls", "pillow", "rle", "gdcm")


def _decode_with_plugins(ds: Dataset, decoder: Any, first: int, last: int, n: int,
                         heartbeat: Heartbeat | None = None) -> tuple[np.ndarray, dict]:
    plugins = sorted(decoder.available_plugins, key=lambda p: (_PLUGIN_ORDER + (p,)).index(p))
    if len(plugins) <= 1:
        plugins = [""]  # let pydicom choose (native syntaxes have no plugins)
    errors: list[str] = []
    for plugin in plugins:
        try:
            if first == 0 and last == n and heartbeat is not None and n > 1 and decoder.UID.is_compressed:
                return _decode_beating(ds, decoder, plugin, n, heartbeat)
            if first == 0 and last == n:
                arr, meta = decoder.as_array(ds, raw=True, decoding_plugin=plugin, allow_excess_frames=False)
                return arr.reshape((n,) + arr.shape[-len(_frame_shape(ds)) :]), meta
            parts = [decoder.as_array(ds, index=i, raw=True, decoding_plugin=plugin, allow_excess_frames=False)
                     for i in range(first, last)]
            return np.stack([p[0] for p in parts]), parts[0][1]
        except Exception as exc:
            errors.append(f"{plugin or 'default'}: {type(exc).__name__}")
            last_exc = exc
    raise RuntimeError("; ".join(errors)) from last_exc


def _decode_beating(ds: Dataset, decoder: Any, plugin: str, n: int, heartbeat: Heartbeat) -> tuple[np.ndarray, dict]:
    """All ``n`` compressed frames, decoded one after another into one array, ``heartbeat`` called after
    each (a whole file's frames take up to ~100 s within the decode budget: 65,536 64x64 JPEG 2000
    frames at 1.4 ms each)."""
    arr: np.ndarray | None = None
    meta: dict = {}
    frames = decoder.iter_array(ds, raw=True, decoding_plugin=plugin)  # yields frames past n too: not read
    for i, (frame, meta) in enumerate(itertools.islice(frames, n)):
        if arr is None:
            arr = np.empty((n,) + frame.shape, frame.dtype)
        arr[i] = frame
        heartbeat()
    if arr is None or i != n - 1:
        raise ValueError("fewer frames decoded than the header counts")
    return arr, meta


_JPEG_FAMILY = frozenset({_uid.JPEGBaseline8Bit, _uid.JPEGExtended12Bit, _uid.JPEGLossless, _uid.JPEGLosslessSV1,
                          _uid.JPEGLSLossless, _uid.JPEGLSNearLossless})
_J2K_FAMILY = frozenset({_uid.JPEG2000Lossless, _uid.JPEG2000, _uid.HTJ2KLossless, _uid.HTJ2KLosslessRPCL, _uid.HTJ2K})
#: Start-of-frame markers of ISO 10918 (not DHT C4, JPG C8, DAC CC) and JPEG-LS's SOF55 (F7).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) of a JPEG or JPEG-LS stream's frame header (rows 0: set later by a DNL marker)."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
        elif marker in _SOF_MARKERS:
            return (int.from_bytes(data[pos + 7 : pos + 9], "big"), int.from_bytes(data[pos + 5 : pos + 7], "big")) if pos + 9 <= len(data) else None
        elif marker == 0xDA:  # a scan before any frame header
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _j2k_size(data: bytes) -> tuple[int, int] | None:
    """(columns, rows) of a JPEG 2000 codestream's SIZ marker (inside a JP2 box too)."""
    at = data.find(b"\xff\x4f\xff\x51", 0, 1 << 16)
    if at < 0 or at + 24 > len(data):
        return None
    x, y, x0, y0 = (int.from_bytes(data[at + k : at + k + 4], "big") for k in (8, 12, 16, 20))
    return x - x0, y - y0


def check_codestream_size(ds: Dataset, tsuid: UID) -> None:
    """``pixel-decode-failed`` when the first compressed frame's own size is not the header's Rows x
    Columns (JPEG, JPEG-LS, JPEG 2000), or more than its RLE data can hold (any other syntax: nothing
    to check): decoders size their output from one or the other, GDCM's aborts the whole process on the
    difference (a worker dies with the file, again at each retry), and an RLE decoder allocated 8 GiB for
    a header of 65535 x 65535 before it failed. A JPEG or JPEG-LS frame whose segments run out or
    reach a scan before any frame header (SOF) is ``pixel-decode-failed`` too: no decoder shows an image
    without one, and GDCM's aborted the process on a comment longer than its frame. No file that decodes
    is caught (the 45 JPEG / JPEG-LS / JPEG 2000 and 12 RLE test files of pydicom and pydicom-data that do)."""
    from pydicom.encaps import generate_fragments, generate_frames, parse_basic_offsets

    rle = tsuid == _uid.RLELossless
    reader = _jpeg_size if tsuid in _JPEG_FAMILY else _j2k_size if tsuid in _J2K_FAMILY else None
    if reader is None and not rle:
        return
    try:
        buf = io.BytesIO(ds.PixelData)
        parse_basic_offsets(buf)
        fragment = next(generate_fragments(buf), None)
    except Exception:  # noqa: BLE001 - not encapsulated as it should be: the decoders give the reason
        return
    cols, rows = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
    if rle:  # a run of two bytes repeats one byte 128 times at most: 64x is as far as RLE expands
        need = rows * cols * int(ds.get("SamplesPerPixel", 1) or 1) * -(-int(ds.get("BitsAllocated", 8) or 8) // 8)
        if fragment and need > 64 * len(fragment):
            raise FileError("pixel-decode-failed", f"the RLE frame of {len(fragment)} bytes cannot hold the header's {cols} x {rows} pixels")
        return
    size = reader(fragment) if fragment and reader is not None else None
    if size is None and fragment and reader is _jpeg_size:  # the frame header may lie past a first fragment
        try:
            frame = next(generate_frames(ds.PixelData, number_of_frames=frame_count(ds)), b"")
        except Exception:  # noqa: BLE001 - fragments that do not split into frames: the decoders give the reason
            return
        if (size := _jpeg_size(frame)) is None:
            raise FileError("pixel-decode-failed", "the compressed frame has no JPEG frame header (SOF): its segments run out or a scan comes first")
    if size is None:
        return
    if size[0] != cols or size[1] not in (0, rows):
        raise FileError("pixel-decode-failed", f"the compressed frame is {size[0]} x {size[1]} pixels where the header says {cols} x {rows}")


def check_samples(ds: Dataset) -> None:
    """``invalid-image-attributes`` when Samples per Pixel is not the Photometric Interpretation's (RGB
    data labelled MONOCHROME2 failed in the detector, a crash where a reason belongs)."""
    pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    need = PHOTOMETRIC_SAMPLES.get(pi)
    try:
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise FileError("invalid-image-attributes", "Samples per Pixel is not one number") from None
    if need is not None and spp != need:
        raise FileError("invalid-image-attributes",
                        f"Photometric Interpretation {pi} has {need} sample(s) per pixel, the header says {spp}")


def decode_frames(ds: Dataset, start: int = 0, stop: int | None = None, heartbeat: Heartbeat | None = None) -> np.ndarray:
    """Decode frames ``start:stop`` as stored values, shape ``(n, rows, cols[, samples])``.

    Multi-frame files are decoded one frame at a time when only a slice is
    asked for, so callers can walk a big cine in chunks. Raises
    ``FileError("unsupported-transfer-syntax")`` when no decoder exists or is
    installed, ``FileError("pixel-decode-failed")`` for missing, truncated or
    corrupt pixel data.
    """
    if not has_pixels(ds):
        raise FileError("pixel-decode-failed", "the dataset has no pixel data")
    codec = codec_for(ds)
    if not codec.is_available():
        raise FileError(
            "unsupported-transfer-syntax",
            f"no decoder installed for {codec.name}; install {codec.install}",
        )
    n = frame_count(ds)
    first, last, step = slice(start, stop).indices(n)
    if step != 1 or last <= first:
        raise ValueError(f"empty or invalid frame range {start}:{stop} of {n}")
    check_codestream_size(ds, codec.uid)
    check_samples(ds)
    decoder = get_decoder(codec.uid)
    expected_pi = decoded_photometric(ds)
    meta_added = getattr(ds, "file_meta", None) is None or "TransferSyntaxUID" not in ds.file_meta
    if meta_added:  # pydicom reads the syntax from file meta; lend it one and take it back below
        _set_file_meta_ts(ds, codec.uid)
    caught: list[warnings.WarningMessage] = []
    try:
        if not decoder.is_available:
            raise RuntimeError("no pydicom decoding plugin installed")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arr, meta = _decode_with_plugins(ds, decoder, first, last, n, heartbeat)
    except Exception as exc:  # pydicom and plugin errors carry no header values, but we keep only the type
        logger.debug("decode failed for %s: %s", codec.name, type(exc).__name__)
        fallback = _decode_with_fallbacks(ds, codec, first, last) if codec.uid.is_compressed else None
        if fallback is None:
            raise FileError(
                "pixel-decode-failed", f"{codec.name} pixel data could not be decoded ({type(exc).__name__})"
            ) from None
        arr, meta = fallback, {"photometric_interpretation": expected_pi}
    finally:
        if meta_added:
            del ds.file_meta.TransferSyntaxUID
    for w in caught:
        logger.debug("pixel decode warning (%s): %s", codec.name, w.category.__name__)
    got_pi = _normal_pi(meta.get("photometric_interpretation", expected_pi))
    if got_pi == "YBR_FULL_422" and expected_pi == "YBR_FULL":
        # JPEG decoders up-sample 4:2:2 chroma but keep the name (pydicom only renames after its own
        # native up-sampling); the values are full-resolution Y, Cb, Cr and the shape check below confirms
        got_pi = expected_pi
    if got_pi != expected_pi:
        raise FileError(
            "pixel-decode-failed",
            f"{codec.name} decoder returned {got_pi} where {expected_pi} was expected",
        )
    expected_shape = (last - first,) + _frame_shape(ds)
    if arr.shape != expected_shape:
        raise FileError("pixel-decode-failed", f"decoded shape {arr.shape} does not match the header {expected_shape}")
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return np.ascontiguousarray(arr)


def frame_digest(frame: np.ndarray) -> bytes:
    """A 16-byte BLAKE2b digest of one frame's values, shape and dtype (finds identical cine frames)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{frame.shape}{frame.dtype.str}".encode())
    h.update(np.ascontiguousarray(frame).data)
    return h.digest()


#: Samples looked at per pass when checking the bits outside Bits Stored (bounded temporaries)
_OUTSIDE_CHUNK = 1 << 22


def _outside_layout(alloc: int, stored: int, high: int) -> tuple[int, int, int] | None:
    """(bits of the stored value, unused bits below them, unused bits above them) as masks, or None
    for a layout with no unused bits or one deid does not read (bit-packed, inconsistent)."""
    if alloc not in (8, 16, 32) or not 1 <= stored <= high + 1 <= alloc or stored == alloc:
        return None
    valid = ((1 << stored) - 1) << (high + 1 - stored)
    return valid, (1 << (high + 1 - stored)) - 1, ((1 << alloc) - 1) & ~((1 << (high + 1)) - 1)


def _holds_outside(u: np.ndarray, high: int, signed: bool, masks: tuple[int, int, int]) -> bool:
    """Whether any sample of ``u`` (unsigned view) holds bits outside Bits Stored: unused bits not
    zero, or for signed data, above High Bit, neither zero nor the sign."""
    _valid, below, above = (u.dtype.type(m) for m in masks)
    if not (signed and above):
        return bool((u & (below | above)).any())
    if below and (u & below).any():
        return True
    top = u >> u.dtype.type(high)  # the sign bit and the bits above it: 0, 1 (zero-filled) or all ones
    full = u.dtype.type((1 << (8 * u.itemsize - high)) - 1)
    return bool(((top - u.dtype.type(2)) < full - u.dtype.type(2)).any())  # 2 <= top < full, wrapping


def _outside_fixed(u: np.ndarray, high: int, signed: bool, masks: tuple[int, int, int]) -> np.ndarray:
    """The samples of ``u`` as a reader takes them: unused bits zero, for signed data the sign above
    High Bit."""
    valid, _below, above = (u.dtype.type(m) for m in masks)
    fixed = u & valid
    if signed and above:
        fixed = np.where(((u >> u.dtype.type(high)) & u.dtype.type(1)).astype(bool), fixed | above, fixed)
    return fixed


_BITS_ALLOCATED, _BITS_STORED, _HIGH_BIT, _PIXEL_REPRESENTATION = 0x00280100, 0x00280101, 0x00280102, 0x00280103
_ROWS, _COLUMNS, _SAMPLES_PER_PIXEL, _NUMBER_OF_FRAMES, _PHOTOMETRIC = 0x00280010, 0x00280011, 0x00280002, 0x00280008, 0x00280004
_ABSENT = object()


#: the image attributes of VR US (VM 1) the fast path reads; their raw two bytes are read in place
_US_ONE = frozenset({_BITS_ALLOCATED, _BITS_STORED, _HIGH_BIT, _PIXEL_REPRESENTATION, _ROWS, _COLUMNS,
                     _SAMPLES_PER_PIXEL})


def _top(ds: Dataset, tag: int, default: Any = None) -> Any:
    """A top-level element's value, as ``ds.get`` gives it (``default`` when absent), without its
    keyword lookup: these checks run on every file the fast path takes (a few microseconds, not tens).
    A raw US element of two bytes (:data:`_US_ONE`, explicit VR US or implicit) is read from its bytes
    and left raw: pydicom's conversion cost ~20 us each, and the writer copies a raw element as it is."""
    elem = ds._dict.get(tag, _ABSENT)
    if elem is _ABSENT:
        return default
    if isinstance(elem, DataElement):
        return elem.value
    if tag in _US_ONE and elem.VR in (None, "US") and elem.length == 2 and isinstance(elem.value, bytes):
        return int.from_bytes(elem.value, "little" if elem.is_little_endian else "big")
    return ds[tag].value


@functools.lru_cache(maxsize=64)
def _native_syntax(ts: str | None) -> tuple[bool, bool]:
    """(native, big endian) for a transfer syntax UID; no file meta counts as native little endian."""
    return (ts is None or not UID(ts).is_compressed), ts == _uid.ExplicitVRBigEndian


def _meta_syntax(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    value = None if meta is None else _top(meta, 0x00020010)
    return None if value is None else str(value)


def _native_big_endian(ds: Dataset) -> bool | None:
    """Whether ``ds``'s Pixel Data is big endian, for native Pixel Data of defined length (no file meta:
    native little endian, as it is read and written); None for compressed, encapsulated or no Pixel Data."""
    native, big = _native_syntax(_meta_syntax(ds))
    elem = ds._dict.get(0x7FE00010)
    if not native or elem is None or getattr(elem, "is_undefined_length", getattr(elem, "length", 0) == 0xFFFFFFFF):
        return None
    return big


def native_pixel_length(ds: Dataset) -> int | None:
    """How many bytes of native Pixel Data the image fills (rows x columns x samples x frames at Bits
    Allocated; 1-bit data packed; YBR_FULL_422's two chroma samples per two pixels, as pydicom counts),
    before the pad byte to an even length; None for compressed, encapsulated or no Pixel Data
    (:func:`_native_big_endian`). ``invalid-image-attributes`` when Rows, Columns, Bits Allocated or
    Samples per Pixel is not one number."""
    if _native_big_endian(ds) is None or _ROWS not in ds._dict or _COLUMNS not in ds._dict:
        return None
    try:
        bits = int(_top(ds, _BITS_ALLOCATED, 8) or 8)
        spp = int(_top(ds, _SAMPLES_PER_PIXEL, 1) or 1)
        rows, cols = int(_top(ds, _ROWS)), int(_top(ds, _COLUMNS))
    except (TypeError, ValueError):
        raise FileError("invalid-image-attributes", "Rows, Columns, Bits Allocated or Samples per Pixel is not one number") from None
    try:  # read here, not by frame_count, which would load a value left in its file
        frames = max(int(_top(ds, _NUMBER_OF_FRAMES) or 1), 1)
    except (TypeError, ValueError):
        frames = 1  # an unreadable Number of Frames counts as 1 here as everywhere
    samples = rows * cols * frames * spp
    expected = (samples + 7) // 8 if bits == 1 else samples * bits // 8
    if str(_top(ds, _PHOTOMETRIC, "")).strip() == "YBR_FULL_422":
        expected = expected // 3 * 2  # two chroma samples per two pixels (PS3.3 C.7.6.3.1.2)
    return expected


def trim_native_excess(ds: Dataset) -> int:
    """Native Pixel Data that holds anything past the image (bytes after its last frame, which no
    reader shows: a leftover of a larger image, anything a writer put there; :func:`runs_past_image`)
    cut to the image, a zero pad byte to an even length. Returns how many bytes followed the image."""
    try:
        expected = native_pixel_length(ds)
    except FileError:
        return 0
    if expected is None:
        return 0
    data = ds.PixelData or b""
    if not runs_past_image(data, expected):
        return 0
    ds.PixelData = bytes(data[:expected]) + b"\0" * (expected % 2)
    return len(data) - expected


def runs_past_image(value: Any, expected: int) -> bool:
    """Whether native Pixel Data ``value`` (bytes, a memoryview) holds anything but zeros past the
    image's ``expected`` bytes (:func:`native_pixel_length`): zero padding carries nothing."""
    return len(value) > expected and bool(bytes(value[expected:]).strip(b"\0"))


def native_bit_layout(ds: Dataset) -> tuple[int, int, int, bool, bool, int] | None:
    """(Bits Allocated, Bits Stored, High Bit, signed, big endian, samples) of native Pixel Data that
    has bits outside Bits Stored; None for compressed data, no Pixel Data, or no unused bits."""
    if (big := _native_big_endian(ds)) is None:
        return None
    try:
        alloc, stored = int(_top(ds, _BITS_ALLOCATED)), int(_top(ds, _BITS_STORED))
        high = int(_top(ds, _HIGH_BIT, stored - 1))
        count = int(_top(ds, _ROWS)) * int(_top(ds, _COLUMNS)) * int(_top(ds, _SAMPLES_PER_PIXEL, 1) or 1) * max(1, int(_top(ds, _NUMBER_OF_FRAMES) or 1))
        signed = int(_top(ds, _PIXEL_REPRESENTATION, 0) or 0) == 1
    except (TypeError, ValueError):
        return None
    if _outside_layout(alloc, stored, high) is None:
        return None
    return alloc, stored, high, signed, big, count


def bits_outside_stored(data: Any, alloc: int, stored: int, high: int, signed: bool, big_endian: bool = False) -> bool:
    """Whether native pixel bytes ``data`` hold anything in the bits outside Bits Stored: an overlay
    embedded in the unused high bits (retired), or one whose overlay group an earlier tool removed. A
    reader ignores those bits; a bit mask shows them."""
    masks = _outside_layout(alloc, stored, high)
    if masks is None:
        return False
    view = memoryview(data).cast("B")
    u = np.frombuffer(view[: len(view) // (alloc // 8) * (alloc // 8)], dtype=np.dtype(f"{'>' if big_endian else '<'}u{alloc // 8}"))
    return any(_holds_outside(u[i : i + _OUTSIDE_CHUNK], high, signed, masks) for i in range(0, len(u), _OUTSIDE_CHUNK))


def native_leftovers(ds: Dataset, value: Any) -> tuple[bool, bool]:
    """(data past the image, bits outside Bits Stored) in ``ds``'s native Pixel Data ``value`` (bytes
    or a memoryview, perhaps of a mapped file): what :func:`trim_native_excess` and
    :func:`clear_bits_outside_stored` would take out. (False, False) for compressed Pixel Data."""
    try:
        expected = native_pixel_length(ds)
    except FileError:  # not one number: the load stage's truncation check says so
        expected = None
    past = expected is not None and runs_past_image(value, expected)
    layout = native_bit_layout(ds)
    if layout is None:
        return past, False
    alloc, stored, high, signed, big, count = layout
    with memoryview(value)[: count * (alloc // 8)] as samples:  # released before a map under it closes
        return past, bits_outside_stored(samples, alloc, stored, high, signed, big)


def clear_bits_outside_stored(ds: Dataset) -> bool:
    """Native Pixel Data whose bits outside Bits Stored hold anything: those bits set to what a reader
    takes them for (zero, the sign above High Bit for signed data), so that no overlay hidden there
    (or anything else) is written. True when Pixel Data changed; the image values are the same."""
    layout = native_bit_layout(ds)
    if layout is None:
        return False
    alloc, stored, high, signed, big, count = layout
    masks = _outside_layout(alloc, stored, high)
    assert masks is not None
    dtype = np.dtype(f"{'>' if big else '<'}u{alloc // 8}")
    data = ds.PixelData
    n = min(count, len(data) // dtype.itemsize)
    u = np.frombuffer(data, dtype=dtype, count=n)
    changed: bytearray | None = None
    for i in range(0, n, _OUTSIDE_CHUNK):
        chunk = u[i : i + _OUTSIDE_CHUNK]
        if _holds_outside(chunk, high, signed, masks):
            fixed = _outside_fixed(chunk, high, signed, masks)
            if changed is None:
                changed = bytearray(data)
            start = i * dtype.itemsize
            changed[start : start + fixed.nbytes] = fixed.astype(dtype, copy=False).tobytes()
    if changed is None:
        return False
    ds.PixelData = bytes(changed)
    return True


#: Transfer syntaxes whose frames are JPEG (ISO 10918, 14495) or JPEG 2000 codestreams, by UID suffix
_JPEG_SUFFIXES = frozenset(str(n) for n in list(range(50, 67)) + [70])
_JPEG_LS_SUFFIXES = frozenset({"80", "81"})
_J2K_SUFFIXES = frozenset({"90", "91", "92", "93", "201", "202", "203"})
_JPEG_TS_ROOT = "1.2.840.10008.1.2.4."
#: The next marker in entropy-coded data: 0xFF not followed by a stuffed 0x00 or a restart marker
#: (JPEG); for JPEG-LS, 0xFF followed by a byte with its high bit set
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
_NEXT_MARKER_LS = re.compile(rb"\xff[\x80-\xcf\xd8-\xff]")
_JFIF_PLAIN = 14  # "JFIF\0", version, units, densities, no thumbnail (Xthumbnail = Ythumbnail = 0)
#: The next tile-part (SOT) or the end of a JPEG 2000 codestream (EOC): no packet data holds either
#: (T.800 A.1: the coder keeps 0xFF90-0xFFFF out of it, SOP and EPH aside)
_J2K_PART_END = re.compile(rb"\xff[\x90\xd9]")
#: Reason code of a compressed frame whose codestream does not parse far enough to take its metadata out
MALFORMED = "codestream-malformed"


def _malformed(what: str) -> FileError:
    """``codestream-malformed``: ``what`` does not parse, so the metadata a frame may carry there (a
    comment naming the patient) cannot be taken out, and the file is not written."""
    return FileError(MALFORMED, f"{what} does not parse: the comments or EXIF it may carry cannot be taken out")


def _codestream_kind(ts: Any) -> str:
    """``"jpeg"``, ``"jpeg-ls"``, ``"j2k"`` or ``""`` for a transfer syntax UID."""
    text = str(ts or "")
    if not text.startswith(_JPEG_TS_ROOT):
        return ""
    suffix = text[len(_JPEG_TS_ROOT):]
    return ("jpeg" if suffix in _JPEG_SUFFIXES else "jpeg-ls" if suffix in _JPEG_LS_SUFFIXES
            else "j2k" if suffix in _J2K_SUFFIXES else "")


def _kept_app(marker: int, body: bytes) -> bytes | None:
    """What stays of an APPn or COM segment's body: what a decoder reads, Adobe APP14 and HP's JPEG-LS
    APP8 ``mrfx`` (colour transforms), and a JFIF APP0 (colour space) without its thumbnail; None: the
    segment goes."""
    if (marker == 0xEE and body.startswith(b"Adobe")) or (marker == 0xE8 and body.startswith(b"mrfx")):
        return body
    if marker == 0xE0 and body.startswith(b"JFIF\0") and len(body) >= _JFIF_PLAIN:
        return body[:12] + b"\0\0"  # Xthumbnail, Ythumbnail 0: no thumbnail pixels follow
    return None


def _scrub_jpeg(frame: bytes, ls: bool) -> bytes | None:
    """``frame`` without COM and APPn segments (EXIF, XMP, ICC, comments, thumbnails: see
    :func:`_kept_app`) and without bytes after EOI; None when there is none. A stream without EOI (a
    cut transfer; decoders show what it holds) is scrubbed as far as it goes; ``codestream-malformed``
    (:func:`_malformed`) when it does not parse as segments."""
    if not frame.startswith(b"\xff\xd8"):
        raise _malformed("a JPEG frame without SOI")
    find = (_NEXT_MARKER_LS if ls else _NEXT_MARKER).search
    out, pos, changed, n = bytearray(b"\xff\xd8"), 2, False, len(frame)
    while pos < n:
        if frame[pos] != 0xFF or pos + 1 >= n:
            if frame[pos:].strip(b"\0\xff"):
                raise _malformed("a JPEG frame's segment structure")
            out += frame[pos:]  # pad bytes where EOI should stand
            break
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI: what follows is not image data (pad bytes 0x00 / 0xFF aside)
            tail = frame[pos + 2 :]
            out += b"\xff\xd9" + (tail if not tail.strip(b"\0\xff") else b"")
            changed |= bool(tail.strip(b"\0\xff"))
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out += frame[pos : pos + 2]
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if pos + 4 > n or end > n or end < pos + 4:
            raise _malformed("a JPEG frame's segment structure")
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            kept = _kept_app(marker, frame[pos + 4 : end])
            if kept is None or len(kept) != end - pos - 4:
                changed = True
            if kept is not None:
                out += bytes((0xFF, marker)) + (len(kept) + 2).to_bytes(2, "big") + kept
            pos = end
            continue
        out += frame[pos:end]
        pos = end
        if marker == 0xDA:  # a scan's entropy-coded data runs to the next marker
            found = find(frame, pos)
            stop = n if found is None else found.start()
            out += frame[pos:stop]
            pos = stop
    return bytes(out) if changed else None


def _scrub_j2k(frame: bytes) -> bytes | None:
    """A JPEG 2000 codestream without the comments (COM) of its main header and of its tile-part
    headers (each tile-part's length, Psot, made to match; TLM, the optional index of those lengths,
    dropped then) and without bytes after EOC; a JP2 file's frame (:func:`_scrub_jp2`) without its
    metadata boxes too. None when there is none; ``codestream-malformed`` (:func:`_malformed`) when
    its headers do not parse."""
    if frame.startswith(_JP2_SIGNATURE):
        return _scrub_jp2(frame)
    if not frame.startswith(b"\xff\x4f"):
        raise _malformed("a JPEG 2000 frame without SOC")
    kept: list[tuple[int, bytes]] = []
    pos, changed, n = 2, False, len(frame)
    while pos + 4 <= n and frame[pos] == 0xFF and frame[pos + 1] != 0x90:  # to the first tile-part (SOT)
        end = pos + 2 + int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if end > n or end < pos + 4:
            raise _malformed("a JPEG 2000 frame's main header")
        if frame[pos + 1] == 0x64:  # COM
            changed = True
        else:
            kept.append((frame[pos + 1], frame[pos:end]))
        pos = end
    if frame[pos : pos + 2] != b"\xff\x90":
        raise _malformed("a JPEG 2000 frame's main header")
    body = frame[pos:]
    tiles = _scrub_tile_parts(body)
    if tiles is not None:
        body, changed = tiles, True
        kept = [(marker, seg) for marker, seg in kept if marker != 0x55]  # TLM: the old lengths
    eoc = body.rfind(b"\xff\xd9")
    if eoc >= 0 and body[eoc + 2 :].strip(b"\0\xff"):
        body, changed = body[: eoc + 2], True
    return b"\xff\x4f" + b"".join(seg for _, seg in kept) + body if changed else None


def _scrub_tile_parts(body: bytes) -> bytes | None:
    """``body`` (a codestream from its first SOT on) without the COM segments of its tile-part headers,
    each Psot lowered by what left its tile-part; None when there is none. A tile-part whose Psot
    claims more than the frame holds (a cut transfer) runs to the next SOT or EOC (:data:`_J2K_PART_END`),
    as decoders read it; ``codestream-malformed`` when a tile-part header does not parse, or what
    follows the tile-parts is not EOC."""
    out, pos, n, changed = bytearray(), 0, len(body), False
    while body[pos : pos + 2] == b"\xff\x90":
        psot = int.from_bytes(body[pos + 6 : pos + 10], "big")
        if pos + 12 > n or (psot and psot < 14):
            raise _malformed("a JPEG 2000 tile-part header")
        end = n if psot == 0 else pos + psot  # 0: the last tile-part, to EOC
        limit = min(end, n)
        head, p, removed = bytearray(body[pos : pos + 12]), pos + 12, 0
        while p + 4 <= limit and body[p] == 0xFF and body[p + 1] != 0x93:  # to SOD
            seg_end = p + 2 + int.from_bytes(body[p + 2 : p + 4], "big")
            if seg_end > limit or seg_end < p + 4:
                raise _malformed("a JPEG 2000 tile-part header")
            if body[p + 1] == 0x64:
                removed += seg_end - p
            else:
                head += body[p:seg_end]
            p = seg_end
        if body[p : p + 2] != b"\xff\x93":
            raise _malformed("a JPEG 2000 tile-part header")
        if end > n:
            found = _J2K_PART_END.search(body, p + 2)
            end = n if found is None else found.start()
        if removed:
            changed = True
            if psot:
                head[6:10] = (psot - removed).to_bytes(4, "big")
        out += head + body[p:end]
        pos = end
    if body[pos : pos + 2] != b"\xff\xd9" and body[pos:].strip(b"\0\xff"):
        raise _malformed("what follows a JPEG 2000 frame's tile-parts")
    return bytes(out + body[pos:]) if changed else None


#: The JP2 signature box: a frame written as a JP2 file, not a bare codestream (PS3.5 A.4.4 wants the
#: codestream; some writers wrap it)
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
#: JP2 / JPX boxes a decoder reads (signature, file type, reader requirements, headers, codestream);
#: others (XML, UUID with EXIF or XMP, IPR, labels, associations, free) are metadata
_JP2_KEPT_BOXES = frozenset({b"jP  ", b"ftyp", b"rreq", b"jp2h", b"jpch", b"jplh", b"jp2c"})


def _scrub_jp2(frame: bytes) -> bytes | None:
    """A JP2 file without its metadata boxes (:data:`_JP2_KEPT_BOXES` stay), its codestream box
    scrubbed (:func:`_scrub_j2k`; one longer than the frame, a cut transfer, runs to its end); None when
    there is none; ``codestream-malformed`` when the boxes do not parse."""
    out, pos, n, changed = bytearray(), 0, len(frame), False
    while pos + 8 <= n:
        size, kind, head = int.from_bytes(frame[pos : pos + 4], "big"), frame[pos + 4 : pos + 8], 8
        if size == 1:
            if pos + 16 > n:
                raise _malformed("a JP2 frame's box structure")
            size, head = int.from_bytes(frame[pos + 8 : pos + 16], "big"), 16
        if size == 0 or (kind == b"jp2c" and pos + size > n):
            size = n - pos  # the last box, to the end
        end = pos + size
        if size < head or end > n:
            raise _malformed("a JP2 frame's box structure")
        if kind not in _JP2_KEPT_BOXES:
            changed = True
        elif kind == b"jp2c" and (inner := _scrub_j2k(frame[pos + head : end])) is not None:
            out += (len(inner) + 8).to_bytes(4, "big") + b"jp2c" + inner
            changed = True
        else:
            out += frame[pos:end]
        pos = end
    if pos != n:
        changed = changed or bool(frame[pos:].strip(b"\0"))
    return bytes(out) if changed else None


def _rle_trimmed(seg: bytes, plane: int) -> bytes | None:
    """An RLE segment cut where its runs have given ``plane`` bytes (PS3.5 G.3.1: a header byte 0-127
    copies that many plus one bytes, 129-255 repeats the next byte 257 minus it times, 128 does
    nothing), a last run that goes past ``plane`` shortened to it: the bytes a decoder reads. None
    when the segment runs out first (the decoder judges it)."""
    pos = out = 0
    n = len(seg)
    while out < plane:
        if pos >= n:
            return None
        head = seg[pos]
        if head == 128:
            pos += 1
            continue
        run, size = (head + 1, head + 2) if head < 128 else (257 - head, 2)
        if pos + size > n:
            return None
        take = min(run, plane - out)
        if take < run:  # past the plane: a literal run keeps its first bytes, a repeat its byte
            if head < 128:
                return seg[:pos] + bytes([take - 1]) + seg[pos + 1 : pos + 1 + take]
            return seg[:pos] + bytes([0 if take == 1 else 257 - take]) + seg[pos + 1 : pos + 2]
        pos, out = pos + size, out + run
    return seg[:pos]


def _rle_segment_fits(seg: bytes, plane: int) -> bool:
    """Whether ``seg`` decodes to ``plane`` bytes and holds nothing after them but a pad byte: pylibjpeg-rle
    decodes it (0.5 ms for a 512x512 plane; a walk in Python takes ten times that) and fails or returns
    more where something follows."""
    try:
        from rle import rle as _rle

        return len(_rle.decode_segment(bytes(seg))) == plane
    except ImportError:  # pragma: no cover - pylibjpeg-rle is a dependency
        trimmed = _rle_trimmed(seg, plane)
        return trimmed is not None and len(seg) - len(trimmed) <= 1
    except Exception:  # noqa: BLE001 - runs that do not end with the plane: walked by the caller
        return False


def _scrub_rle(frame: bytes, plane: int) -> bytes | None:
    """An RLE frame (PS3.5 G.5) without what no decoder reads: bytes after each segment's ``plane``
    bytes (rows x columns; a trailing pad byte aside), anything between the header and the first
    segment, and values in the header's unused offsets. None when there is none, when ``plane`` is
    unknown (0) or the frame does not parse (the decoder judges it, unchanged)."""
    if plane <= 0 or len(frame) < 64:
        return None
    count = int.from_bytes(frame[:4], "little")
    offsets = [int.from_bytes(frame[4 + 4 * i : 8 + 4 * i], "little") for i in range(15)]
    used = offsets[:count]
    if not 1 <= count <= 15 or used[0] < 64 or any(b <= a for a, b in zip(used, used[1:])) or used[-1] >= len(frame):
        return None
    bounds = list(zip(used, [*used[1:], len(frame)]))
    changed = used[0] != 64 or any(offsets[count:])
    segments = []
    for start, stop in bounds:
        seg = frame[start:stop]
        if not _rle_segment_fits(seg, plane):
            trimmed = _rle_trimmed(seg, plane)
            if trimmed is None:
                return None
            seg, changed = trimmed, True  # (fragments are padded to even length when encapsulated)
        segments.append(seg)
    if not changed:
        return None
    header, pos = bytearray(64), 64
    header[:4] = count.to_bytes(4, "little")
    for i, seg in enumerate(segments):
        header[4 + 4 * i : 8 + 4 * i] = pos.to_bytes(4, "little")
        pos += len(seg)
    return bytes(header) + b"".join(segments)


def scrub_codestream(frame: bytes, ts: Any, plane: int = 0) -> bytes | None:
    """One encapsulated frame without the metadata its codestream carries beside the image (JPEG
    COM/APPn: EXIF with dates, camera serials and places, XMP, comments, thumbnails; JPEG 2000 COM in
    the main and tile-part headers, a JP2 file's metadata boxes; bytes after the end marker; in RLE,
    bytes after each segment's ``plane`` bytes, rows x columns, and in its header's unused offsets);
    None when it holds none, or for other transfer syntaxes. ``codestream-malformed`` (a
    :class:`FileError`) when a JPEG, JPEG-LS or JPEG 2000 frame does not parse far enough to take that
    metadata out: such a frame is never written as it came."""
    if str(ts) == _uid.RLELossless:
        return _scrub_rle(frame, plane)
    kind = _codestream_kind(ts)
    if kind == "j2k":
        return _scrub_j2k(frame)
    if kind:
        return _scrub_jpeg(frame, kind == "jpeg-ls")
    return None


@functools.lru_cache(maxsize=64)
def _splits_into_frames(ts: Any) -> bool:
    """Encapsulated image frames (JPEG family, JPEG 2000, RLE, deflated or encapsulated uncompressed
    frames), not a video stream."""
    from .tags import VIDEO_TRANSFER_SYNTAX

    try:
        return UID(str(ts)).is_compressed and not VIDEO_TRANSFER_SYNTAX.match(str(ts))
    except Exception:  # noqa: BLE001 - not a UID
        return False


def encapsulated_leftovers(pixel_data: Any, ts: Any, frames: int, extended: tuple[Any, Any] | None = None,
                           plane: int = 0) -> tuple[bool, bool]:
    """(codestream metadata, frames past the last one) in encapsulated ``pixel_data`` (``frames``
    frames; bytes, or a file positioned at its value): what :func:`scrub_encapsulated_metadata` would
    take out, found in one pass; a JPEG or JPEG 2000 frame it would refuse (``codestream-malformed``)
    counts as metadata."""
    from pydicom.encaps import generate_frames

    metadata = False
    if not _splits_into_frames(ts):
        return False, False
    try:
        for i, frame in enumerate(generate_frames(pixel_data, number_of_frames=frames, extended_offsets=extended)):
            if i >= frames:
                return metadata, True
            try:
                metadata = metadata or scrub_codestream(frame, ts, plane) is not None
            except FileError:
                metadata = True
    except Exception:  # noqa: BLE001 - fragments that do not split into frames
        return metadata or bool(_codestream_kind(ts)), False
    return metadata, False


def _split_encapsulation(ds: Dataset) -> tuple[Any, tuple[Any, Any] | None] | None:
    """(transfer syntax, Extended Offset Table and its lengths or None) of a data set whose Pixel Data
    is encapsulated image frames (:func:`_splits_into_frames`); None for any other."""
    ts = _meta_syntax(ds)
    if not _splits_into_frames(ts) or "PixelData" not in ds or not ds["PixelData"].is_undefined_length:
        return None
    return ts, (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths) if "ExtendedOffsetTableLengths" in ds else None


def frame_plane(ds: Dataset) -> int:
    """Rows x columns: the bytes each RLE segment of a frame decodes to; 0 when either is not a number."""
    try:
        return int(_top(ds, _ROWS)) * int(_top(ds, _COLUMNS))
    except (TypeError, ValueError):
        return 0


def frames_past_count(ds: Dataset) -> int:
    """How many encapsulated frames follow the last one Number of Frames counts: a decode reads only
    those it counts, so frames re-encoded from it leave the rest out."""
    from pydicom.encaps import generate_frames

    if (split := _split_encapsulation(ds)) is None:
        return 0
    frames = frame_count(ds)
    try:
        found = sum(1 for _ in generate_frames(ds.PixelData, number_of_frames=frames, extended_offsets=split[1]))
    except Exception:  # noqa: BLE001 - fragments that do not split into frames: the decoder judged them
        return 0
    return max(0, found - max(frames, 1))


def codestream_metadata_in(pixel_data: Any, ts: Any, frames: int, extended: tuple[Any, Any] | None = None,
                           plane: int = 0) -> bool:
    """Whether encapsulated ``pixel_data`` holds codestream metadata (:func:`encapsulated_leftovers`)."""
    return encapsulated_leftovers(pixel_data, ts, frames, extended, plane)[0]


@dataclass
class ScrubbedFrames:
    """Encapsulated frames as both paths write them (:func:`_scrubbed_frames`)."""

    frames: list[bytes]
    scrubbed: int  # frames whose codestream metadata went
    dropped: int  # frames past Number of Frames, which no reader shows


def _scrubbed_frames(pixel_data: bytes, ts: Any, frames: int, extended: tuple[Any, Any] | None = None,
                     plane: int = 0) -> ScrubbedFrames | None:
    """The frames of encapsulated ``pixel_data``: those past the ``frames`` the header declares
    dropped (a reader shows ``frames``; the rest is hidden), each kept one without its codestream
    metadata (:func:`scrub_codestream`, which raises ``codestream-malformed`` for a frame it cannot
    take that from, as for JPEG and JPEG 2000 fragments that do not split into frames); None when there
    is nothing to take, or other fragments do not split into frames."""
    from pydicom.encaps import generate_frames

    if not _splits_into_frames(ts):
        return None
    try:
        split = list(generate_frames(pixel_data, number_of_frames=frames, extended_offsets=extended))
    except Exception:  # noqa: BLE001 - fragments that do not split into frames: the decoder judges them
        if _codestream_kind(ts):
            raise _malformed("the split of Pixel Data's fragments into frames") from None
        return None
    dropped = max(0, len(split) - max(frames, 1))
    del split[len(split) - dropped :]
    scrubbed = 0
    for i, frame in enumerate(split):
        clean = scrub_codestream(frame, ts, plane)
        if clean is not None:
            split[i], scrubbed = clean, scrubbed + 1
    return ScrubbedFrames(split, scrubbed, dropped) if scrubbed or dropped else None


def _encapsulated(frames: list[bytes]) -> bytes:
    """Frames one fragment each, a Basic Offset Table for more than one: what both paths write."""
    from pydicom.encaps import encapsulate

    return encapsulate(frames, has_bot=len(frames) > 1)


def scrubbed_encapsulation(pixel_data: bytes, ts: Any, frames: int, plane: int = 0) -> tuple[bytes, ScrubbedFrames] | None:
    """Encapsulated ``pixel_data`` as written (:func:`_encapsulated`) and what changed; None when there
    is nothing to take (:func:`_scrubbed_frames`)."""
    result = _scrubbed_frames(pixel_data, ts, frames, plane=plane)
    return None if result is None else (_encapsulated(result.frames), result)


def scrub_encapsulated_metadata(ds: Dataset) -> ScrubbedFrames | None:
    """Encapsulated Pixel Data written without re-encoding: frames past Number of Frames dropped,
    each JPEG / JPEG-LS / JPEG 2000 / RLE frame without its codestream metadata (:func:`_scrubbed_frames`),
    the image bytes unchanged, the frames re-encapsulated (:func:`_encapsulated`; with an Extended
    Offset Table, that table rebuilt). Returns what changed; None when nothing did."""
    from pydicom.encaps import encapsulate_extended

    if (split := _split_encapsulation(ds)) is None:
        return None
    ts, extended = split
    result = _scrubbed_frames(ds.PixelData, ts, frame_count(ds), extended, frame_plane(ds))
    if result is None:
        return None
    if extended is None:
        ds.PixelData = _encapsulated(result.frames)
    else:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(result.frames)
    ds["PixelData"].is_undefined_length = True
    return result


def embedded_overlay_groups(ds: Dataset) -> list[int]:
    """Overlay groups (0x6000..0x601E) whose bits live in Pixel Data (retired style, no Overlay Data).

    Such bits are outside Bits Stored; ``decode_frames`` drops them, so a
    re-encoded file no longer carries them, and :func:`clear_bits_outside_stored`
    clears them in a file that is not re-encoded. The groups are removed from
    the header (by ``graphics: remove``, or by clean graphics, which cannot scan
    them): they would point at nothing.
    """
    groups = []
    for group in range(0x6000, 0x6020, 2):
        has_plane = (group << 16 | 0x0010) in ds or (group << 16 | 0x0102) in ds
        if has_plane and (group << 16 | 0x3000) not in ds:
            groups.append(group)
    return groups


def palette_lut(ds: Dataset) -> tuple[int, np.ndarray]:
    """``(first_mapped_value, lut)`` with ``lut`` uint8 of shape (entries, 3); segmented LUTs included."""
    desc = ds.RedPaletteColorLookupTableDescriptor
    entries = int(desc[0]) or 65536
    first = int(desc[1])
    if int(ds.get("PixelRepresentation", 0)) == 1 and first >= 32768:
        first -= 65536
    index_dtype = np.uint16 if first >= 0 else np.int32
    lut = np.asarray(apply_color_lut(np.arange(first, first + entries, dtype=index_dtype), ds))
    lut = lut.reshape(-1, 3)
    if lut.dtype != np.uint8:
        # 16-bit entries; some writers put 8-bit values in 16-bit words
        lut = (lut >> 8).astype(np.uint8) if int(lut.max()) > 255 else lut.astype(np.uint8)
    return first, lut


def apply_palette(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """PALETTE COLOR indices -> uint8 RGB, shape ``frames.shape + (3,)``."""
    first, lut = palette_lut(ds)
    idx = np.clip(frames.astype(np.int64) - first, 0, len(lut) - 1)
    return lut[idx]


def display_rgb(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """Colour frames from ``decode_frames`` as uint8 RGB, shape ``(n, rows, cols, 3)``.

    PALETTE COLOR goes through its LUT, YBR_FULL is converted, samples above
    8 bits are shifted down. Monochrome frames raise ``ValueError``: their
    display depends on a window, which is the detector's choice. Other
    (retired) colour models are shown as if RGB: good enough to find text.
    """
    pi = decoded_photometric(ds)
    if pi == "PALETTE COLOR":
        return apply_palette(ds, frames)
    if pi.startswith("MONOCHROME") or frames.ndim != 4:
        raise ValueError(f"display_rgb does not handle {pi} frames of shape {frames.shape}")
    bits = int(ds.get("BitsStored", 8))
    if bits > 8:
        rgb = (frames.astype(np.uint64) >> (bits - 8)).astype(np.uint8)
    else:
        rgb = frames.astype(np.uint8)
    rgb = rgb[..., :3]
    if pi == "YBR_FULL" and rgb.shape[-1] == 3:
        rgb = convert_color_space(rgb, "YBR_FULL", "RGB")
    return np.ascontiguousarray(rgb)


# --- encoding -------------------------------------------------------------


def _is_lossy(ds: Dataset, codec: Codec) -> bool:
    if codec.lossy == "maybe":
        return str(ds.get("LossyImageCompression", "")).strip() != "00"
    return codec.lossy == "yes"


def _record_lossy_history(ds: Dataset, codec: Codec, values: int) -> None:
    """Lossy Image Compression "01"; add method and ratio (``values`` decoded samples) when the writer left them out."""
    ds.LossyImageCompression = "01"
    if "LossyImageCompressionMethod" in ds:
        return
    ds.LossyImageCompressionMethod = codec.lossy_method
    if "LossyImageCompressionRatio" not in ds:
        compressed = len(ds.PixelData)
        uncompressed = values * int(ds.BitsAllocated) / 8
        if compressed:
            ds.LossyImageCompressionRatio = f"{uncompressed / compressed:.2f}"


def _swap_other_words(ds: Dataset) -> int:
    """Byte-swap OW/OL/OF/OD/OV values everywhere (big -> little endian); returns the count swapped."""
    count = 0

    def visit(_ds: Dataset, elem: Any) -> None:
        nonlocal count
        width = _SWAP_WIDTH.get(elem.VR)
        if width and elem.tag not in PIXEL_DATA_TAGS and elem.value:
            value = bytes(elem.value)
            usable = len(value) - len(value) % width
            swapped = np.frombuffer(value[:usable], dtype=f">u{width}").astype(f"<u{width}").tobytes()
            elem.value = swapped + value[usable:]
            count += 1
        elif elem.VR == "UN" and elem.value:
            logger.warning("big endian UN element %s copied unswapped", elem.tag)

    ds.walk(visit)
    return count


def _storage_dtype(ds: Dataset, frames: np.ndarray) -> np.dtype:
    """Little-endian dtype that holds Bits Allocated with the right signedness."""
    bits = int(ds.get("BitsAllocated", 8))
    if frames.dtype.kind == "f" or bits == 1:
        return frames.dtype.newbyteorder("<")
    kind = "i" if int(ds.get("PixelRepresentation", 0)) == 1 else "u"
    return np.dtype(f"<{kind}{max(bits // 8, 1)}")


def _native_bytes(ds: Dataset, frames: np.ndarray, pad: bool = True) -> bytes:
    if int(ds.get("BitsAllocated", 8)) == 1:
        data = pack_bits(frames.reshape(-1).astype(np.uint8), pad=False)
    else:
        data = frames.astype(_storage_dtype(ds, frames), copy=False).tobytes()
    return data + b"\x00" if pad and len(data) % 2 else data


def _write_native(ds: Dataset, frames: np.ndarray | bytes | bytearray, tsuid: UID) -> UID:
    """Store ``frames`` (or their native bytes, already even in length) uncompressed as ``tsuid``."""
    original = transfer_syntax(ds)
    keyword = _pixel_keyword(ds) or "PixelData"
    if original == _uid.ExplicitVRBigEndian:
        swapped = _swap_other_words(ds)
        logger.debug("converted %d OW/OL/OF/OD/OV elements to little endian", swapped)
        ds.set_original_encoding(False, True, ds.original_character_set)
    for attr in _ATTRS_OF_ENCAPSULATION:
        if attr in ds:
            del ds[attr]
    if isinstance(frames, bytearray):  # a big image encoded in chunks: handed to the writer as a stream
        from pydicom.dataelem import DataElement

        ds[keyword] = DataElement(ds[keyword].tag, "OB", ValueReader(frames))  # Pixel Data only; VR set below
    else:
        setattr(ds, keyword, frames if isinstance(frames, bytes) else _native_bytes(ds, frames))
    elem = ds[keyword]
    elem.is_undefined_length = False
    if keyword == "PixelData":
        elem.VR = "OW" if int(ds.get("BitsAllocated", 8)) > 8 else "OB"
    _set_file_meta_ts(ds, tsuid)
    return tsuid


def _set_file_meta_ts(ds: Dataset, tsuid: UID) -> None:
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = tsuid


def _compressed_photometric(ds: Dataset, tsuid: UID, original_pi: str) -> str:
    """Photometric Interpretation to encode decoded frames with as ``tsuid``."""
    out_pi = decoded_photometric(ds)
    if tsuid in (_uid.JPEG2000Lossless,) and out_pi == "RGB" and original_pi in ("YBR_RCT", "YBR_ICT"):
        return "YBR_RCT"  # keep the reversible colour transform the original used
    return out_pi


def encoder_plugin(tsuid: str) -> dict[str, str]:
    """Pin the encoder where pydicom has several (RLE: gdcm, pylibjpeg, pydicom), so that the same
    input gives the same bytes whichever optional packages a machine has."""
    if tsuid == _uid.RLELossless:
        from pydicom.pixels.encoders import RLELosslessEncoder

        return {"encoding_plugin": "pylibjpeg" if "pylibjpeg" in RLELosslessEncoder.available_plugins else "pydicom"}
    return {}


def encode_frames(ds: Dataset, frames: np.ndarray, heartbeat: Heartbeat | None = None) -> str:
    """Write ``frames`` (from ``decode_frames``, all of them) into ``ds``; returns the transfer syntax UID used.

    Mutates ``ds`` and ``ds.file_meta``: Pixel Data, Transfer Syntax UID,
    Photometric Interpretation (when decoding changed it), Planar
    Configuration 0, the extended offset table, and the Lossy Image
    Compression attributes of a lossy original. Number of Frames, Bits
    Allocated / Stored and Pixel Representation are unchanged. Frames going
    to a compressed syntax are encoded and checked one by one
    (:func:`_write_fragments`), ``heartbeat`` called after each: a J2K cine
    of 700 1024x768 frames takes ~5 minutes here.
    """
    n = frame_count(ds)
    expected = (n,) + _frame_shape(ds)
    if frames.shape != expected:
        raise ValueError(f"frames of shape {frames.shape}; the header describes {expected}")
    dtype = _storage_dtype(ds, frames).newbyteorder("=")
    if frames.dtype != dtype:
        cast = frames.astype(dtype)
        if not np.array_equal(cast, frames):
            raise ValueError(f"frames of dtype {frames.dtype} do not fit {dtype}")
        frames = cast
    codec = codec_for(ds)
    original_pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if _is_lossy(ds, codec):
        _record_lossy_history(ds, codec, frames.size)
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0
    target = codec.write_as
    if target.is_compressed and _write_fragments(ds, target, original_pi, iter(frames), heartbeat):
        written = target
    else:
        if target.is_compressed:
            target = _uid.ExplicitVRLittleEndian
        ds.PhotometricInterpretation = decoded_photometric(ds)
        written = _write_native(ds, frames, target)
    ds._pixel_array = None
    ds._pixel_id = {}
    logger.debug("pixel data written as %s (was %s)", written.name, codec.name)
    return str(written)


class ValueReader(io.BufferedIOBase):
    """A read-only file over a bytes-like value without copying it: pydicom writes a buffered element
    value straight to the file, not through an in-memory copy of it (which doubles a big image)."""

    def __init__(self, data: bytes | bytearray) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos : end])
        self._pos = max(self._pos, end)
        return out

    read1 = read


def _single_frame_kwargs(ds: Dataset, pi: str) -> dict[str, Any]:
    return {
        "rows": int(ds.Rows), "columns": int(ds.Columns), "samples_per_pixel": int(ds.get("SamplesPerPixel", 1) or 1),
        "bits_allocated": int(ds.BitsAllocated), "bits_stored": int(ds.BitsStored),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0), "photometric_interpretation": pi,
        "number_of_frames": 1, "planar_configuration": 0,
    }


def _encode_one(tsuid: UID, frame: np.ndarray, kwargs: dict[str, Any]) -> bytes:
    """One frame encoded as ``tsuid`` and checked by decoding it again; raises when it does not round-trip."""
    from pydicom.encaps import encapsulate

    data = get_encoder(tsuid).encode(frame, encoding_plugin=encoder_plugin(tsuid).get("encoding_plugin", ""), **kwargs)
    data = scrub_codestream(data, tsuid) or data  # the encoder's own comment ("Created by OpenJPEG ...")
    probe = Dataset()
    probe.file_meta = FileMetaDataset()
    probe.file_meta.TransferSyntaxUID = tsuid
    probe.Rows, probe.Columns = kwargs["rows"], kwargs["columns"]
    probe.SamplesPerPixel, probe.PhotometricInterpretation = kwargs["samples_per_pixel"], kwargs["photometric_interpretation"]
    probe.BitsAllocated, probe.BitsStored = kwargs["bits_allocated"], kwargs["bits_stored"]
    probe.HighBit, probe.PixelRepresentation = kwargs["bits_stored"] - 1, kwargs["pixel_representation"]
    if kwargs["samples_per_pixel"] > 1:
        probe.PlanarConfiguration = 0
    probe.PixelData = encapsulate([data])
    back, _ = get_decoder(tsuid).as_array(probe, raw=True)
    if not np.array_equal(back.reshape(frame.shape), frame):
        raise ValueError("frame did not round-trip")
    return data


def _write_fragments(ds: Dataset, target: UID, original_pi: str, frames: Iterator[np.ndarray],
                     heartbeat: Heartbeat | None = None) -> bool:
    """Encode ``frames`` one by one as ``target``, each checked by decoding it again (``heartbeat``
    called after each), and encapsulate them into ``ds``; False, ``ds`` untouched, when no encoder is
    installed or a frame fails (the caller writes Explicit VR Little Endian)."""
    from pydicom.encaps import encapsulate

    if not get_encoder(target).is_available:
        logger.info("no encoder for %s installed; writing Explicit VR Little Endian", target.name)
        return False
    out_pi = _compressed_photometric(ds, target, original_pi)
    kwargs = _single_frame_kwargs(ds, out_pi)
    fragments = []
    try:
        for f in frames:
            fragments.append(_encode_one(target, f, kwargs))
            if heartbeat is not None:
                heartbeat()
        encapsulated = encapsulate(fragments)
    except FileError:
        raise
    except Exception as exc:
        logger.warning("%s encoding failed (%s); writing Explicit VR Little Endian", target.name, type(exc).__name__)
        return False
    for attr in _ATTRS_OF_ENCAPSULATION:
        if attr in ds:
            del ds[attr]
    ds.PixelData = encapsulated
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.PhotometricInterpretation = out_pi
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0
    _set_file_meta_ts(ds, target)
    ds._pixel_array, ds._pixel_id = None, {}
    return True


def encode_frames_chunked(ds: Dataset, step: int, transform: Any, heartbeat: Heartbeat | None = None) -> str:
    """``encode_frames`` for an image too big to hold decoded: frames are decoded ``step`` at a time,
    passed through ``transform(start, chunk) -> chunk`` and encoded, so decoded pixels never exceed one
    chunk (plus the encoded output). The same syntax rules as ``encode_frames``, and for native syntaxes
    the same bytes; compressed frames are encoded one by one, each checked by decoding it again
    (``heartbeat`` called after each frame, or each chunk written natively).
    """
    n = frame_count(ds)
    if int(ds.get("BitsAllocated", 8)) == 1 or _pixel_keyword(ds) != "PixelData":
        return encode_frames(ds, transform(0, decode_frames(ds)), heartbeat)  # bit-packed or float data: small, whole
    spans = [(s, min(n, s + step)) for s in range(0, n, max(1, step))]
    codec = codec_for(ds)
    original_pi = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if _is_lossy(ds, codec):
        _record_lossy_history(ds, codec, n * int(np.prod(_frame_shape(ds))))
    target = codec.write_as
    if target.is_compressed:
        frames = (f for s, e in spans for f in transform(s, decode_frames(ds, s, e)))
        if _write_fragments(ds, target, original_pi, frames, heartbeat):
            return str(target)
        target = _uid.ExplicitVRLittleEndian
    data = bytearray()  # filled chunk by chunk: one copy of the output, not parts plus their join
    for s, e in spans:
        data += _native_bytes(ds, transform(s, decode_frames(ds, s, e)), pad=False)
        if heartbeat is not None:
            heartbeat()
    if len(data) % 2:
        data += b"\x00"
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = decoded_photometric(ds)  # not the compressed one: this is the fallback
    written = _write_native(ds, data, target)
    ds._pixel_array, ds._pixel_id = None, {}
    return str(written)
