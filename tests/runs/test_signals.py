"""SIGINT/SIGTERM at several moments of real subprocesses, sent from Python: exit 130 and
one line on stderr every time, never exit 0 or a crash, and a run dir distillq can clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY_TEACHER

from distillq import config
from distillq.runs import store

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]


def _start(args, env=None):
    return subprocess.Popen(EXE + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _stopped(proc, sig) -> tuple[str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)       # a hang fails here
    assert proc.returncode == 130, (proc.returncode, err[-2000:])
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("distillq: interrupted ("), err[-2000:]
    assert out == "" and "Traceback" not in err
    return out, lines[0]


def _wait(cond, proc, timeout=120):
    t = time.time()
    while not cond():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t < timeout, "condition not reached"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("sig")
    p = d / "t.toml"
    p.write_text(config.to_toml(config.build(config.TeacherConfig, {**TINY_TEACHER,
                                                                    "seeds": 2})))
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up(tmp_path, cfg, sig):
    """Before any run dir exists (imports): one line, 130, nothing left behind."""
    out = tmp_path / "run"
    proc = _start(["train-teacher", "-c", str(cfg), "--out", str(out), "-q"])
    time.sleep(0.4)
    _stopped(proc, sig)
    assert not out.exists() or store.is_run_dir(out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_compilation_leaves_a_run_dir_force_can_reuse(tmp_path, cfg, sig):
    """The run dir exists, no chunk has run (an empty compilation cache makes compilation
    long): the dir is marked interrupted, the line says so, and --force reuses it."""
    out = tmp_path / "run"
    env = {"DISTILLQ_CACHE_DIR": str(tmp_path / "empty-cache")}
    proc = _start(["train-teacher", "-c", str(cfg), "--out", str(out), "-q"], env)
    _wait((out / "meta.json").exists, proc)
    assert not (out / "metrics.jsonl").exists()
    _, line = _stopped(proc, sig)
    assert "nothing to resume" in line and "--force" in line
    meta = json.loads((out / "meta.json").read_text())
    assert meta["status"] == "interrupted" and not store.is_locked(out)
    p = subprocess.run(EXE + ["train-teacher", "-c", str(cfg), "--out", str(out), "-q"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "already exists" in p.stderr        # never silently replaced
    p = subprocess.run(EXE + ["train-teacher", "-c", str(cfg), "--out", str(out), "-q",
                              "--force"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((out / "meta.json").read_text())["status"] == "complete"


def test_signal_during_a_long_evaluation(teacher_run):
    """evaluate --episodes 5000000 runs in chunks: a signal ends it promptly, exit 130, no
    JSON on stdout."""
    proc = _start(["evaluate", str(teacher_run[0]), "--episodes", "5000000"])
    time.sleep(6)
    assert proc.poll() is None, "the evaluation ended before the signal"
    t = time.time()
    _stopped(proc, signal.SIGINT)
    assert time.time() - t < 30


def test_a_dir_holding_only_the_lock_is_replaceable(tmp_path, cfg):
    """A run stopped between creating its dir and writing meta.json leaves only `.lock`:
    --force replaces it, and a dir with anything else stays refused."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("123")
    assert store.is_run_dir(out)
    p = subprocess.run(EXE + ["train-teacher", "-c", str(cfg), "--out", str(out), "-q",
                              "--force"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    other = tmp_path / "mine"
    other.mkdir()
    (other / ".lock").write_text("")
    (other / "notes.txt").write_text("precious")
    p = subprocess.run(EXE + ["train-teacher", "-c", str(cfg), "--out", str(other), "-q",
                              "--force"], capture_output=True, text=True)
    assert p.returncode == 2 and "not a distillq run dir" in p.stderr
    assert (other / "notes.txt").read_text() == "precious"
    assert Path(other).exists()
