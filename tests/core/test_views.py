"""Privileged students: what the student sees (dropped dimensions, noise, frame stacks) is
the same in collection, the buffer, evaluation, evaluate, render and export."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import chunk, teaching, tiny_distill

from distillq.commands import distill as distill_cmd
from distillq.commands import evaluate as evaluate_cmd
from distillq.commands import export as export_cmd
from distillq.commands import render as render_cmd
from distillq.core import distill, envs, networks, rollout, views
from distillq.errors import ConfigError, RunDirError
from distillq.runs import store, teachers


def test_parse_and_describe():
    v = views.parse("drop=1,3", 2, (4,))
    assert v.keep == (0, 2) and v.stack == 2 and v.dim == 4 and v.noise == 0.0
    assert v.to_json() == {"keep": [0, 2], "drop": [1, 3], "noise": 0.0, "stack": 2,
                           "input_dim": 4}
    assert views.from_meta({"student_view": v.to_json()}) == v
    assert views.parse("", 1, (4,)) is None and views.from_meta({}) is None
    assert views.parse("noise=0.1; drop=0", 1, (4,)).noise == 0.1
    for text, shape, needle in (("drop=4", (4,), "outside the observation's 4 dimensions"),
                                ("drop=0,1,2,3", (4,), "every observation dimension"),
                                ("blur=2", (4,), "unknown transform 'blur'"),
                                ("noise=-1", (4,), "noise must be finite and >= 0"),
                                ("drop", (4,), "expected drop=I,J"),
                                ("drop=0", (10, 10, 4), "apply to vector observations")):
        with pytest.raises(ConfigError, match=needle):
            views.parse(text, 1, shape)


def test_history_is_oldest_first_and_restarts_at_episode_starts():
    v = views.parse("drop=1", 3, (2,))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    h = views.start(v, jnp.asarray([[1.0, 9.0], [5.0, 9.0]]), keys)
    np.testing.assert_array_equal(views.features(h), [[1, 1, 1], [5, 5, 5]])
    h = views.push(v, h, jnp.asarray([[2.0, 9.0], [6.0, 9.0]]), keys)
    h = views.push(v, h, jnp.asarray([[3.0, 9.0], [7.0, 9.0]]), keys,
                   new_episode=jnp.asarray([False, True]))
    np.testing.assert_array_equal(views.features(h), [[1, 2, 3], [7, 7, 7]])
    noisy = views.parse("noise=0.5", 1, (2,))
    a = views.one(noisy, jnp.zeros((2, 2)), keys)
    np.testing.assert_array_equal(a, views.one(noisy, jnp.zeros((2, 2)), keys))  # same keys
    assert 0 < float(jnp.abs(a).mean()) < 2


def test_rollout_sees_the_view(cartpole):
    """The student acts on its view: reading only the newest frame of a stack equals acting
    on the kept dimensions; reading the oldest is a one-step lag, which changes episodes."""
    v = views.parse("drop=0,1", 2, (4,))        # angle and angular velocity, 2 frames

    def newest(_, x):
        s = x[:, 2] + x[:, 3]
        return jnp.stack([-s, s], -1)

    def oldest(_, x):
        s = x[:, 0] + x[:, 1]
        return jnp.stack([-s, s], -1)

    def full(_, obs):
        s = obs[:, 2] + obs[:, 3]
        return jnp.stack([-s, s], -1)

    key = rollout.eval_key(0)
    want = rollout.make_rollout(cartpole, full, 8)(None, key)
    got = rollout.make_rollout(cartpole, newest, 8, view=v)(None, key)
    np.testing.assert_array_equal(got["returns"], want["returns"])
    lag = rollout.make_rollout(cartpole, oldest, 8, view=v)(None, key)
    assert not np.array_equal(lag["lengths"], want["lengths"])


@pytest.fixture(scope="module")
def teacher(teacher_run):
    return store.load_run(teacher_run[0])


def test_buffer_rows_hold_the_view_of_their_states(teacher, cartpole):
    """Collection writes each row's student input beside the row: with 2 frames, the kept
    dimensions of the previous and this state (this one twice after an episode start)."""
    cfg = tiny_distill(student_obs="drop=1,3", frame_stack=2, chunk_steps=32)
    d = distill.make(cfg, cartpole, teacher.meta["network"])
    assert d.net_spec["obs_shape"] == [4] and d.view.dim == 4
    ctx = teaching(teacher, cfg)
    st, m = chunk(d.system)(d.system.init(jax.random.PRNGKey(0), ctx), ctx, jnp.int32(0))
    assert np.isfinite(m.figures["loss"]) and m.figures["loss"] > 0
    rows = cfg.chunk_iterations
    tr = d.layout.unpack(st.actor.buffer)
    obs, done = np.asarray(tr.obs)[:rows], np.asarray(tr.done)[:rows]
    vb = np.asarray(st.actor.view_buffer)[:rows]
    kept = obs[..., [0, 2]]
    for r in range(1, rows):
        prev = np.where(done[r - 1][:, None], kept[r], kept[r - 1])
        np.testing.assert_allclose(vb[r], np.concatenate([prev, kept[r]], -1), rtol=1e-6)
    np.testing.assert_allclose(vb[0], np.concatenate([kept[0], kept[0]], -1), rtol=1e-6)


@pytest.fixture(scope="module")
def view_run(teacher_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "s"
    s = distill_cmd.run(tiny_distill(student_obs="drop=1,3;noise=0.01", frame_stack=2),
                         str(teacher_run[0]), out=str(out), show_progress=False)
    return out, s


def test_evaluate_render_and_export_apply_the_same_view(view_run, tmp_path):
    out, s = view_run
    meta = json.loads((out / "meta.json").read_text())
    assert meta["student_view"] == {"keep": [0, 2], "drop": [1, 3], "noise": 0.01,
                                    "stack": 2, "input_dim": 4}
    assert s["student_view"] == meta["student_view"]
    ev = evaluate_cmd.run([str(out)], episodes=4)["results"][0]
    # the final evaluation's episodes (4 of them) are evaluate's, number for number
    assert [r["mean"] for r in ev["evaluation"]["per_seed"]] == \
        [r["mean"] for r in s["evaluation"]["per_seed"]]

    r = render_cmd.run(str(out), str(tmp_path / "v.gif"), with_teacher=False)
    run = store.load_run(out)
    net = networks.build(run.meta["network"])
    p0 = jax.tree.map(lambda x: jnp.asarray(x[0]), run.params)
    one = rollout.make_rollout(envs.make("CartPole-v1"), net.apply, 1,
                                view=views.from_meta(run.meta))(
        p0, rollout.eval_key(run.meta["seeds"][0]))
    assert r["student_return"] == pytest.approx(float(one["returns"][0]))
    res = export_cmd.run(str(out), "numpy", str(tmp_path / "exp"), states=500)
    assert res["parity"]["ok"] and res["parity"]["action_mismatches"] == 0
    assert res["student_view"]["input_dim"] == 4
    assert json.loads((tmp_path / "exp" / "transform.json").read_text())["keep"] == [0, 2]


def test_a_view_student_cannot_teach_and_td_is_refused(view_run):
    with pytest.raises(RunDirError, match="cannot teach from the full observation"):
        teachers.load_teachers([str(view_run[0])])
    with pytest.raises(ConfigError, match="td term with student_obs"):
        tiny_distill(loss=("td", "kl"), frame_stack=2)
    with pytest.raises(ConfigError, match="CNN student"):
        tiny_distill(student_obs="drop=0", network="cnn")
