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
    """How a Transition is stored: one row per vectorised env step.

    Default: one packed float32 array, obs | action | reward | terminated | done | next_obs.
    `binary_obs` (MinAtar's 0/1 frames): observations as uint8 in their own arrays (4x less
    memory) beside a float32 array of the four scalars. `pack(Transition) -> row` and
    `unpack(rows) -> Transition` (observations as float32, with their shape) hide which.
    """

    obs_shape: tuple[int, ...]
    binary_obs: bool

    @property
    def obs_dim(self) -> int:
        return math.prod(self.obs_shape)

    @property
    def width(self) -> int:
        """Values per transition in the packed layout."""
        return 2 * self.obs_dim + 4

    def init(self, rows: int, num_envs: int):
        if not self.binary_obs:
            return jnp.zeros((rows, num_envs, self.width), jnp.float32)
        frames = jnp.zeros((rows, num_envs, *self.obs_shape), jnp.uint8)
        return {"obs": frames, "next_obs": frames,
                "scalars": jnp.zeros((rows, num_envs, 4), jnp.float32)}

    def pack(self, tr: Transition):
        lead = tr.action.shape
        col = lambda x: x.astype(jnp.float32)[..., None]  # noqa: E731
        scalars = [col(tr.action), col(tr.reward), col(tr.terminated), col(tr.done)]
        if self.binary_obs:
            return {"obs": tr.obs.astype(jnp.uint8), "next_obs": tr.next_obs.astype(jnp.uint8),
                    "scalars": jnp.concatenate(scalars, axis=-1)}
        flat = lambda x: x.reshape(*lead, self.obs_dim).astype(jnp.float32)  # noqa: E731
        return jnp.concatenate([flat(tr.obs), *scalars, flat(tr.next_obs)], axis=-1)

    def unpack(self, rows) -> Transition:
        if self.binary_obs:
            sc = rows["scalars"]
            return Transition(obs=rows["obs"].astype(jnp.float32),
                              action=sc[..., 0].astype(jnp.int32), reward=sc[..., 1],
                              terminated=sc[..., 2] > 0.5, done=sc[..., 3] > 0.5,
                              next_obs=rows["next_obs"].astype(jnp.float32))
        d = self.obs_dim
        lead = rows.shape[:-1]
        return Transition(obs=rows[..., :d].reshape(*lead, *self.obs_shape),
                          action=rows[..., d].astype(jnp.int32),
                          reward=rows[..., d + 1],
                          terminated=rows[..., d + 2] > 0.5,
                          done=rows[..., d + 3] > 0.5,
                          next_obs=rows[..., d + 4:].reshape(*lead, *self.obs_shape))


def init(rows: int, num_envs: int, width: int) -> jax.Array:
    """A packed buffer of `width` floats per transition (Layout.init picks the layout)."""
    return jnp.zeros((rows, num_envs, width), jnp.float32)


def write(data, row, t: jax.Array):
    """Write `row` (leaves [num_envs, ...]) as the t-th row ever written (t counts from 0)."""
    def one(d, r):
        pos = jnp.asarray(t % d.shape[0], jnp.int32)
        return jax.lax.dynamic_update_slice(d, r[None].astype(d.dtype),
                                            (pos,) + (0,) * (d.ndim - 1))

    return jax.tree.map(one, data, row)


def count(t_written: jax.Array, rows: int) -> jax.Array:
    """Rows holding data after `t_written` rows were written."""
    return jnp.minimum(t_written, rows)


def sample_indices(key: jax.Array, t_written: jax.Array, rows: int, num_envs: int,
                   batch: int, span: int):
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


def gather(data, row: jax.Array, env: jax.Array):
    """data[row[b, k], env[b]] for every leaf -> [batch, span, ...]."""
    return jax.tree.map(lambda d: d[row, env[:, None]], data)


def capacity(data) -> tuple[int, int]:
    """(rows, num_envs) of a buffer."""
    leaf = jax.tree.leaves(data)[0]
    return leaf.shape[0], leaf.shape[1]


def sample(data, layout: Layout, key: jax.Array, t_written: jax.Array, batch: int,
           span: int) -> Transition:
    """`batch` windows of `span` consecutive transitions: fields [batch, span, ...]."""
    rows, num_envs = capacity(data)
    row, env = sample_indices(key, t_written, rows, num_envs, batch, span)
    return layout.unpack(gather(data, row, env))
