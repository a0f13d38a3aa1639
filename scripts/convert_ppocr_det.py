"""Build-time conversion of the PP-OCRv4 text-detection model (DBNet) from ONNX to TorchScript.

Run once by a maintainer; nothing here runs inside the pipeline. Steps:

1. ``pip download rapidocr-onnxruntime==1.4.4 --no-deps -d /tmp/rapid`` (Apache-2.0 wheel that carries
   PaddleOCR's ``ch_PP-OCRv4_det_infer.onnx``), or pass ``--onnx`` to an already extracted file.
2. onnx2torch turns the graph into an ``nn.Module``; it is traced with ``torch.jit.trace`` and saved as
   TorchScript, which needs only torch to load.
3. The traced module is checked against onnxruntime (when installed) at several shapes and batch sizes,
   since a trace can freeze shapes: every H, W multiple of 32 and any batch must work.
4. The PP-OCRv4 recogniser is copied as ONNX (``models/ppocrv4_rec.onnx``, phi-text mode only).
5. ``models/SHA256SUMS`` is rewritten. A TorchScript archive is not byte-reproducible: after a
   re-conversion, copy the new sha256 into ``WEIGHTS_SHA256`` in ``deid_pipeline/detect/dbnet.py``.

Usage: ``python scripts/convert_ppocr_det.py --wheel /tmp/rapid/rapidocr_onnxruntime-1.4.4-py3-none-any.whl``
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
WHEEL_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
REC_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"  # phi-text OCR, kept as ONNX
OUT_NAME = "ppocrv4_det.ts"


def _stub_torchvision() -> None:
    """onnx2torch imports torchvision for NMS / RoiAlign converters the DBNet graph does not use.

    A stub keeps pip from pulling a torchvision (and possibly a CUDA torch) into the build venv.
    """
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401

        return
    except ImportError:
        pass
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")

    def _missing(*_a: object, **_k: object) -> None:
        raise RuntimeError("torchvision stub: operator not needed by the DBNet graph")

    ops.roi_align = _missing  # type: ignore[attr-defined]
    ops.nms = _missing  # type: ignore[attr-defined]
    ops.box_convert = _missing  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = ops


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_onnx(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(WHEEL_MEMBER)
    out = dest / "ch_PP-OCRv4_det_infer.onnx"
    out.write_bytes(data)
    return out


def constants_to_initializers(onnx_path: Path) -> "object":
    """The Paddle export stores every weight as a ``Constant`` node; onnx2torch wants initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            graph.initializer.append(numpy_helper.from_array(arr, name=node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    onnx.checker.check_model(model)
    return model


def convert(onnx_path: Path, out_path: Path) -> torch.jit.ScriptModule:
    _stub_torchvision()
    from onnx2torch import convert as o2t

    module = o2t(constants_to_initializers(onnx_path)).eval()
    example = torch.zeros(1, 3, 640, 640)
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
    traced.save(str(out_path))
    return torch.jit.load(str(out_path), map_location="cpu").eval()


def verify(onnx_path: Path, ts: torch.jit.ScriptModule) -> list[dict[str, float]]:
    """Compare against onnxruntime at several shapes and batch sizes; raise on mismatch."""
    rng = np.random.default_rng(0)
    shapes = [(1, 640, 640), (2, 320, 960), (3, 512, 384), (1, 96, 1024), (4, 256, 256)]
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
    except ImportError:
        sess = None
    report = []
    for n, h, w in shapes:
        x = rng.uniform(-1, 1, size=(n, 3, h, w)).astype(np.float32)
        # structured content (bars) so the probability map is not flat
        x[:, :, h // 4 : h // 4 + 12, w // 8 : w // 2] = 1.0
        with torch.no_grad():
            y = ts(torch.from_numpy(x)).numpy()
        assert y.shape == (n, 1, h, w), (y.shape, (n, h, w))
        row = {"batch": n, "h": h, "w": w}
        if sess is not None:
            ref = sess.run(None, {in_name: x})[0]
            diff = float(np.abs(ref - y).max())
            row["max_abs_diff_vs_onnxruntime"] = diff
            row["binary_map_disagreement"] = float(((ref > 0.3) != (y > 0.3)).mean())
            if diff > 1e-3:
                raise SystemExit(f"mismatch vs onnxruntime at {(n, h, w)}: {diff}")
        # batch consistency: item 0 alone equals item 0 in the batch
        with torch.no_grad():
            y0 = ts(torch.from_numpy(x[:1])).numpy()
        row["batch_vs_single_max_diff"] = float(np.abs(y0 - y[:1]).max())
        report.append(row)
        print(row)
    return report


def write_sums(models: Path) -> None:
    lines = []
    for p in sorted(models.iterdir()):
        if p.is_file() and p.suffix in {".ts", ".onnx", ".pt", ".pt2"}:
            lines.append(f"{sha256_of(p)}  {p.name}")
    (models / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", type=Path, help="rapidocr_onnxruntime-1.4.4 wheel")
    src.add_argument("--onnx", type=Path, help="ch_PP-OCRv4_det_infer.onnx")
    ap.add_argument("--out", type=Path, default=REPO / "models")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.onnx or extract_onnx(args.wheel, args.tmp)
    print("onnx sha256", sha256_of(onnx_path))
    ts = convert(onnx_path, args.out / OUT_NAME)
    verify(onnx_path, ts)
    if args.wheel:
        # the recogniser does not convert (onnx2torch lacks rank-1 BatchNorm); shipped as ONNX for the
        # optional onnxruntime backend of phi_text.py
        with zipfile.ZipFile(args.wheel) as zf:
            (args.out / "ppocrv4_rec.onnx").write_bytes(zf.read(REC_MEMBER))
    write_sums(args.out)


if __name__ == "__main__":
    main()
