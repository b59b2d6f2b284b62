"""Distillation of teacher Q-networks into a student, as a System of the chunk skeleton.

collect   who acts (cfg.collect): the teacher (teacher-driven, Rusu et al.), the student with
          the teacher labelling what it visits (student-driven, DAgger-like), a mixture whose
          teacher probability decays linearly (mixed), or the teacher filling a fixed dataset
          first, which is then fitted (dataset); epsilon-greedy with collect_eps. A privileged
          student's view of each state (views.py) is stored beside the replay rows.
learn     one gradient step of the objective (student.make_objective) on a batch of stored
          states; with a td term, the student's own target network moves as a teacher's does
score     the mean return of eval_episodes greedy episodes of the student

TD + distillation (QDagger, Agarwal et al. 2022; kickstarting, Schmitt et al. 2018): the `td`
term is the student's own n-step double-DQN TD error on the collected transitions, with its
own target network; the other terms' weights are multiplied by lambda, fixed at 1, decayed
linearly, or QDagger's max(1 - G_student / G_teacher, 0) from the in-training evaluation, with
returns normalised by a random policy's, (G - R) / (G_teacher - R), so that negative returns
behave (the loop's `aux`: [lambda, G_teacher, R], updated after every score).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import registry
from distillq.config import DistillConfig
from distillq.core import envs, explore, loop, networks, replay, rollout, student, td, views
from distillq.errors import ConfigError


class Actor(NamedTuple):
    buffer: Any
    env_state: Any
    obs: jax.Array
    hist: Any = None         # the student's view history per env [E, stack, *frame] (views)
    view_buffer: Any = None  # the student's input at every buffer row [R, E, *view.shape]


class Feed(NamedTuple):
    """What the updates of one iteration read."""

    buffer: Any
    written: jax.Array       # rows written so far (the dataset stops growing)
    lam: jax.Array           # weight of the non-td terms
    view_buffer: Any


class Collected(NamedTuple):
    agree: jax.Array         # the student's greedy action equals the teacher's (NaN: none)
    lam: jax.Array


class Step(NamedTuple):
    loss: jax.Array
    terms: jax.Array         # [n_terms] each term's loss


class Distiller(NamedTuple):
    system: loop.System
    env: envs.Env
    net_spec: dict
    layout: replay.Layout
    baselines: Any       # (teacher_params, key) -> {"teacher", "random"} returns, same keys
    behaviour: Any       # (state, teacher_params, t, key) -> (acting, teacher's, student's)
    update: Any          # one gradient update on a buffer (tests drive it directly)
    view: Any = None     # views.View: what the student sees (None: the observation)


class VisitedSums(NamedTuple):
    """Sums over the observations (flattened) a teacher visits, taken about `ref` (the mean
    first observation) so that float32 keeps the variance: n, sum(x - ref), sum((x - ref)^2)."""

    ref: jax.Array       # [obs dim]
    n: jax.Array
    s1: jax.Array        # [obs dim]
    s2: jax.Array        # [obs dim]


def visited_sums(env: envs.Env, teacher_spec: dict, teacher_params, key: jax.Array,
                 num_envs: int, steps: int, eps: float) -> VisitedSums:
    """The observations of `steps` vectorised steps of a teacher (ensemble params [K, ...])
    playing epsilon-greedy (eps) in num_envs envs, as sums (obs_norm = "teacher")."""
    t_apply = networks.ensemble_apply(networks.build(teacher_spec).apply)
    k_reset, k_run = jax.random.split(key)
    obs, state = envs.reset(env, jax.random.split(k_reset, num_envs))
    ref = obs.reshape(num_envs, -1).mean(0)

    def body(carry, k):
        obs, state, s1, s2 = carry
        k_e, k_r, k_s = jax.random.split(k, 3)
        act = explore.epsilon_greedy(k_e, k_r, t_apply(teacher_params, obs), eps)
        st = envs.step(env, jax.random.split(k_s, num_envs), state, act)
        x = obs.reshape(num_envs, -1) - ref
        return (st.obs, st.state, s1 + x.sum(0), s2 + (x * x).sum(0)), None

    zeros = jnp.zeros_like(ref)
    (_, _, s1, s2), _ = jax.lax.scan(body, (obs, state, zeros, zeros),
                                     jax.random.split(k_run, steps))
    return VisitedSums(ref, jnp.float32(steps * num_envs), s1, s2)


def pooled_scaling(sums: VisitedSums, min_std: float = 1e-6) -> dict:
    """The input scaling {"shift", "scale"} from the sums of several teachers (leading axis):
    every teacher's states weigh alike; shift = the mean, scale = 1 / std per dimension (1 for
    a dimension that never moves, e.g. a pixel that is never lit). Host side, float64."""
    import numpy as np

    n = np.asarray(sums.n, np.float64)[:, None]
    d1 = np.asarray(sums.s1, np.float64) / n
    mean_t = np.asarray(sums.ref, np.float64) + d1
    var_t = np.maximum(np.asarray(sums.s2, np.float64) / n - d1 * d1, 0.0)
    mean = mean_t.mean(0)
    var = np.maximum((var_t + mean_t ** 2).mean(0) - mean ** 2, 0.0)
    std = np.sqrt(var)
    scale = np.where(std > min_std, 1.0 / np.maximum(std, min_std), 1.0)
    return {"shift": [float(v) for v in mean], "scale": [float(v) for v in scale]}


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


def make(cfg: DistillConfig, env: envs.Env, teacher_spec: dict,
         input_norm: dict | None = None, teacher_view: views.View | None = None) -> Distiller:
    """input_norm: the scaling of obs_norm = "teacher" (pooled_scaling of the teachers'
    visited states, or a resumed run's spec); the other obs_norm values need none.
    teacher_view: the teacher is itself a view student (a chain in the student's modality,
    e.g. pixels to smaller pixels): it sees, acts and labels on the student's own inputs,
    so the student must have the same view."""
    view = views.parse(cfg.student_obs, cfg.frame_stack, env.obs_shape, env.name)
    if teacher_view is not None and view != teacher_view:
        v, spell = teacher_view, views.text(teacher_view)
        raise ConfigError(f"the teacher sees a view of the observation ({spell or 'all'}, "
                          f"{v.stack} stacked): it teaches a student with the same view "
                          f"(--student-obs '{spell}' --frame-stack {v.stack})")
    if teacher_view is not None and cfg.obs_norm == "teacher" and not view.pixels:
        raise ConfigError("obs_norm = 'teacher' measures the teacher's states, and this "
                          "teacher sees a view of them: use none or bounds")
    s_shape = env.obs_shape if view is None else view.shape
    pixels = view is not None and bool(view.pixels)   # frames: ink in [0, 1], no scaling
    if cfg.obs_norm == "teacher" and input_norm is None and not pixels:
        raise ValueError("obs_norm = 'teacher' needs the teachers' input_norm")
    scaling = (envs.input_scaling(env) if cfg.obs_norm == "bounds"
               else input_norm if cfg.obs_norm == "teacher" else None)
    if scaling is not None and view is not None:
        scaling = views.scaling(view, scaling["shift"], scaling["scale"])
    net_spec = networks.spec(cfg.network, cfg.activation, s_shape, env.num_actions, scaling)
    net = networks.build(net_spec)
    teacher = networks.build(teacher_spec)
    apply, t_apply = net.apply, networks.ensemble_apply(teacher.apply)   # mean Q over K
    tx = td.optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    E, R, B = cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    layout = replay.Layout(env.obs_shape, env.binary_obs)
    shared = teacher_view is not None      # the teacher reads the student's inputs
    objective = student.make_objective(cfg, apply, teacher.apply, teacher_sees_view=shared)
    tdo = student.td_options(cfg)
    dims = {}              # the widths each hidden term relates (student.term_dims)
    if any(registry.LOSSES[n].kind == "hidden" for n in cfg.term_names):
        dims = student.term_dims(cfg, networks.hidden_sizes(net_spec),
                                 networks.hidden_sizes(teacher_spec))
    eval_rollout = (rollout.make_rollout(env, apply, cfg.eval_episodes, view=view)
                    if cfg.eval_episodes > 0 else None)
    comparison = rollout.make_comparison(env, apply, t_apply, cfg.final_episodes, view=view,
                                         teacher_view=teacher_view)
    select_rollout = (rollout.make_rollout(env, apply, cfg.select_episodes, view=view)
                      if cfg.inits > 1 else None)
    teacher_rollout = rollout.make_rollout(env, t_apply, cfg.final_episodes,
                                           view=teacher_view)
    random_rollout = rollout.make_rollout(env, None, cfg.final_episodes)
    qdagger = cfg.lambda_schedule == "qdagger"
    n_window = tdo.n_step if cfg.has_td else 1
    from_scratch = all(registry.LOSSES[n].kind == "td" for n in cfg.term_names)
    if qdagger:    # the teacher's and a random policy's in-training evaluation return
        ref_teacher = rollout.make_rollout(env, t_apply, cfg.eval_episodes, view=teacher_view)
        ref_random = rollout.make_rollout(env, None, cfg.eval_episodes)

    def init(key: jax.Array, ctx: student.Teaching) -> loop.LoopState:
        """Student params, with the output bias set to the teacher's mean Q on the first
        states: Q-values of ~100 (CartPole, gamma 0.99) are otherwise reached only by blowing
        up the weights, which leaves an MSE student unable to resolve small action gaps."""
        teacher_params = ctx.teacher_params
        k_net, k_env, k_run, k_terms = jax.random.split(key, 4)
        params = networks.init(net, k_net, s_shape)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
        hist = vbuf = None
        if view is not None:
            hist = views.start(view, obs, jax.random.split(jax.random.fold_in(k_env, 1), E))
            vbuf = views.buffer(view, R, E)
        if not from_scratch:   # a td-only student learns nothing from the teacher
            t_in = views.features(view, hist) if shared else obs
            params = networks.set_output_bias(params, t_apply(teacher_params, t_in).mean(axis=0))
        k = jax.tree.leaves(teacher_params)[0].shape[0]
        train = {"student": params, "terms": student.init_terms(cfg, k_terms, dims, k)}
        qd = None
        if qdagger:
            k_ref = jax.random.fold_in(k_run, 0x0DA6)
            qd = jnp.stack([jnp.float32(1.0), ref_teacher(teacher_params, k_ref)["returns"].mean(),
                            ref_random(None, k_ref)["returns"].mean()])
        learner = loop.Learner(train, params if cfg.has_td else None, tx.init(train))
        return loop.start(system, learner, Actor(layout.init(R, E), env_state, obs, hist, vbuf),
                          k_run, qd)

    def student_input(actor: Actor):
        return actor.obs if view is None else views.features(view, actor.hist)

    def update(train, opt_state, teacher_params, hyper, buffer, t_written, key, target=None,
               lam=1.0, view_buffer=None):
        row, env_i = replay.sample_indices(key, t_written, *replay.capacity(buffer), B,
                                           n_window)
        window = layout.unpack(replay.gather(buffer, row, env_i))
        batch = jax.tree.map(lambda x: x[:, 0], window)
        s_obs = None
        if view_buffer is not None:
            stored = replay.gather(view_buffer, row, env_i)          # [B, n, *view.shape]
            s_obs = views.inputs(view, stored[:, 0])
            if cfg.has_td:    # the td target bootstraps on the student's view of s'
                window = window._replace(next_obs=views.next_inputs(
                    view, stored, window.next_obs, jax.random.fold_in(key, 0x7D)))
        (loss, parts), grads = jax.value_and_grad(objective.loss, has_aux=True)(
            train, teacher_params, batch, hyper, target, lam, window, s_obs)
        upd, opt_state = tx.update(grads, opt_state, train)
        return optax.apply_updates(train, upd), opt_state, loss, parts

    def behaviour(state: loop.LoopState, teacher_params, t, key):
        """Actions of the collecting policy, the teacher's and the student's greedy ones."""
        s_in = student_input(state.actor)
        t_greedy = jnp.argmax(t_apply(teacher_params, s_in if shared else state.actor.obs), -1)
        s_greedy = jnp.argmax(apply(state.learner.params["student"], s_in), -1)
        act = student.collecting_action(cfg, t_greedy, s_greedy, t, key, env.num_actions)
        return act, t_greedy, s_greedy

    def collect(state: loop.LoopState, ctx: student.Teaching, t: jax.Array, keys):
        k_act, k_env = keys

        def step(s: loop.LoopState):
            act, t_greedy, s_greedy = behaviour(s, ctx.teacher_params, t, k_act)
            a = s.actor
            st = envs.step(env, jax.random.split(k_env, E), a.env_state, act)
            buffer = replay.write(a.buffer, layout.pack(replay.Transition(
                a.obs, act, st.reward, st.terminated, st.done, st.next_obs)), t)
            agree = jnp.mean((t_greedy == s_greedy).astype(jnp.float32))
            if view is not None:   # the student's input of this row; then the next one's
                vbuf = replay.write(a.view_buffer, views.stored(view, a.hist), t)
                k_v = jax.random.split(jax.random.fold_in(k_env, 0x51E3), E)
                hist = views.push(view, a.hist, st.obs, k_v, new_episode=st.done)
                a = a._replace(view_buffer=vbuf, hist=hist)
            a = a._replace(buffer=buffer, env_state=st.state, obs=st.obs)
            return s._replace(actor=a), agree

        if cfg.collect == "dataset":   # the teacher fills the buffer once, then it is fixed
            state, agree = jax.lax.cond(t < cfg.dataset_iterations, step,
                                        lambda s: (s, jnp.float32(jnp.nan)), state)
            written = jnp.minimum(t + 1, cfg.dataset_iterations)
        else:
            state, agree = step(state)
            written = t + 1
        lam = (state.aux[0] if qdagger else lambda_linear(cfg, t)
               if cfg.lambda_schedule == "linear" else jnp.float32(1.0))
        a = state.actor
        return state, Feed(a.buffer, written, lam, a.view_buffer), Collected(agree, lam)

    def learn(learner: loop.Learner, ctx: student.Teaching, feed: Feed, t, j, key):
        p, o, loss, parts = update(learner.params, learner.opt_state, ctx.teacher_params,
                                   ctx.hyper, feed.buffer, feed.written, key, learner.target,
                                   feed.lam, feed.view_buffer)
        target = learner.target
        if cfg.has_td:   # u: gradient updates so far, as the teacher's DQN counts them
            u = (t - cfg.warmup_iterations) * cfg.updates_per_step + j
            target = td.update_target(p["student"], target, u, tdo.target_update, tdo.tau)
        return loop.Learner(p, target, o), Step(loss, parts)

    def score(params, _state, _ctx, key) -> loop.Score:
        return loop.Score(eval_rollout(params, key)["returns"].mean(), {})

    def after_score(state: loop.LoopState, eval_return: jax.Array) -> loop.LoopState:
        """QDagger: the next chunk's distillation weight, from this evaluation."""
        qd = state.aux
        return state._replace(aux=qd.at[0].set(lambda_qdagger(eval_return, qd[1], qd[2])))

    def summarise(c: Collected, means: Step, learning, _ts) -> dict:
        out = {"lambda": loop.masked_mean(c.lam, learning), "loss": means.loss,
               "agreement": jnp.nanmean(c.agree)}
        for i, name in enumerate(cfg.term_names):
            out[f"loss_{name}"] = means.terms[i]
        return out

    def final(params, ctx: student.Teaching, key):
        return comparison(params, ctx.teacher_params, key)

    def select(params, _ctx, key):
        """Per-episode returns that choose among a student's initialisations."""
        return select_rollout(params, key)["returns"]

    n_terms = len(cfg.term_names)
    zero = jnp.float32(0.0)
    system = loop.System(
        schedule=loop.Schedule.of(cfg), init=init, collect_keys=2, collect=collect,
        collect_idle=Collected(jnp.float32(jnp.nan), zero), learn=learn,
        learn_skipped=Step(zero, jnp.zeros((n_terms,), jnp.float32)),
        evaluated=lambda train: train["student"],
        score=score if eval_rollout is not None else None, summarise=summarise, final=final,
        after_score=after_score if qdagger else None,
        select=select if select_rollout is not None else None)

    def baselines(teacher_params, key):
        """What retention is measured between: the teacher (ensemble) and a uniform-random
        policy, on the final evaluation's keys."""
        return {"teacher": teacher_rollout(teacher_params, key)["returns"],
                "random": random_rollout(None, key)["returns"]}

    return Distiller(system, env, net_spec, layout, baselines, behaviour, update, view)
