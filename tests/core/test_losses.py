"""Losses against hand-computed values and known identities. Teacher-side arguments carry
the ensemble axis K ([None]: one teacher), as the objective passes them: the functions tested
here are the ones the product runs (the terms only bind their options)."""

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
    assert float(losses.mse(s, t[None])) == pytest.approx(1.75)


def test_kl_hand_computed_with_temperature():
    s = jnp.array([[0.0, 0.0]])
    t = jnp.array([[2.0, 0.0]])
    T = 2.0
    p = _softmax([1.0, 0.0])          # teacher softened by T
    q = _softmax([0.0, 0.0])
    expected = T**2 * float(np.sum(p * np.log(p / q)))
    assert float(losses.kl(s, t[None], T)) == pytest.approx(expected, rel=1e-5)
    # by hand: p = (e/(e+1), 1/(e+1)); KL = sum p log(2p) = 0.110944; * 4
    assert expected == pytest.approx(4 * 0.110944, rel=1e-4)


def test_kl_zero_for_equal_and_shift_invariant():
    q = jnp.array([[1.0, 3.0, -2.0], [0.5, 0.5, 0.1]])
    assert float(losses.kl(q, q[None], 1.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.kl(q + 7.0, q[None], 0.5)) == pytest.approx(0.0, abs=1e-5)


def test_ce_hand_computed_and_equals_kl_plus_entropy_limit():
    s = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    t = jnp.array([[0.0, 5.0], [3.0, 1.0]])   # teacher greedy actions 1, 0
    expected = np.mean([-math.log(_softmax([1.0, 0.0])[1]), -math.log(0.5)])
    assert float(losses.ce(s, t[None])) == pytest.approx(expected, rel=1e-5)
    # with a one-hot teacher (T -> 0), KL at T=1 against a near one-hot target equals CE
    sharp = t * 1000.0
    assert float(losses.kl(s, sharp[None], 1.0)) == pytest.approx(expected, rel=1e-4)


# ----------------------------------------------------------------- more mappings


def test_kl_rusu_hand_computed():
    s = jnp.array([[1.0, 0.0]])
    t = jnp.array([[0.02, 0.0]])
    tau = 0.01
    p = _softmax([2.0, 0.0])                 # teacher / tau; the student is not softened
    q = _softmax([1.0, 0.0])
    expected = float(np.sum(p * np.log(p / q)))
    assert float(losses.kl_rusu(s, t[None], tau)) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_equals_kl_plus_teacher_entropy():
    s = jnp.array([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0]])
    t = jnp.array([[1.0, 0.5, 0.0], [-2.0, 0.0, 3.0]])
    p = jax.nn.softmax(t / 0.7, axis=-1)
    ce = float(losses.soft_ce(s, p))
    entropy = float(-np.mean(np.sum(np.asarray(p) * np.log(np.asarray(p)), axis=-1)))
    assert ce == pytest.approx(float(losses.kl_probs(s, p)) + entropy, rel=1e-5)
    # and the NLL loss is the soft CE to the teacher's one-hot greedy policy
    assert float(losses.ce(s, t[None])) == pytest.approx(
        float(losses.soft_ce(s, losses.greedy_probs(t))), rel=1e-6)


def test_feature_loss_zero_when_projection_maps_exactly():
    key = jax.random.PRNGKey(0)
    hs = jax.random.normal(key, (16, 8))
    w = jax.random.normal(jax.random.PRNGKey(1), (8, 5))
    b = jnp.arange(5.0)
    assert float(losses.feature(hs, (hs @ w + b)[None], w[None], b[None])) == \
        pytest.approx(0.0, abs=1e-8)
    # hand-computed: one sample, identity projection, error (1, -2) -> mean 2.5
    assert float(losses.hint(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]]), jnp.eye(2),
                             jnp.zeros(2))) == pytest.approx(2.5)


def test_rkd_distance_hand_computed():
    # points on a line at 0, 1, 3: distances 1, 3, 2 (mean 2) -> normalised 0.5, 1.5, 1
    s = jnp.array([[0.0], [1.0], [3.0]])
    t = jnp.array([[0.0], [2.0], [4.0]])     # distances 2, 4, 2 (mean 8/3) -> .75, 1.5, .75
    ds = np.array([[0, .5, 1.5], [.5, 0, 1], [1.5, 1, 0]])
    dt = np.array([[0, .75, 1.5], [.75, 0, .75], [1.5, .75, 0]])
    err = np.abs(ds - dt)
    expected = np.mean(np.where(err <= 1, 0.5 * err**2, err - 0.5))
    assert float(losses.rkd_distance(s, t[None])) == pytest.approx(expected, rel=1e-5)


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
    assert float(losses.rkd_distance(s, t[None])) == pytest.approx(expected, rel=1e-5)
    # angles: the cosines of a straight angle (-1) against a zero one (+1) differ by 2
    line = jnp.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    fold = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0 + 1e-9]])
    c_line, c_fold = np.asarray(losses._angles(line)), np.asarray(losses._angles(fold))
    e = np.abs(c_line - c_fold)
    h = np.where(e <= 1, 0.5 * e**2, e - 0.5)
    assert e.max() > 1.5
    assert float(losses.rkd_angle(line, fold[None], 3)) == pytest.approx(h.mean(), rel=1e-4)


def test_feature_projection_init_scale():
    """FitNets projections start at std 1/sqrt(student width), zero bias, one per teacher."""
    p = losses.init_projection(jax.random.PRNGKey(0), (256, 64), 3)
    assert p["w"].shape == (3, 256, 64) and p["b"].shape == (3, 64)
    assert float(jnp.std(p["w"])) == pytest.approx(1 / 16, rel=0.05)
    assert float(jnp.abs(p["b"]).max()) == 0.0


def test_rkd_angle_equilateral_cosines():
    tri = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    cos = np.asarray(losses._angles(tri))
    # angle at vertex j between i and k (i, k != j, i != k) is 60 degrees
    assert cos[0, 1, 2] == pytest.approx(0.5, abs=1e-6) and cos[1, 0, 2] == pytest.approx(0.5,
                                                                                          abs=1e-6)


@pytest.mark.parametrize("fn", [losses.rkd_distance_one, losses.rkd_angle_one])
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
    for fn in (losses.rkd_distance_one, losses.rkd_angle_one):
        g = jax.grad(lambda x, f=fn: f(x, t))(s)
        assert np.all(np.isfinite(np.asarray(g)))


def test_ensemble_targets_average_the_members_where_averaging_means_something():
    """Two teachers: mse to the mean Q, kl to the mean softened policy, ce to the mean
    one-hot policy; feature and relation losses are each member's, averaged."""
    s = jnp.array([[0.5, -0.5, 1.0]])
    t = jnp.array([[[1.0, 0.0, -1.0]], [[0.0, 2.0, 0.5]]])        # [K=2, B=1, A=3]
    assert float(losses.mse(s, t)) == pytest.approx(
        float(np.mean((np.asarray(s) - np.asarray(t).mean(0)) ** 2)), rel=1e-6)
    T = 0.7
    p = (_softmax(np.asarray(t[0, 0]) / T) + _softmax(np.asarray(t[1, 0]) / T)) / 2
    log_q = np.log(_softmax(np.asarray(s[0]) / T))
    assert float(losses.kl(s, t, T)) == pytest.approx(
        T * T * float(np.sum(p * (np.log(p) - log_q))), rel=1e-5)
    label = np.array([0.5, 0.5, 0.0])                              # greedy actions 0 and 1
    assert float(losses.ce(s, t)) == pytest.approx(
        float(-np.sum(label * np.log(_softmax(np.asarray(s[0]))))), rel=1e-5)
    h = jax.random.normal(jax.random.PRNGKey(0), (6, 3))
    th = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 4))
    assert float(losses.rkd_distance(h, th)) == pytest.approx(
        (float(losses.rkd_distance_one(h, th[0])) + float(losses.rkd_distance_one(h, th[1])))
        / 2, rel=1e-6)
    assert float(losses.rkd_angle(h, th, 4)) == pytest.approx(
        (float(losses.rkd_angle_one(h[:4], th[0, :4]))
         + float(losses.rkd_angle_one(h[:4], th[1, :4]))) / 2, rel=1e-6)


@pytest.mark.parametrize("mode", ["hinton", "rusu"])
def test_the_kl_term_binds_its_mode_when_built(mode):
    """term_kl(options) is the tested function of its mode, on the term's inputs."""
    s = jnp.array([[1.0, 0.0], [0.2, 0.3]])
    t = jnp.array([[[0.0, 2.0], [1.0, 1.5]]])
    x = losses.TermInputs(jnp.zeros(2, jnp.int32), s, t, None, None, jnp.float32(0.5))
    term = losses.term_kl(losses.TermOptions(mode, 32, 1.0))
    want = (losses.kl if mode == "hinton" else losses.kl_rusu)(s, t, 0.5)
    assert float(term(x, None)) == float(want)
    other = (losses.kl_rusu if mode == "hinton" else losses.kl)(s, t, 0.5)
    assert float(term(x, None)) != pytest.approx(float(other), rel=1e-3)


def test_the_td_and_angle_terms_bind_their_options():
    s = jnp.array([[1.0, 0.0], [0.0, 3.0]])
    x = losses.TermInputs(jnp.array([1, 1]), s, s[None], None, None, jnp.float32(1.0),
                          td_target=jnp.array([0.0, 0.0]))
    # q(a=1) = 0 and 3 against 0: Huber with delta 1 -> 0 and 2.5; with delta 5 -> 0 and 4.5
    assert float(losses.term_td(losses.TermOptions("hinton", 32, 1.0))(x, None)) == 1.25
    assert float(losses.term_td(losses.TermOptions("hinton", 32, 5.0))(x, None)) == 2.25
    h = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    th = jax.random.normal(jax.random.PRNGKey(1), (1, 8, 3))
    xh = losses.TermInputs(jnp.zeros(8, jnp.int32), h, h[None], h, th, jnp.float32(1.0))
    assert float(losses.term_rkd_angle(losses.TermOptions("hinton", 4, 1.0))(xh, None)) == \
        float(losses.rkd_angle_one(h[:4], th[0, :4]))


def test_fsp_gram_and_loss_hand_computed():
    """gram: RMS-normalised layers, f1^T f2 / B; fsp: mean((P1^T G_s P2 - G_t)^2)."""
    f1 = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])          # B = 3, m = 2
    f2 = np.array([[2.0], [0.0], [1.0]])                          # n = 1
    n1 = f1 / np.sqrt((f1 ** 2).mean() + 1e-8)
    n2 = f2 / np.sqrt((f2 ** 2).mean() + 1e-8)
    g = n1.T @ n2 / 3
    np.testing.assert_allclose(np.asarray(losses.gram(jnp.asarray(f1), jnp.asarray(f2))), g,
                               rtol=1e-6)
    # the teacher: widths (1, 2); projections carry the student's (2, 1) there
    t1 = np.array([[1.0], [2.0], [0.0]])
    t2 = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    gt = (t1 / np.sqrt((t1 ** 2).mean() + 1e-8)).T @ (t2 / np.sqrt((t2 ** 2).mean() + 1e-8)) / 3
    p1 = np.array([[0.5], [-1.0]])                                # [m=2, m'=1]
    p2 = np.array([[1.0, 2.0]])                                   # [n=1, n'=2]
    want = np.mean((p1.T @ g @ p2 - gt) ** 2)
    got = losses.fsp((jnp.asarray(f1), jnp.asarray(f2)),
                     (jnp.asarray(t1)[None], jnp.asarray(t2)[None]),
                     jnp.asarray(p1)[None], jnp.asarray(p2)[None])
    assert float(got) == pytest.approx(want, rel=1e-5)
    # the projected Gram matrix is the Gram matrix of projected features
    np.testing.assert_allclose(p1.T @ g @ p2, (n1 @ p1).T @ (n2 @ p2) / 3, rtol=1e-6)


def test_fsp_relates_layers_not_samples_and_averages_teachers():
    """Zero when the student's relation equals the teacher's; scale-free (a layer times 10
    changes nothing); an ensemble averages its members' losses; only the student learns."""
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    s1, s2 = jax.random.normal(k[0], (16, 3)), jax.random.normal(k[1], (16, 2))
    eye1, eye2 = jnp.eye(3)[None], jnp.eye(2)[None]
    assert float(losses.fsp((s1, s2), (s1[None], s2[None]), eye1, eye2)) == pytest.approx(
        0.0, abs=1e-10)
    assert float(losses.fsp((s1, s2), (10 * s1[None], s2[None]), eye1, eye2)) == \
        pytest.approx(0.0, abs=1e-8)
    t2 = jax.random.normal(k[2], (16, 2))
    a = losses.fsp((s1, s2), (s1[None], t2[None]), eye1, eye2)
    b = losses.fsp((s1, s2), (s1[None], s2[None]), eye1, eye2)
    both = losses.fsp((s1, s2), (jnp.stack([s1, s1]), jnp.stack([t2, s2])),
                      jnp.concatenate([eye1, eye1]), jnp.concatenate([eye2, eye2]))
    assert float(a) > 0.01 and float(both) == pytest.approx((float(a) + float(b)) / 2,
                                                             rel=1e-5)
    g = jax.grad(lambda t: losses.fsp((s1, s2), (t[None], t2[None]), eye1, eye2))(s1)
    assert float(jnp.abs(g).max()) == 0.0


def test_fsp_projection_init_shapes():
    p = losses.init_fsp(jax.random.PRNGKey(0), (400, 32, 128, 64), 2)
    assert p["p1"].shape == (2, 400, 128) and p["p2"].shape == (2, 32, 64)
    assert float(jnp.std(p["p1"])) == pytest.approx(1 / 20, rel=0.05)
