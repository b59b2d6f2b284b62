"""Multi-task students (Rusu et al. 2015): one student distilled from teachers of different
envs, as a System of the chunk skeleton. The network is networks.MultiTaskMLP (a shared trunk,
one Q-head per env); env e is always answered by head e.

collect   every env in the same jitted iteration: each env steps its own `num_envs` copies
          (the acting policy of student.collecting_action) and fills its own buffer
learn     each update samples `batch_size` states from every env's buffer and minimises the
          mean over envs of the distillation objective (that env's head and teacher)
score     the mean over envs of the normalised retention (G_e - R_e) / (T_e - R_e) of the
          in-training evaluation, with the teacher's and a random policy's returns T_e, R_e
          measured once at the start on the evaluation keys (the loop's `aux`: [k, 2])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import registry
from distillq.config import DistillConfig
from distillq.core import envs, loop, networks, replay, rollout, student, td


class Actor(NamedTuple):
    buffers: tuple           # one replay buffer per env
    env_states: tuple
    obs: tuple


class Feed(NamedTuple):
    """What the updates of one iteration read."""

    buffers: tuple
    written: jax.Array       # rows written so far in every env's buffer, this iteration's


class Step(NamedTuple):
    loss: jax.Array          # the mean over envs
    per_env: jax.Array       # [k]
    terms: jax.Array         # [n_terms], mean over envs


class MultiDistiller(NamedTuple):
    system: loop.System
    envs: tuple
    net_spec: dict
    heads: Any               # tuple of k apply functions (env e -> head e)
    layouts: tuple           # replay.Layout per env
    behaviour: Any           # (e, state, teacher_params, t, key) -> (env e's actions, agreement)


def make_spec(network: str, activation: str, env_list: list[envs.Env], obs_norm: str) -> dict:
    """The student's network spec: `network`'s hidden sizes as the shared trunk (mlp or
    linear: heads only), one head per env of env_list."""
    fields = registry.parse_network(network)   # mlp or linear (config.check)
    tasks = []
    for env in env_list:
        task = {"env": env.name, "obs_shape": list(env.obs_shape),
                "num_actions": env.num_actions}
        if obs_norm == "bounds":
            task["input_norm"] = envs.input_scaling(env)
        tasks.append(task)
    return networks.multitask_spec(fields.get("hidden", []), activation, tasks)


def mean_retention(refs: jax.Array, returns: jax.Array):
    """(mean over envs, per env) of the normalised retention (G_e - R_e) / (T_e - R_e), with
    refs[e] = [T_e, R_e]; an env whose teacher is no better than random counts 0."""
    gap = refs[:, 0] - refs[:, 1]
    norm = jnp.where(gap > 1e-6, (returns - refs[:, 1]) / jnp.where(gap > 1e-6, gap, 1.0), 0.0)
    return norm.mean(), norm


def make(cfg: DistillConfig, env_list: list[envs.Env], teacher_specs: list[dict]
         ) -> MultiDistiller:
    k = len(env_list)
    spec = make_spec(cfg.network, cfg.activation, env_list, cfg.obs_norm)
    net = networks.build(spec)
    heads = tuple(networks.task_apply(spec, e) for e in range(k))
    t_applies = tuple(networks.ensemble_apply(networks.build(s).apply) for s in teacher_specs)
    objectives = tuple(student.make_objective(cfg, heads[e], networks.build(teacher_specs[e])
                                              .apply) for e in range(k))
    layouts = tuple(replay.Layout(env.obs_shape, env.binary_obs) for env in env_list)
    tx = td.optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    E, R, B = cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    n_terms = len(cfg.term_names)
    rollouts = (tuple(rollout.make_rollout(env, heads[e], cfg.eval_episodes)
                      for e, env in enumerate(env_list)) if cfg.eval_episodes > 0 else None)
    refs_t = tuple(rollout.make_rollout(env, t_applies[e], max(cfg.eval_episodes, 1))
                   for e, env in enumerate(env_list))
    refs_r = tuple(rollout.make_rollout(env, None, max(cfg.eval_episodes, 1))
                   for env in env_list)
    finals = tuple(rollout.make_comparison(env, heads[e], t_applies[e], cfg.final_episodes)
                   for e, env in enumerate(env_list))

    def init(key: jax.Array, ctx: student.Teaching) -> loop.LoopState:
        """Shared params, each head's bias set to its teacher's mean Q on the first states
        (as a single-env student's is)."""
        tp = ctx.teacher_params
        k_net, k_env, k_run, k_ref = jax.random.split(key, 4)
        params = networks.init(net, k_net, networks.input_shape(spec))
        obs, env_states, buffers, refs = [], [], [], []
        for e, env in enumerate(env_list):
            o, s = envs.reset(env, jax.random.split(jax.random.fold_in(k_env, e), E))
            params = networks.set_head_bias(params, f"q_{e}", t_applies[e](tp[e], o).mean(0))
            obs.append(o)
            env_states.append(s)
            buffers.append(layouts[e].init(R, E))
            k_e = jax.random.fold_in(k_ref, e)
            refs.append(jnp.stack([refs_t[e](tp[e], k_e)["returns"].mean(),
                                   refs_r[e](None, k_e)["returns"].mean()]))
        train = {"student": params, "terms": {}}
        return loop.start(system, loop.Learner(train, None, tx.init(train)),
                          Actor(tuple(buffers), tuple(env_states), tuple(obs)), k_run,
                          jnp.stack(refs))

    def loss_fn(train, teacher_params, batches, hyper):
        outs = [objectives[e].loss(train, teacher_params[e], batches[e], hyper)
                for e in range(k)]
        per_env = jnp.stack([o[0] for o in outs])            # [k]
        parts = jnp.stack([o[1] for o in outs])              # [k, n_terms]
        return per_env.mean(), (per_env, parts.mean(0))

    def behaviour(e, state: loop.LoopState, teacher_params, t, key):
        obs = state.actor.obs[e]
        t_greedy = jnp.argmax(t_applies[e](teacher_params[e], obs), -1)
        s_greedy = jnp.argmax(heads[e](state.learner.params["student"], obs), -1)
        act = student.collecting_action(cfg, t_greedy, s_greedy, t, key,
                                        env_list[e].num_actions)
        return act, jnp.mean((t_greedy == s_greedy).astype(jnp.float32))

    def collect(state: loop.LoopState, ctx: student.Teaching, t: jax.Array, keys):
        k_act, k_env = keys
        a = state.actor
        buffers, env_states, obs, agree = [], [], [], []
        for e, env in enumerate(env_list):   # every env in the same jitted step
            act, ag = behaviour(e, state, ctx.teacher_params, t, jax.random.fold_in(k_act, e))
            st = envs.step(env, jax.random.split(jax.random.fold_in(k_env, e), E),
                           a.env_states[e], act)
            buffers.append(replay.write(a.buffers[e], layouts[e].pack(replay.Transition(
                a.obs[e], act, st.reward, st.terminated, st.done, st.next_obs)), t))
            env_states.append(st.state)
            obs.append(st.obs)
            agree.append(ag)
        actor = Actor(tuple(buffers), tuple(env_states), tuple(obs))
        return state._replace(actor=actor), Feed(actor.buffers, t + 1), jnp.stack(agree)

    def learn(learner: loop.Learner, ctx: student.Teaching, feed: Feed, _t, _j, key):
        keys = jax.random.split(key, k)
        batches = tuple(jax.tree.map(lambda x: x[:, 0], replay.sample(
            feed.buffers[e], layouts[e], keys[e], feed.written, B, 1)) for e in range(k))
        (loss, (per_env, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            learner.params, ctx.teacher_params, batches, ctx.hyper)
        upd, opt_state = tx.update(grads, learner.opt_state, learner.params)
        return (loop.Learner(optax.apply_updates(learner.params, upd), None, opt_state),
                Step(loss, per_env, parts))

    def score(params, state: loop.LoopState, _ctx, key) -> loop.Score:
        rets = jnp.stack([rollouts[e](params, jax.random.fold_in(key, e))["returns"].mean()
                          for e in range(k)])
        s, norm = mean_retention(state.aux, rets)
        figures = {}
        for e in range(k):
            figures[f"eval_return_{e}"] = rets[e]
            figures[f"eval_retention_{e}"] = norm[e]
        return loop.Score(s, figures)

    def summarise(agree, means: Step, _learning, _ts) -> dict:
        out = {"loss": means.loss}
        for e in range(k):
            out[f"loss_{e}"] = means.per_env[e]
            out[f"agreement_{e}"] = jnp.nanmean(agree[:, e])
        for i, name in enumerate(cfg.term_names):
            out[f"loss_{name}"] = means.terms[i]
        return out

    def final(params, ctx: student.Teaching, key):
        return tuple(finals[e](params, ctx.teacher_params[e], jax.random.fold_in(key, e))
                     for e in range(k))

    zero = jnp.float32(0.0)
    system = loop.System(
        schedule=loop.Schedule.of(cfg), init=init, collect_keys=2, collect=collect,
        collect_idle=jnp.full((k,), jnp.nan, jnp.float32), learn=learn,
        learn_skipped=Step(zero, jnp.zeros((k,), jnp.float32),
                           jnp.zeros((n_terms,), jnp.float32)),
        evaluated=lambda train: train["student"],
        score=score if rollouts is not None else None, summarise=summarise, final=final,
        score_name="retention")
    return MultiDistiller(system, tuple(env_list), spec, heads, layouts, behaviour)
