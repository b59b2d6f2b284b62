"""Probe environments with known answers (after rejax's habit): each isolates one piece of the
DQN target so that a learned Q-value can be checked against a number computed by hand.

They speak gymnax 1.0's interface (reset/step with auto-reset, six step outputs,
info["final_observation"], action_space(params).n, observation_space(params).shape) and are
wrapped by distillq.core.envs.from_gymnax like any gymnax env.

- one_step:  obs [1]; reward 1; terminated after 1 step.            Q* = 1 (both actions)
- chain:     obs one-hot of step k < L; reward 1 on the last step;
             terminated after L steps.                               Q*(s_k) = gamma^(L-1-k)
- truncated: obs [1]; reward 1; truncated (time limit) every step.   Q* = 1 / (1 - gamma)
- action:    obs [1]; reward 1 for action 1, else 0; terminated.     Q* = (0, 1)
- context:   obs [c], c = +-1 drawn at reset; reward 1 when the action is 1 exactly when
             c > 0; terminated.                  Q*(-1) = (1, 0), Q*(+1) = (0, 1)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from distillq.core import envs


class Params(NamedTuple):
    max_steps_in_episode: int


class State(NamedTuple):
    t: jax.Array      # step within the episode
    c: jax.Array      # context drawn at reset (context probe)
    time: jax.Array


class _Space(NamedTuple):
    n: int = 0
    shape: tuple = ()


class Probe:
    def __init__(self, kind: str, length: int = 1, max_steps: int = 100):
        self.kind, self.length = kind, length
        self.default_params = Params(1 if kind == "truncated" else max_steps)
        self.obs_dim = length if kind == "chain" else 1

    def action_space(self, params=None):
        return _Space(n=2)

    def observation_space(self, params=None):
        return _Space(shape=(self.obs_dim,))

    def _obs(self, s: State) -> jax.Array:
        if self.kind == "chain":
            return jax.nn.one_hot(s.t, self.length, dtype=jnp.float32)
        if self.kind == "context":
            return s.c[None]
        return jnp.ones((1,), jnp.float32)

    def reset(self, key, params=None):
        c = jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)
        s = State(jnp.int32(0), c, jnp.int32(0))
        return self._obs(s), s

    def step(self, key, state: State, action, params=None):
        params = params or self.default_params
        last = state.t + 1 >= self.length
        if self.kind == "chain":
            reward, terminated = jnp.where(last, 1.0, 0.0), last
        elif self.kind == "truncated":
            reward, terminated = jnp.float32(1.0), jnp.bool_(False)
        elif self.kind == "action":
            reward, terminated = (action == 1).astype(jnp.float32), jnp.bool_(True)
        elif self.kind == "context":
            reward = (action == (state.c > 0)).astype(jnp.float32)
            terminated = jnp.bool_(True)
        else:  # one_step
            reward, terminated = jnp.float32(1.0), jnp.bool_(True)
        nxt = State(state.t + 1, state.c, state.time + 1)
        truncated = jnp.logical_and(nxt.time >= params.max_steps_in_episode, ~terminated)
        final_obs = self._obs(nxt)
        done = jnp.logical_or(terminated, truncated)
        obs_reset, s_reset = self.reset(key, params)
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), s_reset, nxt)
        obs = jnp.where(done, obs_reset, final_obs)
        info = {"final_observation": final_obs, "discount": 1.0 - terminated}
        return obs, state, jnp.float32(reward), terminated, truncated, info


def make(kind: str, **kw) -> envs.Env:
    env = Probe(kind, **kw)
    return envs.from_gymnax(f"probe-{kind}", env, env.default_params)
