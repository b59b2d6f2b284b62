"""Greedy evaluation: the first episode of each env counted, agreement with a second network,
a uniform-random baseline, the same episodes for a student and its teacher."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import probes
import pytest

from distillq.core import networks, rollout


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


def test_shift_noise_reaches_what_a_network_sees_once(cartpole):
    """Under an observation-noise shift the acting network and the one asked for agreement see
    the same noisy observation: the same network agrees with itself at every step."""
    net = networks.build(networks.spec("16", "relu", cartpole.obs_shape, cartpole.num_actions))
    p = networks.init(net, jax.random.PRNGKey(1), cartpole.obs_shape)
    fn = rollout.make_rollout(cartpole, net.apply, 8, other_apply=net.apply, shifted=True)
    out = fn(p, jax.random.PRNGKey(0), p, 0, None, jnp.float32(0.5))
    np.testing.assert_array_equal(np.asarray(out["agree"]), np.asarray(out["lengths"]))
    calm = fn(p, jax.random.PRNGKey(0), p, 0, None, jnp.float32(0.0))
    assert not np.array_equal(np.asarray(out["lengths"]), np.asarray(calm["lengths"]))


def test_a_view_student_sees_the_shift_noise(cartpole):
    """A privileged student's view (one dimension dropped, two frames) under a noise shift:
    one result per episode, and the noise changes what it does."""
    from distillq.core import views

    view = views.parse("drop=1", 2, cartpole.obs_shape)
    net = networks.build(networks.spec("16", "relu", (view.dim,), cartpole.num_actions))
    p = networks.init(net, jax.random.PRNGKey(1), (view.dim,))
    fn = rollout.make_rollout(cartpole, net.apply, 8, shifted=True, view=view)
    noisy = fn(p, jax.random.PRNGKey(0), None, 0, None, jnp.float32(0.5))
    calm = fn(p, jax.random.PRNGKey(0), None, 0, None, jnp.float32(0.0))
    assert noisy["lengths"].shape == (8,)
    assert not np.array_equal(np.asarray(noisy["lengths"]), np.asarray(calm["lengths"]))
