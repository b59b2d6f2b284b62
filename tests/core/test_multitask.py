"""Multi-task students: the shared-trunk network routes each env to its own head, the
distiller learns every env from its own teacher in one jitted step, and the CLI runs,
evaluates (per env), refuses and resumes them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TINY_DISTILL, chunk, one_line_error, same_tree, tiny_distill, tiny_teacher

from distillq import config
from distillq.core import envs, loop, multitask, networks, rollout, student

EXE = [sys.executable, "-m", "distillq"]


@pytest.fixture(scope="module")
def two_envs():
    return [envs.make("CartPole-v1"), envs.make("Acrobot-v1")]


def test_spec_pads_and_counts_params(two_envs):
    spec = multitask.make_spec("16,8", "relu", two_envs, "none")
    assert spec["in_dim"] == 6 + 2                 # widest obs (Acrobot: 6) + one-hot of 2
    # trunk (8 -> 16 -> 8) + heads (8 -> 2, 8 -> 3)
    want = (8 * 16 + 16) + (16 * 8 + 8) + (8 * 2 + 2) + (8 * 3 + 3)
    assert networks.param_count(spec) == want
    lin = multitask.make_spec("linear", "relu", two_envs, "none")
    assert networks.param_count(lin) == (8 * 2 + 2) + (8 * 3 + 3)


def test_encode_pads_scales_and_marks_the_env(two_envs):
    spec = multitask.make_spec("16", "relu", two_envs, "none")
    x = networks.encode(spec, 0, jnp.asarray([[1.0, 2.0, 3.0, 4.0]]))
    np.testing.assert_array_equal(x, [[1, 2, 3, 4, 0, 0, 1, 0]])
    y = networks.encode(spec, 1, jnp.arange(6.0)[None])
    np.testing.assert_array_equal(y, [[0, 1, 2, 3, 4, 5, 0, 1]])
    scaled = multitask.make_spec("16", "relu", two_envs, "bounds")
    norm = scaled["tasks"][1]["input_norm"]
    z = networks.encode(scaled, 1, jnp.asarray([norm["shift"]]) + 1.0)
    np.testing.assert_allclose(z[0, :6], norm["scale"], rtol=1e-6)


def test_encode_keeps_leading_axes(two_envs):
    spec = multitask.make_spec("16", "relu", two_envs, "none")
    one = networks.encode(spec, 0, jnp.asarray([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(one, [1, 2, 3, 4, 0, 0, 1, 0])
    many = networks.encode(spec, 1, jnp.ones((2, 3, 6)))
    assert many.shape == (2, 3, 8)
    np.testing.assert_array_equal(many[1, 2], [1, 1, 1, 1, 1, 1, 0, 1])


def test_frames_are_padded_channel_wise():
    """Two games of 10x10 frames with 4 and 6 channels: a pixel's channels sit at the same
    input positions in both (channels zero-padded to 6, then flattened), leading axes kept."""
    games = [envs.make("Breakout-MinAtar"), envs.make("SpaceInvaders-MinAtar")]
    spec = multitask.make_spec("16", "relu", games, "none")
    assert spec["channels"] == 6 and spec["in_dim"] == 10 * 10 * 6 + 2
    frame = np.zeros((10, 10, 4), np.float32)
    frame[2, 7, 3] = 1.0                                    # row 2, column 7, channel 3
    x = np.asarray(networks.encode(spec, 0, jnp.asarray(frame)[None, None]))
    assert x.shape == (1, 1, 602)
    hot = np.flatnonzero(x[0, 0])
    np.testing.assert_array_equal(hot, [(2 * 10 + 7) * 6 + 3, 600])      # pixel, game 0
    y = networks.encode(spec, 1, jnp.ones((10, 10, 6)))
    np.testing.assert_array_equal(np.asarray(y), [1.0] * 600 + [0.0, 1.0])
    # a multi-task network over frames: (600 + 2) -> 16, heads of 3 and 4 actions
    assert networks.param_count(spec) == (602 * 16 + 16) + (16 * 3 + 3) + (16 * 4 + 4)
    # frames with a vector env: flat zero-padding as before
    mixed = multitask.make_spec("16", "relu", [games[0], envs.make("CartPole-v1")], "none")
    assert "channels" not in mixed and mixed["in_dim"] == 400 + 2


def test_mean_retention_by_hand():
    refs = jnp.asarray([[500.0, 20.0], [-80.0, -500.0], [10.0, 30.0]])   # [teacher, random]
    mean, per = multitask.mean_retention(refs, jnp.asarray([260.0, -290.0, 50.0]))
    # (260 - 20) / 480 = 0.5; (-290 + 500) / 420 = 0.5; a teacher worse than random: 0
    np.testing.assert_allclose(per, [0.5, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(mean, 1.0 / 3.0, rtol=1e-6)
    # a gap below 1 (MinAtar-like returns): (0.75 - 0.5) / 0.5
    _, small = multitask.mean_retention(jnp.asarray([[1.0, 0.5]]), jnp.asarray([0.75]))
    np.testing.assert_allclose(small, [0.5], rtol=1e-6)


def _random_teachers(env_list):
    specs = [networks.spec("32", "relu", e.obs_shape, e.num_actions) for e in env_list]
    params = tuple(jax.tree.map(lambda x: x[None], networks.init(
        networks.build(s), jax.random.PRNGKey(10 + i), tuple(s["obs_shape"])))
        for i, s in enumerate(specs))
    return specs, params


def _ctx(t_params) -> student.Teaching:
    return student.Teaching(t_params, student.Hyper(jnp.float32(1.0), jnp.ones((1,), jnp.float32)))


def test_who_acts_in_each_collection_mode(two_envs):
    specs, t_params = _random_teachers(two_envs)
    key = jax.random.PRNGKey(3)
    acts = {}
    for mode, eps in (("teacher", 0.0), ("student", 0.0), ("mixed", 0.0), ("teacher", 1.0)):
        cfg = tiny_distill(multitask=True, collect=mode, collect_eps=eps, num_envs=64,
                           eval_episodes=1)
        md = multitask.make(cfg, two_envs, specs)
        obs = tuple(envs.reset(env, jax.random.split(jax.random.PRNGKey(e), 64))[0]
                    for e, env in enumerate(two_envs))
        student_p = networks.init(networks.build(md.net_spec), jax.random.PRNGKey(0),
                                  networks.input_shape(md.net_spec))
        state = loop.LoopState(loop.Learner({"student": student_p, "terms": {}}, None, None),
                               multitask.Actor(None, None, obs), None, None, None)
        for e in range(2):
            teacher = jnp.argmax(networks.ensemble_apply(networks.build(specs[e]).apply)(
                t_params[e], state.actor.obs[e]), -1)
            other = (int(teacher[0]) + 1) % two_envs[e].num_actions   # the student's choice
            student_p = networks.set_head_bias(student_p, f"q_{e}", 100.0 * jax.nn.one_hot(
                other, two_envs[e].num_actions))
        state = state._replace(learner=state.learner._replace(
            params={**state.learner.params, "student": student_p}))
        for e in range(2):
            teacher = jnp.argmax(networks.ensemble_apply(networks.build(specs[e]).apply)(
                t_params[e], state.actor.obs[e]), -1)
            student = jnp.argmax(md.heads[e](student_p, state.actor.obs[e]), -1)
            assert not np.array_equal(teacher, student)   # the test can tell them apart
            early = md.behaviour(e, state, t_params, jnp.int32(0), key)[0]
            late = md.behaviour(e, state, t_params, jnp.int32(cfg.total_iterations), key)[0]
            acts[e, mode, eps] = (early, late, teacher, student)
    for e in range(2):
        early, late, teacher, student = acts[e, "teacher", 0.0]
        np.testing.assert_array_equal(early, teacher)
        np.testing.assert_array_equal(late, teacher)
        early, late, teacher, student = acts[e, "student", 0.0]
        np.testing.assert_array_equal(early, student)
        np.testing.assert_array_equal(late, student)
        early, late, teacher, student = acts[e, "mixed", 0.0]  # beta: 1 at t = 0, 0 at the end
        np.testing.assert_array_equal(early, teacher)
        np.testing.assert_array_equal(late, student)
        early, _, teacher, _ = acts[e, "teacher", 1.0]         # epsilon 1: uniform actions
        assert not np.array_equal(early, teacher)
        assert set(np.asarray(early).tolist()) == set(range(two_envs[e].num_actions))


def test_no_update_before_learning_starts(two_envs):
    specs, t_params = _random_teachers(two_envs)
    cfg = tiny_distill(multitask=True, learning_starts=4 * 40, chunk_steps=32, total_steps=512)
    md = multitask.make(cfg, two_envs, specs)
    ctx = _ctx(t_params)
    state0 = md.system.init(jax.random.PRNGKey(0), ctx)
    go = chunk(md.system)
    s1, m1 = go(state0, ctx, jnp.int32(0))     # iterations 0..31 < 40
    assert same_tree(s1.learner.params, state0.learner.params)
    assert float(m1.figures["loss"]) == 0.0
    s2, m2 = go(s1, ctx, jnp.int32(32))        # 40..63 learn
    assert float(m2.figures["loss"]) > 0.0
    assert not np.array_equal(s2.learner.params["student"]["params"]["q_0"]["kernel"],
                              s1.learner.params["student"]["params"]["q_0"]["kernel"])


def test_collection_feeds_every_row_written_and_counts_agreement(two_envs):
    """The updates of iteration t read the t + 1 rows written in every env's buffer; each
    env's agreement is the share of its states where the student's and the teacher's greedy
    actions are equal (computed here from both networks)."""
    specs, t_params = _random_teachers(two_envs)
    cfg = tiny_distill(multitask=True, collect="teacher", num_envs=64, network="8")
    md = multitask.make(cfg, two_envs, specs)
    ctx = _ctx(t_params)
    st = md.system.init(jax.random.PRNGKey(0), ctx)
    keys = list(jax.random.split(jax.random.PRNGKey(1), 2))
    for t in (0, 7):
        _, feed, agree = md.system.collect(st, ctx, jnp.int32(t), keys)
        assert int(feed.written) == t + 1 and agree.shape == (2,)
    fresh = jax.tree.map(lambda x: 10.0 * x, networks.init(     # a student that disagrees
        networks.build(md.net_spec), jax.random.PRNGKey(9), networks.input_shape(md.net_spec)))
    varied = tuple(3.0 * jax.random.normal(jax.random.PRNGKey(10 + e), o.shape)   # states
                   for e, o in enumerate(st.actor.obs))                      # far apart
    st = st._replace(learner=st.learner._replace(params={**st.learner.params,
                                                         "student": fresh}),
                     actor=st.actor._replace(obs=varied))
    for e in range(2):
        obs = st.actor.obs[e]
        t_act = jnp.argmax(networks.ensemble_apply(networks.build(specs[e]).apply)(
            t_params[e], obs), -1)
        s_act = jnp.argmax(md.heads[e](st.learner.params["student"], obs), -1)
        want = float(np.mean(np.asarray(t_act) == np.asarray(s_act)))
        assert 0.0 < want < 1.0                  # both kinds of state are present
        got = md.behaviour(e, st, t_params, jnp.int32(0), jax.random.PRNGKey(2))[1]
        assert float(got) == pytest.approx(want)


@pytest.mark.parametrize("episodes", [0, 1])
def test_the_in_training_score_follows_eval_episodes(two_envs, episodes):
    """eval_episodes 0: never scored, the last params kept; 1: scored on one episode per env,
    against the teacher's and random policy's returns over that same one episode."""
    specs, t_params = _random_teachers(two_envs)
    cfg = tiny_distill(multitask=True, eval_episodes=episodes, chunk_steps=32,
                       learning_starts=64, total_steps=512)
    md = multitask.make(cfg, two_envs, specs)
    ctx = _ctx(t_params)
    st0 = md.system.init(jax.random.PRNGKey(0), ctx)
    st, m = chunk(md.system)(st0, ctx, jnp.int32(0))
    if episodes == 0:
        assert md.system.score is None and np.isnan(float(m.score))
        assert same_tree(st.best_params, st.learner.params["student"])
        return
    assert np.isfinite(float(m.score))
    k_ref = jax.random.split(jax.random.PRNGKey(0), 4)[3]
    for e, env in enumerate(two_envs):
        t_apply = networks.ensemble_apply(networks.build(specs[e]).apply)
        one = rollout.make_rollout(env, t_apply, 1)(t_params[e], jax.random.fold_in(k_ref, e))
        assert float(st0.aux[e, 0]) == float(one["returns"].mean())


def test_each_env_is_answered_by_its_own_head(two_envs):
    spec = multitask.make_spec("16", "relu", two_envs, "none")
    params = networks.init(networks.build(spec), jax.random.PRNGKey(0), (spec["in_dim"],))
    obs0, obs1 = jnp.ones((3, 4)), jnp.ones((3, 6))
    q0, q1 = networks.task_apply(spec, 0), networks.task_apply(spec, 1)
    # by hand: relu(x W + b) then head e
    p = params["params"]
    for e, obs, q in ((0, obs0, q0), (1, obs1, q1)):
        h = jax.nn.relu(networks.encode(spec, e, obs) @ p["hidden_0"]["kernel"]
                        + p["hidden_0"]["bias"])
        want = h @ p[f"q_{e}"]["kernel"] + p[f"q_{e}"]["bias"]
        np.testing.assert_allclose(q(params, obs), want, rtol=1e-5, atol=1e-6)
    assert q0(params, obs0).shape == (3, 2) and q1(params, obs1).shape == (3, 3)
    # changing head 1 changes env 1's answers only
    bumped = networks.set_head_bias(params, "q_1", jnp.asarray([5.0, 6.0, 7.0]))
    np.testing.assert_array_equal(q0(bumped, obs0), q0(params, obs0))
    assert not np.allclose(q1(bumped, obs1), q1(params, obs1))


def test_student_learns_every_env_from_its_own_teacher(two_envs):
    """Random teachers of CartPole and Acrobot: one student imitates both (fidelity on each
    env against that env's teacher); a student trained for no steps does not."""
    specs, t_params = _random_teachers(two_envs)
    cfg = tiny_distill(total_steps=3072, network="32", chunk_steps=64, multitask=True)
    md = multitask.make(cfg, two_envs, specs)
    ctx = _ctx(t_params)
    state0 = jax.jit(md.system.init)(jax.random.PRNGKey(0), ctx)
    go = chunk(md.system)
    state = state0
    for c in range(cfg.total_iterations // cfg.chunk_iterations):
        state, m = go(state, ctx, jnp.int32(c * cfg.chunk_iterations))
    assert bool(m.finite)
    assert float(m.figures["loss_0"]) > 0 and float(m.figures["loss_1"]) > 0   # both learnt
    assert "eval_retention" in m.figures and float(m.score) == float(m.figures["eval_retention"])
    key = jax.random.PRNGKey(7)
    final = jax.jit(md.system.final)
    trained = final(state.learner.params["student"], ctx, key)
    untrained = final(state0.learner.params["student"], ctx, key)

    def fidelity(out):
        return float(out["agree"].sum() / out["lengths"].sum())

    for e in range(2):
        assert fidelity(trained[e]) > 0.9, (e, fidelity(trained[e]))
        assert fidelity(trained[e]) > fidelity(untrained[e]) + 0.05
    # the buffers hold each env's own transitions (obs widths 4 and 6)
    assert state.actor.buffers[0].shape[-1] != state.actor.buffers[1].shape[-1]


def test_config_refusals():
    for values, msg in (({"loss": ("kl", "feature")}, "output losses only"),
                        ({"collect": "dataset"}, "collects online"),
                        ({"ensemble": True}, "ensemble"),
                        ({"frame_stack": 2}, "frame_stack"),
                        ({"network": "cnn"}, "shared trunk")):
        with pytest.raises(config.ConfigError, match=msg):
            config.build(config.DistillConfig, {**TINY_DISTILL, "multitask": True, **values})


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def mt_runs(tmp_path_factory):
    from distillq.commands import train as train_cmd

    d = tmp_path_factory.mktemp("mt")
    train_cmd.run(tiny_teacher(), out=str(d / "cart"), show_progress=False)
    train_cmd.run(tiny_teacher(env="Acrobot-v1"), out=str(d / "acro"),
                           show_progress=False)
    cfg = d / "d.toml"
    cfg.write_text(config.to_toml(config.build(config.DistillConfig, {
        **TINY_DISTILL, "total_steps": 1024, "chunk_steps": 16, "checkpoint_secs": 0.0})))
    return d, cfg


def _run(args, stdin=None, check=True):
    p = subprocess.run(EXE + args, input=stdin, capture_output=True, text=True, timeout=600)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def mt_student(mt_runs):
    d, cfg = mt_runs
    return _run(["distill", "--multitask", "-t", str(d / "cart"), "-t", str(d / "acro"),
                 "-c", str(cfg), "--temp", "1,4", "--out", str(d / "mt"), "-q"])


def test_cli_multitask_distil_evaluate_and_refusals(mt_runs, mt_student):
    d, cfg = mt_runs
    p = mt_student
    out = json.loads(p.stdout)
    assert out["multitask"] and out["envs"] == ["CartPole-v1", "Acrobot-v1"]
    per_env = out["evaluation"]["per_env"]
    assert [b["env"] for b in per_env] == out["envs"]
    assert out["students"] == 4      # a temperature sweep: 2 points x 2 seeds
    for b in per_env:
        assert [p["temp"] for p in b["evaluation"]["per_point"]] == [1.0, 4.0]
        assert [r["point"] for r in b["evaluation"]["per_seed"]] == [0, 0, 1, 1]
    assert out["params"] == networks.param_count(out["network"])
    meta = json.loads((d / "mt" / "meta.json").read_text())
    assert meta["multitask"]["envs"] == out["envs"] and meta["env"] == "CartPole-v1+Acrobot-v1"
    assert [r["env"] for r in meta["teacher"]["runs"]] == out["envs"]
    assert len(meta["lineage"]) == 2
    # evaluate (stdin pipeline: the student and both teachers) reproduces the final numbers
    ev = json.loads(_run(["evaluate", "--episodes", str(TINY_DISTILL["final_episodes"])],
                         stdin=p.stdout).stdout)
    assert len(ev["results"]) == 3
    res = ev["results"][0]
    for a, b in zip(res["evaluation"]["per_env"], per_env, strict=True):
        assert a["evaluation"]["overall"]["mean"] == b["evaluation"]["overall"]["mean"]
        assert a["evaluation"]["overall"]["fidelity"] == b["evaluation"]["overall"]["fidelity"]
    # what takes single-env runs refuses it in one line (in-process: the same CLI)
    for args, msg in ((["export", str(d / "mt"), "--format", "numpy", "--out",
                        str(d / "xe")], "multi-task student"),
                      (["render", str(d / "mt"), "--out", str(d / "x.gif")],
                       "multi-task student"),
                      (["distill", "-t", str(d / "mt"), "--out", str(d / "s")], "cannot teach"),
                      (["evaluate", str(d / "mt"), "--obs-noise", "0.1"], "single-env runs"),
                      (["distill", "--multitask", "-t", str(d / "cart"), "-t", str(d / "cart"),
                        "--out", str(d / "s2")], "one teacher run per env"),
                      (["distill", "--multitask", "-t", str(d / "cart"), "--out", str(d / "s3")],
                       "at least 2")):
        assert msg in one_line_error(args), args
    assert not any((d / x).exists() for x in ("xe", "x.gif", "s", "s2", "s3"))


@pytest.mark.slow
def test_multitask_sigterm_resume_bit_identical(mt_runs, mt_student):
    """Interrupted, then resumed: the same params as the uninterrupted run (mt_student)."""
    import time

    from distillq.runs import store

    d, cfg = mt_runs
    teach = ["-t", str(d / "cart"), "-t", str(d / "acro")]
    run = d / "int"
    proc = subprocess.Popen(EXE + ["distill", "--multitask", *teach, "-c", str(cfg),
                                   "--temp", "1,4", "--out", str(run), "-q"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t = time.time()
    rows = run / "metrics.jsonl"
    while not (rows.exists() and len(rows.read_text().splitlines()) >= 4):
        assert proc.poll() is None and time.time() - t < 300, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "distillq distill --resume" in err
    _run(["distill", "--resume", str(run), "-q"])
    a = jax.tree.leaves(store.load_run(d / "mt").params)
    b = jax.tree.leaves(store.load_run(run).params)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
