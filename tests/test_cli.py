"""The command line: help everywhere, version, profiles, inspect (no values unless asked)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.data import get_testdata_file

from deid_pipeline import __version__
from deid_pipeline.cli.main import cli


@pytest.mark.parametrize("cmd", [[], ["run"], ["profiles"], ["profiles", "list"], ["profiles", "show"], ["inspect"], ["verify"], ["audit"], ["audit", "verify"], ["audit", "public-key"]])
def test_help_on_every_command(cmd: list[str]) -> None:
    res = CliRunner().invoke(cli, [*cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_version() -> None:
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_profiles_list_and_show() -> None:
    res = CliRunner().invoke(cli, ["profiles", "list"])
    assert res.exit_code == 0
    for name in ("basic", "safe-harbor", "retain-uids", "clean-graphics", "retain-long-modified-dates"):
        assert name in res.output
    res = CliRunner().invoke(cli, ["profiles", "show", "basic+retain-uids", "--format", "json"])
    assert res.exit_code == 0 and '"retain-uids"' in res.output


def test_invalid_user_profile_exits_2_naming_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nversion: '1'\nextends: basic\nrows:\n  - keyword: PatientName\n    action: K\n  - tag: '(0010,0020)'\n    action: NOPE\n")
    res = CliRunner().invoke(cli, ["profiles", "show", str(bad)])
    assert res.exit_code == 2
    assert "row 1" in res.output and "(0010,0020)" in res.output and "NOPE" in res.output


def test_inspect_hides_values_unless_asked(tmp_path: Path) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "Zqinspect^Canary"
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedImageSequence = [item]
    path = tmp_path / "x.dcm"
    ds.save_as(path)
    res = CliRunner().invoke(cli, ["inspect", str(path), "--profile", "safe-harbor"])
    assert res.exit_code == 0, res.output
    assert "Zqinspect" not in res.output
    assert "PatientName" in res.output and "ReferencedSOPInstanceUID" in res.output
    shown = CliRunner().invoke(cli, ["inspect", str(path), "--profile", "safe-harbor", "--show-values"])
    assert shown.exit_code == 0 and "Zqinspect" in shown.output


def test_an_internal_error_ends_without_its_message(tmp_path: Path, monkeypatch, capsys) -> None:
    """An error deid did not expect (here from the run's driver, its message naming an input) ends
    with exit status 1 and one line naming its type and place, not a traceback with the path."""
    import sys

    from deid_pipeline import runner
    from deid_pipeline.cli import main as cli_main

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error", "/export/DOE^JANE/IM0001")

    monkeypatch.setattr(runner, "execute", broken)
    (tmp_path / "in").mkdir()
    key = tmp_path / "k.key"
    key.write_bytes(b"internal-error-key-0123456789abcdef")
    key.chmod(0o600)
    monkeypatch.setattr(sys, "argv", ["deid", "run", str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "0",
                                      "--pixels", "none", "--key-file", str(key), "--quiet"])
    monkeypatch.delenv(cli_main.TRACEBACK_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        cli_main.main()
    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert "internal error: OSError at test_cli.py:" in err and "DOE" not in err and "Traceback" not in err
    monkeypatch.setenv(cli_main.TRACEBACK_ENV, "1")  # a developer asks for it
    with pytest.raises(OSError, match="DOE"):
        cli_main.main()


def test_a_second_run_into_the_same_output_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    """Two runs into one OUTPUT would interleave the manifest and remove each other's temporary
    files; the run holds a lock on OUTPUT (and its private folder) and a second one exits 2 touching
    nothing. A run cannot make OUTPUT (a missing, read-only parent): exit 2, not an internal error."""
    import fcntl
    import os

    from support import deid, read_manifest, write_key

    inp = tmp_path / "in"
    inp.mkdir()
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.save_as(inp / "a.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k.key", b"lock-test-key-0123456789abcdef0123")
    out = tmp_path / "out"
    args = ["run", str(inp), str(out), "--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet"]
    assert deid(*args).returncode == 0
    ds.PatientID = "ANOTHER"
    ds.save_as(inp / "b.dcm", enforce_file_format=True)
    before = (out / "manifest.jsonl").read_bytes()
    for held in (out, tmp_path / "out.private"):  # as a run in progress holds them
        fd = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            proc = deid(*args)
            assert proc.returncode == 2 and "another deid run is writing" in proc.stderr, proc.stderr
            assert (out / "manifest.jsonl").read_bytes() == before
        finally:
            os.close(fd)
    assert deid(*args).returncode == 0 and len(read_manifest(out)) == 2  # the lock gone, the run resumes
    (tmp_path / "file").write_bytes(b"x")
    proc = deid("run", str(inp), str(tmp_path / "file" / "out"), "--workers", "0", "--key-file", str(key), "--quiet")
    assert proc.returncode == 2 and "could not be made" in proc.stderr and "internal error" not in proc.stderr


def test_a_scheduler_that_does_not_answer_is_a_configuration_error(tmp_path: Path, monkeypatch) -> None:
    """``--scheduler`` with nothing listening: exit 2 naming the address, OUTPUT not made (before: an
    internal error after 30 s, with an empty run left in OUTPUT)."""
    from support import deid, write_key

    from deid_pipeline import batch

    (tmp_path / "in").mkdir()
    key = write_key(tmp_path / "k.key", b"scheduler-test-key-0123456789abcdef")
    proc = deid("run", str(tmp_path / "in"), str(tmp_path / "out"), "--pixels", "none", "--key-file", str(key),
                "--scheduler", "not-a-scheduler-address", "--quiet", timeout=120)
    assert proc.returncode == 2 and "no Dask scheduler answered at not-a-scheduler-address" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(batch.ConfigError, match="127.0.0.1:9"):  # nothing listens on the discard port
        batch.connect_scheduler("tcp://127.0.0.1:9", timeout=1)


def test_run_gives_back_the_callers_signal_handlers(tmp_path: Path) -> None:
    """``deid run`` inside another program (here pytest) leaves SIGINT and SIGTERM as it found them."""
    import signal

    from click.testing import CliRunner
    from support import write_key

    (tmp_path / "in").mkdir()
    pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(tmp_path / "in" / "a.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k.key", b"signal-test-key-0123456789abcdef01")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "0",
                                      "--pixels", "none", "--key-file", str(key), "--quiet"])
    assert result.exit_code == 0, result.output
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_an_interrupt_quiets_dask_teardown_noise_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once interrupted, exceptions raised in Dask's or tornado's ``__del__`` as the process ends (a client
    future the signal caught half made) are dropped; any other unraisable still reaches the hook before,
    and a second interrupt does not wrap the hook again."""
    import logging
    import signal
    import sys
    import types

    from deid_pipeline.cli import run as run_cmd

    seen: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.object))
    for name in list(logging.root.manager.loggerDict):  # _interrupt silences Dask's: their levels back after
        if name.split(".")[0] in ("distributed", "tornado"):
            monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    with pytest.raises(run_cmd.Terminated):
        run_cmd._interrupt(signal.SIGTERM, None)
    hook = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt):
        run_cmd._interrupt(signal.SIGINT, None)
    assert sys.unraisablehook is hook

    def unraisable(module: str) -> types.SimpleNamespace:
        def __del__(self: object) -> None:
            pass
        __del__.__module__ = module
        return types.SimpleNamespace(object=__del__, exc_type=AttributeError, exc_value=AttributeError("_client"),
                                     exc_traceback=None, err_msg=None)

    hook(unraisable("distributed.client"))
    hook(unraisable("tornado.ioloop"))
    assert seen == []
    other = unraisable("deid_pipeline.pipeline")
    hook(other)
    assert seen == [other.object]


@pytest.mark.parametrize("command,option", [("run", "--linkage"), ("run", "--log-file"), ("verify", "--log-file"),
                                            ("report", "--log-file")])
def test_no_command_writes_inside_input(tmp_path: Path, command: str, option: str) -> None:
    """INPUT is never modified: a file a command would write inside it (run's --linkage and --log-file,
    verify's and report's --log-file) is a configuration error, exit 2, before anything is written (before:
    the linkage table and the log files were written into INPUT)."""
    from support import write_key

    inp = tmp_path / "in"
    (inp / "DOE^JOHN").mkdir(parents=True)
    pydicom.dcmread(get_testdata_file("CT_small.dcm")).save_as(inp / "DOE^JOHN" / "a.dcm", enforce_file_format=True)
    key = write_key(tmp_path / "k.key", b"input-test-key-0123456789abcdef01")
    out = tmp_path / "out"
    options = ["--workers", "0", "--pixels", "none", "--key-file", str(key), "--quiet"]
    assert CliRunner().invoke(cli, ["run", str(inp), str(out), *options]).exit_code == 0
    listing = sorted((str(p), p.stat().st_mtime_ns) for p in inp.rglob("*"))
    args = {"run": ["run", str(inp), str(tmp_path / "out2"), *options],
            "verify": ["verify", str(out), "--against", str(inp), "--workers", "0", "--no-rescan"],
            "report": ["report", str(out), "--with-originals", "--against", str(inp)]}[command]
    result = CliRunner().invoke(cli, [*args, option, str(inp / "DOE^JOHN" / "f")])
    what = "the linkage file" if option == "--linkage" else "the log file"
    assert result.exit_code == 2 and f"{what} must be outside INPUT" in result.output, result.output
    assert "DOE" not in result.output and str(tmp_path) not in result.output
    assert sorted((str(p), p.stat().st_mtime_ns) for p in inp.rglob("*")) == listing
    assert not (tmp_path / "out2").exists()
