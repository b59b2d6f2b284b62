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
from distillq.core import distill, rollout, views
from distillq.errors import ConfigError
from distillq.runs import store, teachers


def test_parse_and_describe():
    v = views.parse("drop=1,3", 2, (4,))
    assert v.keep == (0, 2) and v.stack == 2 and v.dim == 4 and v.noise == 0.0
    assert v.to_json() == {"keep": [0, 2], "drop": [1, 3], "noise": 0.0, "stack": 2,
                           "input_dim": 4}
    assert views.from_meta({"student_view": v.to_json()}) == v
    assert views.parse("", 1, (4,)) is None and views.from_meta({}) is None
    assert views.parse("noise=0.1; drop=0", 1, (4,)).noise == 0.1
    for text in ("drop=1,3", "drop=0;noise=0.05", "noise=0.1"):
        assert views.text(views.parse(text, 2, (4,))) == text
    assert views.text(views.parse("pixels", 2, (4,), "CartPole-v1")) == "pixels"
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
    np.testing.assert_array_equal(views.features(v, h), [[1, 1, 1], [5, 5, 5]])
    h = views.push(v, h, jnp.asarray([[2.0, 9.0], [6.0, 9.0]]), keys)
    h = views.push(v, h, jnp.asarray([[3.0, 9.0], [7.0, 9.0]]), keys,
                   new_episode=jnp.asarray([False, True]))
    np.testing.assert_array_equal(views.features(v, h), [[1, 2, 3], [7, 7, 7]])
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

    # render plays episode 0 of `evaluate --episodes 4` (the same batched call)
    r = render_cmd.run(str(out), str(tmp_path / "v.gif"), with_teacher=False, episodes=4)
    alone = evaluate_cmd.run([str(out)], episodes=4, with_teacher=False)["results"][0]
    assert r["student_return"] == alone["evaluation"]["per_seed"][0]["returns"][0]
    res = export_cmd.run(str(out), "numpy", str(tmp_path / "exp"), states=500)
    assert res["parity"]["ok"] and res["parity"]["action_mismatches"] == 0
    assert res["student_view"]["input_dim"] == 4
    assert json.loads((tmp_path / "exp" / "transform.json").read_text())["keep"] == [0, 2]


def test_a_view_student_teaches_only_its_own_view(view_run, tmp_path):
    """It labels the student's inputs, so the student must see what it sees."""
    assert teachers.load_teachers([str(view_run[0])])[0].meta["student_view"]["keep"] == [0, 2]
    with pytest.raises(ConfigError, match="drop=1,3;noise=0.01.*--frame-stack 2"):
        distill_cmd.run(tiny_distill(), str(view_run[0]), out=str(tmp_path / "x"),
                        show_progress=False)
    with pytest.raises(ConfigError, match="CNN student"):
        tiny_distill(student_obs="drop=0", network="cnn")


def test_td_bootstraps_on_the_students_view_of_the_next_state():
    """next_inputs pushes the view of s' onto the row's stored stack: numbers (oldest first)
    and frames (channels, oldest first) alike."""
    v = views.parse("drop=1,3", 2, (4,))
    stored = jnp.asarray([[[1.0, 2.0, 3.0, 4.0]]])               # [B=1, n=1, 2 x 2 kept]
    nxt = jnp.asarray([[[5.0, 6.0, 7.0, 8.0]]])
    out = views.next_inputs(v, stored, nxt, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(out), [[[3.0, 4.0, 5.0, 7.0]]])
    px = views.parse("pixels", 3, (4,), "CartPole-v1")
    obs = jnp.asarray([[0.0, 0, 0, 0], [1.0, 0, 0.1, 0], [-1.0, 0, -0.1, 0]], jnp.float32)
    hist = views.start(px, obs[:1], None)
    hist = views.push(px, hist, obs[1:2], None)
    stored = views.stored(px, hist)[:, None]                      # [1, 1, H, W, 3] uint8
    out = views.next_inputs(px, stored, obs[None, 2:3], jax.random.PRNGKey(0))
    want = views.features(px, views.push(px, hist, obs[2:3], None))
    np.testing.assert_array_equal(np.asarray(out[:, 0]), np.asarray(want))


def test_pixels_view_frames_as_channels_oldest_first():
    v = views.parse("pixels", 2, (4,), "CartPole-v1")
    assert v.shape == (40, 60, 2) and v.dim == 4800 and v.pixels == "CartPole-v1"
    assert v.to_json()["input_shape"] == [40, 60, 2]
    assert views.from_meta({"student_view": v.to_json()}) == v
    a = jnp.asarray([[0.0, 0.0, 0.0, 0.0]], jnp.float32)
    b = jnp.asarray([[1.0, 0.0, 0.2, 0.0]], jnp.float32)
    hist = views.push(v, views.start(v, a, None), b, None)
    assert hist.dtype == jnp.uint8                                  # frames stay bytes
    x = np.asarray(views.features(v, hist))
    assert x.dtype == np.float32 and x.shape == (1, 40, 60, 2) and x.max() <= 1.0
    from distillq.core import frames

    np.testing.assert_allclose(x[0, ..., 0], np.asarray(frames.draw("CartPole-v1", a))[0],
                               atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(x[0, ..., 1], np.asarray(frames.draw("CartPole-v1", b))[0],
                               atol=0.5 / 255 + 1e-6)
    restarted = views.push(v, hist, a, None, new_episode=jnp.asarray([True]))
    np.testing.assert_array_equal(np.asarray(restarted[0, 0]), np.asarray(restarted[0, 1]))
    for text, env, needle in (("pixels;noise=0.1", "CartPole-v1", "view of its own"),
                              ("pixels", "Pendulum-v1", "pixels are drawn for")):
        with pytest.raises(ConfigError, match=needle):
            views.parse(text, 1, (4,), env)


def test_a_pixel_student_trains_on_uint8_frames(teacher, cartpole):
    """Collection keeps uint8 stacks beside each row; the student (a strided CNN) trains on
    them; the buffer's frames are those of the rows' states; a td term works on pixels."""
    cfg = tiny_distill(student_obs="pixels", frame_stack=2, network="strided:4,4,8",
                       chunk_steps=16, buffer_size=1024, loss=("kl", "td", "fsp"))
    d = distill.make(cfg, cartpole, teacher.meta["network"])
    assert d.net_spec["obs_shape"] == [40, 60, 2] and "input_norm" not in d.net_spec
    ctx = teaching(teacher, cfg)
    st, m = chunk(d.system)(d.system.init(jax.random.PRNGKey(0), ctx), ctx, jnp.int32(0))
    assert np.isfinite(m.figures["loss"]) and m.figures["loss"] > 0
    assert m.figures["loss_fsp"] > 0          # fsp on CNN layers (conv 2, flattened; dense)
    assert d.net_spec["type"] == "strided"
    vb = st.actor.view_buffer
    assert vb.dtype == jnp.uint8 and vb.shape[2:] == (40, 60, 2)
    from distillq.core import frames

    tr = d.layout.unpack(st.actor.buffer)
    r = cfg.chunk_iterations - 1
    np.testing.assert_array_equal(np.asarray(vb[r, :, ..., 1]),
                                  np.asarray(frames.draw_u8("CartPole-v1", tr.obs[r])))


@pytest.fixture(scope="module")
def pixel_chain(teacher_run, tmp_path_factory):
    """A state teacher -> a pixel student (2 frames) -> a smaller pixel student."""
    d = tmp_path_factory.mktemp("pixels")
    px = dict(student_obs="pixels", frame_stack=2, buffer_size=128, final_episodes=3)
    a = distill_cmd.run(tiny_distill(network="strided:4,8,16", **px), str(teacher_run[0]),
                        out=str(d / "a"), show_progress=False)
    s = distill_cmd.run(tiny_distill(network="strided:2,4,8", **px), a["run_dir"],
                        out=str(d / "s"), show_progress=False)
    return d, a, s


def test_a_pixel_student_teaches_a_pixel_student(pixel_chain, tmp_path):
    """The chain stays in the student's modality: the pixel teacher's return in the chain
    student's comparison is its own return on the same episodes (it plays on its frames);
    evaluate, export parity and the refusal of another view all hold."""
    d, a, s = pixel_chain
    assert s["network"]["obs_shape"] == [40, 60, 2] and s["student_view"]["pixels"]
    np.testing.assert_allclose([r["teacher_mean"] for r in s["evaluation"]["per_seed"]],
                               [r["mean"] for r in a["evaluation"]["per_seed"]])
    ev = evaluate_cmd.run([str(d / "s")], episodes=3, shifts=[
        {"env_params": {}, "obs_noise": 0.0}])["results"][0]
    assert [r["mean"] for r in ev["evaluation"]["per_seed"]] == \
        [r["mean"] for r in s["evaluation"]["per_seed"]]
    # under the (null) shift too, the pixel teacher plays on its own frames
    shifted = ev["robustness"]["shifts"][0]["evaluation"]["per_seed"]
    np.testing.assert_allclose([r["teacher_mean"] for r in shifted],
                               [r["teacher_mean"] for r in s["evaluation"]["per_seed"]])
    # both panes on their frames: render's episode 0 of `evaluate --episodes 3`
    r = render_cmd.run(str(d / "s"), str(tmp_path / "s.gif"), episodes=3)
    assert r["student_return"] == ev["evaluation"]["per_seed"][0]["returns"][0]
    assert r["teacher_return"] == ev["evaluation"]["per_seed"][0]["teacher_returns"][0]
    res = export_cmd.run(str(d / "s"), "numpy", str(tmp_path / "e"), states=300)
    assert res["parity"]["ok"] and res["network"]["type"] == "strided"
    assert json.loads((tmp_path / "e" / "transform.json").read_text())["pixels"] == \
        "CartPole-v1"
    for kw, needle in ((dict(frame_stack=1, student_obs="pixels", network="strided:2,4,8"),
                        "--frame-stack 2"), (dict(network="8"), "--student-obs 'pixels'")):
        with pytest.raises(ConfigError, match=needle):
            distill_cmd.run(tiny_distill(**kw), a["run_dir"], out=str(tmp_path / "x"),
                            show_progress=False)
