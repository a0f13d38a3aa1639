"""deid's own text detector: a small segmentation network trained on generated burned-in text.

``TextSegNet`` maps a prepared view (the same uint8 RGB views the PP-OCRv4 detector sees) to a text
probability map at full resolution: a four-level encoder (strides 2 to 16, dilated convolutions for the
context of a text line) and a top-down decoder with lateral sums. It was trained by
``scripts/train_textseg.py`` on ``deid_pipeline.synth`` cases and TrueType text pasted over their views
(targets: line boxes; boxes that do not show in a view are left out of the loss). See ``models/MODEL_CARD.md``.

The weights are a plain ``state_dict`` (loaded with ``weights_only=True`` after a sha256 check); the
architecture is this file. The DB post-process of ``dbnet.py`` turns the map into boxes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .dbnet import DBParams, ProbMapDetector, verified_weights

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "deid_textseg.pt"
WEIGHTS_SHA256 = "b733588d3e4d2e47070534a94ab5237998c89e2530ba7ada226f9235d3c4b464"  # filled in by scripts/train_textseg.py --install
WIDTHS = (8, 24, 32, 64)

# trained on full line boxes, so the map needs little growing back (DB's unclip undoes a shrunk target)
PARAMS = DBParams(thresh=0.5, box_thresh=0.5, unclip_ratio=0.4, min_side=2.0, source="textseg")


def build_net(widths: tuple[int, int, int, int] = WIDTHS) -> "object":
    """The untrained network (torch ``nn.Module``); input (N, 3, H, W), H and W multiples of 16."""
    import torch.nn as nn
    import torch.nn.functional as F

    def cbr(i: int, o: int, stride: int = 1, dil: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, stride, dil, dilation=dil, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    class TextSegNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            a, b, c, d = widths
            self.e1 = cbr(3, a, 2)
            self.e2 = nn.Sequential(cbr(a, b, 2), cbr(b, b))
            self.e3 = nn.Sequential(cbr(b, c, 2), cbr(c, c, dil=2))
            self.e4 = nn.Sequential(cbr(c, d, 2), cbr(d, d, dil=2), cbr(d, d, dil=4))
            self.l3, self.l2, self.l1 = nn.Conv2d(d, c, 1), nn.Conv2d(c, b, 1), nn.Conv2d(b, a, 1)
            self.d3, self.d2 = cbr(c, c), cbr(b, b)
            self.head = nn.Sequential(nn.Conv2d(a, a, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(a, 1, 1))

        def forward(self, x):  # type: ignore[no-untyped-def]
            x1 = self.e1(x)
            x2 = self.e2(x1)
            x3 = self.e3(x2)
            x4 = self.e4(x3)
            y = self.d3(x3 + F.interpolate(self.l3(x4), size=x3.shape[-2:], mode="bilinear", align_corners=False))
            y = self.d2(x2 + F.interpolate(self.l2(y), size=x2.shape[-2:], mode="bilinear", align_corners=False))
            y = x1 + F.interpolate(self.l1(y), size=x1.shape[-2:], mode="bilinear", align_corners=False)
            return F.interpolate(self.head(y), scale_factor=2, mode="bilinear", align_corners=False)  # logits

    return TextSegNet()


def fold_batch_norms(net: "object") -> "object":
    """``net`` (in eval mode) with every Conv2d -> BatchNorm2d pair of a ``cbr`` block folded into the
    convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and the norm replaced by an identity: the
    same function (probabilities within ~1e-6) without a pass over every feature map per block."""
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for block in net.modules():  # type: ignore[attr-defined]
        if isinstance(block, nn.Sequential) and len(block) >= 2 and isinstance(block[0], nn.Conv2d) \
                and isinstance(block[1], nn.BatchNorm2d):
            block[0] = fuse_conv_bn_eval(block[0], block[1])
            block[1] = nn.Identity()
    return net


def to_input(x: "object") -> "object":
    """uint8 RGB NHWC tensor -> the network's float input (RGB, scaled to -1..1), in channels-last order.
    The division and subtraction run in place on a fresh float copy: the same values as
    ``x.permute(0, 3, 1, 2).float() / 127.5 - 1.0`` without two more feature-sized buffers."""
    import torch

    y = x.permute(0, 3, 1, 2).to(torch.float32, copy=True)  # type: ignore[attr-defined]
    return y.div_(127.5).sub_(1.0)


class TextSegDetector(ProbMapDetector):
    """``TextDetector`` backed by ``TextSegNet`` weights from ``models/``."""

    name = "deid-textseg"
    #: a big frame's ``fine`` views too (prepare.FINE): it found 7-8 px text of a 3328x2560 CR there that
    #: no detector found in the 1,280 views (PP-OCRv4 did not in a fine view either)
    reads_fine_views = True
    #: 544x544 views on the CPU, one thread: 14.6 ms a view alone, 11.3 in batches of 4, 13.5 of 8.
    cpu_batch_size = 4

    def __init__(self, device: str = "cpu", weights: Path | None = None, params: DBParams | None = None,
                 batch_size: int | None = None, expect_sha256: str | None = WEIGHTS_SHA256) -> None:
        """``expect_sha256=None`` loads unpinned weights (a training run's, for evaluation only)."""
        import torch

        from ..resources import models_dir

        path = weights or (models_dir() / WEIGHTS_FILE)
        digest = verified_weights(path, WEIGHTS_FILE, expect_sha256)
        net = build_net()
        net.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))  # type: ignore[attr-defined]
        net = fold_batch_norms(net.eval()).to(device)  # type: ignore[attr-defined]
        super().__init__(net, device, digest, params or PARAMS, batch_size)
        logger.info("loaded %s on %s (sha256 %s)", self.name, device, digest[:12])

    def _input(self, x: "object") -> "object":
        return to_input(x)

    def _output(self, y: "object") -> "object":
        return self._torch.sigmoid(y)  # type: ignore[attr-defined]
