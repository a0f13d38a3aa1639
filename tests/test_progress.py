"""A batch's time limit follows its worker's progress: each file gets the per-file limit, the scan
(one pass over several files) that many limits, whatever the batch size."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from deid_pipeline import batch
from deid_pipeline.config import BATCH_SIZE_HEADER_ONLY, BATCH_SIZE_SCAN, RunContext
from deid_pipeline.discover import Candidate
from deid_pipeline.pipeline import process_batch
from deid_pipeline.profile import load_profile
from deid_pipeline.runner import RunOptions, prepare_run

KEY = b"progress-test-key-0123456789abcdef"


class _Calls:
    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, files: int, force: bool = False) -> None:
        self.calls.append((files, force))


def _copy(root: Path, names: list[str]) -> list[Candidate]:
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(get_testdata_file(n), root / n)
    return [Candidate(n) for n in names]


def test_header_only_batch_reports_every_file_loaded_and_finished(tmp_path: Path) -> None:
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
    cands = _copy(tmp_path / "in", names) + [Candidate("missing.dcm")]
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="none")
    calls = _Calls()
    results = process_batch(tmp_path / "in", cands, ctx, calls)
    assert [r.status for r in results] == ["written", "written", "written", "failed"]
    assert results[-1].reason_code == "unreadable" and results[-1].reason == "the input could not be read: No such file or directory"
    # four loads (the missing file too), no scan, three finishes (a failed load has nothing to finish)
    assert calls.calls == [(1, False)] * 7


def test_scanned_batch_announces_the_scan_of_all_its_files(tmp_path: Path) -> None:
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]  # two images, one plan (nothing to scan)
    cands = _copy(tmp_path / "in", names)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    calls = _Calls()
    results = process_batch(tmp_path / "in", cands, ctx, calls)
    assert [r.status for r in results] == ["written", "written", "written"]
    assert [r.pixel["scanned"] for r in results] == [True, True, False]
    # loads, the scan announced for both images, its beats (each announcing the two again), then finishes
    calls_ = calls.calls
    assert calls_[:4] == [(1, False)] * 3 + [(2, True)] and calls_[-4:] == [(1, True)] + [(1, False)] * 3
    beats = calls_[4:-4]
    assert len(beats) >= 3 and set(beats) == {(2, False)}  # a detector call and each image's view decided at least


class _Worker:
    address = "tcp://worker:1"

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def log_event(self, topic: str, msg: dict) -> None:
        self.events.append((topic, msg))


def test_reporter_drops_only_unforced_calls_within_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(batch.time, "monotonic", lambda: clock[0])
    worker = _Worker()
    rep = batch._Reporter(worker, "tok", every=1.0)
    rep(1, start=True)
    rep(1)  # same instant: dropped
    rep(3, force=True)  # forced: sent
    clock[0] += 0.5
    rep(1)  # 0.5 s after the last sent: dropped
    clock[0] += 0.6
    rep(1)  # 1.1 s: sent
    sent = [m for t, m in worker.events if t == batch.START_TOPIC]
    assert [(m["files"], m["start"]) for m in sent] == [(1, True), (3, False), (1, False)]
    assert {m["token"] for m in sent} == {"tok"} and {m["worker"] for m in sent} == {worker.address}


def test_a_batch_names_the_file_whose_step_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker answers when its batch ran past the deadline: the file whose own step (load or
    finish) runs, with the hash its load kept, and how long since the work last advanced; nothing in
    the scan (one pass over several files: no single file to name)."""
    names = ["CT_small.dcm", "MR_small.dcm"]
    cands = _copy(tmp_path / "in", names) + [Candidate("missing.dcm")]
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    rep = batch._Reporter(_Worker(), "tok", every=1.0)
    steps: list[tuple[int | None, tuple | None]] = []

    def current(index: int | None) -> None:
        steps.append((index, rep.in_progress()))  # what a worker would answer just before this step
        rep.at(index)

    results = process_batch(tmp_path / "in", cands, ctx, rep, rep.hashed, current)
    assert [r.status for r in results] == ["written", "written", "failed"]
    assert [i for i, _ in steps] == [0, 1, 2, None, 0, 1]  # three loads, the scan, two finishes
    keys = {i: (r.input_sha256, r.input_size) for i, r in enumerate(results[:2])}
    assert steps[1][1][:3] == (0, *keys[0]) and steps[2][1][:3] == (1, *keys[1])  # hashed in its load
    assert steps[3][1][:3] == (2, "", 0)  # a file never hashed: no key to give
    assert steps[4][1] is None  # asked in the scan
    assert rep.in_progress()[:3] == (1, *keys[1]) and not any(e[1].get("sha256") for e in rep.worker.events)
    clock = [500.0]
    monkeypatch.setattr(batch.time, "monotonic", lambda: clock[0])
    rep.at(0)
    clock[0] += 2.5
    assert rep.in_progress() == (0, *keys[0], 2.5)
    rep(1)  # progress (sent or dropped) is the work advancing
    assert rep.in_progress() == (0, *keys[0], 0.0)


class _Client:
    def __init__(self, answer: object) -> None:
        self.answer, self.asked = answer, []

    def run(self, function, *args, workers: list[str], on_error: str) -> dict:
        self.asked.append((function, args, workers))
        return {workers[0]: self.answer} if self.answer is not None else {}


@pytest.mark.parametrize("answer, expected", [
    ((3, "ab" * 32, 2672, 1.6), (3, "ab" * 32, 2672)),  # stuck 1.6 s in file 3's step: named
    ((3, "", 0, 1.5), (3, "", 0)),  # hung before it was hashed
    ((3, "ab" * 32, 2672, 0.4), None),  # advanced since: only just past the limit, perhaps the next file
    (None, None),  # in the scan, or the task is not on that worker
])
def test_the_driver_names_a_hung_file_only_when_its_step_has_not_advanced(answer: object, expected: object) -> None:
    client = _Client(answer)
    assert batch._file_in_progress(client, "tcp://w:1", "tok", limit=1.5) == expected
    assert client.asked == [(batch._in_progress, ("tok",), ["tcp://w:1"])]
    assert batch._file_in_progress(client, "", "tok", limit=1.5) is None and len(client.asked) == 1


def test_a_worker_that_does_not_answer_names_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hung code that holds the GIL leaves its worker unable to answer: no file named after the wait."""
    import threading

    release = threading.Event()

    class Stuck:
        def run(self, *args: object, **kwargs: object) -> dict:
            release.wait(30)
            return {"tcp://w:1": (0, "", 0, 99.0)}

    monkeypatch.setattr(batch, "IN_PROGRESS_QUERY_S", 0.2)
    try:
        assert batch._file_in_progress(Stuck(), "tcp://w:1", "tok", limit=1.5) is None
    finally:
        release.set()


def test_deadline_follows_the_last_event(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [10.0]
    monkeypatch.setattr(batch.time, "monotonic", lambda: clock[0])
    starts = batch._Starts()
    limit, every, window = 30.0, 3.0, 8
    # no event yet: the batch may be queued behind the window
    assert batch.batch_deadline(5.0, 64, starts.get("a"), limit, every, window) == 5.0 + 30 * 64 * 9
    starts(("t", {"token": "a", "worker": "w1", "files": 1, "start": True}))
    assert batch.batch_deadline(5.0, 64, starts.get("a"), limit, every, window) == 10.0 + 30 + 3
    clock[0] = 50.0
    starts({"token": "a", "worker": "w1", "files": 12, "start": False})  # the scan of 12 files
    assert batch.batch_deadline(5.0, 64, starts.get("a"), limit, every, window) == 50.0 + 30 * 12 + 3
    clock[0] = 200.0
    starts({"token": "a", "worker": "w1", "files": 1, "start": False})
    clock[0] = 400.0  # a single file's input hashed: kept for its record, the deadline unmoved
    starts({"token": "a", "sha256": "ab" * 32, "size": 2672})
    assert batch.batch_deadline(5.0, 64, starts.get("a"), limit, every, window) == 200.0 + 30 + 3
    seen, hashed = starts.pop("a")
    assert seen is not None and (seen.at, seen.worker, seen.files) == (200.0, "w1", 1)
    assert hashed == ("ab" * 32, 2672)
    # progress or a hash that arrives after its batch's result opens nothing; a junk count counts as one file
    starts({"token": "a", "worker": "w1", "files": 1, "start": False})
    starts({"token": "a", "sha256": "cd" * 32, "size": 1})
    assert starts.get("a") is None and starts.pop("a") == (None, None)
    starts({"token": "b", "worker": "w2", "files": "x", "start": True})
    assert starts.get("b") is not None and starts.get("b").files == 1


def test_progress_interval_is_small_next_to_the_limit() -> None:
    assert batch.progress_interval(300.0) == 5.0
    assert batch.progress_interval(1.5) == pytest.approx(0.15)


@pytest.mark.parametrize("pixels, given, expected", [
    ("none", None, BATCH_SIZE_HEADER_ONLY),
    ("all", None, BATCH_SIZE_SCAN),
    ("none", 8, 8),
    ("all", 32, 32),
])
def test_default_batch_size_by_kind_of_run(tmp_path: Path, pixels: str, given: int | None, expected: int) -> None:
    (tmp_path / "in").mkdir()
    key = tmp_path / "k.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    opts = RunOptions(input_dir=tmp_path / "in", output_dir=tmp_path / "out", key_file=key, pixels=pixels,
                      batch_size=given)
    ctx = prepare_run(opts)[0]
    assert ctx.batch_size == expected


@pytest.mark.parametrize("files, workers, expected", [
    (10, 2, [5, 5]),
    (33, 4, [9, 9, 9, 6]),
    (3, 8, [1, 1, 1]),
    (0, 2, []),
    (128, 2, [64, 64]),
    (200, 2, [64, 64, 64, 8]),
])
def test_small_inputs_are_spread_over_the_workers(tmp_path: Path, files: int, workers: int, expected: list[int]) -> None:
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path, batch_size=64)
    cands = [Candidate(f"f{i}", size=10) for i in range(files)]
    batches = list(batch.spread_batches(iter(cands), ctx, workers))
    assert [len(b) for b in batches] == expected
    assert [c for b in batches for c in b] == cands  # every file once, in order


def test_a_compressed_cine_beats_as_its_frames_are_encoded(tmp_path: Path) -> None:
    """Writing the redacted frames of a compressed cine is one step of the file's finish: each frame is
    encoded and decoded again to check it (a JPEG 2000 cine of 1024x768 frames: ~0.43 s a frame here, so
    ~700 frames filled the 300 s limit). Each frame encoded now beats, announcing this file again."""
    import pydicom
    from pydicom.uid import RLELossless

    from deid_pipeline import synth
    from deid_pipeline.pixels import encoder_plugin

    root = tmp_path / "in"
    root.mkdir()
    ds, _ = synth.make_case("us_cine", 4)
    frames = int(ds.NumberOfFrames)
    ds.compress(RLELossless, generate_instance_uid=False, **encoder_plugin(RLELossless))
    ds.save_as(root / "cine.dcm", enforce_file_format=True)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    calls = _Calls()
    [res] = process_batch(root, [Candidate("cine.dcm")], ctx, calls)
    assert res.status == "written" and res.pixel["reencoded_transfer_syntax"] == str(RLELossless)
    after_scan = len(calls.calls) - calls.calls[::-1].index((1, True))  # past the note that ends the scan
    finish = calls.calls[after_scan:]
    assert len(finish) == frames + 1 and set(finish) == {(1, False)}  # a beat a frame, then the file done
    assert pydicom.dcmread(tmp_path / "out" / res.output_path).file_meta.TransferSyntaxUID == RLELossless


def test_a_compressed_multiframe_file_beats_as_its_frames_are_decoded(tmp_path: Path) -> None:
    """A file's frames are decoded whole before the scan when they fit the decode budget (256 MiB): up
    to ~100 s for tiny JPEG 2000 frames (65,536 64x64 frames at 1.4 ms each), one step of the load. Each
    compressed frame decoded now beats, announcing this file again."""
    import pydicom

    name = "emri_small_jpeg_2k_lossless.dcm"
    [cand] = _copy(tmp_path / "in", [name])
    frames = int(pydicom.dcmread(tmp_path / "in" / name).NumberOfFrames)
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    calls = _Calls()
    [res] = process_batch(tmp_path / "in", [cand], ctx, calls)
    assert res.status == "written"
    load = calls.calls[: calls.calls.index((1, True))]  # up to the note that starts the scan
    assert len(load) == frames + 1 and set(load) == {(1, False)}  # a beat a frame, then the file loaded


@pytest.mark.parametrize("name", ["emri_small_jpeg_2k_lossless.dcm", "emri_small_RLE.dcm", "color3d_jpeg_baseline.dcm"])
def test_frames_decoded_with_beats_are_those_decoded_whole(tmp_path: Path, name: str) -> None:
    """``load_file`` with a heartbeat: one beat per frame, and the frames of the whole decode."""
    import numpy as np
    import pydicom

    from deid_pipeline import pixels
    from deid_pipeline.pipeline import load_file

    [cand] = _copy(tmp_path / "in", [name])
    ctx = RunContext(profile=load_profile("safe-harbor"), key=KEY, output_dir=tmp_path / "out", pixels="all",
                     device="cpu", detector="deid-textseg")
    beats: list[int] = []
    loaded = load_file(tmp_path / "in", cand, ctx, heartbeat=lambda: beats.append(1))
    whole = pixels.decode_frames(pydicom.dcmread(tmp_path / "in" / name))
    assert len(beats) == len(whole) == int(pydicom.dcmread(tmp_path / "in" / name).NumberOfFrames)
    assert loaded.frames.dtype == whole.dtype and np.array_equal(loaded.frames, whole)
