"""Students as teachers: chains (teacher -> assistant -> student), born-again students, the
lineage in meta.json, retention against the original teacher, and sweep runs as teachers."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from helpers import tiny_distill

from distillq.commands import distill as distill_cmd
from distillq.commands import evaluate as evaluate_cmd
from distillq.errors import RunDirError
from distillq.runs import store, summaries, teachers


@pytest.fixture(scope="module")
def chain(teacher_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    t_dir, t_sum = teacher_run
    a = distill_cmd.run(tiny_distill(network="16"), str(t_dir), out=str(d / "assistant"),
                         show_progress=False)
    s = distill_cmd.run(tiny_distill(network="4"), a["run_dir"], out=str(d / "student"),
                         show_progress=False)
    return d, t_sum, a, s


def test_a_student_teaches_and_the_lineage_is_recorded(chain, teacher_run):
    d, t_sum, a, s = chain
    meta = json.loads((d / "student" / "meta.json").read_text())
    assert [x["kind"] for x in meta["lineage"]] == ["student", "teacher"]
    direct, original = meta["lineage"]
    assert direct["run_dir"] == str((d / "assistant").resolve())
    assert original["run_dir"] == str(teacher_run[0].resolve())
    assert direct["params"] == a["params"] == 4 * 16 + 16 + 16 * 2 + 2
    assert original["params"] == t_sum["params"]
    assert direct["mean_return"] == a["evaluation"]["overall"]["mean"]
    assert original["mean_return"] == t_sum["evaluation"]["overall"]["mean"]
    assert direct["params_digest"] == json.loads((d / "assistant" / "meta.json").read_text())[
        "params_digest"]
    assert s["teacher_params"] == a["params"] and s["lineage"] == meta["lineage"]
    # the assistant's own lineage is one step: its teacher
    a_meta = json.loads((d / "assistant" / "meta.json").read_text())
    assert [x["kind"] for x in a_meta["lineage"]] == ["teacher"]


def test_the_student_learns_from_the_assistant_not_the_original(chain):
    """Its in-run comparison (teacher_mean) is the assistant's return on the same episodes."""
    d, _, a, s = chain
    ev = evaluate_cmd.run([str(d / "student")], episodes=4)["results"][0]
    assert ev["teacher"] == [str(d / "assistant")] and ev["teacher_params"] == a["params"]
    ev_a = evaluate_cmd.run([str(d / "assistant")], episodes=4,
                                  with_teacher=False)["results"][0]
    np.testing.assert_allclose([r["teacher_mean"] for r in ev["evaluation"]["per_seed"]],
                               [r["mean"] for r in ev_a["evaluation"]["per_seed"]])


def test_evaluate_reports_retention_against_the_original_teacher(chain):
    d, t_sum, _, _ = chain
    ev = evaluate_cmd.run([str(d / "student")], episodes=4)["results"][0]
    t0 = t_sum["evaluation"]["overall"]["mean"]
    assert ev["original_teacher_params"] == t_sum["params"]
    for row in [ev["evaluation"]["overall"], *ev["evaluation"]["per_seed"]]:
        want = summaries.normalised_retention(row["mean"], t0, row["random_mean"])
        assert row["retention_original"] == pytest.approx(want)
        assert row["retention"] == pytest.approx(summaries.normalised_retention(
            row["mean"], row["teacher_mean"], row["random_mean"]))
    # a one-step student has no original teacher apart from its teacher
    ev_a = evaluate_cmd.run([str(d / "assistant")], episodes=4)["results"][0]
    assert "retention_original" not in ev_a["evaluation"]["overall"]


def test_born_again_student_the_size_of_its_teacher(teacher_run, tmp_path):
    t_dir, t_sum = teacher_run
    net = ",".join(str(h) for h in t_sum["network"]["hidden"])
    s = distill_cmd.run(tiny_distill(network=net), str(t_dir), out=str(tmp_path / "ba"),
                         show_progress=False)
    assert s["params"] == s["teacher_params"] == t_sum["params"]


@pytest.fixture(scope="module")
def sweep(teacher_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    return distill_cmd.run(tiny_distill(temp=(1.0, 4.0), total_steps=256), str(teacher_run[0]),
                            out=str(d / "sweep"), show_progress=False)


def test_a_sweep_run_teaches_only_one_named_point(sweep, tmp_path):
    run = sweep["run_dir"]
    with pytest.raises(RunDirError, match=r"swept 2 points.*--teacher-point \(0: temp=1 .*; "
                       r"1: temp=4"):
        teachers.load_teachers([run])
    with pytest.raises(RunDirError, match="no point 2"):
        teachers.load_teachers([run], 2)
    full = store.load_run(run)
    for p in (0, 1):
        (view,) = teachers.load_teachers([run], p)
        idx = [i for i, q in enumerate(full.meta["point_index"]) if q == p]
        assert view.meta["seeds"] == [0, 1] == [full.meta["seeds"][i] for i in idx]
        for a, b in zip(jax.tree.leaves(view.params), jax.tree.leaves(full.params),
                        strict=True):
            np.testing.assert_array_equal(a, np.asarray(b)[idx])
        assert view.meta["evaluation"]["overall"] == full.meta["evaluation"]["per_point"][p]
    s = distill_cmd.run(tiny_distill(network="4", total_steps=256), run, teacher_point=1,
                         out=str(tmp_path / "from-point"), show_progress=False)
    meta = json.loads((tmp_path / "from-point" / "meta.json").read_text())
    assert meta["teacher"]["point"] == 1 and meta["lineage"][0]["point"] == 1
    assert meta["lineage"][0]["mean_return"] == sweep["evaluation"]["per_point"][1]["mean"]
    # evaluate and resume find the same point again
    ev = evaluate_cmd.run([s["run_dir"]], episodes=2)["results"][0]
    assert len(ev["evaluation"]["per_seed"]) == 2
    # a teacher run has no points to choose from
    with pytest.raises(RunDirError, match="has no sweep points"):
        teachers.load_teachers([str(tmp_path / "from-point")], 1)
