"""TD learning shared by teachers and a student's td term: n-step windows that stop at
episode ends, bootstraps from the last included step, the Huber loss, the optimiser."""

import jax.numpy as jnp
import numpy as np
import pytest

from distillq.core import replay, td


def test_td_loss_is_huber_mean():
    q = jnp.array([0.0, 0.0, 0.0])
    y = jnp.array([0.5, 2.0, -3.0])
    # huber(0.5)=0.125, huber(2)=1.5, huber(3)=2.5 with delta 1
    assert float(td.loss(q, y, 1.0)) == pytest.approx((0.125 + 1.5 + 2.5) / 3)


G = 0.9


def test_nstep_no_episode_end_bootstraps_gamma_n():
    r = jnp.array([[1.0, 2.0, 3.0]])
    z = jnp.zeros((1, 3), bool)
    ret, disc, last = td.nstep_targets(r, z, z, G)
    assert float(ret[0]) == pytest.approx(1 + G * 2 + G * G * 3)
    assert float(disc[0]) == pytest.approx(G**3)
    assert int(last[0]) == 2


def test_nstep_terminated_stops_and_does_not_bootstrap():
    r = jnp.array([[1.0, 1.0, 5.0]])
    term = jnp.array([[False, True, False]])
    ret, disc, last = td.nstep_targets(r, term, term, G)
    assert float(ret[0]) == pytest.approx(1 + G)       # reward after the end is excluded
    assert float(disc[0]) == 0.0                          # terminal: no bootstrap
    assert int(last[0]) == 1


def test_nstep_truncated_stops_but_bootstraps():
    r = jnp.array([[1.0, 1.0, 5.0]])
    term = jnp.zeros((1, 3), bool)
    done = jnp.array([[False, True, False]])            # time limit: truncated, not terminated
    ret, disc, last = td.nstep_targets(r, term, done, G)
    assert float(ret[0]) == pytest.approx(1 + G)
    assert float(disc[0]) == pytest.approx(G**2)        # bootstrap from the final observation
    assert int(last[0]) == 1


def test_nstep_windows_of_a_batch_are_independent():
    """Each row's window stops at its own episode end, whatever other rows hold."""
    r = jnp.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    term = jnp.array([[True, False, False], [False, False, False], [False, False, True]])
    ret, disc, last = td.nstep_targets(r, term, term, G)
    np.testing.assert_allclose(np.asarray(ret), [1.0, 1 + 2 * G + 4 * G * G,
                                                 1 + 2 * G + 4 * G * G], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(disc), [0.0, G**3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(last), [0, 2, 2])


def test_one_step_terminal_and_truncated():
    r = jnp.array([[1.0], [1.0]])
    term = jnp.array([[True], [False]])
    done = jnp.array([[True], [True]])
    ret, disc, _ = td.nstep_targets(r, term, done, G)
    np.testing.assert_allclose(np.asarray(ret), [1.0, 1.0])
    np.testing.assert_allclose(np.asarray(disc), [0.0, G], rtol=1e-6)


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
        y = np.asarray(td.target(apply, None, None, window, g, double))
        np.testing.assert_allclose(y, [1 + g * 2 + g * g * 4 + g**3 * 40,
                                       1 + g * 2 + g**2 * 20,
                                       1 + g * 2], rtol=1e-6)


def test_double_dqn_picks_with_the_online_net_and_evaluates_with_the_target():
    """One step, reward 0, gamma 1, online Q = (1, 0), target Q = (0, 5): Double DQN
    bootstraps Q_target(argmax online = 0) = 0; plain DQN max target = 5."""
    window = replay.Transition(jnp.ones((1, 1, 1)), jnp.zeros((1, 1), jnp.int32),
                               jnp.zeros((1, 1)), jnp.zeros((1, 1), bool),
                               jnp.zeros((1, 1), bool), jnp.ones((1, 1, 1)))

    def apply(params, obs):
        return jnp.broadcast_to(params, (obs.shape[0], 2))

    online, target = jnp.array([1.0, 0.0]), jnp.array([0.0, 5.0])
    assert float(td.target(apply, online, target, window, 1.0, True)[0]) == 0.0
    assert float(td.target(apply, online, target, window, 1.0, False)[0]) == 5.0


def test_learning_rate_schedule_moves_from_lr_to_lr_end():
    """Adam's first steps have size ~lr; after total_updates, ~lr_end."""
    tx = td.optimizer(1e-2, 1e-4, 100, grad_clip=1e9)
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
        tx = td.optimizer(1e-2, 1e-2, 10, grad_clip=clip)
        p = {"w": jnp.zeros(())}
        st, out = tx.init(p), []
        for g in grads:
            upd, st = tx.update({"w": jnp.float32(g)}, st, p)
            out.append(float(upd["w"]))
        return out

    assert run([1.0, 100.0], 1.0) == pytest.approx(run([1.0, 1.0], 1.0), rel=1e-6)
    assert run([1.0, 100.0], 1e9)[1] != pytest.approx(run([1.0, 1.0], 1e9)[1], rel=1e-3)


@pytest.mark.parametrize("period,tau", [(3, 1.0), (4, 0.25)])
def test_update_target_every_period_by_tau(period, tau):
    params, target = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    for u in range(2 * period):
        got = td.update_target(params, target, jnp.int32(u), period, tau)
        want = tau if (u + 1) % period == 0 else 0.0
        np.testing.assert_allclose(np.asarray(got["w"]), want, rtol=1e-6)
