"""Frame preparation: the CPU shortcuts give exactly what the torch operations they replace give."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from deid_pipeline import prepare  # noqa: E402


@pytest.mark.parametrize("seed", range(4))
def test_quantiles_equal_torch_quantile_bit_for_bit(seed: int) -> None:
    """Random sizes, ties (a few distinct values), CT-like integers, wide floats, strided views."""
    g = torch.Generator().manual_seed(seed)
    qs = (0.005, 0.95)
    checked = 0
    for trial in range(150):
        n = int(torch.randint(2, 70_000, (1,), generator=g))
        kind = trial % 5
        if kind == 0:
            v = torch.randint(-1024, 3072, (n,), generator=g).float()
        elif kind == 1:
            v = torch.randn(n, generator=g) * 1000
        elif kind == 2:
            v = torch.randint(0, 4, (n,), generator=g).float()  # mostly ties
        elif kind == 3:
            v = torch.rand(n, generator=g) * 65535
        else:
            v = torch.randint(0, 4096, (2 * n,), generator=g).float()[::2]  # a strided view, as in prepare
        want = [float(x) for x in torch.quantile(v, torch.tensor(qs))]
        assert prepare._quantiles(v, qs) == want
        checked += 1
    assert checked == 150


def test_quantiles_with_nan_follow_torch() -> None:
    v = torch.arange(1000, dtype=torch.float32)
    v[17] = float("nan")
    got = prepare._quantiles(v, (0.005, 0.95))
    assert all(np.isnan(x) for x in got)  # torch.quantile's answer for an input holding NaN


def test_grey_views_equal_the_expanded_tensor() -> None:
    """A grey view's three channels (numpy on the CPU) are the expand-permute copy of the tensor."""
    rng = np.random.default_rng(3)
    t = torch.from_numpy(rng.uniform(-20, 280, (3, 1, 520, 300)).astype(np.float32))  # native size: no resize
    got, grey, th, tw = prepare._finish(t.clone(), 520, 300, prepare.MIN_LONG, prepare.MAX_LONG)
    assert (th, tw) == (520, 300)
    x = torch.as_tensor(prepare._PAD(t.clone()[:, 0]))[:, None]  # type: ignore[operator]
    want = x.clamp(0, 255).round().to(torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()
    assert got.shape == want.shape == (3, 576, 352, 3) and got.dtype == np.uint8 and got.flags.c_contiguous
    assert np.array_equal(got, want)
    assert grey is not None and np.array_equal(grey, want[..., 0])  # the plane the glyph finder reads


@pytest.mark.parametrize("seed", range(3))
def test_without_equals_torch_boolean_indexing(seed: int) -> None:
    """``_without`` (numpy's boolean indexing on the CPU) keeps the elements ``values[~drop]`` keeps, in
    order: CT-like frames with an extreme value, NaN and infinities, an empty and a full mask."""
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randint(-1024, 3072, (512, 512), generator=g).float(),
              torch.randn(97, 131, generator=g) * 1e4, torch.zeros(8, 8), torch.arange(64.0).reshape(8, 8)]
    frames[0][:20, :200] = 32767.0  # text burned in at the extreme
    frames[1][3, 4], frames[1][5, 6], frames[1][7, 8] = float("nan"), float("inf"), -float("inf")
    for f in frames:
        for drop in (f == f.max(), f < 0, torch.zeros_like(f, dtype=torch.bool), torch.ones_like(f, dtype=torch.bool)):
            got, want = prepare._without(f, drop), f[~drop]
            assert got.dtype == want.dtype and got.shape == want.shape
            assert torch.equal(got.nan_to_num(-7.0), want.nan_to_num(-7.0))
            assert bool(torch.isnan(got).any()) == bool(torch.isnan(want).any())


def test_grey_planes_are_what_the_glyph_finder_would_make_of_the_image() -> None:
    """The scan hands the glyph finder a grey view's own plane in place of ``grey_u8(view.image)``: equal
    for every grey view of every synthetic kind; colour views carry none."""
    from deid_pipeline import pixels, synth
    from deid_pipeline.detect.glyphs import grey_u8

    kinds = {"grey": 0, "colour": 0}
    for n, kind in enumerate(synth.KINDS):
        ds = synth.render_case(kind, 40 + n).dataset
        for v in prepare.prepare_views(ds, pixels.decode_frames(ds)):
            if v.kind == "rgb":
                assert v.grey is None and v.plane is v.image
                kinds["colour"] += 1
            else:
                assert v.grey is not None and v.grey.dtype == np.uint8 and v.grey.shape == v.image.shape[:2]
                assert np.array_equal(v.grey, grey_u8(v.image)) and v.plane is v.grey
                kinds["grey"] += 1
    assert kinds["grey"] >= 10 and kinds["colour"] >= 2, kinds


def test_load_transforms_imports_monai_once() -> None:
    """A fresh process: preparing imports no MONAI until asked; ``load_transforms`` imports its transforms
    and keeps one padding pipeline however often it is called."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from deid_pipeline import prepare\n"
        "assert 'monai' not in sys.modules\n"
        "prepare.load_transforms()\n"
        "pad = prepare._PAD\n"
        "assert pad is not None and 'monai.transforms' in sys.modules\n"
        "prepare.load_transforms()\n"
        "assert prepare._PAD is pad\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_a_scan_loads_the_transforms_before_its_stage_clock(tmp_path, monkeypatch) -> None:
    """The pipeline loads MONAI's transforms with the detector, before the scan that times ``prepare``
    (its ~0.5 s import would otherwise be the first file's preparation time)."""
    from deid_pipeline import scan, synth
    from deid_pipeline.config import RunContext
    from deid_pipeline.discover import Candidate
    from deid_pipeline.pipeline import process_batch
    from deid_pipeline.profile import load_profile

    root = tmp_path / "in"
    root.mkdir()
    for i in range(2):
        case = synth.render_case("ct", 500 + i)
        synth.write_case(case.dataset, case.truth, root / f"ct_{i}.dcm")
    events: list[str] = []
    real_load, real_batch = prepare.load_transforms, scan.scan_batch

    def load() -> None:
        events.append("load")
        real_load()

    def batch(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("scan")
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(prepare, "load_transforms", load)
    monkeypatch.setattr(scan, "scan_batch", batch)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=b"k" * 32, output_dir=tmp_path / "out",
                     detector="deid-textseg", device="cpu")
    results = process_batch(root, [Candidate("ct_0.dcm"), Candidate("ct_1.dcm")], ctx)
    assert [r.status for r in results] == ["written", "written"]
    assert events[:2] == ["load", "scan"]
    assert all(r.timings_ms.get("prepare", 0) > 0 for r in results)


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_a_turned_view_maps_its_boxes_to_the_same_stored_pixels(kind: str) -> None:
    """A box drawn in a stored frame, found in the view turned one, two or three quarters, maps back to
    the stored box ``to_stored`` gives for the upright view; the turned image is the upright one rotated."""
    from pydicom.dataset import Dataset

    rows, cols, (x, y, w, h) = 300, 420, (37, 211, 90, 14)
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2" if kind == "grey" else "RGB"
    ds.SamplesPerPixel = 1 if kind == "grey" else 3
    frame = np.zeros((rows, cols) + (() if kind == "grey" else (3,)), np.uint8)
    frame[y : y + h, x : x + w] = 200
    frame[5, 5] = 1  # not a constant frame
    view = prepare.prepare_views(ds, frame[None])[0]
    assert (view.grey is None) == (kind == "rgb")

    def box_of(img: np.ndarray) -> tuple[int, int, int, int]:
        ys, xs = np.nonzero(img[..., 0] > 100)
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)

    upright = view.to_stored(*box_of(view.image), rows, cols)
    assert upright is not None and abs(upright[0] - x) <= 1 and abs(upright[2] - w) <= 2
    turned = view
    for quarter in (1, 2, 3):
        turned = turned.turned()
        assert turned.turns == quarter and turned.image.flags.c_contiguous
        assert np.array_equal(turned.image, np.rot90(view.image, quarter))
        if turned.grey is not None:
            assert np.array_equal(turned.grey, turned.image[..., 0])
        assert turned.to_stored(*box_of(turned.image), rows, cols) == upright


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_frame_box_follows_the_view_as_it_is_turned(kind: str) -> None:
    """``frame_box`` is where the frame's pixels are in the view's image, upright and turned one to four
    quarters (the padding at the end makes each turn place it differently)."""
    from pydicom.dataset import Dataset

    rows, cols = 300, 420
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2" if kind == "grey" else "RGB"
    ds.SamplesPerPixel = 1 if kind == "grey" else 3
    frame = np.full((rows, cols) + (() if kind == "grey" else (3,)), 200, np.uint8)
    frame[5, 5] = 1  # not a constant frame
    view = prepare.prepare_views(ds, frame[None])[0]
    for quarter in range(5):
        ys, xs = np.nonzero(view.image[..., 0] > 100)
        assert view.frame_box == (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                  int(ys.max() - ys.min() + 1)), quarter
        view = view.turned()


def _speckle_rgb(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A grey ultrasound-like frame (speckle, 20..200) as RGB."""
    rng = np.random.default_rng(seed)
    grey = np.clip(rng.gamma(2.0, 45.0, (rows, cols)), 20, 200).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _rgb_ds(frames: int = 1) -> "object":
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "RGB", 3
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def test_a_colour_patch_is_told_from_coloured_text() -> None:
    """Colour flow (a patch of red and blue) is a colour patch; yellow, green and orange text of usual
    weight, a coloured rule and a grey frame are not (a solid colour bar is one: its view costs time only)."""
    import cv2

    frame = _speckle_rgb(240, 320)
    assert not prepare.colour_patch(frame)
    texty = frame.copy()
    for i, colour in enumerate(((255, 255, 0), (0, 255, 0), (255, 128, 0))):
        cv2.putText(texty, "PATIENT NAME 12:30", (10, 30 + 30 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 1)
    texty[200:203, 20:300] = (255, 0, 0)  # a rule three pixels thick
    assert not prepare.colour_patch(texty)
    flow = frame.copy()
    flow[90:140, 120:190, 0] = 230  # red flow over the B-mode
    flow[110:140, 150:190, 2] = 230
    flow[110:140, 150:190, 0] = frame[110:140, 150:190, 0]  # ... and blue
    assert prepare.colour_patch(flow)


def test_the_achromatic_view_shows_the_grey_image_under_the_flow() -> None:
    """The first frame with colour flow gets an ``achromatic`` view, the only one of the call (a frame
    without flow gets none; ``scan`` carries still text to the other frames); in it flow drawn over the
    grey image is gone (it equals the view of the grey frame, within rounding, where the ``rgb`` view does
    not) and flow drawn in place of it (orange, no blue) is dark."""
    grey = _speckle_rgb(240, 320, seed=1)
    flow = grey.copy()
    flow[90:140, 40:110, 0] = 230  # red added over the B-mode
    flow[90:140, 200:270] = (255, 140, 0)  # a power-Doppler orange in place of it
    frames = np.stack([grey, flow, grey.copy(), np.roll(flow, 3, axis=1)])
    frames[2, 5, 5] = 0  # four distinct frames
    views = prepare.prepare_views(_rgb_ds(4), frames)
    assert [(v.frame, v.kind) for v in views] == [(0, "rgb"), (1, "rgb"), (2, "rgb"), (3, "rgb"), (1, "achromatic")]
    ach = views[4]
    assert ach.grey is not None and np.array_equal(ach.image[..., 1], ach.grey)
    y0, y1 = (np.array([90, 140]) / ach.sy + ach.oy).astype(int)
    over = slice(int(40 / ach.sx + ach.ox), int(110 / ach.sx + ach.ox))
    instead = slice(int(200 / ach.sx + ach.ox) + 2, int(270 / ach.sx + ach.ox) - 2)
    plain = views[0].image[..., 0].astype(int)  # the grey frame's view
    assert np.abs(ach.grey[y0:y1, over].astype(int) - plain[y0:y1, over]).max() <= 1
    assert np.abs(views[1].image[y0:y1, over, 0].astype(int) - plain[y0:y1, over]).max() > 100  # the rgb view
    assert ach.grey[y0 + 2 : y1 - 2, instead].max() == 0
    assert ach.to_stored(16, 16, 64, 48, 240, 320) == views[1].to_stored(16, 16, 64, 48, 240, 320)
    # no extra views asked for: none
    assert [v.kind for v in prepare.prepare_views(_rgb_ds(), flow[None], extra_views=False)] == ["rgb"]


@pytest.mark.parametrize(("rows", "cols", "want"), [
    (2560, 2048, (1280, 1024)),  # 2x: the standard view's size
    (3328, 2560, (1664, 1280)),  # the standard view (1280, 985) is 2.6x down
    (4280, 3520, (2140, 1760)),
    (1900, 1000, (1280, 674)),  # under 2x: the standard view's size
    (256, 200, (640, 500)),  # small frames upscaled as before
])
def test_fine_views_are_downscaled_2x_at_most(rows: int, cols: int, want: tuple[int, int]) -> None:
    assert prepare.target_size(rows, cols, max_downscale=prepare.MAX_DOWNSCALE) == want
    long = max(rows, cols)
    standard = prepare.target_size(rows, cols)
    assert max(standard) == (1280 if long > 1280 else 640 if long < 512 else long)
    assert prepare.target_size(rows, cols, min_long=1, max_long=100_000) == (rows, cols)  # the OCR's native view


@pytest.mark.parametrize(("shape", "fine_size"), [((3328, 2560), (1664, 1280)), ((2560, 2048), None), ((1024, 1024), None)])
@pytest.mark.parametrize("colour", [False, True])
def test_a_big_frame_gets_a_fine_view_of_its_first_view(shape: tuple[int, int], fine_size: tuple[int, int] | None,
                                                          colour: bool) -> None:
    """With ``fine``, the views of a frame over twice ``MAX_LONG`` are made again downscaled 2x at most
    (one each, mapping back to stored pixels); the other views are the same with or without them."""
    rng = np.random.default_rng(5)
    if colour:
        ds, frames = _rgb_ds(1), rng.integers(0, 256, (1, *shape, 3), dtype=np.uint8)
        ds.Rows, ds.Columns = shape
    else:
        ds = Dataset()
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = *shape, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, 12, 0
        frames = rng.integers(0, 4096, (1, *shape), dtype=np.uint16)
    plain = prepare.prepare_views(ds, frames)
    views = prepare.prepare_views(ds, frames, fine=True)
    fine = [v for v in views if v.kind == prepare.FINE]
    rest = [v for v in views if v.kind != prepare.FINE]
    assert [(v.kind, v.height, v.width) for v in rest] == [(v.kind, v.height, v.width) for v in plain]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(rest, plain))
    assert {v.kind for v in plain} <= {"full", "window", "upper", "extreme", "rgb", "achromatic"}
    if fine_size is None:
        assert not fine
        return
    assert len(fine) == len([v for v in plain if v.kind != "achromatic"])
    for f in fine:
        assert (f.height, f.width) == fine_size and f.frame == 0 and (f.grey is None) == colour
        assert f.to_stored(f.ox, f.oy, f.width, f.height, *shape) == (0, 0, shape[1], shape[0])


def _voi(**attrs: object) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("ds, want", [
    (_voi(WindowCenter=40, WindowWidth=80, RescaleIntercept=-1024, RescaleSlope=1), (1024.0, 1103.0)),  # 0..79 HU
    (_voi(WindowCenter=[40, 300], WindowWidth=[80, 1500], RescaleIntercept=-1024, RescaleSlope=1), (1024.0, 1103.0)),  # the first
    (_voi(WindowCenter="40", WindowWidth="80"), (0.0, 79.0)),  # no rescale: stored values
    (_voi(WindowCenter=40, WindowWidth=80, RescaleIntercept=0, RescaleSlope=0.5), (0.0, 158.0)),
    (_voi(WindowCenter=40, WindowWidth=80, RescaleIntercept=0, RescaleSlope=-1), (-79.0, -0.0)),
    (_voi(WindowCenter=40, WindowWidth=1), None),  # width 1: no window
    (_voi(WindowCenter=40), None),
    (_voi(RescaleIntercept=0), None),
    (_voi(WindowCenter=40, WindowWidth=80, ModalityLUTSequence=[Dataset()]), None),  # no linear way back
])
def test_the_file_s_window_in_stored_values(ds: Dataset, want: tuple[float, float] | None) -> None:
    got = prepare.voi_window(ds)
    assert got == want if want is None else got == pytest.approx(want)


def test_the_window_of_a_voi_lut_or_of_functional_groups() -> None:
    lut = Dataset()
    lut.LUTDescriptor = [256, 1000, 16]  # 256 entries from 1000 HU, a ramp: its central slope is its span
    lut.add_new(0x00283006, "US", list(range(0, 65536, 256)))
    got = prepare.voi_window(_voi(VOILUTSequence=[lut], RescaleIntercept=-1024, RescaleSlope=1, BitsStored=12))
    assert got == pytest.approx((2024.0, 2280.0), abs=2)
    frame_voi, pixel_value = Dataset(), Dataset()
    frame_voi.WindowCenter, frame_voi.WindowWidth = 40, 80
    pixel_value.RescaleIntercept, pixel_value.RescaleSlope = -1024, 1
    shared = Dataset()
    shared.FrameVOILUTSequence, shared.PixelValueTransformationSequence = [frame_voi], [pixel_value]
    assert prepare.voi_window(_voi(SharedFunctionalGroupsSequence=[shared])) == (1024.0, 1103.0)
    per_frame = Dataset()
    per_frame.FrameVOILUTSequence = [frame_voi]
    enhanced = _voi(PerFrameFunctionalGroupsSequence=[per_frame], SharedFunctionalGroupsSequence=[Dataset()])
    assert prepare.voi_window(enhanced) == (0.0, 79.0)  # the first frame's, where nothing is shared


def test_a_window_far_from_the_stored_values_is_not_used() -> None:
    """A CT window on data stored without the rescale it names (8-bit values, a 40/80 window at 1024 up)
    shows nothing: the robust window of the values stays."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    frame[:4] = 255
    ds = _voi(WindowCenter=40, WindowWidth=80, RescaleIntercept=-1024, RescaleSlope=1, Rows=64, Columns=64,
              SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", BitsAllocated=8, BitsStored=8,
              PixelRepresentation=0)
    with_window = [v.image for v in prepare.prepare_views(ds, frame[None])]
    del ds.WindowCenter, ds.WindowWidth
    assert all(np.array_equal(a, b) for a, b in zip(with_window, [v.image for v in prepare.prepare_views(ds, frame[None])]))


def test_every_preset_of_every_frame() -> None:
    """``voi_windows``: each Window Center and Width pair in the file's order (back through the rescale),
    and an Enhanced image's frame through its own Frame VOI LUT (the rescale shared); ``voi_window`` is
    the first frame's first."""
    two = _voi(WindowCenter=[40, 600], WindowWidth=[400, 2800], RescaleIntercept=-1024, RescaleSlope=1)
    assert prepare.voi_windows(two) == [(864.0, 1263.0), (224.0, 3023.0)]
    assert prepare.voi_window(two) == (864.0, 1263.0)
    bad = _voi(WindowCenter=["40", ""], WindowWidth=["80", "400"])  # a pair without a number is left out
    assert prepare.voi_windows(bad) == [(0.0, 79.0)]
    pixel_value, shared = Dataset(), Dataset()
    pixel_value.RescaleIntercept, pixel_value.RescaleSlope = -1024, 1
    shared.PixelValueTransformationSequence = [pixel_value]
    groups = []
    for centre, width in ((40, 400), (40, 80), ([40, 300], [80, 1500])):
        voi, group = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = centre, width
        group.FrameVOILUTSequence = [voi]
        groups.append(group)
    enhanced = _voi(SharedFunctionalGroupsSequence=[shared], PerFrameFunctionalGroupsSequence=groups)
    assert prepare.voi_windows(enhanced, 0) == [(864.0, 1263.0)] and prepare.voi_window(enhanced) == (864.0, 1263.0)
    assert prepare.voi_windows(enhanced, 1) == [(1024.0, 1103.0)]
    assert prepare.voi_windows(enhanced, 2) == [(1024.0, 1103.0), (574.0, 2073.0)]
    assert prepare.voi_windows(enhanced, 3) == []  # no such frame: no window


def test_frame_numbers_must_match_the_frames() -> None:
    frame = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    ds = _voi(Rows=64, Columns=64, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", BitsAllocated=16,
              BitsStored=12, PixelRepresentation=0)
    with pytest.raises(ValueError, match="frame numbers"):
        prepare.prepare_views(ds, frame[None], frame_numbers=[0, 1])
