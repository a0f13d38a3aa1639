"""Several text detectors over the same views, their boxes joined.

The networks miss different things: PP-OCRv4 was trained on scene and document text, deid-textseg on
text rendered over medical-looking frames. Every view goes through each member; the boxes of all of them
are returned (the scan filters and merges them as usual), so recall is at least each member's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..types import Region


class UnionDetector:
    """``TextDetector`` that runs each member on every image and returns all their boxes."""

    def __init__(self, name: str, members: Sequence[object]) -> None:
        if not members:
            raise ValueError("a union detector needs at least one member")
        self.name = name
        self.members = tuple(members)
        # provenance: every member's weights, in order, so the manifest pins each of them
        self.weights_sha256 = "+".join(str(getattr(m, "weights_sha256", "")) for m in self.members)
        self.device = str(getattr(self.members[0], "device", "cpu"))

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]:
        """The concatenated boxes of every member, per image."""
        out: list[list[Region]] = [[] for _ in images]
        for m in self.members:
            for i, regions in enumerate(m.detect(images)):  # type: ignore[attr-defined]
                out[i].extend(regions)
        return out
