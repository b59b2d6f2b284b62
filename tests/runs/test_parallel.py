"""Seeds sharded over 2 (virtual CPU) devices, and 2 processes through jax.distributed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_TEACHER

from distillq import _setup, config
from distillq.runs import store

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]
CFG = {**TINY_TEACHER, "seeds": 4, "stop_return": None}


def _env(**extra):
    env = dict(os.environ)
    env.update(extra)
    return env


def _cfg(tmp, **over):
    p = tmp / "t.toml"
    p.write_text(config.to_toml(config.build(config.TeacherConfig, {**CFG, **over})))
    return p


def _run(args, env=None):
    p = subprocess.run(EXE + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       env=env or _env(), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def _leaves(run):
    import jax

    return jax.tree.leaves(store.load_run(run).params)


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """Unsharded reference runs of the same seed groups a device or process gets: 0-1, 2-3."""
    d = tmp_path_factory.mktemp("groups")
    for first in (0, 2):
        cfg = _cfg(d, seeds=2, seed=first)
        _run(["train-teacher", "-c", str(cfg), "--out", str(d / f"g{first}"), "-q"],
             env=_env(DISTILLQ_SHARD="0"))
    return d


def _assert_matches_groups(run, groups):
    """Equal up to float rounding: XLA compiles a different program for a partitioned or
    differently batched computation, so sums may round differently (~1e-7 here)."""
    got = _leaves(run)
    ref = [np.concatenate([a, b]) for a, b in zip(_leaves(groups / "g0"),
                                                   _leaves(groups / "g2"), strict=True)]
    for x, y in zip(got, ref, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    ev = json.loads((run / "meta.json").read_text())["evaluation"]["per_seed"]
    ref_ev = [p for g in ("g0", "g2")
              for p in json.loads((groups / g / "meta.json").read_text())["evaluation"]["per_seed"]]
    assert [p["seed"] for p in ev] == [p["seed"] for p in ref_ev]


def test_seeds_sharded_over_two_devices_equal_unsharded_groups(groups, tmp_path):
    env = _env(XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {_setup.CPU_XLA_FLAGS}")
    out = _run(["train-teacher", "-c", str(_cfg(tmp_path)), "--out", str(tmp_path / "sh"), "-q"],
               env=env)
    meta = json.loads((tmp_path / "sh" / "meta.json").read_text())
    assert meta["devices"] == 2 and out["seeds"] == [0, 1, 2, 3]
    _assert_matches_groups(tmp_path / "sh", groups)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_gather_into_one_run_dir(groups, tmp_path):
    cfg = _cfg(tmp_path)
    port = _free_port()
    procs = [subprocess.Popen(
        EXE + ["train-teacher", "-c", str(cfg), "--out", str(tmp_path / "mh"), "-q",
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
               "--process-id", str(i)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(DISTILLQ_SHARD="0")) for i in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    main, worker = (json.loads(o) for o, _ in outs)
    assert main["kind"] == "teacher" and main["seeds"] == [0, 1, 2, 3]
    assert len(main["evaluation"]["per_seed"]) == 4
    assert worker["kind"] == "teacher-worker" and worker["seeds"] == [2, 3]
    assert worker["run_dir"] == str(tmp_path / "mh")
    meta = json.loads((tmp_path / "mh" / "meta.json").read_text())
    assert meta["processes"] == 2 and meta["status"] == "complete"
    rows = [json.loads(x) for x in (tmp_path / "mh" / "metrics.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in rows} == {0, 1, 2, 3}
    _assert_matches_groups(tmp_path / "mh", groups)


def test_incomplete_distributed_flags_are_a_usage_error(tmp_path):
    p = subprocess.run(EXE + ["train-teacher", "--coordinator", "127.0.0.1:1"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert p.returncode == 2 and "need --coordinator, --num-processes and --process-id" in p.stderr


def test_multi_process_interrupt_resumes_on_one_host(tmp_path):
    """SIGINT to one process stops both (agreed at the chunk boundary); process 0 writes the
    gathered full state; `--resume` continues it in a single process."""
    import signal
    import time

    cfg = _cfg(tmp_path, total_steps=200_000, chunk_steps=32)
    port = _free_port()
    run = tmp_path / "mhi"
    procs = [subprocess.Popen(
        EXE + ["train-teacher", "-c", str(cfg), "--out", str(run), "-q",
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
               "--process-id", str(i)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(DISTILLQ_SHARD="0")) for i in (0, 1)]
    t = time.time()
    while time.time() - t < 300:
        m = run / "metrics.jsonl"
        if m.exists() and len(m.read_text().splitlines()) >= 8:
            break
        assert all(p.poll() is None for p in procs)
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGINT)
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [130, 130], [e[-1500:] for _, e in outs]
    for _, err in outs:
        assert f"resume with: distillq train-teacher --resume {run}" in err
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "interrupted" and store.has_state(run)
    res = _run(["train-teacher", "--resume", str(run), "-q"])
    assert res["seeds"] == [0, 1, 2, 3] and len(res["evaluation"]["per_seed"]) == 4
