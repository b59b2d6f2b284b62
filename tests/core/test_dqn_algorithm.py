"""The DQN teacher, through its System: probe environments with Q-values computed by hand
(reward, discounting over a chain 1-step and n-step, truncation that still bootstraps,
action- and observation-dependent rewards), and every option driven with inputs whose right
answer is known: Double DQN, the target period and Polyak tau counted across the loop, best
params kept, epsilon, warm-up, the chunk's metrics and the budget's last partial chunk."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import probes
import pytest
from helpers import chunk, same_tree, tiny_distill, tiny_teacher, trained_q

from distillq.core import distill, dqn, loop, networks, replay

# one compiled probe run per case: small, linear Q-networks converge fast and deterministically;
# epsilon stays at 0.5 so that every (state, action) keeps being visited
PROBE = dict(network="linear", num_envs=8, total_steps=8 * 400, learning_starts=64,
             buffer_size=800, batch_size=64, lr=2e-2, lr_end=1e-3, n_step=1,
             target_update=10, eps_fraction=0.3, eps_end=0.5, eval_episodes=0, stop_return=None,
             chunk_steps=400, seeds=1)


def train_probe(env, **kw):
    cfg = tiny_teacher(**{**PROBE, **kw})
    return trained_q(dqn.make(cfg, env), cfg)


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


def test_action_dependent_reward_with_n_step_windows():
    """n-step windows over one-step episodes: the Q-value belongs to the window's first
    action, not to any later one (the next episode's)."""
    q = train_probe(probes.make("action"), gamma=0.9, n_step=3)
    np.testing.assert_allclose(q([[1.0]]), [[0.0, 1.0]], atol=0.05)


# ---------------------------------------------------------------- DQN options, through the code


def _const_q(tr, q_values):
    """Linear-network params whose Q-values are `q_values` for every observation."""
    p = networks.init(networks.build(tr.net_spec), jax.random.PRNGKey(0), tr.env.obs_shape)
    p = jax.tree.map(jnp.zeros_like, p)
    return networks.set_output_bias(p, jnp.asarray(q_values, jnp.float32))


def _buffer(cfg, tr, rows, action, reward=0.0, terminated=False):
    E = cfg.num_envs
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
    tr = dqn.make(cfg, probes.make("one_step"))
    online, target = _const_q(tr, [1.0, 0.0]), _const_q(tr, [0.0, 5.0])
    buf = _buffer(cfg, tr, 8, action=0)
    opt = tr.system.init(jax.random.PRNGKey(0)).learner.opt_state
    _, out = tr.td_update(loop.Learner(online, target, opt), buf, jnp.int32(8),
                          jax.random.PRNGKey(1), jnp.int32(0))
    assert float(out.q_mean) == pytest.approx(1.0)
    assert float(out.loss) == pytest.approx(0.5 if double else 1.0, rel=1e-5)


@pytest.mark.parametrize("period,tau", [(3, 1.0), (2, 0.25)])
def test_td_update_target_period_and_tau(period, tau):
    """The target moves only after every period-th update, by tau towards the new params."""
    cfg = tiny_teacher(network="linear", n_step=1, target_update=period, tau=tau, seeds=1)
    tr = dqn.make(cfg, probes.make("one_step"))
    st = tr.system.init(jax.random.PRNGKey(0))
    learner = st.learner._replace(target=_const_q(tr, [3.0, -3.0]))
    buf = _buffer(cfg, tr, 8, action=1, reward=1.0, terminated=True)
    for u in range(2 * period):
        old = learner.target
        learner, _ = tr.td_update(learner, buf, jnp.int32(8), jax.random.PRNGKey(u),
                                  jnp.int32(u))
        want = (jax.tree.map(lambda p, t: tau * p + (1 - tau) * t, learner.params, old)
                if (u + 1) % period == 0 else old)
        for a, b in zip(jax.tree.leaves(learner.target), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra,equal", [(0, True), (1, False)])
def test_target_period_counts_updates_across_the_loop(cartpole, extra, equal):
    """Through the jitted chunk: after U updates with period P, the target equals the online
    params exactly when U is a multiple of P (hard copy at the last update)."""
    period = 5
    cfg = tiny_teacher(chunk_steps=16 + 2 * period + extra, learning_starts=64, num_envs=4,
                       updates_per_step=2, target_update=period, seeds=1, eval_episodes=0)
    assert cfg.warmup_iterations == 16    # U = 2 * (chunk - 16) = 4 * period + 2 * extra
    tr = dqn.make(cfg, cartpole)
    st, _ = chunk(tr.system)(tr.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    assert same_tree(st.learner.params, st.learner.target) == equal


def test_teacher_keeps_the_best_evaluated_params(cartpole):
    cfg = tiny_teacher(seeds=1, chunk_steps=32)
    tr = dqn.make(cfg, cartpole)
    run = chunk(tr.system)
    st0 = tr.system.init(jax.random.PRNGKey(0))
    marker = jax.tree.map(lambda x: jnp.full_like(x, 7.0), st0.learner.params)
    # an unbeatable best score: the marker params stay the best
    st, m = run(st0._replace(best_params=marker, best_score=jnp.float32(jnp.inf)), None,
                jnp.int32(0))
    assert all(np.all(np.asarray(x) == 7.0) for x in jax.tree.leaves(st.best_params))
    assert float(m.best_score) == np.inf and np.isfinite(float(m.score))
    assert float(m.figures["best_return"]) == np.inf
    # any evaluation beats -inf: the chunk's last params become the best
    st, m = run(st0._replace(best_params=marker), None, jnp.int32(0))
    assert same_tree(st.best_params, st.learner.params)
    assert float(m.best_score) == float(m.score) == float(m.figures["eval_return"])


def test_without_evaluation_the_last_params_are_kept(cartpole):
    """eval_episodes = 0: nothing is scored (NaN) and the kept params are the last ones."""
    cfg = tiny_teacher(seeds=1, chunk_steps=32, eval_episodes=0)
    tr = dqn.make(cfg, cartpole)
    assert tr.system.score is None
    st, m = chunk(tr.system)(tr.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    assert np.isnan(float(m.score)) and np.isnan(float(m.best_score))
    assert same_tree(st.best_params, st.learner.params)


def test_chunk_metrics_and_the_budget_on_the_one_step_probe():
    """One-step episodes of return 1: every live iteration ends num_envs episodes. A last,
    partial chunk runs only the iterations left in the budget (20 = 16 + 4)."""
    cfg = tiny_teacher(**{**PROBE, "total_steps": 4 * 20, "num_envs": 4, "chunk_steps": 16,
                          "learning_starts": 16, "buffer_size": 64, "batch_size": 8})
    assert cfg.total_iterations == 20 and cfg.chunk_iterations == 16
    tr = dqn.make(cfg, probes.make("one_step"))
    run = chunk(tr.system)
    st, m1 = run(tr.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    st, m2 = run(st, None, jnp.int32(16))
    assert float(m1.figures["episodes"]) == 16 * 4 and float(m2.figures["episodes"]) == 4 * 4
    assert float(m1.figures["train_return"]) == 1.0
    assert float(m2.figures["train_return"]) == 1.0


@pytest.mark.parametrize("eps,frac_zero", [(0.0, 0.0), (1.0, 0.5)])
def test_epsilon_controls_the_acting_policy_in_the_loop(eps, frac_zero):
    """No update during the chunk (warm-up): with epsilon 0 every stored action is the
    greedy one (1); with epsilon 1 actions are uniform."""
    cfg = tiny_teacher(**{**PROBE, "eps_start": eps, "eps_end": eps, "num_envs": 64,
                          "total_steps": 64 * 64, "learning_starts": 64 * 40,
                          "chunk_steps": 32, "buffer_size": 64 * 40, "batch_size": 8})
    tr = dqn.make(cfg, probes.make("one_step"))
    st = tr.system.init(jax.random.PRNGKey(0))
    st = st._replace(learner=st.learner._replace(params=_const_q(tr, [0.0, 1.0])))
    st, _ = chunk(tr.system)(st, None, jnp.int32(0))
    acts = np.asarray(tr.layout.unpack(st.actor.buffer[:32]).action)
    assert float(np.mean(acts == 0)) == pytest.approx(frac_zero, abs=0.05)


def test_no_update_before_learning_starts_then_every_iteration():
    """Warm-up iterations collect only: the params are untouched until learning_starts, and
    from then on every iteration updates (a learn/skip condition that fires at the wrong
    iterations fails here)."""
    cfg = tiny_teacher(**{**PROBE, "total_steps": 8 * 40, "learning_starts": 8 * 10,
                          "chunk_steps": 5, "target_update": 1})
    assert cfg.warmup_iterations == 10 and cfg.chunk_iterations == 5
    tr = dqn.make(cfg, probes.make("one_step"))
    run = chunk(tr.system)
    st0 = tr.system.init(jax.random.PRNGKey(0))
    st = st0
    for c in range(2):                      # iterations 0..9: warm-up
        st, _ = run(st, None, jnp.int32(5 * c))
    assert same_tree(st.learner.params, st0.learner.params)
    prev = st.learner.params
    for c in range(2, 4):                   # iterations 10..19: every one updates
        st, m = run(st, None, jnp.int32(5 * c))
        assert float(m.figures["loss"]) > 0
        assert not same_tree(st.learner.params, prev)
        prev = st.learner.params


@pytest.mark.parametrize("obs_norm", ["none", "bounds"])
def test_obs_norm_decides_the_input_scaling_of_both_networks(obs_norm, cartpole):
    t = dqn.make(tiny_teacher(obs_norm=obs_norm), cartpole)
    assert ("input_norm" in t.net_spec) == (obs_norm == "bounds")
    d = distill.make(tiny_distill(obs_norm=obs_norm), cartpole, t.net_spec)
    assert ("input_norm" in d.net_spec) == (obs_norm == "bounds")


# ---------------------------------------------------------------- vmapped seeds


def test_epsilon_linear_schedule():
    cfg = tiny_teacher(eps_start=1.0, eps_end=0.1, eps_fraction=0.5, total_steps=400, num_envs=4,
                       learning_starts=16)
    # total_iterations = 100 -> decays over 50 iterations
    assert float(dqn.epsilon(cfg, jnp.float32(0))) == pytest.approx(1.0)
    assert float(dqn.epsilon(cfg, jnp.float32(25))) == pytest.approx(0.55)
    assert float(dqn.epsilon(cfg, jnp.float32(50))) == pytest.approx(0.1)
    assert float(dqn.epsilon(cfg, jnp.float32(99))) == pytest.approx(0.1)


def _run(cfg, env, seeds, chunks=2):
    tr = dqn.make(cfg, env)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    state = jax.jit(jax.vmap(tr.system.init))(keys)
    run = chunk(tr.system, vmapped=True)
    ms = []
    for c in range(chunks):
        state, m = run(state, None, jnp.int32(c * cfg.chunk_steps))
        ms.append(jax.device_get(m))
    return tr, state, ms


@pytest.fixture(scope="module")
def runs(cartpole):
    cfg = tiny_teacher()
    a = _run(cfg, cartpole, [0, 1])
    b = _run(cfg, cartpole, [0, 1])
    return cfg, a, b


def test_shapes_and_finite(runs, cartpole):
    cfg, (tr, state, ms), _ = runs
    params = state.learner.params
    assert params["params"]["hidden_0"]["kernel"].shape == (2, cartpole.obs_dim, 32)
    assert params["params"]["q"]["kernel"].shape == (2, 16, cartpole.num_actions)
    assert state.actor.buffer.shape == (2, cfg.buffer_rows, cfg.num_envs,
                                        2 * cartpole.obs_dim + 4)
    for m in ms:
        assert m.figures["loss"].shape == (2,) and np.all(m.finite)
        assert np.all(np.isfinite(m.figures["loss"])) and np.all(np.isfinite(m.score))
    assert np.all(ms[-1].figures["loss"] > 0)                 # updates happened
    assert np.all(ms[-1].best_score >= ms[-1].score)


def test_same_seed_identical_params(runs):
    _, (_, sa, _), (_, sb, _) = runs
    assert same_tree(sa.learner.params, sb.learner.params)


def test_different_seeds_different_params(runs):
    _, (_, s, _), _ = runs
    k = np.asarray(s.learner.params["params"]["hidden_0"]["kernel"])
    assert not np.allclose(k[0], k[1])


def test_target_network_hard_update(cartpole):
    # target_update=1 with tau=1: the target equals the online params after every update
    cfg = tiny_teacher(target_update=1, chunk_steps=32)
    _, state, _ = _run(cfg, cartpole, [3], chunks=1)
    assert same_tree(state.learner.params, state.learner.target)


def test_final_eval_shapes(runs):
    cfg, (tr, state, _), _ = runs
    from distillq.runs import calls

    out = jax.jit(jax.vmap(tr.system.final, in_axes=(0, None, 0)))(
        state.learner.params, None, calls.eval_keys([0, 1]))
    assert out["returns"].shape == (2, cfg.final_episodes)
    assert np.all(np.asarray(out["returns"]) >= 1)
    np.testing.assert_array_equal(np.asarray(out["returns"]), np.asarray(out["lengths"]))


def test_the_chunk_figures_count_finished_episodes_and_report_the_last_epsilon():
    """A 4-step chain, 4 envs in step: every 4th iteration each env ends an episode of
    return 1, the other iterations end none. train_return is the mean return of the
    episodes that ended (1, whatever the unfinished ones hold), episodes their count, and
    epsilon the schedule's value at the chunk's last iteration; a chunk in which no episode
    ends reports no train_return (NaN), not 0."""
    base = {**PROBE, "network": "16", "total_steps": 4 * 64, "num_envs": 4,
            "learning_starts": 16, "buffer_size": 64, "batch_size": 8, "eps_start": 1.0,
            "eps_end": 0.0, "eps_fraction": 1.0}
    env = probes.make("chain", length=4)
    cfg = tiny_teacher(**{**base, "chunk_steps": 16})
    tr = dqn.make(cfg, env)
    _, m = chunk(tr.system)(tr.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    assert float(m.figures["episodes"]) == 4 * 4
    assert float(m.figures["train_return"]) == 1.0
    assert float(m.figures["epsilon"]) == pytest.approx(float(dqn.epsilon(cfg, jnp.int32(15))))
    assert float(dqn.epsilon(cfg, jnp.int32(15))) < float(dqn.epsilon(cfg, jnp.int32(1)))
    short = tiny_teacher(**{**base, "chunk_steps": 2})
    tr = dqn.make(short, env)
    _, m = chunk(tr.system)(tr.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    assert float(m.figures["episodes"]) == 0 and np.isnan(float(m.figures["train_return"]))


def test_the_updates_of_iteration_t_read_every_row_written_so_far(cartpole):
    """collect writes row t; the updates that follow sample from the t + 1 rows written
    (this iteration's included: learning is never one or two iterations stale)."""
    tr = dqn.make(tiny_teacher(seeds=1), cartpole)
    st = tr.system.init(jax.random.PRNGKey(0))
    keys = list(jax.random.split(jax.random.PRNGKey(1), 3))
    for t in (0, 5, 300):
        _, feed, _ = tr.system.collect(st, None, jnp.int32(t), keys)
        assert int(feed.written) == t + 1
