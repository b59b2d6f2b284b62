"""XLA flags chosen by run length (distillq/_setup.py), in fresh processes: jax reads
XLA_FLAGS once, when its backend starts."""

from __future__ import annotations

import os
import subprocess
import sys

from distillq import _setup, config

PROBE = ("import os, sys; from distillq import _setup; "
         "_setup.configure(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]); "
         "import jax, jax.numpy as jnp; jnp.ones(2).sum(); "
         "print(_setup.xla_flags(), len(jax.local_devices()), sep='|')")


def _run(rows: int, seeds: int = 1, network: str = "64,64+ln", **env) -> tuple[str, int]:
    e = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "DISTILLQ_SHARD")}
    out = subprocess.run([sys.executable, "-c", PROBE, str(rows), str(seeds), network],
                         capture_output=True, text=True, check=True, env={**e, **env}).stdout
    flags, devices = out.strip().rsplit("|", 1)
    return flags, int(devices)


def _flags(rows: int, **env) -> str:
    return _run(rows, **env)[0]


def test_a_short_run_compiles_for_speed_a_long_one_keeps_xla_defaults():
    assert _flags(0) == "compile-speed"
    assert _flags(_setup.LONG_RUN_ROWS - 1) == "compile-speed"
    assert _flags(_setup.LONG_RUN_ROWS) == "default"
    assert _flags(_setup.LONG_RUN_ROWS, XLA_FLAGS="--xla_cpu_enable_fast_math=false") == \
        "--xla_cpu_enable_fast_math=false"          # the user's own flags are never replaced


def test_a_long_run_of_several_seeds_gets_a_host_device_per_core_they_split_over():
    long = _setup.LONG_RUN_ROWS
    k = _setup.host_devices(4)          # 2 on a 2-core machine (CI), 1 on one core
    assert 1 <= k <= 4 and 4 % k == 0
    want = f"default, {k} host devices" if k > 1 else "default"
    assert _run(long, 4) == (want, k)
    assert _run(long, 4, DISTILLQ_SHARD="0") == ("default", 1)     # sharding off: one device
    assert _run(long, 1) == ("default", 1)          # one seed keeps one device (faster)
    assert _run(long, 4, "256,256") == ("default", 1)   # wide layers use both cores already
    assert _run(long, 4, "cnn") == ("default", 1)
    assert _run(long, 4, "linear") == (want, k)
    assert _run(0, 4) == ("compile-speed", 1)       # a short run: compilation dominates
    assert _setup.host_devices(3) in (1, 3) and _setup.host_devices(1) == 1
    assert [_setup.narrow(n) for n in ("64,64+ln", "128,64", "128", "linear", "129,8",
                                       "256,256+ln", "cnn", "cnn:8,64+ln")] == \
        [True, True, True, True, False, False, False, False]


def test_run_length_counts_every_seed_update_and_sample():
    """update_rows = seeds x updates x rows per update (DQN: batch; PQN: a minibatch)."""
    c = config.build(config.TeacherConfig, {"seeds": 2, "num_envs": 4, "total_steps": 4000,
                                            "learning_starts": 400, "batch_size": 32,
                                            "updates_per_step": 2})
    assert c.update_rows == 2 * (1000 - 100) * 2 * 32
    p = config.build(config.TeacherConfig, {"algo": "pqn", "seeds": 3, "num_envs": 8,
                                            "pqn_steps": 4, "pqn_minibatches": 2,
                                            "pqn_epochs": 3, "total_steps": 3200,
                                            "learning_starts": 0})
    assert p.update_rows == 3 * 100 * 6 * 16
    # the defaults: CartPole and Acrobot compile for speed, MountainCar and MinAtar do not
    long = {e: _setup.long_run(config.load("teacher", None, {"env": e}).update_rows)
             for e in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Breakout-MinAtar")}
    assert long == {"CartPole-v1": False, "Acrobot-v1": False, "MountainCar-v0": True,
                     "Breakout-MinAtar": True}
