"""The PQN teacher: lambda-returns by hand (termination, truncation, the rollout's end), probe
environments with known Q-values, every rollout state used once per epoch, LayerNorm networks,
and its config's rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import probes
import pytest
from helpers import chunk, same_tree, tiny_teacher, trained_q

from distillq import config, registry
from distillq.core import networks, pqn
from distillq.errors import ConfigError

G = 0.9


def test_lambda_returns_by_hand():
    """One env, 4 steps, rewards 1, 2, 4, 8; m_t = max Q of each true successor: 10, 20, 40,
    80. An open rollout: G_3 = 8 + g*80 at its end, then
    G_t = r_t + g * ((1 - lam) m_t + lam G_{t+1})."""
    r = jnp.array([[1.0], [2.0], [4.0], [8.0]])
    m = jnp.array([[10.0], [20.0], [40.0], [80.0]])
    no = jnp.zeros((4, 1), bool)
    lam = 0.5
    g3 = 8 + G * 80
    g2 = 4 + G * (0.5 * 40 + 0.5 * g3)
    g1 = 2 + G * (0.5 * 20 + 0.5 * g2)
    g0 = 1 + G * (0.5 * 10 + 0.5 * g1)
    np.testing.assert_allclose(np.asarray(pqn.lambda_returns(r, no, no, m, G, lam))[:, 0],
                               [g0, g1, g2, g3], rtol=1e-6)
    # terminated at step 1: G_1 = 2 (no bootstrap); G_0 chains into it
    term = jnp.array([[False], [True], [False], [False]])
    got = np.asarray(pqn.lambda_returns(r, term, term, m, G, lam))[:, 0]
    np.testing.assert_allclose(got, [1 + G * (0.5 * 10 + 0.5 * 2.0), 2.0, g2, g3], rtol=1e-6)
    # truncated at step 1: G_1 = 2 + g * m_1 (the time limit's state), never G_2
    trunc = jnp.array([[False], [True], [False], [False]])
    got = np.asarray(pqn.lambda_returns(r, no, trunc, m, G, lam))[:, 0]
    g1t = 2 + G * 20
    np.testing.assert_allclose(got, [1 + G * (0.5 * 10 + 0.5 * g1t), g1t, g2, g3], rtol=1e-6)
    # lambda 0: one-step targets; lambda 1: returns to the rollout's end
    np.testing.assert_allclose(np.asarray(pqn.lambda_returns(r, no, no, m, G, 0.0))[:, 0],
                               np.asarray(r[:, 0] + G * m[:, 0]), rtol=1e-6)
    mc = 1 + G * (2 + G * (4 + G * (8 + G * 80)))
    assert float(pqn.lambda_returns(r, no, no, m, G, 1.0)[0, 0]) == pytest.approx(mc)


PROBE = dict(network="linear", num_envs=16, total_steps=16 * 8 * 60, learning_starts=0,
             lr=2e-2, lr_end=1e-3, eps_fraction=0.3, eps_end=0.5, eval_episodes=0,
             stop_return=None, chunk_steps=8 * 60, seeds=1, algo="pqn", pqn_steps=8,
             pqn_minibatches=4, pqn_epochs=2, pqn_lambda=0.65)


def train_probe(env, **kw):
    cfg = tiny_teacher(**{**PROBE, **kw})
    return trained_q(pqn.make(cfg, env), cfg)


def test_probe_one_step_reward():
    q = train_probe(probes.make("one_step"), gamma=0.9)
    np.testing.assert_allclose(q([[1.0]]), [[1.0, 1.0]], atol=0.05)


def test_probe_truncation_bootstraps_from_the_time_limit_state():
    """Reward 1, truncated every step: Q = 1 / (1 - gamma) = 2 (a time limit is not a
    terminal state, and the lambda-return never runs into the next episode)."""
    q = train_probe(probes.make("truncated"), gamma=0.5)
    np.testing.assert_allclose(q([[1.0]]), [[2.0, 2.0]], atol=0.1)


def test_probe_chain_discounting():
    g, L = 0.8, 4
    q = train_probe(probes.make("chain", length=L), gamma=g, network="16+ln", lr=5e-3)
    want = np.array([g ** (L - 1 - k) for k in range(L)])
    np.testing.assert_allclose(q(np.eye(L)), np.stack([want, want], 1), atol=0.08)


def test_probe_action_dependent_reward():
    q = train_probe(probes.make("action"), gamma=0.9)
    np.testing.assert_allclose(q([[1.0]]), [[0.0, 1.0]], atol=0.05)


def test_every_rollout_state_is_used_once_per_epoch():
    """The updates of one iteration: epochs x minibatches; each epoch's minibatches are a
    permutation of the rollout (every state once), and epochs differ in their order."""
    cfg = tiny_teacher(**{**PROBE, "pqn_minibatches": 4, "pqn_epochs": 3})
    algo = pqn.make(cfg, probes.make("one_step"))
    assert algo.system.schedule.updates_per_step == 12
    st = algo.system.init(jax.random.PRNGKey(0))
    _, feed, _ = algo.system.collect(st, None, jnp.int32(0),
                                     list(jax.random.split(jax.random.PRNGKey(1), 2)))
    n = cfg.num_envs * cfg.pqn_steps
    assert feed.obs.shape == (n, 1) and feed.order.shape == (3, n)
    for epoch in np.asarray(feed.order):
        assert sorted(epoch.tolist()) == list(range(n))
    assert not np.array_equal(np.asarray(feed.order[0]), np.asarray(feed.order[1]))


def test_an_update_fits_its_own_minibatch(cartpole):
    """learn(j) fits minibatch j % M of epoch j // M: the loss it reports is the loss of
    those states (computed here from the feed)."""
    cfg = tiny_teacher(**{**PROBE, "network": "16", "pqn_minibatches": 4, "pqn_epochs": 2})
    algo = pqn.make(cfg, cartpole)
    st = algo.system.init(jax.random.PRNGKey(0))
    _, feed, _ = algo.system.collect(st, None, jnp.int32(0),
                                     list(jax.random.split(jax.random.PRNGKey(1), 2)))
    net = networks.build(algo.net_spec)
    mb = cfg.num_envs * cfg.pqn_steps // 4
    for j in (0, 5, 7):
        _, out = algo.system.learn(st.learner, None, feed, jnp.int32(0), jnp.int32(j), None)
        idx = np.asarray(feed.order[j // 4])[(j % 4) * mb:(j % 4 + 1) * mb]
        q = np.asarray(net.apply(st.learner.params, feed.obs[idx]))
        q = q[np.arange(mb), np.asarray(feed.action)[idx]]
        want = 0.5 * np.mean((q - np.asarray(feed.target)[idx]) ** 2)
        assert float(out.loss) == pytest.approx(want, rel=1e-5)


def test_no_target_network_and_a_loop_that_learns_every_iteration(cartpole):
    cfg = tiny_teacher(**{**PROBE, "network": "16"})
    algo = pqn.make(cfg, cartpole)
    st0 = algo.system.init(jax.random.PRNGKey(0))
    assert st0.learner.target is None
    st, m = chunk(algo.system)(st0, None, jnp.int32(0))
    assert not same_tree(st.learner.params, st0.learner.params)
    assert float(m.figures["loss"]) > 0 and float(m.figures["episodes"]) > 0


def test_layer_norm_is_a_network_option():
    spec = networks.spec("8,8+ln", "relu", (4,), 2)
    assert spec["layer_norm"] and registry.network_text(spec) == "8,8+ln"
    # each LayerNorm adds a scale and a bias per unit
    assert networks.param_count(spec) == networks.param_count(
        networks.spec("8,8", "relu", (4,), 2)) + 2 * (8 + 8)
    net = networks.build(spec)
    p = networks.init(net, jax.random.PRNGKey(0), (4,))
    _, (h0, _) = net.apply(p, jax.random.normal(jax.random.PRNGKey(1), (5, 4)) * 100,
                           return_hidden=True)
    assert float(jnp.abs(h0).max()) < 10          # normalised before the activation
    cnn = networks.spec("cnn:4,8+ln", "relu", (10, 10, 4), 3)
    assert networks.param_count(cnn) == networks.param_count(
        networks.spec("cnn:4,8", "relu", (10, 10, 4), 3)) + 2 * (4 + 8)
    with pytest.raises(ValueError, match="no hidden layer"):
        registry.parse_network("linear+ln")


def test_pqn_config_rules():
    with pytest.raises(ConfigError, match="split into pqn_minibatches"):
        tiny_teacher(algo="pqn", num_envs=4, pqn_steps=3, pqn_minibatches=5, learning_starts=0)
    with pytest.raises(ConfigError, match="algo: must be one of dqn, pqn"):
        tiny_teacher(algo="ppo")
    cfg = tiny_teacher(algo="pqn", num_envs=8, pqn_steps=16, total_steps=8 * 16 * 10,
                       learning_starts=0, chunk_steps=64)
    assert cfg.steps_per_iteration == 128 and cfg.total_iterations == 10
    assert cfg.chunk_iterations == 4 and cfg.updates_per_iteration == 2 * 32
    assert config.build(config.TeacherConfig, {}).algo == "dqn"


def test_the_rollout_acts_by_the_epsilon_schedule(cartpole):
    """Past the decay with eps_end 0 every rollout action is the online net's argmax; at
    t = 0 (epsilon 1) about half of CartPole's two actions differ from it."""
    cfg = tiny_teacher(**{**PROBE, "network": "16", "eps_start": 1.0, "eps_end": 0.0,
                          "eps_fraction": 0.1})
    algo = pqn.make(cfg, cartpole)
    net = networks.build(algo.net_spec)
    st = algo.system.init(jax.random.PRNGKey(0))
    keys = list(jax.random.split(jax.random.PRNGKey(1), 2))
    for t, greedy in ((cfg.total_iterations - 1, True), (0, False)):
        _, feed, _ = algo.system.collect(st, None, jnp.int32(t), keys)
        best = np.argmax(np.asarray(net.apply(st.learner.params, feed.obs)), -1)
        agree = float(np.mean(best == np.asarray(feed.action)))
        assert agree == 1.0 if greedy else 0.3 < agree < 0.7, (t, agree)
