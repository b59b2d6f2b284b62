"""A PQN teacher through the CLI: trained, distilled into MLP, linear and CNN students, resumed
bit-identically after SIGTERM, and `--algo` refused in one line where it cannot run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import one_line_error

from distillq.runs import store

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]
TINY = ["--algo", "pqn", "--num-envs", "8", "--set", "pqn_steps=8", "--set",
        "pqn_minibatches=2", "--set", "chunk_steps=32", "--set", "eval_episodes=2", "--set",
        "final_episodes=4", "--seeds", "2", "-q"]
STUDENT = ["--set", "num_envs=4", "--set", "chunk_steps=32", "--set", "eval_episodes=2",
           "--set", "final_episodes=4", "--set", "learning_starts=64", "--set",
           "buffer_size=512", "--set", "batch_size=32", "--steps", "512", "-q"]


def _run(args, stdin=None, env=None):
    p = subprocess.run(EXE + args, input=stdin, capture_output=True, text=True, timeout=600,
                       env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.fixture(scope="module")
def pqn_teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("pqn")
    out = json.loads(_run(["train-teacher", *TINY, "--steps", "2560", "--out",
                           str(d / "cart")]))
    return d, out


def test_a_pqn_teacher_distils_into_mlp_and_linear_students(pqn_teacher):
    d, t = pqn_teacher
    assert t["algo"] == "pqn" and t["network"]["layer_norm"]
    meta = store.read_meta(d / "cart")
    assert meta["algo"] == "pqn" and meta["config"]["algo"] == "pqn"
    assert t["env_steps_per_seed"] == 2560 and t["updates_per_seed"] == 40 * 2 * 2
    for student in ("16", "linear"):
        s = _run(["distill", "--student", student, *STUDENT, "--out", str(d / student)],
                 stdin=json.dumps(t))
        ev = json.loads(_run(["evaluate", "--episodes", "4"], stdin=s))
        assert len(ev["results"]) == 2                    # the student and its PQN teacher
        res = ev["results"][0]
        assert res["teacher"] == [str((d / "cart").resolve())]
        assert "retention" in res["evaluation"]["overall"]


def test_a_minatar_pqn_teacher_teaches_a_cnn_student(tmp_path):
    t = _run(["train-teacher", "--env", "Breakout-MinAtar", "--hidden", "cnn:4,16+ln", *TINY,
              "--steps", "1024", "--out", str(tmp_path / "cnn")])
    assert json.loads(t)["network"]["type"] == "cnn"
    s = json.loads(_run(["distill", "--student", "cnn:2,8", *STUDENT, "--out",
                         str(tmp_path / "s")], stdin=t))
    assert s["network"]["type"] == "cnn" and "layer_norm" not in s["network"]
    assert np.isfinite(s["evaluation"]["overall"]["mean"])


@pytest.mark.parametrize("length", ["short", "long"])
def test_pqn_sigterm_resume_is_bit_identical(pqn_teacher, tmp_path, length):
    """Interrupted after a few chunks, then resumed: the same params as one uninterrupted
    run of the same config. "long": counted as a long run (DISTILLQ_LONG_RUN_ROWS=1), so
    XLA's default flags and, with 2 seeds on 2+ cores, 2 host devices with the seeds sharded;
    the resumed part must take the same."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "DISTILLQ_SHARD")}
    if length == "long":
        env["DISTILLQ_LONG_RUN_ROWS"] = "1"
    args = ["train-teacher", *TINY, "--steps", "20480", "--set", "checkpoint_secs=0"]
    _run([*args, "--out", str(tmp_path / "ref")], env=env)
    ref_meta = json.loads((tmp_path / "ref" / "meta.json").read_text())
    assert ref_meta["xla_flags"].startswith("default" if length == "long" else "compile-speed")
    from distillq import _setup

    assert ref_meta["devices"] == (_setup.host_devices(2) if length == "long" else 1)
    run = tmp_path / "int"
    proc = subprocess.Popen(EXE + [*args, "--out", str(run)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t = time.time()
    rows = run / "metrics.jsonl"
    while not (rows.exists() and len(rows.read_text().splitlines()) >= 6):
        assert proc.poll() is None and time.time() - t < 300, proc.communicate()[1][-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    meta = store.read_meta(run)
    assert meta["status"] == "interrupted" and meta["resume"]["env_steps_per_seed"] % 256 == 0
    res = json.loads(_run(["train-teacher", "--resume", str(run), "-q"], env=env))
    assert store.read_meta(run)["xla_flags"] == ref_meta["xla_flags"]
    assert store.read_meta(run)["devices"] == ref_meta["devices"]
    assert res["chunks_run"] < json.loads((tmp_path / "ref" / "meta.json").read_text())[
        "train"]["chunks_run"]
    import jax

    for a, b in zip(jax.tree.leaves(store.load_run(tmp_path / "ref").params),
                    jax.tree.leaves(store.load_run(run).params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_algo_refusals_are_one_line():
    assert "algo: must be one of dqn, pqn; got 'ppo'" in one_line_error(
        ["train-teacher", "--algo", "ppo"])
    assert "must split into pqn_minibatches" in one_line_error(
        ["train-teacher", "--algo", "pqn", "--set", "pqn_minibatches=7"])
    assert "takes no other options (got --algo)" in one_line_error(
        ["train-teacher", "--resume", "runs/x", "--algo", "pqn"])
    assert "no such option" in one_line_error(["distill", "--algo", "pqn"]).lower()
    assert "budget: must be one of target, long; got 'huge'" in one_line_error(
        ["train-teacher", "--budget", "huge"])
    assert "takes no other options (got --budget)" in one_line_error(
        ["train-teacher", "--resume", "runs/x", "--budget", "long"])
