"""What the Q-learning teachers (dqn.py, pqn.py) share: the network, optimiser and greedy
rollouts built from a TeacherConfig, the start of a run (params, reset envs), the running
returns of episodes, and the score, summary and final evaluation of a System."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from distillq.config import TeacherConfig
from distillq.core import envs, explore, loop, networks, rollout, td


class Collected(NamedTuple):
    finished: jax.Array       # summed return of the episodes that ended
    n_finished: jax.Array


class QStep(NamedTuple):
    loss: jax.Array
    q_mean: jax.Array


class Parts(NamedTuple):
    net_spec: dict
    net: Any
    apply: Callable           # (params, obs) -> Q-values
    tx: Any                   # the optimiser (td.optimizer over cfg.total_updates)
    eval_rollout: Callable | None   # in-training greedy episodes (None: eval_episodes = 0)
    final_rollout: Callable


def parts(cfg: TeacherConfig, env: envs.Env) -> Parts:
    net_spec = networks.spec(cfg.network, cfg.activation, env.obs_shape, env.num_actions,
                             envs.input_scaling(env) if cfg.obs_norm == "bounds" else None)
    net = networks.build(net_spec)
    return Parts(net_spec, net, net.apply,
                 td.optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip),
                 rollout.make_rollout(env, net.apply, cfg.eval_episodes)
                 if cfg.eval_episodes > 0 else None,
                 rollout.make_rollout(env, net.apply, cfg.final_episodes))


def start(p: Parts, env: envs.Env, num_envs: int, key: jax.Array):
    """(params, obs, env_state, run key) of a new run: the same key split in both teachers."""
    k_net, k_env, k_run = jax.random.split(key, 3)
    params = networks.init(p.net, k_net, env.obs_shape)
    obs, env_state = envs.reset(env, jax.random.split(k_env, num_envs))
    return params, obs, env_state, k_run


def episodes(ep_return: jax.Array, st: envs.Step):
    """After one vectorised step: (the running returns carried on, the summed return and
    the count of the episodes that ended at it)."""
    ended = ep_return + st.reward
    return (jnp.where(st.done, 0.0, ended), jnp.sum(jnp.where(st.done, ended, 0.0)),
            jnp.sum(st.done.astype(jnp.float32)))


def system(cfg: TeacherConfig, p: Parts, *, init: Callable, collect_keys: int,
           collect: Callable, learn: Callable) -> loop.System:
    """A teacher's System: its own init, collect and learn; the shared score (the mean
    return of eval_episodes greedy episodes), summary and final evaluation."""
    def score(params, _state, _ctx, key) -> loop.Score:
        return loop.Score(p.eval_rollout(params, key)["returns"].mean(), {})

    def summarise(c: Collected, means: QStep, _learning, ts) -> dict:
        n = c.n_finished.sum()
        return {"loss": means.loss, "q_mean": means.q_mean,
                "train_return": jnp.where(n > 0, c.finished.sum() / jnp.maximum(n, 1), jnp.nan),
                "episodes": n, "epsilon": explore.epsilon(cfg, ts[-1])}

    zero = jnp.float32(0.0)
    return loop.System(
        schedule=loop.Schedule.of(cfg), init=init, collect_keys=collect_keys, collect=collect,
        collect_idle=Collected(zero, zero), learn=learn, learn_skipped=QStep(zero, zero),
        evaluated=lambda params: params,
        score=score if p.eval_rollout is not None else None, summarise=summarise,
        final=lambda params, _ctx, key: p.final_rollout(params, key))
