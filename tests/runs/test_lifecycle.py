"""The run lifecycle every training command shares: early stops on per-member thresholds,
meta.json's record, and the refusal to resume a training state of another layout."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_distill, tiny_teacher

from distillq.commands import distill, train
from distillq.errors import RunDirError
from distillq.runs import lifecycle, store


def test_ensemble_distill_with_stop_retention(teacher_run, tmp_path):
    cfg = tiny_distill(ensemble=True, stop_retention=0.01, total_steps=1024)
    out = distill.run(cfg, [str(teacher_run[0])], out=str(tmp_path / "s"),
                      show_progress=False)
    assert out["stopped_early"] and out["students"] == 2
    assert out["evaluation"]["per_seed"][0]["teacher_seed"] == "ensemble of 2"


def test_a_teacher_stops_once_every_seed_reaches_stop_return(tmp_path):
    """stop_return below any return: the first chunk's evaluation stops the run; the run is
    complete and records what it did."""
    out = train.run(tiny_teacher(stop_return=1.0, total_steps=4096), out=str(tmp_path / "t"),
                    show_progress=False)
    assert out["stopped_early"] and out["chunks_run"] == 1
    assert out["env_steps_per_seed"] == 64 * 4
    meta = store.read_meta(tmp_path / "t")
    assert meta["status"] == "complete" and meta["train"]["chunks_run"] == 1
    assert meta["state_format"] == store.STATE_FORMAT
    rows = [json.loads(x) for x in (tmp_path / "t" / store.METRICS).read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1] and all("eval_return" in r for r in rows)


def test_a_state_of_another_layout_is_refused_in_one_line(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    meta = store.base_meta("teacher", "CartPole-v1", {}, [0], {})
    store.write_meta(d, {**meta, "status": "interrupted", "distillq_version": "0.0.9"})
    (d / store.STATE / "64").mkdir(parents=True)
    with pytest.raises(RunDirError, match="interrupted by distillq 0.0.9"):
        lifecycle.reopen("teacher", str(d), lambda _m, _c: None)
