"""A non-editable install keeps its per-env defaults: the wheel ships configs/ as
distillq/configs (the top-level configs/ stays the source of truth), and the installed copy
trains MountainCar with MountainCar's tuned DQN (256-256, 1-step, gamma 0.98), not the
CartPole-tuned base defaults (128-64, 4-step, 0.99) it silently fell back to before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_lists_every_package_and_ships_the_configs(tmp_path):
    from setuptools import find_packages

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(py["packages"]) - {"distillq.configs"} == set(find_packages(
        str(ROOT), include=["distillq*"])), "a package is missing from pyproject's list"


def test_a_wheel_install_trains_mountain_car_with_its_tuned_defaults(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True,
                   timeout=600, capture_output=True)
    whl = next(wheels.glob("distillq-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(whl)], check=True, timeout=600, capture_output=True)
    assert (site / "distillq" / "configs" / "envs" / "MountainCar-v0.toml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DISTILLQ_DEBUG", None)
    where = subprocess.run([sys.executable, "-c", "import distillq.config as c; "
                            "print(c.__file__); print(c.CONFIG_DIR)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert all(x.startswith(str(site)) for x in where), where      # the installed copy
    p = subprocess.run([sys.executable, "-m", "distillq", "train-teacher", "--env",
                        "MountainCar-v0", "--steps", "1024", "--seeds", "1", "--out",
                        str(tmp_path / "t"), "-q", "--set", "learning_starts=256",
                        "--set", "eval_episodes=1", "--set", "final_episodes=2"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert meta["network"]["hidden"] == [256, 256]
    assert meta["config"]["n_step"] == 1 and meta["config"]["gamma"] == 0.98
