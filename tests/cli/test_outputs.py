"""Outputs outside run dirs (export, report): checked before any work, written atomically,
never replacing what another command (or the user) wrote, truthful about their input."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import invoke, one_line_error, tiny_distill, tiny_teacher

from distillq.commands import distill as distill_cmd
from distillq.commands import export as export_cmd
from distillq.commands import report as report_cmd
from distillq.commands import train as train_cmd
from distillq.errors import WriteError
from distillq.runs import store

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A CartPole teacher, a linear student, and a student that sees a 2-frame stack."""
    d = tmp_path_factory.mktemp("outputs")
    train_cmd.run(tiny_teacher(), out=str(d / "t"), show_progress=False)
    distill_cmd.run(tiny_distill(network="linear"), [str(d / "t")], out=str(d / "lin"),
                    show_progress=False)
    distill_cmd.run(tiny_distill(network="8", frame_stack=2), [str(d / "t")],
                    out=str(d / "stack"), show_progress=False)
    return d


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_export_out_naming_an_onnx_file_writes_that_file(runs, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "student.onnx"
    code, stdout, err = invoke(["export", str(runs / "lin"), "--out", str(out), "--states",
                                "300"])
    assert code == 0, err
    res = json.loads(stdout)
    assert out.is_file() and res["format"] == "onnx" and res["files"] == [str(out)]
    assert res["parity"]["ok"]
    before = out.read_bytes()
    assert "already exists" in one_line_error(["export", str(runs / "lin"), "--out", str(out)])
    code, _, err = invoke(["export", str(runs / "t"), "--out", str(out), "--states", "300",
                           "--force"])
    assert code == 0, err
    assert out.read_bytes() != before and _leftovers(tmp_path) == []
    # a file that is not a distillq export is never replaced
    notes = tmp_path / "notes.onnx"
    notes.write_text("mine")
    assert "not a distillq ONNX export" in one_line_error(
        ["export", str(runs / "lin"), "--out", str(notes), "--force"])
    assert notes.read_text() == "mine"
    assert "names a onnx file, but --format is numpy" in one_line_error(
        ["export", str(runs / "lin"), "--format", "numpy", "--out", str(tmp_path / "x.onnx")])
    assert "is a directory of files" in one_line_error(
        ["export", str(runs / "lin"), "--out", str(tmp_path / "x.npz")])
    assert not (tmp_path / "x.npz").exists()


def test_export_dirs_keep_the_umask(runs, tmp_path):
    old = os.umask(0o022)
    try:
        export_cmd.run(str(runs / "lin"), "numpy", str(tmp_path / "e"), states=200)
    finally:
        os.umask(old)
    assert (tmp_path / "e").stat().st_mode & 0o777 == 0o755


def test_a_failed_forced_export_keeps_the_old_one(runs, tmp_path, monkeypatch):
    """--force replaces only once the new export is complete and checked."""
    out = tmp_path / "e"
    export_cmd.run(str(runs / "lin"), "numpy", str(out), states=200)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_cmd, "sample_states", full)
    with pytest.raises(WriteError, match="No space left on device; nothing was written") as e:
        export_cmd.run(str(runs / "t"), "numpy", str(out), states=200, force=True)
    assert e.value.exit_code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_an_interrupted_forced_export_keeps_the_old_one_and_no_temporary_files(runs, tmp_path):
    out = tmp_path / "e"
    export_cmd.run(str(runs / "lin"), "numpy", str(out), states=200)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    p = subprocess.Popen(EXE + ["export", str(runs / "t"), "--out", str(out), "--force",
                                "--states", "5000000"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _leftovers(tmp_path) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert _leftovers(tmp_path), "the export never staged its files"
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted (SIGTERM)" in err
    assert {q.name: q.read_bytes() for q in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_place_puts_the_old_dir_back_when_the_swap_fails(tmp_path, monkeypatch):
    old = tmp_path / "x"
    old.mkdir()
    (old / "a").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "a").write_text("new")
    real = Path.rename

    def flaky(self, target):
        if self == new:
            raise OSError(errno.EIO, "I/O error")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(OSError):
        store.place(new, old)
    assert (old / "a").read_text() == "old" and _leftovers(tmp_path) == []
    monkeypatch.setattr(Path, "rename", real)
    store.place(new, old)
    assert (old / "a").read_text() == "new" and _leftovers(tmp_path) == [] and not new.exists()


@pytest.mark.parametrize("command", ["export", "report"])
def test_unwritable_outputs_fail_before_any_work(runs, tmp_path, command):
    """/dev/full/x (a parent that is a file), /proc/x (a parent where nothing can be created),
    a symbolic link: exit 2 in one line, before loading the run."""
    for bad in ("/dev/full/x", "/proc/x"):
        assert "cannot write" in one_line_error([command, str(runs / "lin"), "--out", bad])
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    assert "symbolic link" in one_line_error([command, str(runs / "lin"), "--out", str(link),
                                              "--force"])
    assert not (tmp_path / "elsewhere").exists()


def test_run_dirs_are_probed_like_every_other_output():
    """train-teacher and distill probe their run dir's parent with a real write too (the
    same store.probe), not os.access, which says yes to /proc as root."""
    assert "cannot write under /proc" in one_line_error(["train-teacher", "--out",
                                                         "/proc/x"])
    assert "cannot write under /dev/full: not a directory" in one_line_error(
        ["train-teacher", "--out", "/dev/full/x"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only dirs")
def test_a_read_only_dir_fails_before_any_work(runs, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert "cannot write under" in one_line_error(["export", str(runs / "lin"), "--out",
                                                   str(ro / "e")])


@pytest.mark.parametrize("command", ["export", "report", "distill"])
def test_a_non_utf8_out_is_one_line_before_any_work(runs, command):
    args = [*EXE, command, str(runs / ("t" if command == "distill" else "lin")), "--out",
            os.fsencode("/tmp/") + b"\xff\xfe-out"]
    if command == "distill":
        args = [*EXE, "distill", "-t", str(runs / "t"), "--out",
                os.fsencode("/tmp/") + b"\xff\xfe-out"]
    p = subprocess.run(args, capture_output=True, timeout=120)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2, err
    assert err.count("\n") == 1 and "not valid UTF-8" in err and "Traceback" not in err
    assert not os.path.exists(os.fsencode("/tmp/") + b"\xff\xfe-out")


def test_a_view_students_artefacts_name_their_input(runs, tmp_path):
    """A student that sees a stack of observations: its artefacts say so where their users
    read (the C header, policy.py, the ONNX file's metadata), not 'one observation'."""
    onnx = pytest.importorskip("onnx")
    for fmt in ("numpy", "c", "onnx"):
        if fmt == "c" and export_cmd.c_format.c_compiler() is None:
            continue
        res = export_cmd.run(str(runs / "stack"), fmt, str(tmp_path / fmt), states=200)
        assert res["input"].startswith("NOT a raw observation") and "(8,)" in res["input"]
        if fmt == "numpy":
            assert res["input"] in (tmp_path / fmt / "policy.py").read_text()
        elif fmt == "c":
            assert "NOT a raw observation" in (tmp_path / fmt / "policy.h").read_text()
        else:
            model = onnx.load(str(tmp_path / fmt / "policy.onnx"))
            props = {p.key: p.value for p in model.metadata_props}
            assert props["input"] == res["input"] and "NOT a raw" in model.doc_string
    plain = export_cmd.run(str(runs / "lin"), "numpy", str(tmp_path / "plain"), states=200)
    assert plain["input"] == "one observation of shape (4,), float32"


def test_bench_times_the_policy_py_that_ships(runs, tmp_path, monkeypatch):
    seen = []
    real = export_cmd.FORMATS["numpy"]

    def decide(out_dir, files, obs):
        seen.append(Path(out_dir))
        return real.decide(out_dir, files, obs)

    monkeypatch.setitem(export_cmd.FORMATS, "numpy", real._replace(decide=decide))
    res = export_cmd.run(str(runs / "lin"), "numpy", str(tmp_path / "e"), states=200,
                         bench=True)
    assert res["latency_us"]["numpy"] > 0 and len(seen) == 1
    assert seen[0].name == "export" and ".e.tmp-" in seen[0].parent.name  # the staged export


def test_int8_export_prints_float_beside_int8(runs, tmp_path):
    code, out, err = invoke(["export", str(runs / "lin"), "--int8", "--out",
                             str(tmp_path / "q"), "--states", "200"])
    assert code == 0, err
    assert "float vs int8" in err and "same numbers" not in err
    rows = [ln for ln in err.splitlines()
            if ln.startswith("│") and ln.strip("│ ").startswith(("float", "int8"))]
    assert len(rows) == 2, err
    ev = json.loads(out)["int8_evaluation"]
    assert f"{ev['int8']['mean']:.1f}" in rows[1]


def test_report_defaults_outside_runs_and_never_silently_replaces(runs, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(["report", str(runs / "lin")])
    assert code == 0, err
    first = Path(json.loads(out)["out_dir"])
    assert first.parent == Path("reports") and (first / "report.md").exists()
    assert not Path("runs").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert "already exists" in one_line_error(["report", str(runs / "lin"), "--out",
                                               str(mine)])
    assert "not a distillq report dir" in one_line_error(
        ["report", str(runs / "lin"), "--out", str(mine), "--force"])
    assert (mine / "notes.txt").read_text() == "keep"
    assert "already exists" in one_line_error(["report", str(runs / "t"), "--out",
                                               str(first)])
    code, out, err = invoke(["report", str(runs / "t"), "--out", str(first), "--force"])
    assert code == 0, err
    assert "| t |" in (first / "report.md").read_text()
    assert "--gifs" in one_line_error(["report", str(runs / "t"), "--out", str(first),
                                       "--force", "--gifs", str(tmp_path / "nowhere")])


def test_a_report_on_a_full_disk_leaves_no_half_written_files(runs, tmp_path, monkeypatch):
    import matplotlib.figure

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(WriteError, match="No space left"):
        report_cmd.run([str(runs / "lin")], tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_a_report_of_many_runs_stays_readable_and_quiet(runs, tmp_path):
    """30 runs: 30 distinct colours, every run numbered in the legend and the table, no
    matplotlib warning on stderr."""
    import shutil

    many = []
    for i in range(30):
        shutil.copytree(runs / "t", tmp_path / f"t{i}")
        many.append(str(tmp_path / f"t{i}"))
    code, out, err = invoke(["report", *many, "--out", str(tmp_path / "rep")])
    assert code == 0, err
    assert "Warning" not in err and "warn" not in err.lower()
    colours = report_cmd._colours(30)
    assert len({tuple(round(x, 3) for x in c) for c in colours}) == 30
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| 30 | t29 |" in md


def test_place_all_moves_a_gif_and_its_summary_together_or_not_at_all(tmp_path, monkeypatch):
    """render's two files: if the second move fails, the first new file is taken back out
    and both old files are restored (no GIF newer than its summary)."""
    gif, js = tmp_path / "r.gif", tmp_path / "r.json"
    gif.write_text("old gif")
    js.write_text("old json")
    stage = tmp_path / ".stage"
    stage.mkdir()
    (stage / "r.gif").write_text("new gif")
    (stage / "r.json").write_text("new json")
    real = Path.rename

    def flaky(self, target):
        if self == stage / "r.json":
            raise OSError(errno.EIO, "I/O error")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(OSError):
        store.place_all([(stage / "r.gif", gif), (stage / "r.json", js)])
    assert gif.read_text() == "old gif" and js.read_text() == "old json"
    assert _leftovers(tmp_path) == []
    monkeypatch.setattr(Path, "rename", real)
    (stage / "r.gif").write_text("new gif")
    store.place_all([(stage / "r.gif", gif), (stage / "r.json", js)])
    assert gif.read_text() == "new gif" and js.read_text() == "new json"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["export", "report", "render", "train-teacher"])
def test_an_empty_out_is_refused_not_taken_for_the_default(runs, command, tmp_path,
                                                             monkeypatch):
    """`--out ''` (an unset shell variable) used to mean the default dir for export and
    report, and `.` for train-teacher."""
    monkeypatch.chdir(tmp_path)
    args = [command, "--out", ""] if command == "train-teacher" else \
        [command, str(runs / "lin"), "--out", ""]
    assert "--out is empty" in one_line_error(args)
    assert list(tmp_path.iterdir()) == []
