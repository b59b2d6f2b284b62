"""Epsilon-greedy exploration shared by the Q-learning teachers (DQN, PQN)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def epsilon(cfg: Any, t: jax.Array) -> jax.Array:
    """Linear epsilon schedule from eps_start to eps_end over the first eps_fraction of the
    run's iterations (t in iterations)."""
    span = max(1.0, cfg.eps_fraction * cfg.total_iterations)
    frac = jnp.clip(t / span, 0.0, 1.0)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def epsilon_greedy(k_explore: jax.Array, k_random: jax.Array, q: jax.Array,
                   eps: jax.Array) -> jax.Array:
    """Actions [E] of Q-values q [E, A]: uniform with probability eps, else greedy."""
    n, num_actions = q.shape
    explore = jax.random.uniform(k_explore, (n,)) < eps
    random_a = jax.random.randint(k_random, (n,), 0, num_actions)
    return jnp.where(explore, random_a, jnp.argmax(q, -1))
