"""Distillation of teacher Q-networks into a student: jitted, vmapped over students.

`make_distiller(cfg, env, teacher_spec)` returns pure functions:
  init(key, teacher_params)                   -> DistillState           (vmap over students)
  chunk(state, teacher_params, hyper, t0)      -> (DistillState, metrics) (lax.scan)
A *student* is one point of the vmap axis: a seed, its teacher(s) and its hyperparameters
`hyper = {"temp": scalar, "weights": [n_terms]}`. Sweeps over temperatures and loss weights
are therefore just more students in the same compiled call.

teacher_params carry a leading ensemble axis K: K = 1 for "student i learns from teacher
seed i", K > 1 for an ensemble. Targets are averaged in the space where averaging means
something (losses.py docstring).

Data collection (cfg.collect): the teacher acts (teacher-driven, Rusu et al.), the student
acts and the teacher labels what it visits (student-driven, DAgger-like), a mixture whose
teacher probability decays linearly (mixed), or a fixed dataset collected by the teacher
first and then fitted (dataset). The acting policy is epsilon-greedy with collect_eps.

TD + distillation (QDagger, Agarwal et al. 2022; kickstarting, Schmitt et al. 2018): the `td`
term is the student's own n-step double-DQN TD error on the collected transitions, with its
own target network (`target`); the other terms' weights are multiplied by lambda, fixed at
1, decayed linearly, or QDagger's max(1 - G_student / G_teacher, 0) from the in-training
evaluation, with returns normalised by a random policy's, (G - R) / (G_teacher - R), so that
negative returns behave (`qdagger`: [lambda, G_teacher, R] carried in the state).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import dqn, envs, evaluate, losses, networks, registry, replay, training, views
from distillq.config import DistillConfig
from distillq.dqn import optimizer
from distillq.errors import ConfigError


class DistillState(NamedTuple):
    params: Any          # {"student": student params, "terms": {loss name: its own params}}
    opt_state: Any
    buffer: jax.Array
    env_state: Any
    obs: jax.Array
    key: jax.Array
    best_params: Any     # student params with the best in-training evaluation
    best_return: jax.Array
    target: Any = None   # the td term's target network (None without a td term)
    qdagger: Any = None  # [lambda, teacher's return, random's return] (lambda_schedule qdagger)
    hist: Any = None     # the student's view history per env [E, stack, kept] (views.py)
    view_buffer: Any = None  # the student's input at every buffer row [R, E, view dim]


class Distiller(NamedTuple):
    cfg: DistillConfig
    env: envs.Env
    net_spec: dict
    layout: replay.Layout
    init: Any
    chunk: Any
    final_eval: Any      # (params, teacher_params, key) -> student vs teacher, same keys
    baselines: Any       # (teacher_params, key) -> {"teacher", "random"} returns, same keys
    behaviour: Any       # (state, teacher_params, t, key) -> (acting, teacher's, student's)
    update: Any          # one gradient update on a buffer (tests drive it directly)
    view: Any = None     # views.View: what the student sees (None: the observation)


def hyper_arrays(points: list[dict], names: tuple[str, ...]) -> dict:
    """Per-student hyperparameters as arrays with a leading student axis."""
    return {"temp": jnp.asarray([p["temp"] for p in points], jnp.float32),
            "weights": jnp.asarray([[p["weights"][n] for n in names] for p in points],
                                   jnp.float32)}


def teacher_prob(cfg: DistillConfig, t: jax.Array) -> jax.Array:
    """Probability that the teacher acts at iteration t: 1 for collect=teacher/dataset, 0 for
    student, and for mixed beta(t) = 1 - t / (mix_fraction * total_iterations), clipped."""
    if cfg.collect in ("teacher", "dataset"):
        return jnp.float32(1.0)
    if cfg.collect == "student":
        return jnp.float32(0.0)
    return jnp.clip(1.0 - t / (cfg.mix_fraction * cfg.total_iterations), 0.0, 1.0)


def collecting_action(cfg: DistillConfig, t_greedy: jax.Array, s_greedy: jax.Array,
                      t: jax.Array, key: jax.Array, num_actions: int) -> jax.Array:
    """The acting policy's actions [E] (cfg.collect: teacher, student or mixed; dataset
    collects with the teacher), epsilon-greedy with collect_eps."""
    k_eps, k_rand, k_mix = jax.random.split(key, 3)
    n = t_greedy.shape[0]
    if cfg.collect in ("teacher", "dataset"):
        act = t_greedy
    elif cfg.collect == "student":
        act = s_greedy
    else:  # mixed
        teacher_acts = jax.random.uniform(k_mix, (n,)) < teacher_prob(cfg, t)
        act = jnp.where(teacher_acts, t_greedy, s_greedy)
    explore = jax.random.uniform(k_eps, (n,)) < cfg.collect_eps
    return jnp.where(explore, jax.random.randint(k_rand, (n,), 0, num_actions), act)


def lambda_linear(cfg: DistillConfig, t: jax.Array) -> jax.Array:
    """lambda_schedule linear: 1 -> 0 over lambda_fraction of the iterations."""
    return jnp.clip(1.0 - t / (cfg.lambda_fraction * cfg.total_iterations), 0.0, 1.0)


def lambda_qdagger(student_return: jax.Array, teacher_return: jax.Array,
                   random_return: jax.Array) -> jax.Array:
    """QDagger's max(1 - G_s / G_t, 0) on returns normalised by a random policy's:
    1 - (G_s - R) / (G_t - R), clipped to [0, 1]; 1 while the teacher is no better than R."""
    gap = teacher_return - random_return
    lam = 1.0 - (student_return - random_return) / jnp.where(gap > 1e-6, gap, 1.0)
    return jnp.where(gap > 1e-6, jnp.clip(lam, 0.0, 1.0), 1.0)


def make_objective(cfg: DistillConfig, student: Any, teacher: Any):
    """objective(train_params, teacher_params[K], batch, hyper, target, lam, window)
    -> (loss, per-term losses).

    Every term comes from registry.LOSSES; `batch` is a replay.Transition of sampled states
    [B, ...]. A td term also needs `window` ([B, td_n_step, ...] transitions starting at those
    states) and the student's `target` params. `lam` multiplies every non-td term's weight.
    """
    names = cfg.term_names
    terms = [registry.load(registry.LOSSES[n].impl) for n in names]
    need_hidden = any(registry.LOSSES[n].kind == "hidden" for n in names)
    is_td = jnp.asarray([registry.LOSSES[n].kind == "td" for n in names])
    ls, lt = cfg.layer_pair

    def objective(train_params, teacher_params, batch, hyper, target=None, lam=1.0,
                  window=None, student_obs=None):
        """student_obs: the student's inputs for the batch's states (a view), else obs."""
        td_y = (dqn.td_target(student.apply, train_params["student"], target, window,
                              cfg.td_gamma, cfg.td_double) if cfg.has_td else None)
        obs = batch.obs
        s_q, s_hs = student.apply(train_params["student"],
                                  obs if student_obs is None else student_obs,
                                  return_hidden=True)
        t_q, t_hs = jax.vmap(lambda p: teacher.apply(p, obs, return_hidden=True))(teacher_params)
        x = losses.TermInputs(
            batch=batch, student_q=s_q, teacher_q=jax.lax.stop_gradient(t_q),   # [K, B, A]
            student_h=s_hs[ls] if need_hidden else None,
            teacher_h=jax.lax.stop_gradient(t_hs[lt]) if need_hidden else None,
            temp=hyper["temp"], cfg=cfg, td_target=td_y)
        parts = jnp.stack([term(x, train_params["terms"].get(name))
                           for name, term in zip(names, terms, strict=True)])
        weights = hyper["weights"] * jnp.where(is_td, 1.0, lam)
        return jnp.sum(weights * parts), parts

    return objective


def make_distiller(cfg: DistillConfig, env: envs.Env, teacher_spec: dict) -> Distiller:
    view = views.parse(cfg.student_obs, cfg.frame_stack, env.obs_shape)
    s_shape = env.obs_shape if view is None else (view.dim,)
    scaling = envs.input_scaling(env) if cfg.obs_norm == "bounds" else None
    if scaling is not None and view is not None:
        scaling = views.scaling(view, scaling["shift"], scaling["scale"])
    net_spec = networks.spec(cfg.network, cfg.activation, s_shape, env.num_actions, scaling)
    net = networks.build(net_spec)
    teacher = networks.build(teacher_spec)
    apply, t_apply = net.apply, networks.ensemble_apply(teacher.apply)   # mean Q over K
    tx = optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    E, R, B = cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    layout = replay.Layout(env.obs_shape, env.binary_obs)
    objective = make_objective(cfg, net, teacher)
    ls, lt = cfg.layer_pair
    with_params = [n for n in cfg.term_names if registry.LOSSES[n].params]
    dims = None            # (student, teacher) feature sizes of the feature_layers pair
    if any(registry.LOSSES[n].kind == "hidden" for n in cfg.term_names):
        s_sizes, t_sizes = networks.hidden_sizes(net_spec), networks.hidden_sizes(teacher_spec)
        if not -len(t_sizes) <= lt < len(t_sizes):
            raise ConfigError(f"feature_layers: teacher layer {lt} does not exist in a teacher "
                              f"with {len(t_sizes)} hidden layers")
        dims = (s_sizes[ls], t_sizes[lt])
    rollout = (evaluate.make_rollout(env, apply, cfg.eval_episodes, view=view)
               if cfg.eval_episodes > 0 else None)
    final_eval = evaluate.make_comparison(env, apply, t_apply, cfg.final_episodes, view=view)
    teacher_rollout = evaluate.make_rollout(env, t_apply, cfg.final_episodes)
    random_rollout = evaluate.make_rollout(env, None, cfg.final_episodes)
    qdagger = cfg.lambda_schedule == "qdagger"
    n_window = cfg.td_n_step if cfg.has_td else 1
    from_scratch = all(registry.LOSSES[n].kind == "td" for n in cfg.term_names)
    if qdagger:    # the teacher's and a random policy's in-training evaluation return
        ref_teacher = evaluate.make_rollout(env, t_apply, cfg.eval_episodes)
        ref_random = evaluate.make_rollout(env, None, cfg.eval_episodes)

    def init(key: jax.Array, teacher_params: Any) -> DistillState:
        """Student params, with the output bias set to the teacher's mean Q on the first
        states: Q-values of ~100 (CartPole, gamma 0.99) are otherwise reached only by blowing
        up the weights, which leaves an MSE student unable to resolve small action gaps."""
        k_net, k_env, k_run, k_terms = jax.random.split(key, 4)
        params = networks.init(net, k_net, s_shape)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
        if not from_scratch:   # a td-only student learns nothing from the teacher
            params = networks.set_output_bias(params, t_apply(teacher_params, obs).mean(axis=0))
        k = jax.tree.leaves(teacher_params)[0].shape[0]
        keys = jax.random.split(k_terms, len(with_params)) if len(with_params) > 1 else [k_terms]
        terms = {n: registry.load(registry.LOSSES[n].params)(kk, *dims, k)
                 for n, kk in zip(with_params, keys, strict=False)}
        train = {"student": params, "terms": terms}
        qd = None
        if qdagger:
            k_ref = jax.random.fold_in(k_run, 0x0DA6)
            qd = jnp.stack([jnp.float32(1.0), ref_teacher(teacher_params, k_ref)["returns"].mean(),
                            ref_random(None, k_ref)["returns"].mean()])
        hist = vbuf = None
        if view is not None:
            hist = views.start(view, obs, jax.random.split(jax.random.fold_in(k_env, 1), E))
            vbuf = jnp.zeros((R, E, view.dim), jnp.float32)
        return DistillState(train, tx.init(train), layout.init(R, E), env_state,
                            obs, k_run, params, jnp.asarray(-jnp.inf, jnp.float32),
                            params if cfg.has_td else None, qd, hist, vbuf)

    def student_input(state: DistillState):
        return state.obs if view is None else views.features(state.hist)

    def update(train, opt_state, teacher_params, hyper, buffer, t_written, key, target=None,
               lam=1.0, view_buffer=None):
        row, env_i = replay.sample_indices(key, t_written, *replay.capacity(buffer), B,
                                           n_window)
        window = layout.unpack(replay.gather(buffer, row, env_i))
        batch = jax.tree.map(lambda x: x[:, 0], window)
        s_obs = (None if view_buffer is None
                 else replay.gather(view_buffer, row, env_i)[:, 0])
        (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(
            train, teacher_params, batch, hyper, target, lam, window, s_obs)
        upd, opt_state = tx.update(grads, opt_state, train)
        return optax.apply_updates(train, upd), opt_state, loss, parts

    def behaviour(state: DistillState, teacher_params, t, key):
        """Actions of the collecting policy, the teacher's and the student's greedy ones."""
        t_greedy = jnp.argmax(t_apply(teacher_params, state.obs), -1)
        s_greedy = jnp.argmax(apply(state.params["student"], student_input(state)), -1)
        act = collecting_action(cfg, t_greedy, s_greedy, t, key, env.num_actions)
        return act, t_greedy, s_greedy

    def iteration(carry, t):
        """One iteration; those past the budget (the end of a last, partial chunk) idle."""
        idle = (jnp.float32(0.0), jnp.zeros((len(cfg.term_names),), jnp.float32),
                jnp.float32(jnp.nan), jnp.float32(0.0))
        return jax.lax.cond(t < cfg.total_iterations, live, lambda c, _t: (c, idle), carry, t)

    def live(carry, t):
        state, teacher_params, hyper = carry
        key, k_act, k_env, k_upd = jax.random.split(state.key, 4)

        def collect(s: DistillState):
            act, t_greedy, s_greedy = behaviour(s, teacher_params, t, k_act)
            st = envs.step(env, jax.random.split(k_env, E), s.env_state, act)
            buffer = replay.write(s.buffer, layout.pack(replay.Transition(
                s.obs, act, st.reward, st.terminated, st.done, st.next_obs)), t)
            agree = jnp.mean((t_greedy == s_greedy).astype(jnp.float32))
            if view is not None:   # the student's input of this row; then the next one's
                vbuf = replay.write(s.view_buffer, views.features(s.hist), t)
                k_v = jax.random.split(jax.random.fold_in(k_env, 0x51E3), E)
                hist = views.push(view, s.hist, st.obs, k_v, new_episode=st.done)
                s = s._replace(view_buffer=vbuf, hist=hist)
            return s._replace(buffer=buffer, env_state=st.state, obs=st.obs), agree

        if cfg.collect == "dataset":   # the teacher fills the buffer once, then it is fixed
            state, agree = jax.lax.cond(t < cfg.dataset_iterations, collect,
                                        lambda s: (s, jnp.float32(jnp.nan)), state)
            written = jnp.minimum(t + 1, cfg.dataset_iterations)
        else:
            state, agree = collect(state)
            written = t + 1

        lam = (state.qdagger[0] if qdagger else lambda_linear(cfg, t)
               if cfg.lambda_schedule == "linear" else jnp.float32(1.0))

        def one(c, j, k):
            p, o, target = c
            p, o, loss, parts = update(p, o, teacher_params, hyper, state.buffer, written, k,
                                       target, lam, state.view_buffer)
            if cfg.has_td:   # u: gradient updates so far, as the teacher's DQN counts them
                u = (t - cfg.warmup_iterations) * cfg.updates_per_step + j
                target = dqn.update_target(p["student"], target, u, cfg.td_target_update, 1.0)
            return (p, o, target), (loss, parts)

        (train, opt_state, target), (loss, parts) = training.learn_or_skip(
            t >= cfg.warmup_iterations,
            lambda c: training.updates(one, c, cfg.updates_per_step, k_upd),
            (state.params, state.opt_state, state.target),
            (jnp.float32(0.0), jnp.zeros((len(cfg.term_names),), jnp.float32)))
        state = state._replace(params=train, opt_state=opt_state, target=target, key=key)
        return (state, teacher_params, hyper), (loss, parts, agree, lam)

    def chunk(state: DistillState, teacher_params: Any, hyper: dict, t0: jax.Array):
        ts = t0 + jnp.arange(cfg.chunk_iterations, dtype=jnp.int32)
        (state, _, _), (loss, parts, agree, lam) = jax.lax.scan(
            iteration, (state, teacher_params, hyper), ts)
        key, k_eval = jax.random.split(state.key)
        eval_ret, best, best_ret = training.chunk_tail(
            state.params["student"], state.best_params, state.best_return, rollout, k_eval)
        learning = (ts >= cfg.warmup_iterations) & (ts < cfg.total_iterations)
        if qdagger:    # the next chunk's distillation weight, from this evaluation
            qd = state.qdagger
            state = state._replace(qdagger=qd.at[0].set(lambda_qdagger(eval_ret, qd[1], qd[2])))
        metrics = {
            "lambda": training.masked_mean(lam, learning),
            "loss": training.masked_mean(loss, learning),
            "agreement": jnp.nanmean(agree),
            "eval_return": eval_ret,
            "best_return": best_ret,
            "finite": training.all_finite(state.params, loss),
        }
        term_means = training.masked_mean(parts, learning)
        for i, name in enumerate(cfg.term_names):
            metrics[f"loss_{name}"] = term_means[i]
        return state._replace(key=key, best_params=best, best_return=best_ret), metrics

    def baselines(teacher_params, key):
        """What retention is measured between: the teacher (ensemble) and a uniform-random
        policy, on the final evaluation's keys."""
        return {"teacher": teacher_rollout(teacher_params, key)["returns"],
                "random": random_rollout(None, key)["returns"]}

    return Distiller(cfg, env, net_spec, layout, init, chunk, final_eval, baselines,
                     behaviour, update, view)
