"""gymnax environments behind one small interface, with auto-reset handled in one place.

gymnax 1.0 `step` returns (obs, state, reward, terminated, truncated, info) and auto-resets:
the returned obs already belongs to the next episode when an episode ends, and the true next
observation is `info["final_observation"]`. DQN must bootstrap on `terminated` only.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from distillq.errors import ConfigError


class Env(NamedTuple):
    name: str
    env: Any
    params: Any
    obs_dim: int
    num_actions: int
    max_steps: int


class Step(NamedTuple):
    obs: jax.Array          # next observation to act on (new episode's first obs after a reset)
    state: Any
    reward: jax.Array
    terminated: jax.Array   # episode ended in a terminal state: do not bootstrap
    done: jax.Array         # terminated or truncated: the episode ended
    next_obs: jax.Array     # true successor of the acted-on obs (pre-reset)


def _gymnax():
    import gymnax  # noqa: PLC0415  (slow import: ~4 s, keep it lazy)

    return gymnax


def registered() -> list[str]:
    return list(_gymnax().registered_envs)


def make(name: str) -> Env:
    gymnax = _gymnax()
    if name not in gymnax.registered_envs:
        raise ConfigError(f"unknown env {name!r}; valid: {', '.join(gymnax.registered_envs)}")
    env, params = gymnax.make(name)
    space = env.action_space(params)
    if not hasattr(space, "n"):
        raise ConfigError(f"env {name!r} has a continuous action space; DQN needs discrete actions")
    obs_shape = env.observation_space(params).shape
    return Env(name, env, params, int(math.prod(obs_shape)), int(space.n),
               int(params.max_steps_in_episode))


def reset(env: Env, keys: jax.Array):
    """Vectorised reset over the leading axis of `keys`: (obs [n, obs_dim], state)."""
    obs, state = jax.vmap(env.env.reset, in_axes=(0, None))(keys, env.params)
    return obs.reshape(obs.shape[0], -1).astype(jnp.float32), state


def step(env: Env, keys: jax.Array, state: Any, action: jax.Array) -> Step:
    obs, state, reward, term, trunc, info = jax.vmap(env.env.step, in_axes=(0, 0, 0, None))(
        keys, state, action, env.params)
    n = obs.shape[0]
    return Step(obs.reshape(n, -1).astype(jnp.float32), state, reward.astype(jnp.float32),
                term, jnp.logical_or(term, trunc),
                info["final_observation"].reshape(n, -1).astype(jnp.float32))
