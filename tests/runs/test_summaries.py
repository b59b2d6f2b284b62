"""The numbers a run reports: normalised and raw retention, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from distillq.runs import summaries


def test_normalised_retention_hand_computed():
    # Acrobot-like negative returns: student -90, teacher -80, random -500
    assert summaries.normalised_retention(-90.0, -80.0, -500.0) == pytest.approx(410 / 420)
    # MountainCar-like floor: random = -200 (never reaches the goal)
    assert summaries.normalised_retention(-110.0, -100.0, -200.0) == pytest.approx(0.9)
    assert summaries.normalised_retention(500.0, 500.0, 22.0) == 1.0
    assert summaries.normalised_retention(22.0, 500.0, 22.0) == 0.0
    assert summaries.normalised_retention(5.0, 3.0, 3.0) is None     # teacher = random
    assert summaries.raw_retention(-90.0, -80.0, floor=-500.0) is None
    assert summaries.raw_retention(450.0, 500.0, floor=9.0) == 0.9


def test_student_evaluation_reports_normalised_and_raw_retention():
    meta = {"seeds": [0, 1], "teacher": {"seeds": [0, 1]}}
    final = {"returns": np.array([[-90.0, -90.0], [-200.0, -200.0]]),
             "teacher_returns": np.array([[-80.0, -80.0], [-100.0, -100.0]]),
             "random_returns": np.array([[-500.0, -500.0], [-200.0, -200.0]]),
             "agree": np.array([[3.0, 1.0], [0.0, 0.0]]),
             "lengths": np.array([[4.0, 4.0], [4.0, 4.0]])}
    ev = summaries.student_evaluation(meta, final)
    s0, s1 = ev["per_seed"]
    assert s0["retention"] == pytest.approx(410 / 420) and s1["retention"] == 0.0
    assert s0["retention_raw"] is None and s0["random_mean"] == -500.0
    assert ev["overall"]["retention_min"] == 0.0
    # overall: means over both seeds: S -145, T -90, R -350 -> 205 / 260
    assert ev["overall"]["retention"] == pytest.approx(205 / 260)
    assert s0["fidelity"] == 0.5 and ev["overall"]["fidelity"] == pytest.approx(4 / 16)


def test_every_episode_return_is_kept_per_seed():
    """Per-episode returns (the student's, its teacher's and a random policy's on the same
    episodes, in episode order) so that users can compute their own statistics."""
    meta = {"seeds": [3, 4], "teacher": {"seeds": [0, 1]}}
    final = {"returns": np.array([[1.0, 2.0, 9.0], [4.0, 5.0, 6.0]]),
             "teacher_returns": np.array([[7.0, 8.0, 9.0], [7.0, 7.0, 7.0]]),
             "random_returns": np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]),
             "agree": np.ones((2, 3)), "lengths": np.ones((2, 3))}
    ev = summaries.student_evaluation(meta, final)
    assert ev["per_seed"][0]["returns"] == [1.0, 2.0, 9.0]
    assert ev["per_seed"][1]["teacher_returns"] == [7.0, 7.0, 7.0]
    assert ev["per_seed"][1]["random_returns"] == [1.0, 1.0, 1.0]
    t = summaries.teacher_evaluation([0, 1], np.array([[10.0, 20.0], [30.0, 40.0]]))
    assert [r["returns"] for r in t["per_seed"]] == [[10.0, 20.0], [30.0, 40.0]]
    assert t["per_seed"][1]["mean"] == 35.0


def test_retention_only_where_the_teacher_is_distinguishably_better_than_random():
    """A teacher barely above random (32.30 vs 32.25 with episode spread ~10) made retention
    explode (269457%); it is None with a reason unless T - R > 2 standard errors of T - R."""
    t = np.array([20.0, 45.0, 30.0, 34.2])          # mean 32.3, sample std ~10.5
    r = np.array([22.0, 41.0, 28.0, 38.0])          # mean 32.25
    se = summaries.gap_se(t, r)
    # Welch by hand: var(ddof=1)/n for each side
    assert se == pytest.approx(np.sqrt(t.var(ddof=1) / 4 + r.var(ddof=1) / 4))
    assert summaries.normalised_retention(40.0, 32.3, 32.25, se) is None
    assert "not distinguishably better" in summaries.retention_why(32.3, 32.25, se)
    # the same gap with no spread is a real gap; a wide gap clears 2 SE
    assert summaries.normalised_retention(32.3, 32.3, 32.25, 0.0) == 1.0
    assert summaries.normalised_retention(60.0, 100.0, 20.0, 39.9) == 0.5
    assert summaries.normalised_retention(60.0, 100.0, 20.0, 40.0) is None   # gap = 2 SE
    assert summaries.retention_why(100.0, 20.0, 39.9) is None
    meta = {"seeds": [0], "teacher": {"seeds": [0]}}
    final = {"returns": np.array([[500.0, 10.0, 9.0, 8.0]]), "teacher_returns": t[None],
             "random_returns": r[None], "agree": np.ones((1, 4)), "lengths": np.ones((1, 4))}
    ev = summaries.student_evaluation(meta, final)
    for block in (ev["overall"], ev["per_seed"][0]):
        assert block["retention"] is None
        assert block["gap_se"] == pytest.approx(se) and "retention_why" in block
    assert ev["overall"]["retention_min"] is None
