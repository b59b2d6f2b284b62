"""Students, through the distiller's System: who acts in each collection mode, exploration,
the dataset mode's fixed buffer, best params, warm-up, the objective's terms against
hand-computed values (kl per mode, mse, ce, feature and relation terms, every ensemble member
averaged), and short vmapped runs (each loss reduces, each mode runs, sweeps equal separate
runs, ensembles average their members)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import probes
import pytest
from helpers import chunk, same_tree, teaching, tiny_distill

from distillq.core import distill, losses, networks, replay, student
from distillq.runs import calls, store, teachers


def _linear_teacher_run(env, biases: list[list[float]]):
    """A fake teacher run (K seeds) of linear networks with constant Q = bias."""
    spec = networks.spec("linear", "relu", env.obs_shape, env.num_actions)
    net = networks.build(spec)
    zero = jax.tree.map(jnp.zeros_like, networks.init(net, jax.random.PRNGKey(0), env.obs_shape))
    params = [networks.set_output_bias(zero, jnp.asarray(b)) for b in biases]
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *params)
    meta = {"seeds": list(range(len(biases))), "network": spec, "env": env.name}
    return store.Run(None, meta, stacked), spec


def _distiller(env, t_spec, **kw):
    n = kw.get("num_envs", 4)       # a budget that fits however many envs collect
    cfg = tiny_distill(**{"collect_eps": 0.0, "network": "linear", "total_steps": 64 * n,
                          "learning_starts": 2 * n, "buffer_size": 8 * n,
                          "dataset_steps": 4 * n, **kw})
    return cfg, distill.make(cfg, env, t_spec)


def _student_acts(st, action: int):
    """The state with a student whose greedy action is always `action` (of 2)."""
    train = st.learner.params
    bias = jnp.array([1.0, 0.0] if action == 0 else [0.0, 1.0])
    s = networks.set_output_bias(jax.tree.map(jnp.zeros_like, train["student"]), bias)
    return st._replace(learner=st.learner._replace(params={**train, "student": s}))


@pytest.mark.parametrize("mode", ["teacher", "student", "mixed", "dataset"])
def test_behaviour_of_each_collection_mode(mode):
    """Teacher always picks action 1, the student always 0 (constant Q), no exploration."""
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect=mode, num_envs=256, mix_fraction=0.5)
    ctx = teaching(run, cfg)
    st = _student_acts(d.system.init(jax.random.PRNGKey(0), ctx), 0)
    T = cfg.total_iterations
    frac = {}
    for t in (0, T // 4, T // 2, T - 1):
        act, t_greedy, s_greedy = d.behaviour(st, ctx.teacher_params, jnp.int32(t),
                                              jax.random.PRNGKey(t))
        assert np.all(np.asarray(t_greedy) == 1) and np.all(np.asarray(s_greedy) == 0)
        frac[t] = float(np.mean(np.asarray(act) == 1))
    if mode in ("teacher", "dataset"):
        assert set(frac.values()) == {1.0}
    elif mode == "student":
        assert set(frac.values()) == {0.0}
    else:   # beta(t) = 1 - t / (0.5 T): 1 -> 0.5 -> 0 -> 0
        assert frac[0] == 1.0 and frac[T // 2] == 0.0 and frac[T - 1] == 0.0
        assert frac[T // 4] == pytest.approx(0.5, abs=0.1)
    assert float(student.teacher_prob(cfg, jnp.int32(T // 4))) == pytest.approx(
        {"teacher": 1.0, "dataset": 1.0, "student": 0.0, "mixed": 0.5}[mode], abs=0.02)


def test_collect_eps_explores():
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect="teacher", num_envs=512, collect_eps=0.5)
    ctx = teaching(run, cfg)
    st = d.system.init(jax.random.PRNGKey(0), ctx)
    act, _, _ = d.behaviour(st, ctx.teacher_params, jnp.int32(0), jax.random.PRNGKey(0))
    assert float(np.mean(np.asarray(act) == 0)) == pytest.approx(0.25, abs=0.06)   # eps / 2


@pytest.mark.parametrize("mode", ["teacher", "student"])
def test_collected_actions_reach_the_buffer(mode):
    """Through the jitted chunk (no update yet: warm-up covers the chunk), every stored action
    is the acting policy's: teacher 1, student 0."""
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect=mode, learning_starts=128, chunk_steps=16)
    ctx = teaching(run, cfg)
    st = _student_acts(d.system.init(jax.random.PRNGKey(0), ctx), 0)
    st, m = chunk(d.system)(st, ctx, jnp.int32(0))
    stored = d.layout.unpack(st.actor.buffer[:16])
    assert np.all(np.asarray(stored.action) == (1 if mode == "teacher" else 0))
    assert float(m.figures["agreement"]) == 0.0


@pytest.mark.parametrize("collect", ["teacher", "dataset"])
def test_the_updates_of_iteration_t_read_every_row_written_so_far(collect):
    """Online: the t + 1 rows written, this iteration's included; a dataset stops growing
    at dataset_iterations rows."""
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[0.0, 1.0]])
    cfg, d = _distiller(env, spec, collect=collect, num_envs=8, batch_size=8)
    ctx = teaching(run, cfg)
    st = d.system.init(jax.random.PRNGKey(0), ctx)
    keys = list(jax.random.split(jax.random.PRNGKey(1), 2))
    for t in (0, 3, cfg.dataset_iterations + 5):
        _, feed, _ = d.system.collect(st, ctx, jnp.int32(t), keys)
        want = min(t + 1, cfg.dataset_iterations) if collect == "dataset" else t + 1
        assert int(feed.written) == want


@pytest.mark.parametrize("teacher_a,student_a", [(1, 0), (0, 1), (1, 1)])
def test_agreement_counts_only_equal_greedy_actions(teacher_a, student_a):
    env = probes.make("one_step")
    biases = [[0.0, 1.0]] if teacher_a == 1 else [[1.0, 0.0]]
    run, spec = _linear_teacher_run(env, biases)
    cfg, d = _distiller(env, spec, collect="teacher", learning_starts=128, chunk_steps=8)
    ctx = teaching(run, cfg)
    st = _student_acts(d.system.init(jax.random.PRNGKey(0), ctx), student_a)
    _, m = chunk(d.system)(st, ctx, jnp.int32(0))
    assert float(m.figures["agreement"]) == float(teacher_a == student_a)


def test_an_update_fits_the_first_step_of_each_sampled_window(teacher_run, cartpole):
    """With a td term the buffer is sampled in windows of td_n_step transitions: the
    imitation terms and the td term's Q(s, a) are the window's first step (its targets look
    ahead), as the objective on that batch computes them."""
    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(loss=("td", "mse"), td_n_step=3, chunk_steps=16)
    d = distill.make(cfg, cartpole, run.meta["network"])
    ctx = teaching(run, cfg)
    st, _ = chunk(d.system)(d.system.init(jax.random.PRNGKey(0), ctx), ctx, jnp.int32(0))
    s_net = networks.build(d.net_spec)
    obj = student.make_objective(cfg, s_net.apply, networks.build(run.meta["network"]).apply)
    key, written = jax.random.PRNGKey(5), jnp.int32(16)
    train, buffer = st.learner.params, st.actor.buffer
    _, _, _, parts = d.update(train, st.learner.opt_state, ctx.teacher_params, ctx.hyper,
                              buffer, written, key, st.learner.target, 0.5)
    row, env_i = replay.sample_indices(key, written, *replay.capacity(buffer),
                                       cfg.batch_size, 3)
    window = d.layout.unpack(replay.gather(buffer, row, env_i))
    first = jax.tree.map(lambda x: x[:, 0], window)
    _, want = obj.loss(train, ctx.teacher_params, first, ctx.hyper, st.learner.target, 0.5,
                       window)
    np.testing.assert_allclose(np.asarray(parts), np.asarray(want), rtol=1e-6)
    last = jax.tree.map(lambda x: x[:, -1], window)
    _, other = obj.loss(train, ctx.teacher_params, last, ctx.hyper, st.learner.target, 0.5,
                        window)
    assert not np.allclose(np.asarray(parts), np.asarray(other))


def test_dataset_buffer_is_fixed_after_collection(teacher_run, cartpole):
    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(collect="dataset", dataset_steps=128, chunk_steps=32, total_steps=512)
    assert cfg.dataset_iterations == 32
    d = distill.make(cfg, cartpole, run.meta["network"])
    ctx = teaching(run, cfg)
    go = chunk(d.system)
    st, _ = go(d.system.init(jax.random.PRNGKey(0), ctx), ctx, jnp.int32(0))
    after_collect = np.asarray(st.actor.buffer)
    assert np.abs(after_collect[:32]).sum(axis=(1, 2)).min() > 0     # 32 rows written
    assert np.all(after_collect[32:] == 0)
    env_state = st.actor.env_state
    st2, m = go(st, ctx, jnp.int32(32))
    np.testing.assert_array_equal(np.asarray(st2.actor.buffer), after_collect)   # fixed
    assert float(m.figures["loss"]) > 0                                          # but fitted
    assert same_tree(env_state, st2.actor.env_state)                             # no env steps
    assert cfg.env_iterations(64) == 32          # what the run reports as env steps taken


def test_student_keeps_its_best_evaluated_params(teacher_run, cartpole):
    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(chunk_steps=16)
    d = distill.make(cfg, cartpole, run.meta["network"])
    ctx = teaching(run, cfg)
    go = chunk(d.system)
    st0 = d.system.init(jax.random.PRNGKey(0), ctx)
    marker = jax.tree.map(lambda x: jnp.full_like(x, 7.0), st0.best_params)
    st, _ = go(st0._replace(best_params=marker, best_score=jnp.float32(jnp.inf)), ctx,
               jnp.int32(0))
    assert all(np.all(np.asarray(x) == 7.0) for x in jax.tree.leaves(st.best_params))
    st, _ = go(st0._replace(best_params=marker), ctx, jnp.int32(0))
    assert same_tree(st.best_params, st.learner.params["student"])


def test_student_no_update_before_learning_starts(teacher_run, cartpole):
    run = store.load_run(teacher_run[0])
    cfg = tiny_distill(learning_starts=4 * 16, chunk_steps=8)
    assert cfg.warmup_iterations == 16
    d = distill.make(cfg, cartpole, run.meta["network"])
    ctx = teaching(run, cfg)
    go = chunk(d.system)
    st0 = d.system.init(jax.random.PRNGKey(0), ctx)
    st, _ = go(st0, ctx, jnp.int32(0))
    st, _ = go(st, ctx, jnp.int32(8))
    assert same_tree(st.learner.params, st0.learner.params)
    st, m = go(st, ctx, jnp.int32(16))
    assert float(m.figures["loss"]) > 0
    assert not same_tree(st.learner.params, st0.learner.params)


def test_student_output_bias_starts_at_the_teachers_mean_q():
    env = probes.make("one_step")
    run, spec = _linear_teacher_run(env, [[10.0, 20.0], [30.0, 40.0]])
    cfg, d = _distiller(env, spec, network="4")
    st = d.system.init(jax.random.PRNGKey(0), teaching(run, cfg, seed_index=None))
    np.testing.assert_allclose(
        np.asarray(st.learner.params["student"]["params"]["q"]["bias"]), [20.0, 30.0])


# ---------------------------------------------------------------- the objective's terms


def _objective_setup(env, biases, loss, **kw):
    run, spec = _linear_teacher_run(env, biases)
    cfg = tiny_distill(loss=loss, **kw)
    s_spec = networks.spec(cfg.network, "relu", env.obs_shape, env.num_actions)
    s_net, t_net = networks.build(s_spec), networks.build(spec)
    obj = student.make_objective(cfg, s_net.apply, t_net.apply)
    sp = networks.init(s_net, jax.random.PRNGKey(0), env.obs_shape)
    return cfg, obj, sp, s_net, jax.tree.map(jnp.asarray, run.params)


def _batch(obs):
    z = jnp.zeros(obs.shape[:1])
    return replay.Transition(obs, z.astype(jnp.int32), z, z > 0, z > 0, obs)


def _hyper(temp: float, weights) -> student.Hyper:
    return student.Hyper(jnp.float32(temp), jnp.asarray(weights, jnp.float32))


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
    loss, _ = obj.loss({"student": sp, "terms": {}}, tparams, _batch(obs), _hyper(T, [1.0]))
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
    got, _ = obj.loss({"student": sp, "terms": {}}, tparams, _batch(obs),
                      _hyper(1.0, [2.0]))   # weight 2
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
    obj = student.make_objective(cfg, s_net.apply, t_net.apply)
    sp = networks.init(s_net, jax.random.PRNGKey(1), env.obs_shape)
    proj = losses.init_projection(jax.random.PRNGKey(2), (6, 4), 2)
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, 3))
    _, parts = obj.loss({"student": sp, "terms": {"feature": proj}}, tparams, _batch(obs),
                        _hyper(1.0, [1.0] * 4))
    s_h = s_net.apply(sp, obs, return_hidden=True)[1][-1]
    t_h = [t_net.apply(jax.tree.map(lambda x, i=i: x[i], tparams), obs, return_hidden=True)[1][-1]
           for i in range(2)]
    feat = np.mean([float(losses.hint(s_h, t_h[i], proj["w"][i], proj["b"][i]))
                    for i in range(2)])
    rkd = np.mean([float(losses.rkd_distance_one(s_h, t_h[i])) for i in range(2)])
    angle = np.mean([float(losses.rkd_angle_one(s_h[:5], t_h[i][:5])) for i in range(2)])
    assert float(parts[1]) == pytest.approx(feat, rel=1e-5)
    assert float(parts[2]) == pytest.approx(rkd, rel=1e-5)
    assert float(parts[3]) == pytest.approx(angle, rel=1e-5)


def test_fsp_term_relates_the_configured_layers():
    """The objective's fsp part is losses.fsp of the fsp_layers pairs (student 0 and 1 of a
    3-layer MLP, teacher 1 and 0: order matters), each teacher with its own projections."""
    env = probes.make("chain", length=3)
    spec = networks.spec("4,5", "relu", env.obs_shape, env.num_actions)
    t_net = networks.build(spec)
    tparams = jax.vmap(lambda k: networks.init(t_net, k, env.obs_shape))(
        jax.random.split(jax.random.PRNGKey(5), 2))
    cfg = tiny_distill(loss=("kl", "fsp"), network="6,3,2", fsp_layers="0,1:1,0")
    s_net = networks.build(networks.spec(cfg.network, "relu", env.obs_shape, 2))
    dims = student.term_dims(cfg, [6, 3, 2], [4, 5])
    assert dims == {"fsp": (6, 3, 5, 4)}
    proj = student.init_terms(cfg, jax.random.PRNGKey(2), dims, 2)["fsp"]
    obj = student.make_objective(cfg, s_net.apply, t_net.apply)
    sp = networks.init(s_net, jax.random.PRNGKey(1), env.obs_shape)
    obs = jax.random.normal(jax.random.PRNGKey(3), (16, 3))
    _, parts = obj.loss({"student": sp, "terms": {"fsp": proj}}, tparams, _batch(obs),
                        _hyper(1.0, [1.0, 1.0]))
    s_h = s_net.apply(sp, obs, return_hidden=True)[1]
    t_h = [t_net.apply(jax.tree.map(lambda x, i=i: x[i], tparams), obs, return_hidden=True)[1]
           for i in range(2)]
    want = np.mean([float(losses.fsp_one(s_h[0], s_h[1], t_h[i][1], t_h[i][0],
                                         proj["p1"][i], proj["p2"][i])) for i in range(2)])
    assert float(parts[1]) == pytest.approx(want, rel=1e-5) and want > 0
    from distillq.errors import ConfigError

    with pytest.raises(ConfigError, match="fsp_layers: student layer 3"):
        tiny_distill(loss=("kl", "fsp"), network="6,3", fsp_layers="3,1:0,1")
    with pytest.raises(ConfigError, match="expected A,B:C,D"):
        tiny_distill(loss=("kl", "fsp"), fsp_layers="0:1")


def test_lambda_weighs_every_term_but_td():
    """lam multiplies the distillation terms' weights, never the td term's."""
    env = probes.make("one_step")
    cfg, obj, sp, s_net, tparams = _objective_setup(env, [[0.0, 1.0]], ("td", "mse"),
                                                    network="4")
    obs = jnp.ones((4, 1))
    batch = _batch(obs)
    window = jax.tree.map(lambda x: x[:, None].repeat(cfg.td_n_step, 1), batch)
    train = {"student": sp, "terms": {}}
    full, parts = obj.loss(train, tparams, batch, _hyper(1.0, [1.0, 1.0]), sp, 1.0, window)
    half, parts2 = obj.loss(train, tparams, batch, _hyper(1.0, [1.0, 1.0]), sp, 0.5, window)
    np.testing.assert_array_equal(np.asarray(parts), np.asarray(parts2))
    assert float(half) == pytest.approx(float(parts[0]) + 0.5 * float(parts[1]), rel=1e-6)
    assert float(full) == pytest.approx(float(parts[0]) + float(parts[1]), rel=1e-6)


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


# ---------------------------------------------------------------- short vmapped runs


@pytest.fixture(scope="module")
def teacher(teacher_run):
    return store.load_run(teacher_run[0], kind="teacher")


def _train(cfg, env, teacher, seeds=(0, 1), points=None, seed_index=None, chunks=None,
           tparams=None):
    points = points or cfg.sweep_points[:1] * 1
    n = len(seeds)
    d = distill.make(cfg, env, teacher.meta["network"])
    if tparams is None:
        tparams = teachers.per_student_params(
            [teacher], seed_index if seed_index is not None
            else (None if cfg.ensemble else list(range(n))), n)
    hyper = student.hyper_arrays(points if len(points) == n else points * n, cfg.term_names)
    ctx = student.Teaching(tparams, hyper)
    state = jax.jit(jax.vmap(d.system.init))(calls.keys(list(seeds)), ctx)
    go = chunk(d.system, vmapped=True)
    ms = []
    for c in range(chunks or cfg.total_iterations // cfg.chunk_steps):
        state, m = go(state, ctx, jnp.int32(c * cfg.chunk_steps))
        ms.append(jax.device_get(m))
        assert np.all(m.finite)
    return d, state, ctx, ms


@pytest.mark.parametrize("loss", ["mse", "kl", "ce"])
def test_each_output_loss_reduces_its_loss(loss, teacher, cartpole):
    cfg = tiny_distill(loss=(loss,), temp=(2.0,), total_steps=1024)
    d, state, ctx, ms = _train(cfg, cartpole, teacher)
    first, last = ms[1].figures["loss"], ms[-1].figures["loss"]   # chunk 0: mostly warm-up
    assert np.all(last <= first + 1e-6) and last.sum() < first.sum()
    out = jax.jit(jax.vmap(d.system.final))(state.best_params, ctx, calls.eval_keys([0, 1]))
    assert out["returns"].shape == (2, cfg.final_episodes)
    assert np.all(np.asarray(out["agree"]) <= np.asarray(out["lengths"]))


def test_hidden_layer_losses_are_exercised(teacher, cartpole):
    cfg = tiny_distill(loss=("kl", "feature=0.5", "rkd_distance=1", "rkd_angle=2"),
                       hidden=(16, 8), feature_layers="0:-1", total_steps=512)
    d, state, _, ms = _train(cfg, cartpole, teacher)
    for name in ("kl", "feature", "rkd_distance", "rkd_angle"):
        vals = np.array([m.figures[f"loss_{name}"] for m in ms[1:]])
        assert np.all(np.isfinite(vals)) and np.all(vals[-1] > 0), name
    assert np.asarray(ms[-1].figures["loss_feature"]).mean() < \
        np.asarray(ms[1].figures["loss_feature"]).mean()
    proj = state.learner.params["terms"]["feature"]
    assert proj["w"].shape == (2, 1, 16, 16)  # students, ensemble K, student h0, teacher h-1 (16)


@pytest.mark.parametrize("mode", ["teacher", "student", "mixed", "dataset"])
def test_every_collection_mode_runs(mode, teacher, cartpole):
    cfg = tiny_distill(collect=mode, total_steps=512, dataset_steps=128, buffer_size=256)
    d, state, _, ms = _train(cfg, cartpole, teacher)
    buffer = state.actor.buffer
    assert buffer.shape == (2, cfg.buffer_rows, cfg.num_envs, 2 * cartpole.obs_dim + 4)
    assert all(np.all(np.isfinite(m.figures["loss"])) for m in ms)
    filled = np.abs(np.asarray(buffer)).sum(axis=(2, 3)) > 0     # [students, rows]
    if mode == "dataset":   # collected once: exactly dataset_iterations rows, then only fitting
        assert filled.sum(axis=1).tolist() == [cfg.dataset_iterations] * 2
        assert cfg.warmup_iterations == cfg.dataset_iterations
    else:
        assert filled.all()


def test_an_ensemble_student_learns_from_every_member(teacher, cartpole):
    """An ensemble of [A, A] teaches exactly what A alone teaches (the mean of equal members
    is the member: x + x = 2x and 2x / 2 = x in floating point), while [A, B] teaches
    something else: every member reaches the targets."""
    cfg = tiny_distill(ensemble=True, loss=("kl",), total_steps=256)
    both = teachers.per_student_params([teacher], None, 1)             # [1, K=2, ...]
    a_twice = jax.tree.map(lambda x: jnp.concatenate([x[:, :1], x[:, :1]], axis=1), both)
    a_alone = jax.tree.map(lambda x: x[:, :1], both)
    _, s_ab, _, _ = _train(cfg, cartpole, teacher, seeds=(0,), tparams=both)
    _, s_aa, _, _ = _train(cfg, cartpole, teacher, seeds=(0,), tparams=a_twice)
    _, s_a, _, _ = _train(cfg, cartpole, teacher, seeds=(0,), tparams=a_alone)
    assert same_tree(s_aa.learner.params, s_a.learner.params)
    assert not same_tree(s_ab.learner.params, s_a.learner.params)


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
        for a, b in zip(jax.tree.leaves(s_one.learner.params),
                        jax.tree.leaves(s_all.learner.params), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[2 * p:2 * p + 2],
                                       rtol=2e-4, atol=2e-5)


def test_ensemble_targets_are_averaged_in_policy_space(teacher, cartpole):
    cfg = tiny_distill(loss=("ce",), ensemble=True)
    s_net = networks.build(networks.spec(cfg.network, "relu", (4,), 2))
    t_net = networks.build(teacher.meta["network"])
    obj = student.make_objective(cfg, s_net.apply, t_net.apply)
    tparams = jax.tree.map(jnp.asarray, teacher.params)               # K = 2 seeds
    sp = networks.init(s_net, jax.random.PRNGKey(0), (4,))
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, 4))
    batch = _batch(obs)
    loss, _ = obj.loss({"student": sp, "terms": {}}, tparams, batch, _hyper(1.0, [1.0]))
    t_q = jax.vmap(t_net.apply, in_axes=(0, None))(tparams, obs)
    mix = losses.greedy_probs(t_q).mean(0)
    assert float(loss) == pytest.approx(float(losses.soft_ce(s_net.apply(sp, obs), mix)),
                                        rel=1e-5)
    one = jax.tree.map(lambda x: x[:1], tparams)
    loss1, _ = obj.loss({"student": sp, "terms": {}}, one, batch, _hyper(1.0, [1.0]))
    assert float(loss1) == pytest.approx(float(losses.ce(s_net.apply(sp, obs), t_q[:1])),
                                         rel=1e-5)


def test_baselines_are_the_comparison_s_teacher_and_random_sides(teacher, cartpole):
    """The ensemble's own return and the random policy's (used for stop_retention) equal
    what the student-vs-teacher comparison reports on the same keys."""
    cfg = tiny_distill(ensemble=True)
    d = distill.make(cfg, cartpole, teacher.meta["network"])
    tparams = teachers.per_student_params([teacher], None, 1)
    net = networks.build(d.net_spec)
    sparams = jax.vmap(lambda k: networks.init(net, k, (4,)))(jax.random.PRNGKey(0)[None])
    keys = calls.eval_keys([0])
    hyper = student.hyper_arrays(cfg.sweep_points, cfg.term_names)
    alone = jax.jit(jax.vmap(d.baselines))(tparams, keys)
    both = jax.jit(jax.vmap(d.system.final))(sparams, student.Teaching(tparams, hyper), keys)
    np.testing.assert_array_equal(np.asarray(alone["teacher"]),
                                  np.asarray(both["teacher_returns"]))
    np.testing.assert_array_equal(np.asarray(alone["random"]), np.asarray(both["random_returns"]))
    assert 5 < float(np.mean(alone["random"])) < 100      # CartPole random play: ~22


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
