"""Short jitted distillation runs: each loss, each collection mode, ensembles, sweeps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_distill

from distillq import commands
from distillq.core import distill, losses, networks, replay, rollout
from distillq.runs import store, teachers


def _batch(obs):
    """Sampled states as the objective sees them (only obs matter to imitation terms)."""
    n = obs.shape[0]
    z = jnp.zeros((n,))
    return replay.Transition(obs, z.astype(jnp.int32), z, z > 0, z > 0, obs)


@pytest.fixture(scope="module")
def teacher(teacher_run):
    return store.load_run(teacher_run[0], kind="teacher")


def _train(cfg, env, teacher, seeds=(0, 1), points=None, seed_index=None, chunks=None):
    points = points or cfg.sweep_points[:1] * 1
    n = len(seeds)
    d = distill.make_distiller(cfg, env, teacher.meta["network"])
    tparams = teachers.per_student_params([teacher], seed_index if seed_index is not None
                                              else (None if cfg.ensemble else list(range(n))), n)
    hyper = distill.hyper_arrays(points if len(points) == n else points * n, cfg.term_names)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    state = jax.jit(jax.vmap(d.init))(keys, tparams)
    chunk = jax.jit(jax.vmap(d.chunk, in_axes=(0, 0, 0, None)))
    ms = []
    for c in range(chunks or cfg.total_iterations // cfg.chunk_steps):
        state, m = chunk(state, tparams, hyper, jnp.int32(c * cfg.chunk_steps))
        ms.append(jax.device_get(m))
        assert np.all(m["finite"])
    return d, state, tparams, ms


@pytest.mark.parametrize("loss", ["mse", "kl", "ce"])
def test_each_output_loss_reduces_its_loss(loss, teacher, cartpole):
    cfg = tiny_distill(loss=(loss,), temp=(2.0,), total_steps=1024)
    d, state, tparams, ms = _train(cfg, cartpole, teacher)
    first, last = ms[1]["loss"], ms[-1]["loss"]   # chunk 0 is mostly warm-up
    assert np.all(last <= first + 1e-6) and last.sum() < first.sum(), [m["loss"] for m in ms]
    out = jax.jit(jax.vmap(d.final_eval))(state.best_params, tparams,
                                          jnp.stack([rollout.eval_key(s) for s in (0, 1)]))
    assert out["returns"].shape == (2, cfg.final_episodes)
    assert np.all(np.asarray(out["agree"]) <= np.asarray(out["lengths"]))


def test_hidden_layer_losses_are_exercised(teacher, cartpole):
    cfg = tiny_distill(loss=("kl", "feature=0.5", "rkd_distance=1", "rkd_angle=2"),
                       hidden=(16, 8), feature_layers="0:-1", total_steps=512)
    d, state, _, ms = _train(cfg, cartpole, teacher)
    for name in ("kl", "feature", "rkd_distance", "rkd_angle"):
        vals = np.array([m[f"loss_{name}"] for m in ms[1:]])
        assert np.all(np.isfinite(vals)) and np.all(vals[-1] > 0), name
    assert np.asarray(ms[-1]["loss_feature"]).mean() < np.asarray(ms[1]["loss_feature"]).mean()
    proj = state.params["terms"]["feature"]
    assert proj["w"].shape == (2, 1, 16, 16)  # students, ensemble K, student h0, teacher h-1 (16)


@pytest.mark.parametrize("mode", ["teacher", "student", "mixed", "dataset"])
def test_every_collection_mode_runs(mode, teacher, cartpole):
    cfg = tiny_distill(collect=mode, total_steps=512, dataset_steps=128, buffer_size=256)
    d, state, _, ms = _train(cfg, cartpole, teacher)
    assert state.buffer.shape == (2, cfg.buffer_rows, cfg.num_envs, 2 * cartpole.obs_dim + 4)
    assert all(np.all(np.isfinite(m["loss"])) for m in ms)
    filled = np.abs(np.asarray(state.buffer)).sum(axis=(2, 3)) > 0     # [students, rows]
    if mode == "dataset":   # collected once: exactly dataset_iterations rows, then only fitting
        assert filled.sum(axis=1).tolist() == [cfg.dataset_iterations] * 2
        assert cfg.warmup_iterations == cfg.dataset_iterations
    else:
        assert filled.all()


def test_ensemble_targets_are_averaged_in_policy_space(teacher, cartpole):
    cfg = tiny_distill(loss=("ce",), ensemble=True)
    student = networks.build(networks.spec(cfg.network, "relu", (4,), 2))
    t_net = networks.build(teacher.meta["network"])
    obj = distill.make_objective(cfg, student, t_net)
    tparams = jax.tree.map(jnp.asarray, teacher.params)               # K = 2 seeds
    sp = networks.init(student, jax.random.PRNGKey(0), (4,))
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    batch = _batch(obs)
    hyper = {"temp": jnp.float32(1.0), "weights": jnp.ones((1,))}
    loss, _ = obj({"student": sp, "terms": {}}, tparams, batch, hyper)
    t_q = jax.vmap(t_net.apply, in_axes=(0, None))(tparams, obs)
    mix = losses.greedy_probs(t_q).mean(0)
    assert float(loss) == pytest.approx(float(losses.soft_ce(student.apply(sp, obs), mix)),
                                        rel=1e-5)
    # with one teacher the ensemble path reduces to the plain loss
    one = jax.tree.map(lambda x: x[:1], tparams)
    loss1, _ = obj({"student": sp, "terms": {}}, one, batch, hyper)
    assert float(loss1) == pytest.approx(float(losses.ce(student.apply(sp, obs), t_q[0])),
                                         rel=1e-5)


def test_ensemble_run(teacher, cartpole):
    cfg = tiny_distill(ensemble=True, loss=("kl",), total_steps=256)
    _, state, tparams, ms = _train(cfg, cartpole, teacher, seeds=(0,))
    assert jax.tree.leaves(tparams)[0].shape[:2] == (1, 2)           # 1 student, 2 teachers


def test_sweep_points_equal_separate_runs(teacher, cartpole):
    """temps (1, 4) x seeds (0, 1) in one vmapped call == each point run on its own."""
    base = dict(loss=("kl",), total_steps=256)
    sweep = tiny_distill(temp=(1.0, 4.0), **base)
    pts = sweep.sweep_points
    points = [pts[0], pts[0], pts[1], pts[1]]
    _, s_all, _, _ = _train(sweep, cartpole, teacher, seeds=(0, 1, 0, 1), points=points,
                            seed_index=[0, 1, 0, 1])
    for p, temp in enumerate((1.0, 4.0)):
        single = tiny_distill(temp=(temp,), **base)
        _, s_one, _, _ = _train(single, cartpole, teacher, seeds=(0, 1))
        for a, b in zip(jax.tree.leaves(s_one.params), jax.tree.leaves(s_all.params),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[2 * p:2 * p + 2],
                                       rtol=2e-4, atol=2e-5)


def test_distill_config_validation():
    from distillq.errors import ConfigError

    with pytest.raises(ConfigError, match="needs at least one output loss"):
        tiny_distill(loss=("feature",))
    with pytest.raises(ConfigError, match="unknown loss"):
        tiny_distill(loss=("huber",))
    with pytest.raises(ConfigError, match="weight of kl"):
        tiny_distill(loss=("kl=-1",))
    with pytest.raises(ConfigError, match="student layer 3"):
        tiny_distill(loss=("kl", "feature"), feature_layers="3:-1")
    with pytest.raises(ConfigError, match="dataset_steps"):
        tiny_distill(collect="dataset", dataset_steps=10_000)
    cfg = tiny_distill(loss=("kl=1", "feature=0,0.5"), temp=(0.01, 1.0))
    assert len(cfg.sweep_points) == 4


def test_baselines_are_the_comparison_s_teacher_and_random_sides(teacher, cartpole):
    """The ensemble's own return and the random policy's (used for stop_retention) equal
    what the student-vs-teacher comparison reports on the same keys."""
    cfg = tiny_distill(ensemble=True)
    d = distill.make_distiller(cfg, cartpole, teacher.meta["network"])
    tparams = teachers.per_student_params([teacher], None, 1)
    net = networks.build(d.net_spec)
    sparams = jax.vmap(lambda k: networks.init(net, k, (4,)))(
        jax.random.PRNGKey(0)[None])
    keys = jnp.stack([rollout.eval_key(0)])
    alone = jax.jit(jax.vmap(d.baselines))(tparams, keys)
    both = jax.jit(jax.vmap(d.final_eval))(sparams, tparams, keys)
    np.testing.assert_array_equal(np.asarray(alone["teacher"]),
                                  np.asarray(both["teacher_returns"]))
    np.testing.assert_array_equal(np.asarray(alone["random"]), np.asarray(both["random_returns"]))
    assert 5 < float(np.mean(alone["random"])) < 100      # CartPole random play: ~22


def test_ensemble_distill_with_stop_retention(teacher_run, tmp_path):
    cfg = tiny_distill(ensemble=True, stop_retention=0.01, total_steps=1024)
    out = commands.distill(cfg, [str(teacher_run[0])], out=str(tmp_path / "s"),
                           show_progress=False)
    assert out["stopped_early"] and out["students"] == 2
    assert out["evaluation"]["per_seed"][0]["teacher_seed"] == "ensemble of 2"
