"""Tests that fail when the algorithm is wrong, not only when it crashes.

- DQN on probe environments (tests/probes.py) learns the Q-values computed by hand: reward,
  discounting over a chain (1-step and n-step), truncation that still bootstraps, action- and
  observation-dependent rewards.
- Every option is driven through the real code with inputs whose right answer is known:
  Double DQN, target-update period and Polyak tau, best-params selection (teacher and
  student), each collection mode and the mixed schedule, kl rusu vs hinton, ensembles
  averaged over all members, the dataset mode's fixed buffer, the learning-rate schedule, the
  greedy evaluation's first-episode accounting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import probes
import pytest
from conftest import tiny_distill, tiny_teacher

from distillq.core import distill, dqn, loop, losses, networks, replay, rollout
from distillq.runs import teachers

# one compiled probe run per case: small, linear Q-networks converge fast and deterministically;
# epsilon stays at 0.5 so that every (state, action) keeps being visited
PROBE = dict(network="linear", num_envs=8, total_steps=8 * 400, learning_starts=64,
             buffer_size=800, batch_size=64, lr=2e-2, lr_end=1e-3, n_step=1,
             target_update=10, eps_fraction=0.3, eps_end=0.5, eval_episodes=0, stop_return=None,
             chunk_steps=400, seeds=1)


def train_probe(env, **kw):
    cfg = tiny_teacher(**{**PROBE, **kw})
    tr = dqn.make_trainer(cfg, env)
    state = jax.jit(tr.init)(jax.random.PRNGKey(0))
    chunk = jax.jit(tr.chunk)
    for c in range(cfg.total_iterations // cfg.chunk_steps):
        state, _ = chunk(state, jnp.int32(c * cfg.chunk_steps))
    return lambda obs: np.asarray(tr.net.apply(state.params, jnp.asarray(obs, jnp.float32)))


def test_probe_one_step_reward():
    q = train_probe(probes.make("one_step"), gamma=0.9)
    np.testing.assert_allclose(q([[1.0]]), [[1.0, 1.0]], atol=0.05)


@pytest.mark.parametrize("n_step", [1, 3])
def test_probe_chain_discounting(n_step):
    """Q(s_k) = gamma^(L-1-k): reward only at the end of an L-step chain."""
    g, L = 0.8, 4
    q = train_probe(probes.make("chain", length=L), gamma=g, n_step=n_step, network="16")
    want = np.array([g ** (L - 1 - k) for k in range(L)])
    got = q(np.eye(L))
    np.testing.assert_allclose(got, np.stack([want, want], 1), atol=0.06)


def test_probe_truncation_still_bootstraps():
    """Truncated every step with reward 1: Q = 1 / (1 - gamma) = 2, not 1 (a time limit is
    not a terminal state)."""
    q = train_probe(probes.make("truncated"), gamma=0.5)
    np.testing.assert_allclose(q([[1.0]]), [[2.0, 2.0]], atol=0.08)


def test_probe_action_dependent_reward():
    q = train_probe(probes.make("action"), gamma=0.9)
    np.testing.assert_allclose(q([[1.0]]), [[0.0, 1.0]], atol=0.05)


def test_probe_observation_and_action_dependent_reward():
    q = train_probe(probes.make("context"), gamma=0.9)
    np.testing.assert_allclose(q([[-1.0], [1.0]]), [[1.0, 0.0], [0.0, 1.0]], atol=0.05)


# ---------------------------------------------------------------- DQN options, through the code


def _const_q(tr, q_values):
    """Linear-network params whose Q-values are `q_values` for every observation."""
    p = networks.init(tr.net, jax.random.PRNGKey(0), tr.env.obs_shape)
    p = jax.tree.map(jnp.zeros_like, p)
    return networks.set_output_bias(p, jnp.asarray(q_values, jnp.float32))


def _buffer(tr, rows, action, reward=0.0, terminated=False):
    cfg, E = tr.cfg, tr.cfg.num_envs
    z = jnp.zeros((E,))
    obs = jnp.ones((E, *tr.env.obs_shape))
    row = tr.layout.pack(replay.Transition(obs, z.astype(jnp.int32) + action, z + reward,
                                           z + terminated > 0, z + terminated > 0, obs))
    data = replay.init(cfg.buffer_rows, E, tr.layout.width)
    for t in range(rows):
        data = replay.write(data, row, jnp.int32(t))
    return data


@pytest.mark.parametrize("double", [True, False])
def test_td_update_double_dqn_target(double):
    """Online Q = (1, 0), target Q = (0, 5), reward 0, gamma 0.5, action 0 stored: Double DQN
    picks a* = argmax online = 0 and bootstraps Q_target(0) = 0, so y = 0 and the Huber loss
    of q = 1 is 0.5; plain DQN bootstraps max target = 5: y = 2.5, loss |1 - 2.5| - 0.5 = 1."""
    cfg = tiny_teacher(network="linear", n_step=1, gamma=0.5, double_dqn=double, seeds=1)
    tr = dqn.make_trainer(cfg, probes.make("one_step"))
    online, target = _const_q(tr, [1.0, 0.0]), _const_q(tr, [0.0, 5.0])
    buf = _buffer(tr, 8, action=0)
    _, _, _, loss, q_mean = tr.td_update(online, target, tr.init(jax.random.PRNGKey(0)).opt_state,
                                         buf, jnp.int32(8), jax.random.PRNGKey(1), jnp.int32(0))
    assert float(q_mean) == pytest.approx(1.0)
    assert float(loss) == pytest.approx(0.5 if double else 1.0, rel=1e-5)


def test_td_target_bootstraps_from_the_last_included_step():
    """Window of 3 steps, Q(s) = s (one action): no end -> G + g^3 * next_obs[2]; a truncation
    at step 1 -> G over 2 steps + g^2 * next_obs[1]; a termination at step 1 -> no bootstrap."""
    g = 0.5

    def apply(_params, obs):
        return obs                                  # [B, 1]: the observation is the Q-value

    B = 3
    r = jnp.tile(jnp.array([[1.0, 2.0, 4.0]]), (B, 1))
    term = jnp.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]], bool)
    done = jnp.array([[0, 0, 0], [0, 1, 0], [0, 1, 0]], bool)
    nxt = jnp.tile(jnp.array([10.0, 20.0, 40.0])[None, :, None], (B, 1, 1))
    window = replay.Transition(nxt, jnp.zeros((B, 3), jnp.int32), r, term, done, nxt)
    for double in (True, False):
        y = np.asarray(dqn.td_target(apply, None, None, window, g, double))
        np.testing.assert_allclose(y, [1 + g * 2 + g * g * 4 + g**3 * 40,
                                       1 + g * 2 + g**2 * 20,
                                       1 + g * 2], rtol=1e-6)


@pytest.mark.parametrize("period,tau", [(3, 1.0), (2, 0.25)])
def test_td_update_target_period_and_tau(period, tau):
    """The target moves only after every period-th update, by tau towards the new params."""
    cfg = tiny_teacher(network="linear", n_step=1, target_update=period, tau=tau, seeds=1)
    tr = dqn.make_trainer(cfg, probes.make("one_step"))
    st = tr.init(jax.random.PRNGKey(0))
    params, target, opt = st.params, _const_q(tr, [3.0, -3.0]), st.opt_state
    buf = _buffer(tr, 8, action=1, reward=1.0, terminated=True)
    for u in range(2 * period):
        old = target
        params, target, opt, _, _ = tr.td_update(params, target, opt, buf, jnp.int32(8),
                                                 jax.random.PRNGKey(u), jnp.int32(u))
        want = (jax.tree.map(lambda p, t: tau * p + (1 - tau) * t, params, old)
                if (u + 1) % period == 0 else old)
        for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra,equal", [(0, True), (1, False)])
def test_target_period_counts_updates_across_the_loop(cartpole, extra, equal):
    """Through the jitted chunk: after U updates with period P, the target equals the online
    params exactly when U is a multiple of P (hard copy at the last update)."""
    period = 5
    cfg = tiny_teacher(chunk_steps=16 + 2 * period + extra, learning_starts=64, num_envs=4,
                       updates_per_step=2, target_update=period, seeds=1, eval_episodes=0)
    assert cfg.warmup_iterations == 16    # U = 2 * (chunk - 16) = 4 * period + 2 * extra
    tr = dqn.make_trainer(cfg, cartpole)
    st, _ = jax.jit(tr.chunk)(tr.init(jax.random.PRNGKey(0)), jnp.int32(0))
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(st.params),
                                                    jax.tree.leaves(st.target_params),
                                                    strict=True))
    assert same == equal


def test_teacher_keeps_the_best_evaluated_params(cartpole):
    cfg = tiny_teacher(seeds=1, chunk_steps=32)
    tr = dqn.make_trainer(cfg, cartpole)
    chunk = jax.jit(tr.chunk)
    st0 = tr.init(jax.random.PRNGKey(0))
    marker = jax.tree.map(lambda x: jnp.full_like(x, 7.0), st0.params)
    # an unbeatable best return: the marker params stay the best
    st, m = chunk(st0._replace(best_params=marker, best_return=jnp.float32(jnp.inf)),
                  jnp.int32(0))
    assert all(np.all(np.asarray(x) == 7.0) for x in jax.tree.leaves(st.best_params))
    assert float(m["best_return"]) == np.inf and np.isfinite(float(m["eval_return"]))
    # any evaluation beats -inf: the chunk's last params become the best
    st, m = chunk(st0._replace(best_params=marker), jnp.int32(0))
    for a, b in zip(jax.tree.leaves(st.best_params), jax.tree.leaves(st.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(m["best_return"]) == float(m["eval_return"])


def test_keep_best_ties_take_the_newer_params():
    new, old = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    best, ret = loop.keep_best(new, old, jnp.float32(3.0), jnp.float32(3.0))
    assert float(best["w"][0]) == 1.0 and float(ret) == 3.0
    best, ret = loop.keep_best(new, old, jnp.float32(3.0), jnp.float32(2.0))
    assert float(best["w"][0]) == 0.0 and float(ret) == 3.0


def test_learning_rate_schedule_moves_from_lr_to_lr_end():
    """Adam's first steps have size ~lr; after total_updates, ~lr_end."""
    tx = dqn.optimizer(1e-2, 1e-4, 100, grad_clip=1e9)
    p = {"w": jnp.zeros(())}
    st = tx.init(p)
    sizes = []
    for _ in range(101):
        upd, st = tx.update({"w": jnp.ones(())}, st, p)
        sizes.append(-float(upd["w"]))
    assert sizes[0] == pytest.approx(1e-2, rel=1e-3)
    assert sizes[50] == pytest.approx(0.5 * (1e-2 + 1e-4), rel=1e-2)
    assert sizes[100] == pytest.approx(1e-4, rel=1e-2)


def test_gradient_clip_is_applied():
    """Adam is scale-free within a step but not across steps: with a clip at 1, gradients
    (1, 100) give the same updates as (1, 1); without it they do not."""
    def run(grads, clip):
        tx = dqn.optimizer(1e-2, 1e-2, 10, grad_clip=clip)
        p = {"w": jnp.zeros(())}
        st, out = tx.init(p), []
        for g in grads:
            upd, st = tx.update({"w": jnp.float32(g)}, st, p)
            out.append(float(upd["w"]))
        return out

    assert run([1.0, 100.0], 1.0) == pytest.approx(run([1.0, 1.0], 1.0), rel=1e-6)
    assert run([1.0, 100.0], 1e9)[1] != pytest.approx(run([1.0, 1.0], 1e9)[1], rel=1e-3)


# ---------------------------------------------------------------- evaluation


def test_greedy_rollout_counts_only_the_first_episode():
    """A 4-step chain inside a 100-step scan: each env's first episode only: return 1, length
    4 (later episodes after the auto-reset are not counted); agreement counts alive steps."""
    env = probes.make("chain", length=4)
    net = networks.build(networks.spec("linear", "relu", env.obs_shape, env.num_actions))
    p = networks.set_output_bias(jax.tree.map(jnp.zeros_like, networks.init(
        net, jax.random.PRNGKey(0), env.obs_shape)), jnp.array([0.0, 1.0]))
    other = networks.set_output_bias(p, jnp.array([1.0, 0.0]))      # always disagrees
    out = rollout.make_rollout(env, net.apply, 5, other_apply=net.apply)(
        p, jax.random.PRNGKey(0), other)
    np.testing.assert_array_equal(np.asarray(out["returns"]), 1.0)
    np.testing.assert_array_equal(np.asarray(out["lengths"]), 4.0)
    np.testing.assert_array_equal(np.asarray(out["agree"]), 0.0)
    same = rollout.make_rollout(env, net.apply, 5, other_apply=net.apply)(
        p, jax.random.PRNGKey(0), p)
    np.testing.assert_array_equal(np.asarray(same["agree"]), 4.0)
    low = networks.set_output_bias(p, jnp.array([1.0, 0.0]))          # acts 0; other acts 1
    out = rollout.make_rollout(env, net.apply, 5, other_apply=net.apply)(
        low, jax.random.PRNGKey(0), p)
    np.testing.assert_array_equal(np.asarray(out["agree"]), 0.0)


def test_random_policy_draws_every_action_uniformly():
    """The baseline of normalised retention: on the action probe (reward 1 for action 1),
    uniform random play scores 0.5 on average."""
    env = probes.make("action")
    out = rollout.make_rollout(env, None, 2000)(None, jax.random.PRNGKey(0))
    assert float(np.mean(out["returns"])) == pytest.approx(0.5, abs=0.05)


def test_comparison_gives_teacher_and_student_the_same_episodes(cartpole):
    net = networks.build(networks.spec("8", "relu", cartpole.obs_shape, cartpole.num_actions))
    p = networks.init(net, jax.random.PRNGKey(3), cartpole.obs_shape)
    cmp = rollout.make_comparison(cartpole, net.apply, net.apply, 6)
    out = cmp(p, p, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(out["returns"]),
                                  np.asarray(out["teacher_returns"]))
    np.testing.assert_array_equal(np.asarray(out["agree"]), np.asarray(out["lengths"]))


# ---------------------------------------------------------------- distillation options


def _linear_teacher_run(env, biases: list[list[float]]):
    """A fake teacher run (K seeds) of linear networks with constant Q = bias."""
    spec = networks.spec("linear", "relu", env.obs_shape, env.num_actions)
    net = networks.build(spec)
    zero = jax.tree.map(jnp.zeros_like, networks.init(net, jax.random.PRNGKey(0), env.obs_shape))
    params = [networks.set_output_bias(zero, jnp.asarray(b)) for b in biases]
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *params)
    meta = {"seeds": list(range(len(biases))), "network": spec, "env": env.name}
    return teachers.store.Run(None, meta, stacked), spec


def _distiller(env, t_spec, **kw):
    n = kw.get("num_envs", 4)       # a budget that fits however many envs collect
    cfg = tiny_distill(**{"collect_eps": 0.0, "network": "linear", "total_steps": 64 * n,
                          "learning_starts": 2 * n, "buffer_size": 8 * n,
                          "dataset_steps": 4 * n, **kw})
    return cfg, distill.make_distiller(cfg, env, t_spec)


@pytest.mark.parametrize("mode", ["teacher", "student", "mixed", "dataset"])
def test_behaviour_of_each_collection_mode(mode):
    """Teacher always picks action 1, the student always 0 (constant Q), no exploration."""
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect=mode, num_envs=256, mix_fraction=0.5)
    tparams = teachers.per_student_params([run], [0], 1)
    tp = jax.tree.map(lambda x: x[0], tparams)
    st = d.init(jax.random.PRNGKey(0), tp)
    student = networks.set_output_bias(jax.tree.map(jnp.zeros_like, st.params["student"]),
                                       jnp.array([1.0, 0.0]))
    st = st._replace(params={**st.params, "student": student})
    T = cfg.total_iterations
    frac = {}
    for t in (0, T // 4, T // 2, T - 1):
        act, t_greedy, s_greedy = d.behaviour(st, tp, jnp.int32(t), jax.random.PRNGKey(t))
        assert np.all(np.asarray(t_greedy) == 1) and np.all(np.asarray(s_greedy) == 0)
        frac[t] = float(np.mean(np.asarray(act) == 1))
    if mode in ("teacher", "dataset"):
        assert set(frac.values()) == {1.0}
    elif mode == "student":
        assert set(frac.values()) == {0.0}
    else:   # beta(t) = 1 - t / (0.5 T): 1 -> 0.5 -> 0 -> 0
        assert frac[0] == 1.0 and frac[T // 2] == 0.0 and frac[T - 1] == 0.0
        assert frac[T // 4] == pytest.approx(0.5, abs=0.1)
    assert float(distill.teacher_prob(cfg, jnp.int32(T // 4))) == pytest.approx(
        {"teacher": 1.0, "dataset": 1.0, "student": 0.0, "mixed": 0.5}[mode], abs=0.02)


def test_collect_eps_explores():
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect="teacher", num_envs=512, collect_eps=0.5)
    tp = jax.tree.map(lambda x: x[0], teachers.per_student_params([run], [0], 1))
    st = d.init(jax.random.PRNGKey(0), tp)
    act, _, _ = d.behaviour(st, tp, jnp.int32(0), jax.random.PRNGKey(0))
    assert float(np.mean(np.asarray(act) == 0)) == pytest.approx(0.25, abs=0.06)   # eps / 2


@pytest.mark.parametrize("mode", ["teacher", "student"])
def test_collected_actions_reach_the_buffer(mode):
    """Through the jitted chunk (no update yet: warm-up covers the chunk), every stored action
    is the acting policy's: teacher 1, student 0."""
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect=mode, learning_starts=128, chunk_steps=16)
    tp = jax.tree.map(lambda x: x[0], teachers.per_student_params([run], [0], 1))
    st = d.init(jax.random.PRNGKey(0), tp)
    student = networks.set_output_bias(jax.tree.map(jnp.zeros_like, st.params["student"]),
                                       jnp.array([1.0, 0.0]))
    st = st._replace(params={**st.params, "student": student})
    hyper = distill.hyper_arrays(cfg.sweep_points, cfg.term_names)
    st, m = jax.jit(d.chunk)(st, tp, jax.tree.map(lambda x: x[0], hyper), jnp.int32(0))
    stored = d.layout.unpack(st.buffer[:16])
    assert np.all(np.asarray(stored.action) == (1 if mode == "teacher" else 0))
    assert float(m["agreement"]) == 0.0


def test_dataset_buffer_is_fixed_after_collection(teacher_run, cartpole):
    from distillq.runs import store

    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(collect="dataset", dataset_steps=128, chunk_steps=32, total_steps=512)
    assert cfg.dataset_iterations == 32
    d = distill.make_distiller(cfg, cartpole, run.meta["network"])
    tp = jax.tree.map(lambda x: x[0], teachers.per_student_params([run], [0], 1))
    hyper = jax.tree.map(lambda x: x[0], distill.hyper_arrays(cfg.sweep_points, cfg.term_names))
    chunk = jax.jit(d.chunk)
    st, _ = chunk(d.init(jax.random.PRNGKey(0), tp), tp, hyper, jnp.int32(0))
    after_collect = np.asarray(st.buffer)
    assert np.abs(after_collect[:32]).sum(axis=(1, 2)).min() > 0     # 32 rows written
    assert np.all(after_collect[32:] == 0)
    env_state = st.env_state
    st2, m = chunk(st, tp, hyper, jnp.int32(32))
    np.testing.assert_array_equal(np.asarray(st2.buffer), after_collect)   # fixed
    assert float(m["loss"]) > 0                                           # but fitted
    for a, b in zip(jax.tree.leaves(env_state), jax.tree.leaves(st2.env_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))      # no env steps


def test_student_keeps_its_best_evaluated_params(teacher_run, cartpole):
    from distillq.runs import store

    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(chunk_steps=16)
    d = distill.make_distiller(cfg, cartpole, run.meta["network"])
    tp = jax.tree.map(lambda x: x[0], teachers.per_student_params([run], [0], 1))
    hyper = jax.tree.map(lambda x: x[0], distill.hyper_arrays(cfg.sweep_points, cfg.term_names))
    chunk = jax.jit(d.chunk)
    st0 = d.init(jax.random.PRNGKey(0), tp)
    marker = jax.tree.map(lambda x: jnp.full_like(x, 7.0), st0.best_params)
    st, m = chunk(st0._replace(best_params=marker, best_return=jnp.float32(jnp.inf)), tp,
                  hyper, jnp.int32(0))
    assert all(np.all(np.asarray(x) == 7.0) for x in jax.tree.leaves(st.best_params))
    st, m = chunk(st0._replace(best_params=marker), tp, hyper, jnp.int32(0))
    for a, b in zip(jax.tree.leaves(st.best_params), jax.tree.leaves(st.params["student"]),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- the objective's terms


def _objective_setup(env, biases, loss, **kw):
    run, spec = _linear_teacher_run(env, biases)
    cfg = tiny_distill(loss=loss, **kw)
    s_spec = networks.spec(cfg.network, "relu", env.obs_shape, env.num_actions)
    s_net, t_net = networks.build(s_spec), networks.build(spec)
    obj = distill.make_objective(cfg, s_net, t_net)
    sp = networks.init(s_net, jax.random.PRNGKey(0), env.obs_shape)
    return cfg, obj, sp, s_net, jax.tree.map(jnp.asarray, run.params)


def _batch(obs):
    z = jnp.zeros(obs.shape[:1])
    return replay.Transition(obs, z.astype(jnp.int32), z, z > 0, z > 0, obs)


Q3 = [[1.0, 0.0, -1.0], [0.0, 2.0, 0.5], [3.0, -1.0, 0.0]]   # three teachers, three actions


def _three_action_env():
    class Three(probes.Probe):
        def action_space(self, params=None):
            return probes._Space(n=3)

    e = Three("one_step")
    return probes.envs.from_gymnax("three", e, e.default_params)


@pytest.mark.parametrize("mode", ["hinton", "rusu"])
@pytest.mark.parametrize("k", [1, 3])
def test_kl_objective_follows_its_mode_and_averages_every_member(mode, k):
    env = _three_action_env()
    T = 0.7
    cfg, obj, sp, s_net, tparams = _objective_setup(env, Q3[:k], ("kl",), kl_mode=mode,
                                                    network="8")
    obs = jnp.ones((5, 1))
    loss, parts = obj({"student": sp, "terms": {}}, tparams, _batch(obs),
                      {"temp": jnp.float32(T), "weights": jnp.ones((1,))})
    s_q = np.asarray(s_net.apply(sp, obs), np.float64)
    p = np.mean([np.exp(np.array(q) / T) / np.exp(np.array(q) / T).sum() for q in Q3[:k]], 0)
    z = s_q / T if mode == "hinton" else s_q
    log_s = z - np.log(np.exp(z).sum(-1, keepdims=True))
    kl = np.mean(np.sum(p * (np.log(p) - log_s), -1))
    want = T * T * kl if mode == "hinton" else kl
    assert float(loss) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_output_objectives_average_every_ensemble_member(loss):
    env = _three_action_env()
    cfg, obj, sp, s_net, tparams = _objective_setup(env, Q3, (loss,), network="8")
    obs = jnp.ones((4, 1))
    got, _ = obj({"student": sp, "terms": {}}, tparams, _batch(obs),
                 {"temp": jnp.float32(1.0), "weights": jnp.full((1,), 2.0)})   # weight 2
    s_q = np.asarray(s_net.apply(sp, obs), np.float64)
    if loss == "mse":
        want = np.mean((s_q - np.mean(Q3, 0)) ** 2)
    else:   # greedy actions 0, 1, 0 -> soft label (2/3, 1/3, 0)
        label = np.array([2 / 3, 1 / 3, 0.0])
        log_s = s_q - np.log(np.exp(s_q).sum(-1, keepdims=True))
        want = -np.mean(np.sum(label * log_s, -1))
    assert float(got) == pytest.approx(2.0 * want, rel=1e-4)


def test_hidden_terms_average_every_ensemble_member():
    """feature and rkd_distance with K = 2 teachers: the mean of each member's loss."""
    env = probes.make("chain", length=3)
    spec = networks.spec("4", "relu", env.obs_shape, env.num_actions)
    t_net = networks.build(spec)
    tparams = jax.vmap(lambda k: networks.init(t_net, k, env.obs_shape))(
        jax.random.split(jax.random.PRNGKey(5), 2))
    cfg = tiny_distill(loss=("mse=0", "feature", "rkd_distance", "rkd_angle"), network="6",
                       rkd_angle_batch=5)
    s_net = networks.build(networks.spec(cfg.network, "relu", env.obs_shape, 2))
    obj = distill.make_objective(cfg, s_net, t_net)
    sp = networks.init(s_net, jax.random.PRNGKey(1), env.obs_shape)
    proj = losses.init_projection(jax.random.PRNGKey(2), 6, 4, 2)
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, 3))
    _, parts = obj({"student": sp, "terms": {"feature": proj}}, tparams, _batch(obs),
                   {"temp": jnp.float32(1.0), "weights": jnp.ones((4,))})
    s_h = s_net.apply(sp, obs, return_hidden=True)[1][-1]
    t_h = [t_net.apply(jax.tree.map(lambda x, i=i: x[i], tparams), obs, return_hidden=True)[1][-1]
           for i in range(2)]
    feat = np.mean([float(losses.feature(s_h, t_h[i], proj["w"][i], proj["b"][i]))
                    for i in range(2)])
    rkd = np.mean([float(losses.rkd_distance(s_h, t_h[i])) for i in range(2)])
    angle = np.mean([float(losses.rkd_angle(s_h[:5], t_h[i][:5])) for i in range(2)])
    assert float(parts[1]) == pytest.approx(feat, rel=1e-5)
    assert float(parts[2]) == pytest.approx(rkd, rel=1e-5)
    assert float(parts[3]) == pytest.approx(angle, rel=1e-5)


def test_ensemble_teacher_acts_on_the_mean_q_of_all_members():
    q = networks.ensemble_apply(lambda p, obs: p * jnp.ones((obs.shape[0], 1)))
    got = q(jnp.array([[0.0, 3.0], [2.0, 0.0], [2.0, 0.0]]), jnp.ones((1, 1)))
    np.testing.assert_allclose(np.asarray(got), [[4 / 3, 1.0]], rtol=1e-6)


def test_ensemble_of_two_runs_stacks_every_seed():
    env = probes.make("one_step")
    a, _ = _linear_teacher_run(env, [[0.0, 1.0], [0.0, 2.0]])
    b, _ = _linear_teacher_run(env, [[0.0, 3.0]])
    ens = teachers.per_student_params([a, b], None, 4)
    bias = np.asarray(ens["params"]["q"]["bias"])
    assert bias.shape == (4, 3, 2) and np.all(bias[:, :, 1] == [1.0, 2.0, 3.0])
    one = teachers.per_student_params([a, b], [2, 0], 2)
    np.testing.assert_array_equal(np.asarray(one["params"]["q"]["bias"])[:, 0, 1], [3.0, 1.0])
    assert teachers.labels([a, b]) == [0, 1, 0]


def test_student_output_bias_starts_at_the_teachers_mean_q():
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[10.0, 20.0], [30.0, 40.0]])
    cfg, d = _distiller(env, spec, network="4")
    st = d.init(jax.random.PRNGKey(0), jax.tree.map(jnp.asarray, run.params))
    np.testing.assert_allclose(np.asarray(st.params["student"]["params"]["q"]["bias"]),
                               [20.0, 30.0])


# ---------------------------------------------------------------- retention


def test_normalised_retention_hand_computed():
    from distillq.runs import summaries

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
    from distillq.runs import summaries

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


def test_cnn_conv_equals_flax_conv():
    """The im2col convolution is flax's VALID stride-1 nn.Conv, params and result alike."""
    import flax.linen as nn

    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (2, 5, 10, 10, 4)).astype(jnp.float32)
    ours = networks.Conv(16, 3)
    p = ours.init(jax.random.PRNGKey(0), x)
    ref = nn.Conv(16, (3, 3), padding="VALID")
    assert jax.tree.map(jnp.shape, p) == jax.tree.map(jnp.shape, ref.init(
        jax.random.PRNGKey(0), x[0]))
    want = ref.apply(p, x.reshape(-1, 10, 10, 4)).reshape(2, 5, 8, 8, 16)
    np.testing.assert_allclose(np.asarray(ours.apply(p, x)), np.asarray(want), rtol=1e-5,
                               atol=1e-5)


def test_bounds_input_scaling_maps_bounded_dimensions_to_unit_range():
    from distillq.core import envs

    mc = envs.make("MountainCar-v0")           # position [-1.2, 0.6], velocity [-0.07, 0.07]
    sc = envs.input_scaling(mc)
    np.testing.assert_allclose(sc["shift"], [-0.3, 0.0], atol=1e-6)
    np.testing.assert_allclose(sc["scale"], [2 / 1.8, 2 / 0.14], rtol=1e-5)
    cp = envs.input_scaling(envs.make("CartPole-v1"))       # velocities are unbounded
    np.testing.assert_allclose(cp["scale"], [2 / 9.6, 1.0, 2 / 0.8377580, 1.0], rtol=1e-5)
    spec = networks.spec("linear", "relu", mc.obs_shape, mc.num_actions, sc)
    net = networks.build(spec)
    p = networks.init(net, jax.random.PRNGKey(0), mc.obs_shape)
    obs = jnp.array([[0.6, 0.07], [-1.2, -0.07], [-0.3, 0.0]])
    np.testing.assert_allclose(np.asarray(net.prep(obs)), [[1, 1], [-1, -1], [0, 0]], atol=1e-5)
    np.testing.assert_allclose(np.asarray(net.apply(p, obs)),
                               np.asarray(net.module.apply(p, net.prep(obs))), rtol=1e-6)
    assert networks.param_count(spec) == 2 * 3 + 3          # the scaling adds no parameter


def test_chunked_evaluation_equals_one_call(cartpole):
    """Episode e's keys depend only on (key, e): 7 episodes in chunks of 3 (the last one
    padded) give exactly the 7-episode call's returns, for every seed of a vmap."""
    net = networks.build(networks.spec("8", "relu", cartpole.obs_shape, cartpole.num_actions))
    params = jax.vmap(lambda k: networks.init(net, k, cartpole.obs_shape))(
        jax.random.split(jax.random.PRNGKey(0), 2))
    keys = jnp.stack([rollout.eval_key(s) for s in (0, 1)])
    whole = jax.vmap(rollout.make_rollout(cartpole, net.apply, 7))(params, keys)
    part = jax.jit(jax.vmap(rollout.make_rollout(cartpole, net.apply, 3),
                            in_axes=(0, 0, None, None)))
    out = rollout.in_chunks(lambda first: part(params, keys, None, jnp.int32(first)), 7, 3)
    for k in ("returns", "lengths"):
        assert out[k].shape == (2, 7)
        np.testing.assert_array_equal(out[k], np.asarray(whole[k]))
    assert len(set(np.asarray(whole["returns"])[0].tolist())) > 1     # episodes differ


def test_masked_mean_of_the_chunk_metrics():
    """Per-chunk loss metrics average only the iterations that learned."""
    v = jnp.array([5.0, 1.0, 2.0, 6.0])
    m = jnp.array([False, True, True, False])
    assert float(loop.masked_mean(v, m)) == pytest.approx(1.5)
    assert float(loop.masked_mean(v, jnp.zeros(4, bool))) == 0.0           # warm-up only
    parts = jnp.array([[1.0, 10.0], [3.0, 30.0], [100.0, 100.0]])              # [iters, terms]
    np.testing.assert_allclose(np.asarray(loop.masked_mean(parts, jnp.array([1, 1, 0],
                                                                                bool))),
                               [2.0, 20.0])


def test_chunk_metrics_and_the_budget_on_the_one_step_probe():
    """One-step episodes of return 1: every live iteration ends num_envs episodes. A last,
    partial chunk runs only the iterations left in the budget (20 = 16 + 4)."""
    cfg = tiny_teacher(**{**PROBE, "total_steps": 4 * 20, "num_envs": 4, "chunk_steps": 16,
                          "learning_starts": 16, "buffer_size": 64, "batch_size": 8})
    assert cfg.total_iterations == 20 and cfg.chunk_iterations == 16
    tr = dqn.make_trainer(cfg, probes.make("one_step"))
    chunk = jax.jit(tr.chunk)
    st, m1 = chunk(tr.init(jax.random.PRNGKey(0)), jnp.int32(0))
    st, m2 = chunk(st, jnp.int32(16))
    assert float(m1["episodes"]) == 16 * 4 and float(m2["episodes"]) == 4 * 4
    assert float(m1["train_return"]) == 1.0 and float(m2["train_return"]) == 1.0


@pytest.mark.parametrize("eps,frac_zero", [(0.0, 0.0), (1.0, 0.5)])
def test_epsilon_controls_the_acting_policy_in_the_loop(eps, frac_zero):
    """No update during the chunk (warm-up): with epsilon 0 every stored action is the
    greedy one (1); with epsilon 1 actions are uniform."""
    cfg = tiny_teacher(**{**PROBE, "eps_start": eps, "eps_end": eps, "num_envs": 64,
                          "total_steps": 64 * 64, "learning_starts": 64 * 40,
                          "chunk_steps": 32, "buffer_size": 64 * 40, "batch_size": 8})
    tr = dqn.make_trainer(cfg, probes.make("one_step"))
    st = tr.init(jax.random.PRNGKey(0))
    st = st._replace(params=_const_q(tr, [0.0, 1.0]))
    st, _ = jax.jit(tr.chunk)(st, jnp.int32(0))
    acts = np.asarray(tr.layout.unpack(st.buffer[:32]).action)
    assert float(np.mean(acts == 0)) == pytest.approx(frac_zero, abs=0.05)


def test_action_dependent_reward_with_n_step_windows():
    """n-step windows over one-step episodes: the Q-value belongs to the window's first
    action, not to any later one (the next episode's)."""
    q = train_probe(probes.make("action"), gamma=0.9, n_step=3)
    np.testing.assert_allclose(q([[1.0]]), [[0.0, 1.0]], atol=0.05)


@pytest.mark.parametrize("obs_norm", ["none", "bounds"])
def test_obs_norm_decides_the_input_scaling_of_both_networks(obs_norm, cartpole):
    t = dqn.make_trainer(tiny_teacher(obs_norm=obs_norm), cartpole)
    assert ("input_norm" in t.net_spec) == (obs_norm == "bounds")
    d = distill.make_distiller(tiny_distill(obs_norm=obs_norm), cartpole, t.net_spec)
    assert ("input_norm" in d.net_spec) == (obs_norm == "bounds")


def test_no_update_before_learning_starts_then_every_iteration():
    """Warm-up iterations collect only: the params are untouched until learning_starts, and
    from then on every iteration updates (a learn/skip condition that fires at the wrong
    iterations fails here)."""
    cfg = tiny_teacher(**{**PROBE, "total_steps": 8 * 40, "learning_starts": 8 * 10,
                          "chunk_steps": 5, "target_update": 1})
    assert cfg.warmup_iterations == 10 and cfg.chunk_iterations == 5
    tr = dqn.make_trainer(cfg, probes.make("one_step"))
    chunk = jax.jit(tr.chunk)
    st0 = tr.init(jax.random.PRNGKey(0))
    st = st0
    for c in range(2):                      # iterations 0..9: warm-up
        st, _ = chunk(st, jnp.int32(5 * c))
    for a, b in zip(jax.tree.leaves(st.params), jax.tree.leaves(st0.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    prev = st.params
    for c in range(2, 4):                   # iterations 10..19: every one updates
        st, m = chunk(st, jnp.int32(5 * c))
        assert float(m["loss"]) > 0
        assert not all(np.array_equal(a, b) for a, b in zip(
            jax.tree.leaves(st.params), jax.tree.leaves(prev), strict=True))
        prev = st.params


def test_student_no_update_before_learning_starts(teacher_run, cartpole):
    from distillq.runs import store

    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(learning_starts=4 * 16, chunk_steps=8)
    assert cfg.warmup_iterations == 16
    d = distill.make_distiller(cfg, cartpole, run.meta["network"])
    tp = jax.tree.map(lambda x: x[0], teachers.per_student_params([run], [0], 1))
    hyper = jax.tree.map(lambda x: x[0], distill.hyper_arrays(cfg.sweep_points, cfg.term_names))
    chunk = jax.jit(d.chunk)
    st0 = d.init(jax.random.PRNGKey(0), tp)
    st, _ = chunk(st0, tp, hyper, jnp.int32(0))
    st, _ = chunk(st, tp, hyper, jnp.int32(8))
    for a, b in zip(jax.tree.leaves(st.params), jax.tree.leaves(st0.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    st, m = chunk(st, tp, hyper, jnp.int32(16))
    assert float(m["loss"]) > 0
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(st.params), jax.tree.leaves(st0.params), strict=True))


def test_fidelity_counts_only_equal_actions(cartpole):
    """agree counts the states where the other network picks the acting one's action: never
    when they always differ (either way round), every step when they always agree."""
    def always(a):
        return lambda _p, obs: jax.nn.one_hot(jnp.full(obs.shape[:1], a), 2)

    key = rollout.eval_key(0)
    for act, other, same in ((0, 1, False), (1, 0, False), (1, 1, True)):
        out = rollout.make_rollout(cartpole, always(act), 4, other_apply=always(other))(
            None, key, None)
        assert np.all(np.asarray(out["lengths"]) > 0)
        want = np.asarray(out["lengths"]) if same else np.zeros(4)
        np.testing.assert_array_equal(np.asarray(out["agree"]), want)
