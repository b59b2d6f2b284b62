"""Pure loss functions: arrays in, scalar out. No config, no randomness.

Conventions (also in the README):
- `mse`: mean over batch and actions of (q_student - q_teacher)^2.
- `kl` (Hinton-style): T^2 * mean_batch KL(softmax(q_teacher / T) || softmax(q_student / T)).
  Both sides are softened by the same T; the T^2 factor keeps gradient scale independent of T.
- `ce` (policy distillation / NLL): mean_batch -log softmax(q_student)[argmax q_teacher].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def td_loss(q_taken: jax.Array, target: jax.Array, delta: float) -> jax.Array:
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


def mse(student_q: jax.Array, teacher_q: jax.Array) -> jax.Array:
    return optax.losses.squared_error(student_q, teacher_q).mean()


def kl(student_q: jax.Array, teacher_q: jax.Array, temp: float | jax.Array) -> jax.Array:
    """Hinton-style KL(teacher_T || student_T) * T^2, both softened by the same T."""
    p_teacher = jax.nn.softmax(teacher_q / temp, axis=-1)
    log_p_student = jax.nn.log_softmax(student_q / temp, axis=-1)
    return (temp ** 2) * optax.losses.kl_divergence(log_p_student, p_teacher).mean()


def ce(student_q: jax.Array, teacher_q: jax.Array) -> jax.Array:
    """Cross-entropy of the student's softmax policy to the teacher's greedy action."""
    labels = jnp.argmax(teacher_q, axis=-1)
    return optax.losses.softmax_cross_entropy_with_integer_labels(student_q, labels).mean()
