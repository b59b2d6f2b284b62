"""DQN teacher: the whole training loop is jitted; seeds are a vmap axis.

`make_trainer(cfg, env)` returns pure functions over an explicit per-seed state pytree:
  init(key)              -> DQNState                       (vmap over seeds)
  chunk(state, t0)       -> (DQNState, metrics)            (lax.scan of chunk_iterations)
One iteration = one vectorised env step of `num_envs` envs + `updates_per_step` gradient
updates. `t0` (iterations done so far) is the same for every seed and is passed unbatched:
replay write position, epsilon, learning-rate and target schedules all derive from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import envs, evaluate, losses, networks, replay, training
from distillq.config import TeacherConfig


class DQNState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    buffer: jax.Array
    env_state: Any
    obs: jax.Array
    ep_return: jax.Array      # running return of each env's current episode
    key: jax.Array
    best_params: Any          # params with the best in-training evaluation so far
    best_return: jax.Array


class Trainer(NamedTuple):
    cfg: TeacherConfig
    env: envs.Env
    net: Any
    net_spec: dict
    layout: replay.Layout
    init: Any
    chunk: Any
    final_eval: Any
    td_update: Any      # (params, target, opt_state, buffer, t_written, key, u) -> ...
    updates_only: Any   # (n) -> fn(state, t_written) -> (state, mean loss): n TD updates alone


def epsilon(cfg: TeacherConfig, t: jax.Array) -> jax.Array:
    """Linear epsilon schedule over the first eps_fraction of training (t in iterations)."""
    span = max(1.0, cfg.eps_fraction * cfg.total_iterations)
    frac = jnp.clip(t / span, 0.0, 1.0)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def optimizer(lr: float, lr_end: float, total_updates: int, grad_clip: float):
    schedule = optax.linear_schedule(lr, lr_end, max(1, total_updates))
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(schedule))


def td_target(apply: Callable, params: Any, target: Any, window: replay.Transition,
              gamma: float, double: bool) -> jax.Array:
    """n-step (Double) DQN targets of windows [B, n] of consecutive transitions:
    G + gamma^m * Q_target(s', a*), with a* = argmax of the online net (double) or of the
    target net, s' the true successor of the window's last included step, and no bootstrap
    after a terminal step (losses.nstep_targets). Outside the gradient."""
    ret, disc, last = losses.nstep_targets(window.reward, window.terminated, window.done, gamma)
    idx = last.reshape(-1, *([1] * (window.next_obs.ndim - 1)))
    boot_obs = jnp.take_along_axis(window.next_obs, idx, axis=1)[:, 0]
    q_next = apply(target, boot_obs)
    chooser = apply(params, boot_obs) if double else q_next
    a_star = jnp.argmax(chooser, axis=-1)
    q_boot = jnp.take_along_axis(q_next, a_star[:, None], axis=-1)[:, 0]
    return jax.lax.stop_gradient(ret + disc * q_boot)


def update_target(params: Any, target: Any, u: jax.Array, period: int, tau: float) -> Any:
    """After gradient update u (0-based): every `period` updates, move the target towards the
    online params by `tau` (1.0 = hard copy, Polyak otherwise)."""
    due = (u + 1) % period == 0
    moved = optax.incremental_update(params, target, tau)
    return jax.tree.map(lambda a, b: jnp.where(due, a, b), moved, target)


def make_trainer(cfg: TeacherConfig, env: envs.Env) -> Trainer:
    net_spec = networks.spec(cfg.network, cfg.activation, env.obs_shape, env.num_actions,
                             envs.input_scaling(env) if cfg.obs_norm == "bounds" else None)
    net = networks.build(net_spec)
    apply = net.apply
    tx = optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    E, R, B, n = cfg.num_envs, cfg.buffer_rows, cfg.batch_size, cfg.n_step
    layout = replay.Layout(env.obs_shape, env.binary_obs)
    rollout = (evaluate.make_rollout(env, apply, cfg.eval_episodes) if cfg.eval_episodes > 0
               else None)
    final_rollout = evaluate.make_rollout(env, apply, cfg.final_episodes)

    def init(key: jax.Array) -> DQNState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = networks.init(net, k_net, env.obs_shape)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
        return DQNState(params, params, tx.init(params), layout.init(R, E),
                        env_state, obs, jnp.zeros((E,), jnp.float32), k_run, params,
                        jnp.asarray(-jnp.inf, jnp.float32))

    def td_update(params, target, opt_state, buffer, t_written, key, u):
        window = replay.sample(buffer, layout, key, t_written, B, n)        # [B, n, ...]
        y = td_target(apply, params, target, window, cfg.gamma, cfg.double_dqn)
        obs0, act0 = window.obs[:, 0], window.action[:, 0]

        def loss_fn(p):
            q = apply(p, obs0)
            q_taken = jnp.take_along_axis(q, act0[:, None], axis=-1)[:, 0]
            return losses.td_loss(q_taken, y, cfg.huber_delta), q_taken.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        upd, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, upd)
        target = update_target(params, target, u, cfg.target_update, cfg.tau)
        return params, target, opt_state, loss, q_mean

    def iteration(state: DQNState, t: jax.Array):
        """One iteration; those past the budget (the end of a last, partial chunk) idle."""
        idle = (jnp.float32(0.0),) * 4
        return jax.lax.cond(t < cfg.total_iterations, live, lambda s, _t: (s, idle), state, t)

    def live(state: DQNState, t: jax.Array):
        key, k_eps, k_rand, k_env, k_upd = jax.random.split(state.key, 5)
        explore = jax.random.uniform(k_eps, (E,)) < epsilon(cfg, t)
        random_a = jax.random.randint(k_rand, (E,), 0, env.num_actions)
        action = jnp.where(explore, random_a, jnp.argmax(apply(state.params, state.obs), -1))
        st = envs.step(env, jax.random.split(k_env, E), state.env_state, action)
        buffer = replay.write(state.buffer, layout.pack(replay.Transition(
            state.obs, action, st.reward, st.terminated, st.done, st.next_obs)), t)
        ep_return = state.ep_return + st.reward
        finished = jnp.sum(jnp.where(st.done, ep_return, 0.0))
        n_finished = jnp.sum(st.done.astype(jnp.float32))
        u0 = (t - cfg.warmup_iterations) * cfg.updates_per_step    # updates done before t

        def one(c, j, k):
            p, tg, o, loss, q_mean = td_update(*c, buffer, t + 1, k, u0 + j)
            return (p, tg, o), (loss, q_mean)

        (params, target, opt_state), (loss, q_mean) = training.learn_or_skip(
            t >= cfg.warmup_iterations,
            lambda c: training.updates(one, c, cfg.updates_per_step, k_upd),
            (state.params, state.target_params, state.opt_state),
            (jnp.float32(0.0), jnp.float32(0.0)))
        state = state._replace(params=params, target_params=target, opt_state=opt_state,
                               buffer=buffer, env_state=st.state, obs=st.obs,
                               ep_return=jnp.where(st.done, 0.0, ep_return), key=key)
        return state, (loss, q_mean, finished, n_finished)

    def chunk(state: DQNState, t0: jax.Array):
        ts = t0 + jnp.arange(cfg.chunk_iterations, dtype=jnp.int32)
        state, (loss, q_mean, fin, n_fin) = jax.lax.scan(iteration, state, ts)
        key, k_eval = jax.random.split(state.key)
        eval_ret, best, best_ret = training.chunk_tail(state.params, state.best_params,
                                                       state.best_return, rollout, k_eval)
        learning = (ts >= cfg.warmup_iterations) & (ts < cfg.total_iterations)
        metrics = {
            "loss": training.masked_mean(loss, learning),
            "q_mean": training.masked_mean(q_mean, learning),
            "train_return": jnp.where(n_fin.sum() > 0, fin.sum() / jnp.maximum(n_fin.sum(), 1),
                                      jnp.nan),
            "episodes": n_fin.sum(),
            "eval_return": eval_ret,
            "best_return": best_ret,
            "epsilon": epsilon(cfg, ts[-1]),
            "finite": training.all_finite(state.params, loss),
        }
        return state._replace(key=key, best_params=best, best_return=best_ret), metrics

    def final_eval(params, key):
        return final_rollout(params, key)

    def updates_only(n: int):
        """n gradient updates on the state's buffer, nothing else (`make bench`'s loop
        efficiency: the cost of the updates alone against the whole training loop)."""
        def run(state: DQNState, t_written: jax.Array):
            def one(c, j):
                p, tg, o, loss, _ = td_update(*c, state.buffer, t_written,
                                              jax.random.fold_in(state.key, j), j)
                return (p, tg, o), loss

            (p, tg, o), loss = jax.lax.scan(
                one, (state.params, state.target_params, state.opt_state), jnp.arange(n))
            return state._replace(params=p, target_params=tg, opt_state=o), loss.mean()

        return run

    return Trainer(cfg, env, net, net_spec, layout, init, chunk, final_eval, td_update,
                   updates_only)
