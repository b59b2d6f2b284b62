"""Multi-task students (Rusu et al. 2015): one student distilled from teachers of different envs.

The network: each env's observation is flattened, scaled (obs_norm = "bounds": that env's
bounds), zero-padded to the widest env's size D and followed by a one-hot env id, so every
env feeds the same input of D + k values. A shared MLP trunk (`--student`'s hidden sizes)
maps it to features, and one linear Q-head per env (`q_0` ... `q_{k-1}`, each with that env's
actions) reads them. Env e is always answered by head e: `task_apply(spec, e)` is an ordinary
(params, obs) -> Q function for that env, so rollouts, comparisons and evaluation use it as
they use any network.

The distiller runs every env in the same jitted iteration: each env steps its own
`num_envs` copies and fills its own buffer; each gradient update samples `batch_size`
states from every env's buffer and minimises the mean over envs of the distillation
objective (distill.make_objective with that env's head and teacher). The in-training
evaluation scores a student by its mean normalised retention over envs, (G_e - R_e) /
(T_e - R_e), with the teacher's and a random policy's returns T_e and R_e measured once at
the start on the evaluation keys; the best-scoring params are kept.

Spec (meta.json "network"): {"type": "multitask", "hidden": [...], "activation",
"tasks": [{"env", "obs_shape", "num_actions", "input_norm"?}], "in_dim": D + k}.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from distillq import distill as D
from distillq import envs, evaluate, networks, registry, replay, training
from distillq.config import DistillConfig
from distillq.dqn import optimizer

KIND = "multitask"


class MultiTaskMLP(nn.Module):
    """Shared trunk (Dense hidden_i + activation), one Q-head per env (q_e)."""

    hidden: tuple[int, ...]
    heads: tuple[int, ...]      # actions per env
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        act = networks.ACTIVATIONS[self.activation]
        hiddens = []
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"hidden_{i}")(x))
            hiddens.append(x)
        qs = tuple(nn.Dense(a, name=f"q_{e}")(x) for e, a in enumerate(self.heads))
        return (qs, tuple(hiddens)) if return_hidden else qs


def make_spec(network: str, activation: str, env_list: list[envs.Env],
              obs_norm: str) -> dict:
    fields = registry.parse_network(network)   # mlp or linear (config.check)
    tasks = []
    for env in env_list:
        task = {"env": env.name, "obs_shape": list(env.obs_shape),
                "num_actions": env.num_actions}
        if obs_norm == "bounds":
            task["input_norm"] = envs.input_scaling(env)
        tasks.append(task)
    width = max(math.prod(t["obs_shape"]) for t in tasks)
    return {"type": KIND, "hidden": list(fields.get("hidden", [])), "activation": activation,
            "tasks": tasks, "in_dim": width + len(tasks)}


def module(spec: dict) -> MultiTaskMLP:
    return MultiTaskMLP(tuple(spec["hidden"]), tuple(t["num_actions"] for t in spec["tasks"]),
                        spec["activation"])


def encode(spec: dict, e: int, obs: jax.Array) -> jax.Array:
    """Env e's observations [..., *obs_shape] -> the shared input [..., D + k]: flattened,
    scaled (input_norm), zero-padded to D, then the one-hot env id."""
    task = spec["tasks"][e]
    shape = tuple(task["obs_shape"])
    x = obs.reshape(*obs.shape[:obs.ndim - len(shape)], -1).astype(jnp.float32)
    norm = task.get("input_norm")
    if norm is not None:
        x = (x - jnp.asarray(norm["shift"], jnp.float32)) * jnp.asarray(norm["scale"],
                                                                           jnp.float32)
    k = len(spec["tasks"])
    pad = spec["in_dim"] - k - x.shape[-1]
    onehot = jnp.broadcast_to(jax.nn.one_hot(e, k, dtype=jnp.float32), (*x.shape[:-1], k))
    return jnp.concatenate([x, jnp.zeros((*x.shape[:-1], pad), jnp.float32), onehot], -1)


def init_params(spec: dict, key: jax.Array) -> Any:
    return module(spec).init(key, jnp.zeros((spec["in_dim"],), jnp.float32))


def param_count(spec: dict) -> int:
    return networks.param_count(spec)


def task_apply(spec: dict, e: int):
    """Env e's Q-function: (params, obs[, return_hidden]) -> its head's Q-values."""
    mod = module(spec)

    def apply(params: Any, obs: jax.Array, return_hidden: bool = False):
        qs, hs = mod.apply(params, encode(spec, e, obs), return_hidden=True)
        return (qs[e], hs) if return_hidden else qs[e]

    return apply


class _Head(NamedTuple):
    """A network-like view of one head (what distill.make_objective calls)."""
    apply: Any


def set_head_bias(params: Any, e: int, bias: jax.Array) -> Any:
    inner = dict(params["params"])
    name = f"q_{e}"
    inner[name] = {**inner[name], "bias": jnp.asarray(bias, inner[name]["bias"].dtype)}
    return {**params, "params": inner}


def mean_retention(refs: jax.Array, returns: jax.Array):
    """(mean over envs, per env) of the normalised retention (G_e - R_e) / (T_e - R_e), with
    refs[e] = [T_e, R_e]; an env whose teacher is no better than random counts 0."""
    gap = refs[:, 0] - refs[:, 1]
    norm = jnp.where(gap > 1e-6, (returns - refs[:, 1]) / jnp.where(gap > 1e-6, gap, 1.0), 0.0)
    return norm.mean(), norm


class MTState(NamedTuple):
    params: Any            # {"student": params, "terms": {}}
    opt_state: Any
    buffers: tuple         # one replay buffer per env
    env_states: tuple
    obs: tuple
    key: jax.Array
    best_params: Any
    best_score: jax.Array  # best mean normalised retention of the in-training evaluation
    refs: jax.Array        # [k, 2]: teacher's and random policy's in-training eval returns


class MultiDistiller(NamedTuple):
    cfg: DistillConfig
    envs: tuple
    net_spec: dict
    init: Any              # (key, teacher_params: tuple of k) -> MTState
    chunk: Any             # (state, teacher_params, hyper, t0) -> (state, metrics)
    final_eval: Any        # (params, teacher_params, key) -> tuple of k comparisons
    heads: Any             # tuple of k apply functions (env e -> head e)
    layouts: tuple         # replay.Layout per env
    behaviour: Any         # (e, state, teacher_params, t, key) -> (env e's actions, agreement)


def make(cfg: DistillConfig, env_list: list[envs.Env], teacher_specs: list[dict]) -> MultiDistiller:
    k = len(env_list)
    spec = make_spec(cfg.network, cfg.activation, env_list, cfg.obs_norm)
    heads = tuple(task_apply(spec, e) for e in range(k))
    t_applies = tuple(networks.ensemble_apply(networks.build(s).apply) for s in teacher_specs)
    objectives = tuple(D.make_objective(cfg, _Head(heads[e]), networks.build(teacher_specs[e]))
                       for e in range(k))
    layouts = tuple(replay.Layout(env.obs_shape, env.binary_obs) for env in env_list)
    tx = optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    E, R, B = cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    n_terms = len(cfg.term_names)
    rollouts = (tuple(evaluate.make_rollout(env, heads[e], cfg.eval_episodes)
                      for e, env in enumerate(env_list)) if cfg.eval_episodes > 0 else None)
    refs_t = tuple(evaluate.make_rollout(env, t_applies[e], max(cfg.eval_episodes, 1))
                   for e, env in enumerate(env_list))
    refs_r = tuple(evaluate.make_rollout(env, None, max(cfg.eval_episodes, 1))
                   for env in env_list)
    finals = tuple(evaluate.make_comparison(env, heads[e], t_applies[e], cfg.final_episodes)
                   for e, env in enumerate(env_list))

    def init(key: jax.Array, teacher_params: tuple) -> MTState:
        """Shared params, each head's bias set to its teacher's mean Q on the first states
        (as distill.init does for a single head)."""
        k_net, k_env, k_run, k_ref = jax.random.split(key, 4)
        params = init_params(spec, k_net)
        obs, env_states, buffers, refs = [], [], [], []
        for e, env in enumerate(env_list):
            o, s = envs.reset(env, jax.random.split(jax.random.fold_in(k_env, e), E))
            params = set_head_bias(params, e, t_applies[e](teacher_params[e], o).mean(axis=0))
            obs.append(o)
            env_states.append(s)
            buffers.append(layouts[e].init(R, E))
            k_e = jax.random.fold_in(k_ref, e)
            refs.append(jnp.stack([refs_t[e](teacher_params[e], k_e)["returns"].mean(),
                                   refs_r[e](None, k_e)["returns"].mean()]))
        train = {"student": params, "terms": {}}
        return MTState(train, tx.init(train), tuple(buffers), tuple(env_states), tuple(obs),
                       k_run, params, jnp.asarray(-jnp.inf, jnp.float32), jnp.stack(refs))

    def loss_fn(train, teacher_params, batches, hyper):
        outs = [objectives[e](train, teacher_params[e], batches[e], hyper) for e in range(k)]
        losses = jnp.stack([o[0] for o in outs])            # [k]
        parts = jnp.stack([o[1] for o in outs])             # [k, n_terms]
        return losses.mean(), (losses, parts.mean(0))

    def update(train, opt_state, teacher_params, hyper, buffers, t_written, key):
        keys = jax.random.split(key, k)
        batches = tuple(jax.tree.map(lambda x: x[:, 0], replay.sample(
            buffers[e], layouts[e], keys[e], t_written, B, 1)) for e in range(k))
        (loss, (per_env, parts)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            train, teacher_params, batches, hyper)
        upd, opt_state = tx.update(grads, opt_state, train)
        return optax.apply_updates(train, upd), opt_state, loss, per_env, parts

    def acting(e, state, teacher_params, t, key):
        t_greedy = jnp.argmax(t_applies[e](teacher_params[e], state.obs[e]), -1)
        s_greedy = jnp.argmax(heads[e](state.params["student"], state.obs[e]), -1)
        act = D.collecting_action(cfg, t_greedy, s_greedy, t, key, env_list[e].num_actions)
        return act, jnp.mean((t_greedy == s_greedy).astype(jnp.float32))

    def live(carry, t):
        state, teacher_params, hyper = carry
        key, k_act, k_env, k_upd = jax.random.split(state.key, 4)
        buffers, env_states, obs, agree = [], [], [], []
        for e, env in enumerate(env_list):   # every env in the same jitted step
            act, ag = acting(e, state, teacher_params, t, jax.random.fold_in(k_act, e))
            st = envs.step(env, jax.random.split(jax.random.fold_in(k_env, e), E),
                           state.env_states[e], act)
            buffers.append(replay.write(state.buffers[e], layouts[e].pack(replay.Transition(
                state.obs[e], act, st.reward, st.terminated, st.done, st.next_obs)), t))
            env_states.append(st.state)
            obs.append(st.obs)
            agree.append(ag)
        buffers = tuple(buffers)

        def one(c, _j, kk):
            p, o = c
            p, o, loss, per_env, parts = update(p, o, teacher_params, hyper, buffers, t + 1, kk)
            return (p, o), (loss, per_env, parts)

        (train, opt_state), (loss, per_env, parts) = training.learn_or_skip(
            t >= cfg.warmup_iterations,
            lambda c: training.updates(one, c, cfg.updates_per_step, k_upd),
            (state.params, state.opt_state),
            (jnp.float32(0.0), jnp.zeros((k,), jnp.float32), jnp.zeros((n_terms,),
                                                                         jnp.float32)))
        state = state._replace(params=train, opt_state=opt_state, buffers=buffers,
                               env_states=tuple(env_states), obs=tuple(obs), key=key)
        return (state, teacher_params, hyper), (loss, per_env, parts, jnp.stack(agree))

    def iteration(carry, t):
        idle = (jnp.float32(0.0), jnp.zeros((k,), jnp.float32),
                jnp.zeros((n_terms,), jnp.float32), jnp.full((k,), jnp.nan, jnp.float32))
        return jax.lax.cond(t < cfg.total_iterations, live, lambda c, _t: (c, idle), carry, t)

    def chunk(state: MTState, teacher_params: tuple, hyper: dict, t0: jax.Array):
        ts = t0 + jnp.arange(cfg.chunk_iterations, dtype=jnp.int32)
        (state, _, _), (loss, per_env, parts, agree) = jax.lax.scan(
            iteration, (state, teacher_params, hyper), ts)
        key, k_eval = jax.random.split(state.key)
        learning = (ts >= cfg.warmup_iterations) & (ts < cfg.total_iterations)
        metrics = {"loss": training.masked_mean(loss, learning)}
        best, best_score = state.best_params, state.best_score
        student = state.params["student"]
        if rollouts is not None:
            rets = jnp.stack([rollouts[e](student, jax.random.fold_in(k_eval, e))["returns"]
                              .mean() for e in range(k)])
            s, norm = mean_retention(state.refs, rets)
            best, best_score = training.keep_best(student, best, best_score, s)
            metrics["eval_retention"] = s
            for e in range(k):
                metrics[f"eval_return_{e}"] = rets[e]
                metrics[f"eval_retention_{e}"] = norm[e]
        metrics["best_retention"] = best_score
        per_env_mean = training.masked_mean(per_env, learning)
        for e in range(k):
            metrics[f"loss_{e}"] = per_env_mean[e]
            metrics[f"agreement_{e}"] = jnp.nanmean(agree[:, e])
        term_means = training.masked_mean(parts, learning)
        for i, name in enumerate(cfg.term_names):
            metrics[f"loss_{name}"] = term_means[i]
        metrics["finite"] = training.all_finite(state.params, loss)
        return state._replace(key=key, best_params=best, best_score=best_score), metrics

    def final_eval(params, teacher_params, key):
        return tuple(finals[e](params, teacher_params[e], jax.random.fold_in(key, e))
                     for e in range(k))

    return MultiDistiller(cfg, tuple(env_list), spec, init, chunk, final_eval, heads, layouts,
                          acting)
