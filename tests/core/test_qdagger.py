"""TD + distillation (QDagger, kickstarting): the td term's targets by hand, its target
network, the lambda schedules by hand and through the real loop, td-only students."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import chunk, same_tree, teaching, tiny_distill

from distillq.core import distill, networks, replay, rollout, student
from distillq.errors import ConfigError
from distillq.runs import store

GAMMA = 0.9


def _linear(kernel, bias):
    return {"params": {"q": {"kernel": jnp.asarray(kernel, jnp.float32),
                             "bias": jnp.asarray(bias, jnp.float32)}}}


@pytest.mark.parametrize("double", [True, False])
def test_td_term_targets_by_hand(double):
    """Windows of 2 steps: an open one bootstraps gamma^2 Q_target(s2, a*), a terminated one
    does not; a* is the online student's argmax (double) or the target's."""
    cfg = tiny_distill(loss=("td",), td_n_step=2, td_gamma=GAMMA, td_double=double,
                       network="linear", td_huber_delta=100.0)
    spec = networks.spec("linear", "relu", (1,), 2)
    net = networks.build(spec)
    obj = student.make_objective(cfg, net.apply, net.apply)
    online = _linear([[1.0, 2.0]], [0.0, 0.5])       # Q(s) = (s, 2s + 0.5)
    target = _linear([[3.0, -1.0]], [0.0, 0.0])      # Q_t(s) = (3s, -s)
    f = jnp.float32
    obs = jnp.asarray([[[1.0], [2.0]], [[0.5], [9.0]]], f)          # [B=2, n=2, 1]
    nxt = jnp.asarray([[[2.0], [4.0]], [[7.0], [9.0]]], f)
    window = replay.Transition(
        obs=obs, action=jnp.asarray([[1, 0], [0, 1]], jnp.int32),
        reward=jnp.asarray([[1.0, 2.0], [5.0, 7.0]], f),
        terminated=jnp.asarray([[False, False], [True, False]]),
        done=jnp.asarray([[False, False], [True, False]]), next_obs=nxt)
    batch = jax.tree.map(lambda x: x[:, 0], window)
    hyper = student.Hyper(f(1.0), jnp.ones((1,), f))
    train = {"student": online, "terms": {}}
    t_params = jax.tree.map(lambda x: x[None], online)   # unused by a td-only objective
    loss, parts = obj.loss(train, t_params, batch, hyper, target, 1.0, window)
    # sample 0: G = 1 + 0.9 * 2, bootstrap from s' = 4: online Q = (4, 8.5) -> a* = 1,
    # target's own argmax: Q_t = (12, -4) -> a* = 0
    boot = -4.0 if double else 12.0
    y0 = 1.0 + GAMMA * 2.0 + GAMMA ** 2 * boot
    q0 = 2 * 1.0 + 0.5                               # action 1 at s = 1
    # sample 1: terminated after its first step: y = 5, no bootstrap; Q(0.5, a=0) = 0.5
    y1, q1 = 5.0, 0.5
    want = np.mean([optax.losses.huber_loss(jnp.float32(q), jnp.float32(y), delta=100.0)
                    for q, y in ((q0, y0), (q1, y1))])
    np.testing.assert_allclose(float(parts[0]), want, rtol=1e-6)
    np.testing.assert_allclose(float(loss), want, rtol=1e-6)


def test_lambda_weighs_only_the_distillation_terms():
    cfg = tiny_distill(loss=("td", "mse=2"), network="linear", td_n_step=1)
    spec = networks.spec("linear", "relu", (1,), 2)
    net = networks.build(spec)
    obj = student.make_objective(cfg, net.apply, net.apply)
    p = _linear([[1.0, 2.0]], [0.0, 0.5])
    t = jax.tree.map(lambda x: x[None], _linear([[0.0, 1.0]], [1.0, 0.0]))
    z = jnp.zeros((3,))
    obs = jnp.asarray([[1.0], [2.0], [-1.0]])
    window = jax.tree.map(lambda x: x[:, None], replay.Transition(
        obs, z.astype(jnp.int32), z + 1, z > 0, z > 0, obs))
    batch = jax.tree.map(lambda x: x[:, 0], window)
    hyper = student.Hyper(jnp.float32(1.0), jnp.asarray([1.0, 2.0]))
    for lam in (1.0, 0.25, 0.0):
        loss, parts = obj.loss({"student": p, "terms": {}}, t, batch, hyper, p, lam, window)
        np.testing.assert_allclose(float(loss), float(parts[0] + lam * 2.0 * parts[1]),
                                   rtol=1e-6)
        assert float(parts[1]) > 0 and float(parts[0]) > 0


def test_lambda_schedules_by_hand():
    q = distill.lambda_qdagger
    assert float(q(50.0, 100.0, 0.0)) == pytest.approx(0.5)          # 1 - G_s / G_t
    assert float(q(150.0, 100.0, 0.0)) == 0.0                        # student ahead: 0
    assert float(q(-200.0, -100.0, -500.0)) == pytest.approx(0.25)   # negative returns
    assert float(q(-600.0, -100.0, -500.0)) == 1.0                   # below random: 1
    assert float(q(10.0, 20.0, 20.0)) == 1.0                         # teacher = random
    cfg = tiny_distill(loss=("td", "kl"), lambda_schedule="linear", lambda_fraction=0.5)
    n = cfg.total_iterations
    assert [float(distill.lambda_linear(cfg, jnp.float32(t))) for t in (0, n / 4, n / 2, n)] \
        == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_config_rules():
    with pytest.raises(ConfigError, match="add --loss td"):
        tiny_distill(loss=("kl",), lambda_schedule="qdagger")
    with pytest.raises(ConfigError, match="eval_episodes must be >= 1"):
        tiny_distill(loss=("td", "kl"), lambda_schedule="qdagger", eval_episodes=0)
    with pytest.raises(ConfigError, match="td_n_step"):
        tiny_distill(loss=("td",), td_n_step=50)
    assert tiny_distill(loss=("td",)).has_td           # a student from scratch is allowed


@pytest.fixture(scope="module")
def teacher(teacher_run):
    return store.load_run(teacher_run[0])


def _loop(cfg, env, teacher, chunks):
    d = distill.make(cfg, env, teacher.meta["network"])
    ctx = teaching(teacher, cfg)
    st0 = d.system.init(jax.random.PRNGKey(3), ctx)
    go = chunk(d.system)
    st, ms = st0, []
    for c in range(chunks):
        st, m = go(st, ctx, jnp.int32(c * cfg.chunk_iterations))
        ms.append(jax.device_get(m))
    return d, ctx.teacher_params, st0, st, ms


def test_qdagger_lambda_follows_the_in_training_evaluation(teacher, cartpole):
    cfg = tiny_distill(loss=("td", "kl"), lambda_schedule="qdagger", chunk_steps=64,
                       total_steps=1024, eval_episodes=4)
    d, tp, st0, st, ms = _loop(cfg, cartpole, teacher, 4)
    # the reference returns: the teacher's and a random policy's eval episodes at init
    k_ref = jax.random.fold_in(jax.random.split(jax.random.PRNGKey(3), 4)[2], 0x0DA6)
    t_ret = rollout.make_rollout(cartpole, networks.ensemble_apply(
        networks.build(teacher.meta["network"]).apply), 4)(tp, k_ref)["returns"].mean()
    assert float(st0.aux[1]) == pytest.approx(float(t_ret))
    assert float(ms[0].figures["lambda"]) == 1.0
    for prev, nxt in zip(ms, ms[1:], strict=False):   # each chunk's lambda: the last evaluation
        want = distill.lambda_qdagger(prev.score, st0.aux[1], st0.aux[2])
        assert float(nxt.figures["lambda"]) == pytest.approx(float(want), abs=1e-6)
    assert np.isfinite(ms[-1].figures["loss_td"]) and ms[-1].figures["loss_td"] > 0


def test_linear_lambda_through_the_loop(teacher, cartpole):
    cfg = tiny_distill(loss=("td", "kl"), lambda_schedule="linear", lambda_fraction=0.5,
                       chunk_steps=64, total_steps=1024)
    *_, ms = _loop(cfg, cartpole, teacher, 3)
    for c, m in enumerate(ms):
        ts = np.arange(c * cfg.chunk_iterations, (c + 1) * cfg.chunk_iterations)
        ts = ts[ts >= cfg.warmup_iterations]
        want = np.mean([float(distill.lambda_linear(cfg, jnp.float32(t))) for t in ts])
        assert float(m.figures["lambda"]) == pytest.approx(want, abs=1e-6)
    assert ms[-1].figures["lambda"] < ms[0].figures["lambda"]


@pytest.mark.parametrize("period,copied", [(1, True), (10**6, False)])
def test_td_target_network_period(teacher, cartpole, period, copied):
    cfg = tiny_distill(loss=("td", "kl"), td_target_update=period, chunk_steps=32)
    d, _, st0, st, _ = _loop(cfg, cartpole, teacher, 2)
    ref = st.learner.params["student"] if copied else st0.learner.params["student"]
    assert same_tree(st.learner.target, ref)
    assert not same_tree(st.learner.params["student"], st0.learner.params["student"])


def test_a_td_only_student_starts_from_scratch(teacher, cartpole):
    """No teacher-derived output bias for a td-only student; one with an imitation term has
    it (the teacher's mean Q)."""
    for loss, from_teacher in ((("td",), False), (("td", "kl"), True)):
        cfg = tiny_distill(loss=loss)
        d = distill.make(cfg, cartpole, teacher.meta["network"])
        st = d.system.init(jax.random.PRNGKey(0), teaching(teacher, cfg))
        bias = np.asarray(st.learner.params["student"]["params"]["q"]["bias"])
        assert (np.abs(bias).max() > 1e-3) == from_teacher, (loss, bias)


def test_td_and_view_states_survive_a_checkpoint(teacher, cartpole, tmp_path):
    """--resume restores every new state field: the td target, lambda, the view history and
    the view buffer (save_state / restore_state round trip, bit for bit)."""
    for i, cfg in enumerate((tiny_distill(loss=("td", "kl"), lambda_schedule="qdagger"),
                             tiny_distill(student_obs="drop=1", frame_stack=3))):
        d = distill.make(cfg, cartpole, teacher.meta["network"])
        st = d.system.init(jax.random.PRNGKey(1), teaching(teacher, cfg))
        assert (st.learner.target is not None) == (i == 0)
        assert (st.actor.hist is not None) == (i == 1)
        run = tmp_path / f"r{i}"
        run.mkdir()
        store.save_state(run, st, {"t": 0})
        back, _ = store.restore_state(run, jax.tree.map(jnp.zeros_like, st))
        for a, b in zip(jax.tree.leaves(st), jax.tree.leaves(back), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
