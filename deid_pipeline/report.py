"""The visual QA report: one self-contained HTML file a reviewer signs off from.

It holds the run summary (``run.json``), bar charts as inline SVG, and thumbnails of every redacted
image *after* redaction with the redacted regions outlined, grouped by study and series. Everything
shown comes from OUTPUT (pseudonymous paths, counts, box coordinates, redacted pixels): no input path,
no header value, no OCR text. Originals are added only when asked for, read through the private
journal; such a report holds PHI and belongs beside the journal, not in OUTPUT.

The page fetches nothing: images are base64 PNG ``data:`` URIs, charts are SVG, a Content Security
Policy forbids any other source, and there is no script.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .config import check_outside
from .manifest import JOURNAL_NAME, MANIFEST_NAME, RUN_NAME, read_records, read_run_json

log = logging.getLogger(__name__)

REPORT_NAME = "report.html"
THUMB_LONG = 256
MAX_FRAMES_SHOWN = 4
BOX_RGB = (255, 0, 255)  # magenta: rare in medical images, visible over black fills and white text


@dataclass
class Thumb:
    """One frame of one file: its index and PNG bytes after (and optionally before) redaction."""

    frame: int
    boxes: int
    redacted_png: bytes | None
    original_png: bytes | None = None
    error: str = ""


@dataclass
class Card:
    """One redacted file in the report (1-based manifest line, pseudonymous output path)."""

    line: int
    output_path: str
    frames: int
    frames_with_boxes: list[int]
    regions: int
    thumbs: list[Thumb] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The file's records in order; a line that is no JSON object (an edit, a torn or over-long line:
    ``manifest.read_records``) is an empty record in its place, so manifest and journal lines still pair."""
    return [{} if rec is None else rec for rec in read_records(path)] if path.exists() else []


def _safe_relative(path: str) -> PurePosixPath | None:
    """The manifest's output path when it is relative and stays inside OUTPUT; None otherwise."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return None
    return p


def to_display(ds: Any, frames: np.ndarray) -> np.ndarray:
    """Frames from ``decode_frames`` as uint8 RGB for a person, the way ``prepare`` makes text visible.

    Colour and palette go through ``display_rgb``; greyscale is min-max scaled per frame, inverted for
    MONOCHROME1 so what the modality shows as white is white here too.
    """
    from .pixels import decoded_photometric, display_rgb

    if not decoded_photometric(ds).startswith("MONOCHROME"):
        return display_rgb(ds, frames)
    out = np.empty(frames.shape[:3] + (3,), dtype=np.uint8)
    invert = decoded_photometric(ds) == "MONOCHROME1"
    for i, f in enumerate(frames.astype(np.float64)):
        if f.ndim == 3:
            f = f[..., 0]
        if invert:
            f = -f
        lo, hi = float(f.min()), float(f.max())
        g = np.zeros(f.shape, np.uint8) if hi <= lo else ((f - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        out[i] = g[..., None]
    return out


def thumbnail_png(rgb: np.ndarray, boxes: list[list[int]], long_side: int = THUMB_LONG) -> bytes:
    """Scale one RGB frame to at most ``long_side`` pixels, outline ``boxes`` ([x, y, w, h]), encode PNG."""
    import cv2

    rows, cols = rgb.shape[:2]
    s = min(1.0, long_side / max(rows, cols))
    h, w = max(1, round(rows * s)), max(1, round(cols * s))
    img = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if s < 1.0 else rgb.copy()
    img = np.ascontiguousarray(img[..., ::-1])  # RGB -> BGR for OpenCV
    colour = BOX_RGB[::-1]
    for x, y, bw, bh in boxes:
        x0, y0 = int(x * s), int(y * s)
        x1, y1 = max(x0 + 1, int(round((x + bw) * s))), max(y0 + 1, int(round((y + bh) * s)))
        cv2.rectangle(img, (x0, y0), (min(w - 1, x1), min(h - 1, y1)), colour, 1)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _frame_pngs(path: Path, frames: list[int], boxes: list[list[list[int]]]) -> list[bytes | str]:
    """PNGs of ``frames`` of the DICOM file at ``path``; an error becomes its exception type (no values)."""
    import pydicom

    from .pixels import decode_frames

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        return [f"unreadable ({type(exc).__name__})"] * len(frames)
    out: list[bytes | str] = []
    for i in frames:
        try:
            rgb = to_display(ds, decode_frames(ds, i, i + 1))[0]
            out.append(thumbnail_png(rgb, boxes[i] if i < len(boxes) else []))
        except Exception as exc:
            out.append(f"not rendered ({type(exc).__name__})")
    return out


def _card(line: int, rec: dict[str, Any], output_dir: Path, original: Path | None) -> Card | None:
    """The card of one written record whose pixels were redacted; None when none were."""
    pixel = rec.get("pixel") or {}
    boxes: list[list[list[int]]] = pixel.get("boxes_per_frame") or []
    with_boxes = [i for i, b in enumerate(boxes) if b]
    rel = _safe_relative(rec.get("output_path") or "")
    if not with_boxes or rel is None:
        return None
    card = Card(line, str(rel), int(pixel.get("frames") or len(boxes)), with_boxes, sum(len(b) for b in boxes))
    shown = with_boxes[:MAX_FRAMES_SHOWN]
    after = _frame_pngs(output_dir / rel, shown, boxes)
    before = _frame_pngs(original, shown, boxes) if original is not None else [None] * len(shown)
    for i, a, b in zip(shown, after, before):
        t = Thumb(i, len(boxes[i]), a if isinstance(a, bytes) else None)
        if isinstance(a, str):
            t.error = a
        if isinstance(b, bytes):
            t.original_png = b
        elif isinstance(b, str):
            t.error = (t.error + "; original " + b).strip("; ")
        card.thumbs.append(t)
    return card


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:2em}.charts figure{margin:0}
.banner{background:#b00020;color:#fff;padding:.6em 1em;font-weight:bold}
details.series{margin:.6em 0;background:#fff;border:1px solid #ddd;padding:.4em .8em}
details.series summary{cursor:pointer;font-family:monospace;font-size:.85em}
.cards{display:flex;flex-wrap:wrap;gap:1em;margin-top:.6em}
figure.card{margin:0;padding:.5em;border:1px solid #ccc;background:#f4f4f4}
figure.card figcaption{font-size:.8em;font-family:monospace;max-width:540px;word-break:break-all}
.pair{display:inline-flex;gap:4px;margin:2px;vertical-align:top;flex-direction:column;font-size:.75em}
.pair .imgs{display:flex;gap:4px}img.thumb{image-rendering:pixelated;background:#000;display:block}
.err{color:#b00020}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bars(title: str, items: list[tuple[str, float]], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG (no script, no fonts fetched)."""
    if not items:
        return f"<figure><figcaption>{_e(title)}</figcaption><p>none</p></figure>"
    width, label_w, bar_h = 460, 170, 20
    top = max(v for _, v in items) or 1.0
    rows = []
    for i, (label, v) in enumerate(items):
        y = i * (bar_h + 6)
        w = max(1.0, (width - label_w - 80) * v / top) if v else 0.0
        shown = f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">{_e(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3a6ea5"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 15}" font-size="12">{_e(shown + unit)}</text>'
        )
    h = len(items) * (bar_h + 6)
    return (f'<figure><figcaption>{_e(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{h}" role="img" aria-label="{_e(title)}">{"".join(rows)}</svg></figure>')


def _img(png: bytes, cls: str, alt: str) -> str:
    return f'<img class="thumb {cls}" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _frames_text(frames: list[int]) -> str:
    """1-based frame numbers as ranges: ``1-3, 7``."""
    parts: list[str] = []
    start = prev = None
    for f in [i + 1 for i in frames] + [None]:
        if start is None:
            start = prev = f
        elif f is not None and f == prev + 1:
            prev = f
        else:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
            start = prev = f
    return ", ".join(parts)


def _card_html(card: Card) -> str:
    pairs = []
    for t in card.thumbs:
        imgs = ""
        if t.original_png is not None:
            imgs += _img(t.original_png, "original", f"frame {t.frame + 1} before redaction")
        if t.redacted_png is not None:
            imgs += _img(t.redacted_png, "redacted", f"frame {t.frame + 1} after redaction")
        err = f'<span class="err">{_e(t.error)}</span>' if t.error else ""
        pairs.append(f'<div class="pair"><div class="imgs">{imgs}</div>frame {t.frame + 1}: {t.boxes} regions {err}</div>')
    more = len(card.frames_with_boxes) - len(card.thumbs)
    caption = (f"#{card.line} {_e(PurePosixPath(card.output_path).name)}<br>{card.regions} regions in "
               f"{len(card.frames_with_boxes)} of {card.frames} frames (frames {_frames_text(card.frames_with_boxes)})"
               + (f"; {more} more frames with regions not shown" if more > 0 else ""))
    return f'<figure class="card" data-line="{card.line}">{"".join(pairs)}<figcaption>{caption}</figcaption></figure>'


def render_html(run: dict[str, Any], records: list[dict[str, Any]], cards: list[Card], with_originals: bool) -> str:
    """The report page (pure: no file access)."""
    status = Counter(r.get("status", "?") for r in records)
    reasons = Counter((r.get("reason") or {}).get("code") for r in records if r.get("reason"))
    counts = run.get("counts") or dict(status)
    run_reasons = run.get("reasons") or dict(reasons)
    stage_ms: Counter[str] = Counter()
    for r in records:
        stage_ms.update({k: float(v) for k, v in (r.get("timings_ms") or {}).items()})
    written = [r for r in records if r.get("status") == "written"]
    scanned = sum(1 for r in written if (r.get("pixel") or {}).get("scanned"))
    devices = run.get("device") or sorted({(r.get("pixel") or {}).get("device") for r in records} - {None})

    def row(k: str, v: Any, attr: str = "") -> str:
        return f"<tr><th>{_e(k)}</th><td class=\"n\"{attr}>{_e(v)}</td></tr>"

    summary = "".join([
        row("records", len(records)),
        *(row(k, v, f' data-count="{_e(k)}"') for k, v in sorted(counts.items())),
        row("written, pixels scanned", scanned),
        row("files with regions redacted", len(cards)),
        row("regions redacted", sum(c.regions for c in cards)),
        row("files/s", run.get("files_per_s", "")),
        row("images/s", run.get("images_per_s", "")),
        row("device", ", ".join(map(str, devices)) if isinstance(devices, list) else devices),
        row("workers", run.get("workers", "")),
        row("started", run.get("started", "")),
        row("finished", run.get("finished", "")),
        row("profile", " ".join(str((run.get("profile") or {}).get(k, "")) for k in ("name", "version"))),
        row("tool version", run.get("tool_version", "")),
    ])
    mismatch = ""
    if run.get("counts") and {k: v for k, v in counts.items() if v} != dict(status):
        mismatch = '<p class="err">run.json counts differ from the manifest (unfinished or altered run?)</p>'
    reason_rows = "".join(f'<tr><td>{_e(k)}</td><td class="n" data-reason="{_e(k)}">{v}</td></tr>'
                          for k, v in sorted(run_reasons.items()))
    not_written = "".join(
        f"<tr><td class=\"n\">{i}</td><td>{_e(r.get('status'))}</td><td>{_e((r.get('reason') or {}).get('code', ''))}</td>"
        f"<td>{_e((r.get('reason') or {}).get('message', ''))}</td></tr>"
        for i, r in enumerate(records, start=1) if r.get("status") != "written")
    charts = "".join([
        _bars("files per status", [(k, v) for k, v in sorted(counts.items()) if v]),
        _bars("files per reason", sorted(run_reasons.items(), key=lambda kv: -kv[1])),
        _bars("time per stage (all files)", [(k, v / 1000) for k, v in stage_ms.most_common()], " s"),
        _bars("regions per redacted file", [(f"#{c.line}", c.regions) for c in cards[:40]]),
    ])
    series: dict[tuple[str, ...], list[Card]] = defaultdict(list)
    for c in cards:
        parts = PurePosixPath(c.output_path).parts
        series[tuple(parts[:-1]) if len(parts) >= 4 else ("(other)",)].append(c)
    groups = []
    for key in sorted(series):
        label = " / ".join(key[-3:]) if len(key) >= 3 else key[0]
        cs = series[key]
        groups.append(f'<details class="series" open><summary>{_e(label)} — {len(cs)} file{"s" if len(cs) != 1 else ""}</summary>'
                      f'<div class="cards">{"".join(_card_html(c) for c in cs)}</div></details>')
    no_regions = len(written) - len(cards)
    banner = ('<p class="banner">This report shows ORIGINAL images (PHI). Keep it inside the clinical network '
              'with the run\'s private folder; do not copy it to OUTPUT or share it.</p>') if with_originals else ""
    legend = ("Each pair: before (left) and after (right) redaction; " if with_originals else "") + \
        "magenta outlines mark the regions redacted. Up to %d frames per file are shown." % MAX_FRAMES_SHOWN
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="referrer" content="no-referrer">
<title>deid QA report</title><style>{_CSS}</style></head>
<body>
{banner}
<h1>deid QA report</h1>
<h2>Summary</h2>{mismatch}
<table class="summary">{summary}</table>
<h2>Reasons</h2>
<table class="reasons"><tr><th>reason</th><th>files</th></tr>{reason_rows or '<tr><td colspan="2">none</td></tr>'}</table>
<h2>Charts</h2><div class="charts">{charts}</div>
<h2>Files not written</h2>
<table class="not-written"><tr><th>record</th><th>status</th><th>reason</th><th>message</th></tr>{not_written or '<tr><td colspan="4">none</td></tr>'}</table>
<h2>Redacted images ({len(cards)} files, {len(series)} series)</h2>
<p>{_e(legend)} {no_regions} written files had no regions redacted and are not shown.</p>
{''.join(groups) or '<p>none</p>'}
</body></html>
"""


def atomic_write_text(path: Path, text: str, mode: int) -> None:
    """Write ``text`` through a temporary file beside ``path`` and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it; never widened beyond ``mode``
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_report(output_dir: Path, out: Path | None = None, input_dir: Path | None = None,
                 private_dir: Path | None = None) -> tuple[Path, int]:
    """Write the report of the run in ``output_dir``; returns its path and the number of redacted files.

    With ``input_dir`` (and the private journal) originals are shown beside the redacted frames; the
    default path is then ``<private>/report-with-originals.html`` (mode 0600), and a path inside OUTPUT
    (what is shared) or INPUT (never modified) is refused (:class:`ConfigError`) before anything is read.
    """
    journal: list[dict[str, Any]] = []
    if input_dir is not None:
        assert private_dir is not None
        out = private_dir / "report-with-originals.html" if out is None else out
        check_outside(out, "a report with originals", OUTPUT=output_dir, INPUT=input_dir)
        journal = _read_jsonl(private_dir / JOURNAL_NAME)
    out = output_dir / REPORT_NAME if out is None else out
    records = _read_jsonl(output_dir / MANIFEST_NAME)
    run_path = output_dir / RUN_NAME
    try:
        run = read_run_json(run_path) if run_path.exists() else {}
    except (OSError, ValueError):  # edited, or over the bound: the page says the counts differ
        run = {}
    run = run if isinstance(run, dict) else {}
    cards: list[Card] = []
    for line, rec in enumerate(records, start=1):
        if rec.get("status") != "written":
            continue
        original = None
        if input_dir is not None and line <= len(journal):
            j = journal[line - 1]
            if j.get("input_sha256") == rec.get("input_sha256"):
                original = input_dir / j["input"]
        card = _card(line, rec, output_dir, original)
        if card is not None:
            cards.append(card)
    log.info("report: %d records, %d redacted files", len(records), len(cards))
    text = render_html(run, records, cards, input_dir is not None)
    atomic_write_text(out, text, 0o600 if input_dir is not None else 0o640)
    return out, len(cards)
