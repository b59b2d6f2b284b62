"""MinAtar through the CLI: sticky actions as a robustness shift and a multi-task student over
two games' frames (channels padded), with their refusals. Its own file for a second worker."""

from __future__ import annotations

import json

import pytest
from test_cli import _bad, run

pytestmark = pytest.mark.slow

TINY = ["--set", "learning_starts=128", "--set", "chunk_steps=32", "--set", "eval_episodes=2",
        "--set", "final_episodes=3", "--set", "batch_size=32", "--set", "buffer_size=512",
        "--set", "num_envs=4", "-q"]


def _teacher(tmp_path, game: str) -> str:
    return json.loads(run(["train-teacher", "--env", game, "--algo", "dqn", "--hidden", "8",
                           "--seeds", "2", "--steps", "1024", "--out", str(tmp_path / game),
                           *TINY]).stdout)["run_dir"]


def test_sticky_shift_and_padded_multitask(tmp_path):
    breakout = _teacher(tmp_path, "Breakout-MinAtar")
    invaders = _teacher(tmp_path, "SpaceInvaders-MinAtar")
    # sticky actions: a shift of evaluate; sticky = 0 is the plain evaluation
    ev = json.loads(run(["evaluate", breakout, "--episodes", "4", "--env-param",
                         "sticky=0,1"]).stdout)["results"][0]
    shifts = ev["robustness"]["shifts"]
    assert [s["env_params"] for s in shifts] == [{"sticky": 0.0}, {"sticky": 1.0}]
    assert shifts[0]["evaluation"]["per_seed"] == ev["evaluation"]["per_seed"]
    assert "between 0 and 1" in _bad(["evaluate", breakout, "--env-param", "sticky=-0.1"])
    # one student for two games: 4 and 6 channels padded to 6, one head per game
    s = json.loads(run(["distill", "--multitask", "--teacher", breakout, "--teacher", invaders,
                        "--student", "8", "--steps", "512", "--out", str(tmp_path / "mt"),
                        *TINY]).stdout)
    assert s["network"]["channels"] == 6 and s["network"]["in_dim"] == 602
    assert s["params"] == (602 * 8 + 8) + (8 * 3 + 3) + (8 * 4 + 4)
    mt = json.loads(run(["evaluate", str(tmp_path / "mt"), "--episodes", "2"]).stdout)
    envs = [b["env"] for b in mt["results"][0]["evaluation"]["per_env"]]
    assert envs == ["Breakout-MinAtar", "SpaceInvaders-MinAtar"]
    # a CNN trunk is refused for multi-task students: one line, exit 2, nothing written
    assert "shared trunk is an MLP" in _bad(["distill", "--multitask", "--teacher", breakout,
                                             "--teacher", invaders, "--student", "cnn:4,8",
                                             "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
