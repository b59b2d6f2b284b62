"""Interrupt real subprocesses mid-run, resume, and compare with an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_DISTILL, TINY_TEACHER

from distillq import config
from distillq.runs import store

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]
LONG = {**TINY_TEACHER, "seeds": 2, "total_steps": 30_000, "stop_return": None,
        "chunk_steps": 32, "checkpoint_secs": 0.0}


def _cfg_file(tmp: Path, name: str, kind: str, values: dict) -> Path:
    cls = config.CONFIGS[kind]
    p = tmp / name
    p.write_text(config.to_toml(config.build(cls, values)))
    return p


def _params(run: Path):
    import jax

    return jax.tree.leaves(store.load_run(run).params)


def _assert_identical(a: Path, b: Path) -> None:
    pa, pb = _params(a), _params(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)


def _start(args):
    return subprocess.Popen(EXE + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_rows(run: Path, rows: int, proc, timeout: float = 120) -> None:
    t = time.time()
    m = run / "metrics.jsonl"
    while time.time() - t < timeout:
        if m.exists() and len(m.read_text().splitlines()) >= rows:
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    raise AssertionError("run produced no metrics in time")


def _run(args):
    p = subprocess.run(EXE + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


CHUNKS = LONG["total_steps"] // (LONG["num_envs"] * LONG["chunk_steps"])   # 234 + 1 partial


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    cfg = _cfg_file(d, "t.toml", "teacher", LONG)
    ref = _run(["train-teacher", "-c", str(cfg), "--out", str(d / "ref"), "-q"])
    assert ref["chunks_run"] in (CHUNKS, CHUNKS + 1)
    return d, cfg


def _chunks_done(run: Path) -> int:
    """Chunks held by the run's full-state store."""
    return store.state_step(run) // LONG["chunk_steps"]


def _stderr_reader(proc):
    """Collect a running process's stderr lines on a thread (so we can wait for one)."""
    import threading

    lines: list[str] = []
    t = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                         daemon=True)
    t.start()
    return lines, t


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_is_bit_identical(reference, sig):
    d, cfg = reference
    run = d / f"int-{sig.name}"
    proc = _start(["train-teacher", "-c", str(cfg), "--out", str(run), "-q"])
    _wait_rows(run, 6, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"resume with: distillq train-teacher --resume {run}" in err
    assert out == "" and "Traceback" not in err
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted" and store.has_state(run)
    assert not store.is_locked(run)
    done = meta["resume"]["env_steps_per_seed"]
    assert 0 < done < LONG["total_steps"]
    chunks_done = _chunks_done(run)
    assert chunks_done * LONG["num_envs"] * LONG["chunk_steps"] == done
    ref_chunks = json.loads((d / "ref" / "meta.json").read_text())["train"]["chunks_run"]
    res = _run(["train-teacher", "--resume", str(run), "-q"])
    assert res["run_dir"] == str(run)
    # it continued: this process ran only the chunks that were left
    assert res["chunks_run"] == ref_chunks - chunks_done and res["chunks_run"] < ref_chunks
    _assert_identical(d / "ref", run)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ref_rows = (d / "ref" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len(ref_rows)                 # no chunk lost or duplicated
    assert not (run / "state").exists()               # full state dropped once complete


def test_kill_9_loses_at_most_one_period(reference):
    d, _ = reference
    cfg = _cfg_file(d, "t9.toml", "teacher", {**LONG, "checkpoint_secs": 1e-6})
    run = d / "kill9"
    proc = _start(["train-teacher", "-c", str(cfg), "--out", str(run), "-q"])
    _wait_rows(run, 10, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "running" and not store.is_locked(run)
    with pytest.raises(Exception, match="not complete"):
        store.load_run(run)
    # a checkpoint every chunk (checkpoint_secs ~ 0): at most the chunk in flight is lost
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    finished = max(r["chunk"] for r in rows) + 1
    saved = _chunks_done(run)
    assert finished - 1 <= saved <= finished, (saved, finished)
    res = _run(["train-teacher", "--resume", str(run), "-q"])
    ref_chunks = json.loads((d / "ref" / "meta.json").read_text())["train"]["chunks_run"]
    assert res["chunks_run"] == ref_chunks - saved
    _assert_identical(d / "ref", run)


@pytest.mark.parametrize("extra", [{}, {"inits": 2, "obs_norm": "teacher",
                                        "obs_norm_steps": 256}], ids=["plain", "inits-scaled"])
def test_distill_sigterm_resume_bit_identical(reference, tmp_path, extra):
    """Also with 2 initialisations per student and inputs scaled by the teachers' states:
    the resumed run keeps the scaling and chooses the same students."""
    d, _ = reference
    dcfg = _cfg_file(tmp_path, "d.toml", "distill",
                     {**TINY_DISTILL, "total_steps": 40_000, "chunk_steps": 16,
                      "checkpoint_secs": 0.0, **extra})
    _run(["distill", "-c", str(dcfg), "--teacher", str(d / "ref"), "--out",
          str(tmp_path / "ref"), "-q"])
    run = tmp_path / "int"
    proc = _start(["distill", "-c", str(dcfg), "--teacher", str(d / "ref"), "--out", str(run),
                   "-q"])
    _wait_rows(run, 6, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "distillq distill --resume" in err
    _run(["distill", "--resume", str(run), "-q"])
    _assert_identical(tmp_path / "ref", run)
    a, b = store.read_meta(tmp_path / "ref"), store.read_meta(run)
    assert a["network"] == b["network"]
    if extra:
        assert "input_norm" in b["network"]
        assert a["inits"]["per_seed"] == b["inits"]["per_seed"]


def test_same_config_identical_across_processes(reference, tmp_path):
    d, _ = reference
    cfg = _cfg_file(tmp_path, "s.toml", "teacher", {**TINY_TEACHER, "seeds": 2})
    a = _run(["train-teacher", "-c", str(cfg), "--out", str(tmp_path / "a"), "-q"])
    b = _run(["train-teacher", "-c", str(cfg), "--out", str(tmp_path / "b"), "-q"])
    assert a["evaluation"] == b["evaluation"]
    _assert_identical(tmp_path / "a", tmp_path / "b")


def test_resume_refusals(reference, tmp_path):
    d, _ = reference

    def bad(args):
        p = subprocess.run(EXE + args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert p.returncode == 2, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
        return p.stderr

    assert "already complete" in bad(["train-teacher", "--resume", str(d / "ref")])
    assert "takes no other options" in bad(["train-teacher", "--resume", str(d / "ref"),
                                            "--seeds", "3"])
    assert "resume it with `distillq train-teacher" in bad(["distill", "--resume",
                                                            str(d / "ref")])
    assert "run dir not found" in bad(["distill", "--resume", str(tmp_path / "none")])


def test_repeated_sigint_still_checkpoints(reference, tmp_path):
    """A second Ctrl-C, sent once the first is acknowledged on stderr, must not lose the
    interrupted state: the run still checkpoints and resumes bit-identically."""
    d, cfg = reference
    run = tmp_path / "twice"
    proc = _start(["train-teacher", "-c", str(cfg), "--out", str(run), "-q"])
    lines, reader = _stderr_reader(proc)
    _wait_rows(run, 6, proc)
    proc.send_signal(signal.SIGINT)
    t = time.time()
    while not any("finishing the current chunk" in x for x in lines):
        assert time.time() - t < 60 and proc.poll() is None, "".join(lines)[-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(lines)
    assert proc.returncode == 130, err[-2000:]
    assert "still finishing the current chunk" in err or "resume with" in err
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted" and store.has_state(run)
    _run(["train-teacher", "--resume", str(run), "-q"])
    _assert_identical(d / "ref", run)
