"""Write N synthetic DICOM files with burned-in text and their ground truth.

Layout: ``OUT/dicom/<kind>_<n>.dcm``, ``OUT/groundtruth/<kind>_<n>.dcm.groundtruth.json`` and
``OUT/index.json`` (kind, seed, file, sha256, number of boxes). The set depends only on
``--n``, ``--seed``, ``--kinds`` and ``--syntax``.

Usage: python benchmarks/make_synth_set.py --out benchmarks/work/synth -n 200 --seed 1 [--syntax mixed]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deid_pipeline import synth  # noqa: E402

logger = logging.getLogger(__name__)

SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpegls": JPEGLSLossless, "j2k": JPEG2000Lossless,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("-n", type=int, default=len(synth.KINDS), help="number of files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(synth.KINDS),
                        help=f"comma-separated subset of: {', '.join(synth.KINDS)}")
    parser.add_argument("--syntax", choices=[*SYNTAXES, "mixed"], default="explicit",
                        help="lossless transfer syntax to write; 'mixed' cycles through all of them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(synth.KINDS))
    if unknown:
        parser.error(f"unknown kinds: {', '.join(unknown)}")

    index = []
    order = list(SYNTAXES.values())
    for i, (ds, truth) in enumerate(synth.iter_cases(args.n, args.seed, kinds)):
        syntax = order[i % len(order)] if args.syntax == "mixed" else SYNTAXES[args.syntax]
        if syntax != ExplicitVRLittleEndian:
            try:
                synth.compress(ds, truth, syntax)
            except Exception as exc:  # an encoder that does not take this photometric / bit depth
                logger.warning("case %d (%s): %s not written (%s); kept uncompressed",
                               i, truth["source"]["kind"], syntax.name, type(exc).__name__)
        name = f"{truth['source']['kind']}_{i:05d}.dcm"
        digest = synth.write_case(ds, truth, args.out / "dicom" / name,
                                  args.out / "groundtruth" / f"{name}.groundtruth.json", file_label=name)
        index.append({"file": name, "kind": truth["source"]["kind"], "seed": truth["source"]["seed"],
                      "sha256": digest, "transfer_syntax": truth["transfer_syntax"]["uid"],
                      "boxes": len(truth["annotations"]),
                      "phi_boxes": sum(a["phi"] for a in truth["annotations"])})
    synth.write_json({"generator": "deid_pipeline.synth", "n": args.n, "seed": args.seed, "kinds": kinds,
                      "syntax": args.syntax, "licence": synth.LICENCE, "files": index},
                     args.out / "index.json")
    logger.info("wrote %d files and their ground truth", len(index))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
