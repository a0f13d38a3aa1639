"""Several text detectors over the same views, their boxes joined.

The networks miss different things: PP-OCRv4 was trained on scene and document text, deid-textseg on
text rendered over medical-looking frames. The boxes of all of them are returned (the scan filters and
merges them as usual). A member may be limited to some view kinds (``member_kinds``; the scan routes
views by kind, ``scan._detect_chunked``): PP-OCRv4 runs on the first view of each frame only, which
measured the same recall at half its cost (``benchmarks/README.md``). ``detect`` itself, which sees no
view kinds, runs every member on every image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..prepare import FINE
from ..types import Region


class UnionDetector:
    """``TextDetector`` that runs each member on every image and returns all their boxes."""

    def __init__(self, name: str, members: Sequence[object],
                 member_kinds: Sequence[frozenset[str] | None] | None = None) -> None:
        if not members:
            raise ValueError("a union detector needs at least one member")
        self.name = name
        self.members = tuple(members)
        # per member, the view kinds it runs on (None: every view)
        self.member_kinds = tuple(member_kinds) if member_kinds is not None else (None,) * len(self.members)
        if len(self.member_kinds) != len(self.members):
            raise ValueError("member_kinds needs one entry per member")
        # provenance: every member's weights, in order, so the manifest pins each of them
        self.weights_sha256 = "+".join(str(getattr(m, "weights_sha256", "")) for m in self.members)
        self.device = str(getattr(self.members[0], "device", "cpu"))
        # a big frame's ``fine`` views are made when a member reads them and takes that kind
        self.reads_fine_views = any(getattr(m, "reads_fine_views", False) and (k is None or FINE in k)
                                    for m, k in zip(self.members, self.member_kinds))

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]:
        """The concatenated boxes of every member, per image."""
        out: list[list[Region]] = [[] for _ in images]
        for m in self.members:
            for i, regions in enumerate(m.detect(images)):  # type: ignore[attr-defined]
                out[i].extend(regions)
        return out
