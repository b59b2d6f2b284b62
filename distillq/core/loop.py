"""Pieces shared by the jitted DQN and distillation loops (dqn.py, distill.py).

Both loops are a lax.scan of iterations (one vectorised env step plus `updates_per_step`
gradient updates, skipped during warm-up) followed by a chunk tail: a greedy evaluation, the
best-evaluated params kept, and per-chunk metrics (means over the iterations that learned,
a finite flag for the host's NaN check).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def updates(update: Callable, carry: Any, n: int, key: jax.Array):
    """n gradient updates in a scan: update(carry, j, key_j) -> (carry, outputs) for
    j = 0..n-1 with key_j = fold_in(key, j); returns the last carry and each output averaged
    over the n updates."""
    def one(c, j):
        return update(c, j, jax.random.fold_in(key, j))

    carry, out = jax.lax.scan(one, carry, jnp.arange(n))
    return carry, jax.tree.map(lambda x: x.mean(0), out)


def learn_or_skip(learning: jax.Array, learn: Callable, carry: Any, skipped: Any):
    """learn(carry) -> (carry, outputs) when `learning`, else (carry, skipped) (warm-up)."""
    return jax.lax.cond(learning, learn, lambda c: (c, skipped), carry)


def keep_best(params: Any, best_params: Any, best_return: jax.Array, eval_return: jax.Array):
    """The params with the best evaluation so far (ties: the newer ones)."""
    better = eval_return >= best_return
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b), params, best_params)
    return best, jnp.maximum(eval_return, best_return)


def all_finite(*trees: Any) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for t in trees
                              for x in jax.tree.leaves(t)]))


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over the leading axis where `mask` (0 when nothing is selected)."""
    m = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
    return jnp.where(m, values, 0.0).sum(0) / jnp.maximum(mask.sum(), 1)


def chunk_tail(params: Any, best_params: Any, best_return: jax.Array, rollout: Callable | None,
               key: jax.Array):
    """Evaluate `params` (greedy episodes) and keep the best; without a rollout (eval_episodes
    = 0) the last params are kept. Returns (eval_return, best_params, best_return)."""
    if rollout is None:
        nan = jnp.float32(jnp.nan)
        return nan, params, nan
    eval_return = rollout(params, key)["returns"].mean()
    best, best_ret = keep_best(params, best_params, best_return, eval_return)
    return eval_return, best, best_ret
