"""DQN teacher: the whole training loop is jitted; seeds are a vmap axis.

`make_trainer(cfg, env)` returns pure functions over an explicit per-seed state pytree:
  init(key)              -> DQNState                       (vmap over seeds)
  chunk(state, t0)       -> (DQNState, metrics)            (lax.scan of chunk_steps iterations)
One iteration = one vectorised env step of `num_envs` envs + `updates_per_step` gradient
updates. `t0` (iterations done so far) is the same for every seed and is passed unbatched:
replay write position, epsilon, learning-rate and target schedules all derive from it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import envs, evaluate, losses, networks, replay
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
    net: networks.MLP
    net_spec: dict
    init: Any
    chunk: Any
    final_eval: Any
    updates_only: Any   # (n) -> fn(state, t_written) -> (state, mean loss): n TD updates alone


def epsilon(cfg: TeacherConfig, t: jax.Array) -> jax.Array:
    """Linear epsilon schedule over the first eps_fraction of training (t in iterations)."""
    span = max(1.0, cfg.eps_fraction * cfg.total_iterations)
    frac = jnp.clip(t / span, 0.0, 1.0)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def optimizer(lr: float, lr_end: float, total_updates: int, grad_clip: float):
    schedule = optax.linear_schedule(lr, lr_end, max(1, total_updates))
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(schedule))


def make_trainer(cfg: TeacherConfig, env: envs.Env) -> Trainer:
    net_spec = networks.spec(cfg.hidden, cfg.activation, env.obs_dim, env.num_actions)
    net = networks.build(net_spec)
    apply = net.apply
    tx = optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    d, E, R, B, n = env.obs_dim, cfg.num_envs, cfg.buffer_rows, cfg.batch_size, cfg.n_step
    width = 2 * d + 4   # obs | action | reward | terminated | done | next_obs
    rollout = evaluate.make_rollout(env, apply, max(cfg.eval_episodes, 1))
    final_rollout = evaluate.make_rollout(env, apply, cfg.final_episodes)

    def init(key: jax.Array) -> DQNState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = networks.init(net, k_net, d)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
        return DQNState(params, params, tx.init(params), replay.init(R, E, width), env_state, obs,
                        jnp.zeros((E,), jnp.float32), k_run, params,
                        jnp.asarray(-jnp.inf, jnp.float32))

    def td_update(params, target, opt_state, buffer, t_written, key, u):
        rows, env_idx = replay.sample_indices(key, t_written, R, E, B, n)
        batch = replay.gather(buffer, rows, env_idx)                     # [B, n, width]
        obs0, act0 = batch[:, 0, :d], batch[:, 0, d].astype(jnp.int32)
        ret, disc, last = losses.nstep_targets(batch[:, :, d + 1], batch[:, :, d + 2],
                                               batch[:, :, d + 3], cfg.gamma)
        boot_obs = jnp.take_along_axis(batch[:, :, d + 4:], last[:, None, None], axis=1)[:, 0]
        q_next = apply(target, boot_obs)
        if cfg.double_dqn:
            a_star = jnp.argmax(apply(params, boot_obs), axis=-1)
        else:
            a_star = jnp.argmax(q_next, axis=-1)
        q_boot = jnp.take_along_axis(q_next, a_star[:, None], axis=-1)[:, 0]
        y = jax.lax.stop_gradient(ret + disc * q_boot)

        def loss_fn(p):
            q = apply(p, obs0)
            q_taken = jnp.take_along_axis(q, act0[:, None], axis=-1)[:, 0]
            return losses.td_loss(q_taken, y, cfg.huber_delta), q_taken.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        do_target = (u + 1) % cfg.target_update == 0
        new_target = optax.incremental_update(params, target, cfg.tau)
        target = jax.tree.map(lambda a, b: jnp.where(do_target, a, b), new_target, target)
        return params, target, opt_state, loss, q_mean

    def iteration(state: DQNState, t: jax.Array):
        key, k_eps, k_rand, k_env, k_upd = jax.random.split(state.key, 5)
        q = apply(state.params, state.obs)
        explore = jax.random.uniform(k_eps, (E,)) < epsilon(cfg, t)
        random_a = jax.random.randint(k_rand, (E,), 0, env.num_actions)
        action = jnp.where(explore, random_a, jnp.argmax(q, axis=-1))
        st = envs.step(env, jax.random.split(k_env, E), state.env_state, action)
        row = jnp.concatenate([state.obs, action[:, None].astype(jnp.float32), st.reward[:, None],
                               st.terminated[:, None].astype(jnp.float32),
                               st.done[:, None].astype(jnp.float32), st.next_obs], axis=-1)
        buffer = replay.write(state.buffer, row, t)
        ep_return = state.ep_return + st.reward
        finished = jnp.sum(jnp.where(st.done, ep_return, 0.0))
        n_finished = jnp.sum(st.done.astype(jnp.float32))
        ep_return = jnp.where(st.done, 0.0, ep_return)

        def learn(carry):
            params, target, opt_state = carry

            def one(c, j):
                p, tg, o = c
                u = (t - cfg.warmup_iterations) * cfg.updates_per_step + j
                p, tg, o, loss, q_mean = td_update(p, tg, o, buffer, t + 1,
                                                   jax.random.fold_in(k_upd, j), u)
                return (p, tg, o), (loss, q_mean)

            carry, (loss, q_mean) = jax.lax.scan(one, carry, jnp.arange(cfg.updates_per_step))
            return carry, loss.mean(), q_mean.mean()

        def skip(carry):
            return carry, jnp.float32(0.0), jnp.float32(0.0)

        (params, target, opt_state), loss, q_mean = jax.lax.cond(
            t >= cfg.warmup_iterations, learn, skip,
            (state.params, state.target_params, state.opt_state))
        state = state._replace(params=params, target_params=target, opt_state=opt_state,
                               buffer=buffer, env_state=st.state, obs=st.obs,
                               ep_return=ep_return, key=key)
        return state, (loss, q_mean, finished, n_finished)

    def chunk(state: DQNState, t0: jax.Array):
        ts = t0 + jnp.arange(cfg.chunk_steps, dtype=jnp.int32)
        state, (loss, q_mean, fin, n_fin) = jax.lax.scan(iteration, state, ts)
        key, k_eval = jax.random.split(state.key)
        if cfg.eval_episodes > 0:
            eval_ret = rollout(state.params, k_eval)["returns"].mean()
            better = eval_ret >= state.best_return
            best = jax.tree.map(lambda a, b: jnp.where(better, a, b), state.params,
                                state.best_params)
            best_ret = jnp.maximum(eval_ret, state.best_return)
        else:
            eval_ret, best, best_ret = jnp.float32(jnp.nan), state.params, jnp.float32(jnp.nan)
        learning = ts >= cfg.warmup_iterations
        n_learn = jnp.maximum(learning.sum(), 1)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x))
                                    for x in jax.tree.leaves(state.params)]))
        finite = finite & jnp.all(jnp.isfinite(loss))
        metrics = {
            "loss": jnp.where(learning, loss, 0.0).sum() / n_learn,
            "q_mean": jnp.where(learning, q_mean, 0.0).sum() / n_learn,
            "train_return": jnp.where(n_fin.sum() > 0, fin.sum() / jnp.maximum(n_fin.sum(), 1),
                                      jnp.nan),
            "episodes": n_fin.sum(),
            "eval_return": eval_ret,
            "best_return": best_ret,
            "epsilon": epsilon(cfg, ts[-1]),
            "finite": finite,
        }
        state = state._replace(key=key, best_params=best, best_return=best_ret)
        return state, metrics

    def final_eval(params, key):
        return final_rollout(params, key)

    def updates_only(n: int):
        """n gradient updates on the state's buffer, nothing else (`make bench`'s loop
        efficiency: the cost of the updates alone against the whole training loop)."""
        def run(state: DQNState, t_written: jax.Array):
            def one(c, j):
                p, tg, o = c
                p, tg, o, loss, _ = td_update(p, tg, o, state.buffer, t_written,
                                              jax.random.fold_in(state.key, j), j)
                return (p, tg, o), loss

            (p, tg, o), loss = jax.lax.scan(
                one, (state.params, state.target_params, state.opt_state), jnp.arange(n))
            return state._replace(params=p, target_params=tg, opt_state=o), loss.mean()

        return run

    return Trainer(cfg, env, net, net_spec, init, chunk, final_eval, updates_only)
