"""PQN teacher (parallel Q-learning, Gallici et al. 2024) as a System of the chunk skeleton:
no replay buffer and no target network; many envs, lambda-returns, LayerNorm networks.

One iteration of the loop is one rollout:
collect   pqn_steps vectorised env steps of the epsilon-greedy online net, then the
          lambda-returns of the whole rollout with the same params (feed: the rollout's
          states, actions and targets, and one random order of them per epoch)
learn     update j is minibatch j % pqn_minibatches of epoch j // pqn_minibatches: one step
          of 0.5 * (Q(s, a) - G)^2, so the skeleton's updates_per_step is
          pqn_epochs * pqn_minibatches
score     the mean return of eval_episodes greedy episodes

lambda-returns, backwards over the rollout (`lambda_returns`): with m_t = max_a Q(s'_t, a)
of the true successor s'_t (before any auto-reset),
    G_t = r_t + gamma * (1 - terminated_t) * ((1 - lam_t) * m_t + lam_t * G_{t+1}),
lam_t = lambda, or 0 where the episode ended at t (truncated too: the return bootstraps
from the time limit's state and never runs into the next episode), and G_{T-1} = r + gamma
(1 - terminated) m at the rollout's end.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq.config import TeacherConfig
from distillq.core import envs, explore, loop, qteacher, replay


class Actor(NamedTuple):
    env_state: Any
    obs: jax.Array
    ep_return: jax.Array      # running return of each env's current episode


class Rollout(NamedTuple):
    """The feed of one iteration's updates: the rollout, flattened over (steps, envs)."""

    obs: jax.Array            # [N, *obs_shape], N = pqn_steps * num_envs
    action: jax.Array         # [N]
    target: jax.Array         # [N] lambda-returns
    order: jax.Array          # [pqn_epochs, N] the states' order in each epoch


Collected, QStep = qteacher.Collected, qteacher.QStep


class PQN(NamedTuple):
    system: loop.System
    env: envs.Env
    net_spec: dict
    layout: replay.Layout     # what one stored transition takes (the memory check)


def lambda_returns(reward: jax.Array, terminated: jax.Array, done: jax.Array,
                   next_max_q: jax.Array, gamma: float, lam: float) -> jax.Array:
    """G [T, ...] of a rollout [T, ...] (module docstring), computed backwards."""
    keep = gamma * (1.0 - terminated.astype(jnp.float32))
    lam_t = lam * (1.0 - done.astype(jnp.float32))

    def back(g_next, x):
        r, k, m, lt = x
        g = r + k * ((1.0 - lt) * m + lt * g_next)
        return g, g

    # at the rollout's end nothing follows: lam is 0 there, so G_{T-1} = r + k m
    last = jnp.zeros_like(reward[-1])
    lam_t = lam_t.at[-1].set(0.0)
    _, g = jax.lax.scan(back, last, (reward, keep, next_max_q, lam_t), reverse=True)
    return g


def make(cfg: TeacherConfig, env: envs.Env) -> PQN:
    parts = qteacher.parts(cfg, env)
    apply, tx = parts.apply, parts.tx
    E, T, M = cfg.num_envs, cfg.pqn_steps, cfg.pqn_minibatches
    N = E * T
    mb = N // M

    def init(key: jax.Array, _ctx: Any = None) -> loop.LoopState:
        params, obs, env_state, k_run = qteacher.start(parts, env, E, key)
        return loop.start(system, loop.Learner(params, None, tx.init(params)),
                          Actor(env_state, obs, jnp.zeros((E,), jnp.float32)), k_run)

    def collect(state: loop.LoopState, _ctx, t: jax.Array, keys):
        k_act, k_order = keys
        params = state.learner.params
        eps = explore.epsilon(cfg, t)

        def step(a: Actor, k):
            k_eps, k_rand, k_env = jax.random.split(k, 3)
            action = explore.epsilon_greedy(k_eps, k_rand, apply(params, a.obs), eps)
            st = envs.step(env, jax.random.split(k_env, E), a.env_state, action)
            ep_return, finished, n_finished = qteacher.episodes(a.ep_return, st)
            out = (a.obs, action, st.reward, st.terminated, st.done, st.next_obs, finished,
                   n_finished)
            return Actor(st.state, st.obs, ep_return), out

        actor, (obs, action, reward, term, done, next_obs, fin, n_fin) = jax.lax.scan(
            step, state.actor, jax.random.split(k_act, T))
        next_max_q = jnp.max(apply(params, next_obs.reshape(N, *env.obs_shape)), -1)
        g = lambda_returns(reward, term, done, next_max_q.reshape(T, E), cfg.gamma,
                           cfg.pqn_lambda)
        order = jax.vmap(lambda k: jax.random.permutation(k, N))(
            jax.random.split(k_order, cfg.pqn_epochs))
        feed = Rollout(obs.reshape(N, *env.obs_shape), action.reshape(N),
                       jax.lax.stop_gradient(g.reshape(N)), order)
        return state._replace(actor=actor), feed, Collected(fin.sum(), n_fin.sum())

    def learn(learner: loop.Learner, _ctx, feed: Rollout, _t, j: jax.Array, _key):
        idx = jax.lax.dynamic_slice(feed.order[j // M], ((j % M) * mb,), (mb,))
        obs, act, y = feed.obs[idx], feed.action[idx], feed.target[idx]

        def loss_fn(p):
            q = jnp.take_along_axis(apply(p, obs), act[:, None], axis=-1)[:, 0]
            return 0.5 * jnp.mean((q - y) ** 2), q.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.params)
        upd, opt_state = tx.update(grads, learner.opt_state, learner.params)
        return (loop.Learner(optax.apply_updates(learner.params, upd), None, opt_state),
                QStep(loss, q_mean))

    system = qteacher.system(cfg, parts, init=init, collect_keys=2, collect=collect, learn=learn)
    return PQN(system, env, parts.net_spec, replay.Layout(env.obs_shape, env.binary_obs))
