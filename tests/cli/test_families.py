"""Network families end to end through the CLI: a CNN teacher on MinAtar taught to MLP and
linear students, a linear CartPole student. Its own file, so that a second test worker can
take it (make test runs one file per worker)."""

from __future__ import annotations

import json

import pytest
from test_cli import _bad, run

pytestmark = pytest.mark.slow


def test_network_families_through_the_cli(tmp_path):
    """A CNN teacher on a MinAtar env, an MLP and a linear student of it (features flattened
    across families), and a linear CartPole student: trained, evaluated, reported, and their
    checkpoints validated against their specs."""
    tiny = ["--set", "learning_starts=128", "--set", "chunk_steps=32", "--set",
            "eval_episodes=2", "--set", "final_episodes=3", "--set", "batch_size=32",
            "--num-envs", "4", "-q"]
    dtiny = [x for x in tiny if x not in ("--num-envs", "4")] + ["--set", "num_envs=4",
                                                                   "--set", "buffer_size=512"]
    t = json.loads(run(["train-teacher", "--env", "Breakout-MinAtar", "--hidden", "cnn:4,16",
                        "--seeds", "2", "--steps", "1024", "--set", "buffer_size=512",
                        "--out", str(tmp_path / "cnn"), *tiny]).stdout)
    assert t["network"]["type"] == "cnn" and t["network"]["obs_shape"] == [10, 10, 4]
    # conv 3x3x4x4 + 4, dense (8*8*4)x16 + 16, q 16x3 + 3
    assert t["params"] == (36 * 4 + 4) + (256 * 16 + 16) + (16 * 3 + 3)
    mlp = json.loads(run(["distill", "--teacher", str(tmp_path / "cnn"), "--student", "8",
                          "--loss", "kl", "--loss", "feature=0.5", "--loss", "rkd_distance",
                          "--steps", "512", "--out", str(tmp_path / "mlp"), *dtiny]).stdout)
    assert mlp["network"]["type"] == "mlp" and mlp["teacher_params"] == t["params"]
    assert mlp["params"] == (400 * 8 + 8) + (8 * 3 + 3)
    lin = run(["distill", "--teacher", str(tmp_path / "cnn"), "--student", "linear",
               "--steps", "512", "--out", str(tmp_path / "lin"), *dtiny])
    ev = json.loads(run(["evaluate", "--episodes", "2"], stdin=lin.stdout).stdout)
    res, teacher = ev["results"]                       # the piped student, then its teacher
    assert teacher["network"]["type"] == "cnn"
    assert res["params"] == 400 * 3 + 3 and res["network"]["type"] == "linear"
    assert 0 <= res["evaluation"]["overall"]["fidelity"] <= 1
    rep = json.loads(run(["report", str(tmp_path / "mlp"), str(tmp_path / "lin"), "--out",
                          str(tmp_path / "rep")]).stdout)
    assert len(rep["runs"]) == 3
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "cnn:4,16" in md and "| linear |" in md and "| 8 |" in md
    # a CartPole linear student has exactly |obs|·|A| + |A| parameters
    ct = json.loads(run(["train-teacher", "--steps", "1024", "--seeds", "1", "--set",
                         "buffer_size=512", "--out", str(tmp_path / "cp"), *tiny]).stdout)
    cl = json.loads(run(["distill", "--teacher", ct["run_dir"], "--student", "linear",
                         "--steps", "512", "--out", str(tmp_path / "cl"), *dtiny]).stdout)
    assert cl["params"] == 4 * 2 + 2
    # a CNN needs image observations: one line, exit 2, no run dir
    assert "needs image observations" in _bad(["distill", "--teacher", ct["run_dir"],
                                               "--student", "cnn", "--out",
                                               str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
    # params swapped for another family's: the spec check refuses them
    import shutil

    shutil.rmtree(tmp_path / "lin" / "params")
    shutil.copytree(tmp_path / "mlp" / "params", tmp_path / "lin" / "params")
    assert "digest differs" in _bad(["evaluate", str(tmp_path / "lin")])
    meta = json.loads((tmp_path / "lin" / "meta.json").read_text())
    del meta["params_digest"]          # as a run from before digests: the spec check remains
    (tmp_path / "lin" / "meta.json").write_text(json.dumps(meta))
    assert "params do not match the network spec" in _bad(["evaluate", str(tmp_path / "lin")])
