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
from distillq.core import envs, explore, loop, networks, replay, rollout, td


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


class Collected(NamedTuple):
    finished: jax.Array       # summed return of the episodes that ended in the rollout
    n_finished: jax.Array


class QStep(NamedTuple):
    loss: jax.Array
    q_mean: jax.Array


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
    net_spec = networks.spec(cfg.network, cfg.activation, env.obs_shape, env.num_actions,
                             envs.input_scaling(env) if cfg.obs_norm == "bounds" else None)
    net = networks.build(net_spec)
    apply = net.apply
    tx = td.optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    E, T, M = cfg.num_envs, cfg.pqn_steps, cfg.pqn_minibatches
    N = E * T
    mb = N // M
    eval_rollout = (rollout.make_rollout(env, apply, cfg.eval_episodes)
                    if cfg.eval_episodes > 0 else None)
    final_rollout = rollout.make_rollout(env, apply, cfg.final_episodes)

    def init(key: jax.Array, _ctx: Any = None) -> loop.LoopState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = networks.init(net, k_net, env.obs_shape)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
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
            ep_return = a.ep_return + st.reward
            out = (a.obs, action, st.reward, st.terminated, st.done, st.next_obs,
                   jnp.sum(jnp.where(st.done, ep_return, 0.0)),
                   jnp.sum(st.done.astype(jnp.float32)))
            return Actor(st.state, st.obs, jnp.where(st.done, 0.0, ep_return)), out

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

    def score(params, _state, _ctx, key) -> loop.Score:
        return loop.Score(eval_rollout(params, key)["returns"].mean(), {})

    def summarise(c: Collected, means: QStep, _learning, ts) -> dict:
        n = c.n_finished.sum()
        return {"loss": means.loss, "q_mean": means.q_mean,
                "train_return": jnp.where(n > 0, c.finished.sum() / jnp.maximum(n, 1), jnp.nan),
                "episodes": n, "epsilon": explore.epsilon(cfg, ts[-1])}

    def final(params, _ctx, key):
        return final_rollout(params, key)

    zero = jnp.float32(0.0)
    system = loop.System(
        schedule=loop.Schedule.of(cfg), init=init, collect_keys=2, collect=collect,
        collect_idle=Collected(zero, zero), learn=learn, learn_skipped=QStep(zero, zero),
        evaluated=lambda params: params, score=score if eval_rollout is not None else None,
        summarise=summarise, final=final)
    return PQN(system, env, net_spec, replay.Layout(env.obs_shape, env.binary_obs))
