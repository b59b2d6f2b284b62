"""Circular replay storage as a plain array pytree, time-major: [rows, num_envs, width].

One row holds one vectorised environment step of every env, packed into a single float32
array (fewer, larger arrays compile faster on XLA:CPU). `Layout` names the packing once:
`pack(Transition) -> row` and `unpack(rows) -> Transition` (observations get their shape
back). The write position is derived from the number of rows written so far, `t`, which the
trainers keep *outside* the vmapped seed axis: an unbatched index keeps the write a
dynamic_update_slice under vmap (a per-seed index would turn it into a scatter, ~8x slower at
8 seeds).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Transition(NamedTuple):
    """One env step (leading axes: whatever the caller batched over)."""

    obs: jax.Array          # [..., *obs_shape] the observation acted on
    action: jax.Array       # [...] int32
    reward: jax.Array       # [...]
    terminated: jax.Array   # [...] the episode ended in a terminal state: no bootstrap
    done: jax.Array         # [...] terminated or truncated: an n-step window stops here
    next_obs: jax.Array     # [..., *obs_shape] the true successor (before any auto-reset)


class Layout(NamedTuple):
    """Packing of a Transition into one float32 row: obs | action | reward | terminated |
    done | next_obs."""

    obs_shape: tuple[int, ...]

    @property
    def obs_dim(self) -> int:
        return math.prod(self.obs_shape)

    @property
    def width(self) -> int:
        return 2 * self.obs_dim + 4

    def pack(self, tr: Transition) -> jax.Array:
        lead = tr.action.shape
        flat = lambda x: x.reshape(*lead, self.obs_dim).astype(jnp.float32)  # noqa: E731
        col = lambda x: x.astype(jnp.float32)[..., None]  # noqa: E731
        return jnp.concatenate([flat(tr.obs), col(tr.action), col(tr.reward),
                                col(tr.terminated), col(tr.done), flat(tr.next_obs)], axis=-1)

    def unpack(self, rows: jax.Array) -> Transition:
        d = self.obs_dim
        lead = rows.shape[:-1]
        return Transition(obs=rows[..., :d].reshape(*lead, *self.obs_shape),
                          action=rows[..., d].astype(jnp.int32),
                          reward=rows[..., d + 1],
                          terminated=rows[..., d + 2] > 0.5,
                          done=rows[..., d + 3] > 0.5,
                          next_obs=rows[..., d + 4:].reshape(*lead, *self.obs_shape))


def init(rows: int, num_envs: int, width: int) -> jax.Array:
    return jnp.zeros((rows, num_envs, width), jnp.float32)


def write(data: jax.Array, row: jax.Array, t: jax.Array) -> jax.Array:
    """Write `row` [num_envs, width] as the t-th row ever written (t counts from 0)."""
    pos = jnp.asarray(t % data.shape[0], jnp.int32)
    return jax.lax.dynamic_update_slice(data, row[None].astype(data.dtype), (pos, 0, 0))


def count(t_written: jax.Array, rows: int) -> jax.Array:
    """Rows holding data after `t_written` rows were written."""
    return jnp.minimum(t_written, rows)


def sample_indices(key: jax.Array, t_written: jax.Array, rows: int, num_envs: int,
                   batch: int, span: int = 1):
    """Uniform (row, env) indices of `batch` windows of `span` consecutive rows.

    Returns row indices [batch, span] (circular, oldest-to-newest order respected: a window
    never crosses the write head) and env indices [batch]. Requires t_written >= span.
    """
    k_row, k_env = jax.random.split(key)
    n = count(t_written, rows)
    oldest = (t_written - n) % rows
    offset = jax.random.randint(k_row, (batch,), 0, jnp.maximum(n - span + 1, 1))
    row = (oldest + offset[:, None] + jnp.arange(span)[None, :]) % rows
    env = jax.random.randint(k_env, (batch,), 0, num_envs)
    return row, env


def gather(data: jax.Array, row: jax.Array, env: jax.Array) -> jax.Array:
    """data[row[b, k], env[b]] -> [batch, span, width]."""
    return data[row, env[:, None]]


def sample(data: jax.Array, layout: Layout, key: jax.Array, t_written: jax.Array,
           batch: int, span: int = 1) -> Transition:
    """`batch` windows of `span` consecutive transitions: fields [batch, span, ...]."""
    rows, num_envs = data.shape[0], data.shape[1]
    row, env = sample_indices(key, t_written, rows, num_envs, batch, span)
    return layout.unpack(gather(data, row, env))
