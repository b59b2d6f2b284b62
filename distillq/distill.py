"""Distillation of a teacher Q-network into a student: jitted, vmapped over seeds.

`make_distiller(cfg, env, teacher_spec)` returns pure functions:
  init(key)                          -> DistillState            (vmap over seeds)
  chunk(state, teacher_params, t0)   -> (DistillState, metrics)  (lax.scan of chunk_steps)
Student i learns from teacher_params[i] (the caller maps student seeds to teacher seeds).
Data: the teacher acts epsilon-greedily in num_envs envs; visited states go to a circular
buffer; the student fits minibatches labelled by the teacher at update time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import envs, evaluate, losses, networks, replay
from distillq.config import DistillConfig
from distillq.dqn import optimizer


class DistillState(NamedTuple):
    params: Any
    opt_state: Any
    buffer: jax.Array
    env_state: Any
    obs: jax.Array
    key: jax.Array
    best_params: Any
    best_return: jax.Array


class Distiller(NamedTuple):
    cfg: DistillConfig
    env: envs.Env
    net: networks.MLP
    net_spec: dict
    teacher_net: networks.MLP
    init: Any
    chunk: Any
    final_eval: Any


def loss_fn(name: str, temp: float):
    """Map a loss name to a pure (student_q, teacher_q) -> scalar function."""
    if name == "mse":
        return losses.mse
    if name == "kl":
        return lambda s, t: losses.kl(s, t, temp)
    if name == "ce":
        return losses.ce
    raise ValueError(f"unknown loss {name!r}")


def make_distiller(cfg: DistillConfig, env: envs.Env, teacher_spec: dict) -> Distiller:
    net_spec = networks.spec(cfg.hidden, cfg.activation, env.obs_dim, env.num_actions)
    net = networks.build(net_spec)
    teacher = networks.build(teacher_spec)
    apply, t_apply = net.apply, teacher.apply
    tx = optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    d, E, R, B = env.obs_dim, cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    distill_loss = loss_fn(cfg.loss, cfg.temp)
    rollout = evaluate.make_rollout(env, apply, max(cfg.eval_episodes, 1))
    final_rollout = evaluate.make_rollout(env, apply, cfg.final_episodes, other_apply=t_apply)
    teacher_rollout = evaluate.make_rollout(env, t_apply, cfg.final_episodes)

    def init(key: jax.Array, teacher_params: Any) -> DistillState:
        """Student params, with the output bias set to the teacher's mean Q on the first
        states: Q-values of ~100 (CartPole, gamma 0.99) are otherwise reached only by blowing
        up the weights, which leaves the MSE student unable to resolve small action gaps."""
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = networks.init(net, k_net, d)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
        q_mean = t_apply(teacher_params, obs).mean(axis=0)
        params = networks.set_output_bias(params, q_mean)
        return DistillState(params, tx.init(params), replay.init(R, E, d), env_state, obs, k_run,
                            params, jnp.asarray(-jnp.inf, jnp.float32))

    def update(params, opt_state, teacher_params, buffer, t_written, key):
        rows, env_idx = replay.sample_indices(key, t_written, R, E, B, 1)
        obs = replay.gather(buffer, rows, env_idx)[:, 0]
        teacher_q = jax.lax.stop_gradient(t_apply(teacher_params, obs))

        def objective(p):
            return distill_loss(apply(p, obs), teacher_q)

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def iteration(carry, t):
        state, teacher_params = carry
        key, k_eps, k_rand, k_env, k_upd = jax.random.split(state.key, 5)
        q_t = t_apply(teacher_params, state.obs)
        explore = jax.random.uniform(k_eps, (E,)) < cfg.teacher_eps
        random_a = jax.random.randint(k_rand, (E,), 0, env.num_actions)
        action = jnp.where(explore, random_a, jnp.argmax(q_t, axis=-1))
        buffer = replay.write(state.buffer, state.obs, t)
        st = envs.step(env, jax.random.split(k_env, E), state.env_state, action)

        def learn(c):
            params, opt_state = c

            def one(c2, j):
                p, o = c2
                p, o, loss = update(p, o, teacher_params, buffer, t + 1,
                                    jax.random.fold_in(k_upd, j))
                return (p, o), loss

            c, loss = jax.lax.scan(one, (params, opt_state), jnp.arange(cfg.updates_per_step))
            return c, loss.mean()

        def skip(c):
            return c, jnp.float32(0.0)

        (params, opt_state), loss = jax.lax.cond(t >= cfg.warmup_iterations, learn, skip,
                                                 (state.params, state.opt_state))
        # agreement of student and teacher on the states being collected (a cheap fidelity)
        agree = jnp.mean((jnp.argmax(apply(params, state.obs), -1)
                          == jnp.argmax(q_t, -1)).astype(jnp.float32))
        state = state._replace(params=params, opt_state=opt_state, buffer=buffer,
                               env_state=st.state, obs=st.obs, key=key)
        return (state, teacher_params), (loss, agree)

    def chunk(state: DistillState, teacher_params: Any, t0: jax.Array):
        ts = t0 + jnp.arange(cfg.chunk_steps, dtype=jnp.int32)
        (state, _), (loss, agree) = jax.lax.scan(iteration, (state, teacher_params), ts)
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
        metrics = {
            "loss": jnp.where(learning, loss, 0.0).sum() / n_learn,
            "agreement": agree.mean(),
            "eval_return": eval_ret,
            "best_return": best_ret,
            "finite": finite & jnp.all(jnp.isfinite(loss)),
        }
        return state._replace(key=key, best_params=best, best_return=best_ret), metrics

    def final_eval(params, teacher_params, key):
        """Student and teacher on the same episode keys, with fidelity on the student's states."""
        s = final_rollout(params, key, teacher_params)
        t = teacher_rollout(teacher_params, key)
        return {"returns": s["returns"], "lengths": s["lengths"], "agree": s["agree"],
                "teacher_returns": t["returns"]}

    return Distiller(cfg, env, net, net_spec, teacher, init, chunk, final_eval)
