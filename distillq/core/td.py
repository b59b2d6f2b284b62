"""Temporal-difference learning shared by every Q-learner: n-step targets, the TD loss, target
networks and the optimiser. A DQN teacher and a student's `td` term (QDagger) both use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq.core import replay


class TD(NamedTuple):
    """A TD learner's options (TeacherConfig.td; a student's td_* keys, DistillConfig.td)."""

    gamma: float
    n_step: int
    double: bool           # Double DQN: the online net picks the bootstrap action
    target_update: int     # gradient updates between target-network updates
    tau: float             # 1.0: hard copy; < 1: Polyak averaging
    huber_delta: float


def optimizer(lr: float, lr_end: float, total_updates: int, grad_clip: float):
    """Adam with a learning rate decaying linearly from lr to lr_end over the updates,
    after a global gradient-norm clip."""
    schedule = optax.linear_schedule(lr, lr_end, max(1, total_updates))
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(schedule))


def loss(q_taken: jax.Array, target: jax.Array, delta: float) -> jax.Array:
    """Huber loss of TD errors; `target` must already be stop-gradient'ed."""
    return optax.losses.huber_loss(q_taken, target, delta=delta).mean()


def nstep_targets(rewards, terminated, done, gamma: float):
    """n-step discounted return and bootstrap discount of windows that stop at episode ends.

    rewards/terminated/done: [batch, n]. The window stops after the first `done` step; the
    bootstrap discount is gamma^m for m included steps, and 0 if the last included step
    terminated (truncation still bootstraps). Returns (G [batch], discount [batch],
    last [batch] = index of the last included step, whose next_obs is the bootstrap state).
    """
    n = rewards.shape[-1]
    done_f = done.astype(jnp.float32)
    # alive[k] = no episode end in steps 0..k-1
    alive = jnp.concatenate([jnp.ones_like(done_f[:, :1]),
                             jnp.cumprod(1.0 - done_f[:, :-1], axis=-1)], axis=-1)
    powers = gamma ** jnp.arange(n, dtype=jnp.float32)
    ret = jnp.sum(alive * powers * rewards, axis=-1)
    steps = jnp.sum(alive, axis=-1).astype(jnp.int32)          # m in 1..n
    last = steps - 1
    last_term = jnp.take_along_axis(terminated.astype(jnp.float32), last[:, None], -1)[:, 0]
    disc = (gamma ** steps.astype(jnp.float32)) * (1.0 - last_term)
    return ret, disc, last


def target(apply: Callable, params: Any, target_params: Any, window: replay.Transition,
           gamma: float, double: bool) -> jax.Array:
    """n-step (Double) DQN targets of windows [B, n] of consecutive transitions:
    G + gamma^m * Q_target(s', a*), with a* = argmax of the online net (double) or of the
    target net, s' the true successor of the window's last included step, and no bootstrap
    after a terminal step (nstep_targets). Outside the gradient."""
    ret, disc, last = nstep_targets(window.reward, window.terminated, window.done, gamma)
    idx = last.reshape(-1, *([1] * (window.next_obs.ndim - 1)))
    boot_obs = jnp.take_along_axis(window.next_obs, idx, axis=1)[:, 0]
    q_next = apply(target_params, boot_obs)
    chooser = apply(params, boot_obs) if double else q_next
    a_star = jnp.argmax(chooser, axis=-1)
    q_boot = jnp.take_along_axis(q_next, a_star[:, None], axis=-1)[:, 0]
    return jax.lax.stop_gradient(ret + disc * q_boot)


def update_target(params: Any, target_params: Any, u: jax.Array, period: int,
                  tau: float) -> Any:
    """After gradient update u (0-based): every `period` updates, move the target towards the
    online params by `tau` (1.0 = hard copy, Polyak otherwise)."""
    due = (u + 1) % period == 0
    moved = optax.incremental_update(params, target_params, tau)
    return jax.tree.map(lambda a, b: jnp.where(due, a, b), moved, target_params)
