"""DQN teacher as a System of the chunk skeleton (loop.py): n-step Double DQN with a target
network, epsilon-greedy collection from `num_envs` vectorised envs into a replay buffer.

collect   epsilon-greedy actions of the online net, one env step, the transitions written
          as replay row t (feed: the buffer and the t + 1 rows written so far)
learn     update j of iteration t samples windows of n_step transitions from the rows written
          so far and takes one TD step; the target net moves after every target_update
          updates, counted across the whole run
score     the mean return of eval_episodes greedy episodes
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq.config import TeacherConfig
from distillq.core import envs, explore, loop, qteacher, replay, td


class Actor(NamedTuple):
    buffer: Any
    env_state: Any
    obs: jax.Array
    ep_return: jax.Array      # running return of each env's current episode


class Feed(NamedTuple):
    """What the updates of one iteration read."""

    buffer: Any
    written: jax.Array        # rows written so far, this iteration's included


Collected, TDStep = qteacher.Collected, qteacher.QStep


class DQN(NamedTuple):
    system: loop.System
    env: envs.Env
    net_spec: dict
    layout: replay.Layout
    td_update: Any      # (learner, buffer, t_written, key, u) -> (learner, TDStep)
    updates_only: Any   # (n) -> fn(state, t_written) -> (state, mean loss): n TD updates alone


epsilon = explore.epsilon


def options(cfg: TeacherConfig) -> td.TD:
    return td.TD(cfg.gamma, cfg.n_step, cfg.double_dqn, cfg.target_update, cfg.tau,
                 cfg.huber_delta)


def make(cfg: TeacherConfig, env: envs.Env) -> DQN:
    parts = qteacher.parts(cfg, env)
    apply, tx = parts.apply, parts.tx
    opts = options(cfg)
    E, R, B = cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    layout = replay.Layout(env.obs_shape, env.binary_obs)

    def init(key: jax.Array, _ctx: Any = None) -> loop.LoopState:
        params, obs, env_state, k_run = qteacher.start(parts, env, E, key)
        return loop.start(system, loop.Learner(params, params, tx.init(params)),
                          Actor(layout.init(R, E), env_state, obs,
                                jnp.zeros((E,), jnp.float32)), k_run)

    def td_update(learner: loop.Learner, buffer, t_written, key, u):
        window = replay.sample(buffer, layout, key, t_written, B, opts.n_step)   # [B, n, ...]
        y = td.target(apply, learner.params, learner.target, window, opts.gamma, opts.double)
        obs0, act0 = window.obs[:, 0], window.action[:, 0]

        def loss_fn(p):
            q = apply(p, obs0)
            q_taken = jnp.take_along_axis(q, act0[:, None], axis=-1)[:, 0]
            return td.loss(q_taken, y, opts.huber_delta), q_taken.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.params)
        upd, opt_state = tx.update(grads, learner.opt_state, learner.params)
        params = optax.apply_updates(learner.params, upd)
        target = td.update_target(params, learner.target, u, opts.target_update, opts.tau)
        return loop.Learner(params, target, opt_state), TDStep(loss, q_mean)

    def collect(state: loop.LoopState, _ctx, t: jax.Array, keys):
        k_eps, k_rand, k_env = keys
        a = state.actor
        action = explore.epsilon_greedy(k_eps, k_rand, apply(state.learner.params, a.obs),
                                        epsilon(cfg, t))
        st = envs.step(env, jax.random.split(k_env, E), a.env_state, action)
        buffer = replay.write(a.buffer, layout.pack(replay.Transition(
            a.obs, action, st.reward, st.terminated, st.done, st.next_obs)), t)
        ep_return, finished, n_finished = qteacher.episodes(a.ep_return, st)
        actor = Actor(buffer, st.state, st.obs, ep_return)
        return state._replace(actor=actor), Feed(buffer, t + 1), Collected(finished, n_finished)

    def learn(learner: loop.Learner, _ctx, feed: Feed, t: jax.Array, j: jax.Array, key):
        u = (t - cfg.warmup_iterations) * cfg.updates_per_step    # updates done before t
        return td_update(learner, feed.buffer, feed.written, key, u + j)

    system = qteacher.system(cfg, parts, init=init, collect_keys=3, collect=collect, learn=learn)

    def updates_only(n: int):
        """n gradient updates on the state's buffer, nothing else (`make bench`'s loop
        efficiency: the cost of the updates alone against the whole training loop)."""
        def run(state: loop.LoopState, t_written: jax.Array):
            def one(learner, j):
                learner, out = td_update(learner, state.actor.buffer, t_written,
                                         jax.random.fold_in(state.key, j), j)
                return learner, out.loss

            learner, loss = jax.lax.scan(one, state.learner, jnp.arange(n))
            return state._replace(learner=learner), loss.mean()

        return run

    return DQN(system, env, parts.net_spec, layout, td_update, updates_only)
