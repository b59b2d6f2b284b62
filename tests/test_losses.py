"""Losses against hand-computed values and known identities."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillq.core import losses


def _softmax(x):
    e = np.exp(np.asarray(x, np.float64) - np.max(x))
    return e / e.sum()


def test_mse_hand_computed():
    s = jnp.array([[1.0, 2.0], [0.0, 0.0]])
    t = jnp.array([[0.0, 4.0], [1.0, -1.0]])
    # errors^2: 1, 4, 1, 1 -> mean 7/4
    assert float(losses.mse(s, t)) == pytest.approx(1.75)


def test_kl_hand_computed_with_temperature():
    s = jnp.array([[0.0, 0.0]])
    t = jnp.array([[2.0, 0.0]])
    T = 2.0
    p = _softmax([1.0, 0.0])          # teacher softened by T
    q = _softmax([0.0, 0.0])
    expected = T**2 * float(np.sum(p * np.log(p / q)))
    assert float(losses.kl(s, t, T)) == pytest.approx(expected, rel=1e-5)
    # by hand: p = (e/(e+1), 1/(e+1)); KL = sum p log(2p) = 0.110944; * 4
    assert expected == pytest.approx(4 * 0.110944, rel=1e-4)


def test_kl_zero_for_equal_and_shift_invariant():
    q = jnp.array([[1.0, 3.0, -2.0], [0.5, 0.5, 0.1]])
    assert float(losses.kl(q, q, 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.kl(q + 7.0, q, 0.5)) == pytest.approx(0.0, abs=1e-5)


def test_ce_hand_computed_and_equals_kl_plus_entropy_limit():
    s = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    t = jnp.array([[0.0, 5.0], [3.0, 1.0]])   # teacher greedy actions 1, 0
    expected = np.mean([-math.log(_softmax([1.0, 0.0])[1]), -math.log(0.5)])
    assert float(losses.ce(s, t)) == pytest.approx(expected, rel=1e-5)
    # with a one-hot teacher (T -> 0), KL at T=1 against a near one-hot target equals CE
    sharp = t * 1000.0
    assert float(losses.kl(s, sharp, 1.0)) == pytest.approx(expected, rel=1e-4)


def test_td_loss_is_huber_mean():
    q = jnp.array([0.0, 0.0, 0.0])
    y = jnp.array([0.5, 2.0, -3.0])
    # huber(0.5)=0.125, huber(2)=1.5, huber(3)=2.5 with delta 1
    assert float(losses.td_loss(q, y, 1.0)) == pytest.approx((0.125 + 1.5 + 2.5) / 3)


G = 0.9


def test_nstep_no_episode_end_bootstraps_gamma_n():
    r = jnp.array([[1.0, 2.0, 3.0]])
    z = jnp.zeros((1, 3), bool)
    ret, disc, last = losses.nstep_targets(r, z, z, G)
    assert float(ret[0]) == pytest.approx(1 + G * 2 + G * G * 3)
    assert float(disc[0]) == pytest.approx(G**3)
    assert int(last[0]) == 2


def test_nstep_terminated_stops_and_does_not_bootstrap():
    r = jnp.array([[1.0, 1.0, 5.0]])
    term = jnp.array([[False, True, False]])
    ret, disc, last = losses.nstep_targets(r, term, term, G)
    assert float(ret[0]) == pytest.approx(1 + G)       # reward after the end is excluded
    assert float(disc[0]) == 0.0                          # terminal: no bootstrap
    assert int(last[0]) == 1


def test_nstep_truncated_stops_but_bootstraps():
    r = jnp.array([[1.0, 1.0, 5.0]])
    term = jnp.zeros((1, 3), bool)
    done = jnp.array([[False, True, False]])            # time limit: truncated, not terminated
    ret, disc, last = losses.nstep_targets(r, term, done, G)
    assert float(ret[0]) == pytest.approx(1 + G)
    assert float(disc[0]) == pytest.approx(G**2)        # bootstrap from the final observation
    assert int(last[0]) == 1


def test_nstep_windows_of_a_batch_are_independent():
    """Each row's window stops at its own episode end, whatever other rows hold."""
    r = jnp.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    term = jnp.array([[True, False, False], [False, False, False], [False, False, True]])
    ret, disc, last = losses.nstep_targets(r, term, term, G)
    np.testing.assert_allclose(np.asarray(ret), [1.0, 1 + 2 * G + 4 * G * G,
                                                 1 + 2 * G + 4 * G * G], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(disc), [0.0, G**3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(last), [0, 2, 2])


def test_one_step_terminal_and_truncated():
    r = jnp.array([[1.0], [1.0]])
    term = jnp.array([[True], [False]])
    done = jnp.array([[True], [True]])
    ret, disc, _ = losses.nstep_targets(r, term, done, G)
    np.testing.assert_allclose(np.asarray(ret), [1.0, 1.0])
    np.testing.assert_allclose(np.asarray(disc), [0.0, G], rtol=1e-6)


# ----------------------------------------------------------------- issue 3: more mappings


def test_kl_rusu_hand_computed():
    s = jnp.array([[1.0, 0.0]])
    t = jnp.array([[0.02, 0.0]])
    tau = 0.01
    p = _softmax([2.0, 0.0])                 # teacher / tau; the student is not softened
    q = _softmax([1.0, 0.0])
    expected = float(np.sum(p * np.log(p / q)))
    assert float(losses.kl_rusu(s, t, tau)) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_equals_kl_plus_teacher_entropy():
    s = jnp.array([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0]])
    t = jnp.array([[1.0, 0.5, 0.0], [-2.0, 0.0, 3.0]])
    p = jax.nn.softmax(t / 0.7, axis=-1)
    ce = float(losses.soft_ce(s, p))
    entropy = float(-np.mean(np.sum(np.asarray(p) * np.log(np.asarray(p)), axis=-1)))
    assert ce == pytest.approx(float(losses.kl_probs(s, p)) + entropy, rel=1e-5)
    # and the NLL loss is the soft CE to the teacher's one-hot greedy policy
    assert float(losses.ce(s, t)) == pytest.approx(float(losses.soft_ce(s, losses.greedy_probs(t))),
                                                   rel=1e-6)


def test_feature_loss_zero_when_projection_maps_exactly():
    key = jax.random.PRNGKey(0)
    hs = jax.random.normal(key, (16, 8))
    w = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
    b = jnp.arange(5.0)
    assert float(losses.feature(hs, hs @ w + b, w, b)) == pytest.approx(0.0, abs=1e-8)
    # hand-computed: one sample, identity projection, error (1, -2) -> mean 2.5
    assert float(losses.feature(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]]), jnp.eye(2),
                                jnp.zeros(2))) == pytest.approx(2.5)


def test_rkd_distance_hand_computed():
    # points on a line at 0, 1, 3: distances 1, 3, 2 (mean 2) -> normalised 0.5, 1.5, 1
    s = jnp.array([[0.0], [1.0], [3.0]])
    t = jnp.array([[0.0], [2.0], [4.0]])     # distances 2, 4, 2 (mean 8/3) -> .75, 1.5, .75
    ds = np.array([[0, .5, 1.5], [.5, 0, 1], [1.5, 1, 0]])
    dt = np.array([[0, .75, 1.5], [.75, 0, .75], [1.5, .75, 0]])
    err = np.abs(ds - dt)
    expected = np.mean(np.where(err <= 1, 0.5 * err**2, err - 0.5))
    assert float(losses.rkd_distance(s, t)) == pytest.approx(expected, rel=1e-5)


def test_rkd_huber_threshold_is_one():
    """Relation errors above 1 are penalised linearly (Huber, delta 1): a pair whose
    normalised distances differ by 1.5 costs 1.0 (0.5 * 1.5^2 = 1.125 would be quadratic)."""
    # 2 points: each normalised distance is 1 (the only pair), so use 3 collinear points
    s = jnp.array([[0.0], [1.0], [10.0]])     # distances 1, 10, 9 (mean 20/3)
    t = jnp.array([[0.0], [10.0], [11.0]])    # distances 10, 11, 1 (mean 22/3)
    ds = np.array([1, 10, 9]) / (20 / 3)
    dt = np.array([10, 11, 1]) / (22 / 3)
    err = np.abs(ds - dt)
    assert err.max() > 1.0
    huber = np.where(err <= 1, 0.5 * err**2, err - 0.5)
    expected = 2 * huber.sum() / 9                 # each pair twice in the 3x3 matrix
    assert float(losses.rkd_distance(s, t)) == pytest.approx(expected, rel=1e-5)
    # angles: the cosines of a straight angle (-1) against a zero one (+1) differ by 2
    line = jnp.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    fold = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0 + 1e-9]])
    c_line, c_fold = np.asarray(losses._angles(line)), np.asarray(losses._angles(fold))
    e = np.abs(c_line - c_fold)
    h = np.where(e <= 1, 0.5 * e**2, e - 0.5)
    assert e.max() > 1.5
    assert float(losses.rkd_angle(line, fold)) == pytest.approx(h.mean(), rel=1e-4)


def test_feature_projection_init_scale():
    """FitNets projections start at std 1/sqrt(student width), zero bias, one per teacher."""
    p = losses.init_projection(jax.random.PRNGKey(0), 256, 64, 3)
    assert p["w"].shape == (3, 256, 64) and p["b"].shape == (3, 64)
    assert float(jnp.std(p["w"])) == pytest.approx(1 / 16, rel=0.05)
    assert float(jnp.abs(p["b"]).max()) == 0.0


def test_rkd_angle_equilateral_cosines():
    tri = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    cos = np.asarray(losses._angles(tri))
    # angle at vertex j between i and k (i, k != j, i != k) is 60 degrees
    assert cos[0, 1, 2] == pytest.approx(0.5, abs=1e-6) and cos[1, 0, 2] == pytest.approx(0.5,
                                                                                          abs=1e-6)


@pytest.mark.parametrize("fn", [losses.rkd_distance, losses.rkd_angle])
def test_rkd_zero_for_equal_and_invariant_to_global_scaling(fn):
    s = jax.random.normal(jax.random.PRNGKey(0), (12, 6))
    t = jax.random.normal(jax.random.PRNGKey(1), (12, 9))
    assert float(fn(s, s)) == pytest.approx(0.0, abs=1e-6)
    base = float(fn(s, t))
    assert base > 0
    assert float(fn(3.7 * s, t)) == pytest.approx(base, rel=1e-4)
    assert float(fn(s, 0.2 * t)) == pytest.approx(base, rel=1e-4)


def test_rkd_gradients_finite_with_duplicate_points():
    s = jnp.array([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]])   # a zero distance off the diagonal
    t = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    for fn in (losses.rkd_distance, losses.rkd_angle):
        g = jax.grad(lambda x, f=fn: f(x, t))(s)
        assert np.all(np.isfinite(np.asarray(g)))
