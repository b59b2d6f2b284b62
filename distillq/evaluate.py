"""Greedy evaluation: whole episodes in parallel, one lax.scan over the env's step limit.

`make_rollout(env, apply, num_episodes, other_apply)` returns a pure function
`rollout(params, key, other_params=None) -> {"returns", "lengths", "agree"}` that plays
`num_episodes` greedy episodes (the first episode of each env only) and, when `other_apply`
is given, also asks a second network (e.g. the teacher) at every visited state which action
it would pick ("agree" counts the matches). vmap it over seeds; the same key gives the same
initial states for any network (a fair teacher comparison).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from distillq import envs


def make_rollout(env: envs.Env, apply_fn: Callable | None, num_episodes: int,
                 other_apply: Callable | None = None) -> Callable:
    """apply_fn None: a uniform-random policy (the baseline of normalised retention)."""
    def rollout(params: Any, key: jax.Array, other_params: Any = None) -> dict:
        k_reset, k_steps = jax.random.split(key)
        k_act = jax.random.fold_in(k_steps, 0x7A4D)
        obs, state = envs.reset(env, jax.random.split(k_reset, num_episodes))
        zeros = jnp.zeros((num_episodes,), jnp.float32)

        def body(carry, i):
            obs, state, alive, ret, length, agree = carry
            if apply_fn is None:
                action = jax.random.randint(jax.random.fold_in(k_act, i), (num_episodes,), 0,
                                            env.num_actions)
            else:
                action = jnp.argmax(apply_fn(params, obs), axis=-1)
            if other_apply is not None:
                same = jnp.argmax(other_apply(other_params, obs), axis=-1) == action
                agree = agree + alive * same
            keys = jax.random.split(jax.random.fold_in(k_steps, i), num_episodes)
            st = envs.step(env, keys, state, action)
            ret = ret + alive * st.reward
            length = length + alive
            alive = alive * (1.0 - st.done.astype(jnp.float32))
            return (st.obs, st.state, alive, ret, length, agree), None

        init = (obs, state, jnp.ones_like(zeros), zeros, zeros, zeros)
        (_, _, _, ret, length, agree), _ = jax.lax.scan(body, init, jnp.arange(env.max_steps))
        return {"returns": ret, "lengths": length, "agree": agree}

    return rollout


def make_comparison(env: envs.Env, student_apply: Callable, teacher_apply: Callable,
                    num_episodes: int) -> Callable:
    """compare(params, teacher_params, key): the student's greedy episodes, the teacher's
    action at every state the student visits (fidelity), and the teacher's own greedy
    episodes and a uniform-random policy's episodes on the same keys (same initial states)."""
    student = make_rollout(env, student_apply, num_episodes, other_apply=teacher_apply)
    teacher = make_rollout(env, teacher_apply, num_episodes)
    uniform = make_rollout(env, None, num_episodes)

    def compare(params: Any, teacher_params: Any, key: jax.Array) -> dict:
        s = student(params, key, teacher_params)
        return {**s, "teacher_returns": teacher(teacher_params, key)["returns"],
                "random_returns": uniform(None, key)["returns"]}

    return compare


def eval_key(seed: int) -> jax.Array:
    """The evaluation key of a seed: shared by train-teacher, distill and evaluate."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)


def forward_throughput(apply: Callable, params_one: Any, obs_shape: tuple[int, ...],
                       batch: int = 4096, reps: int = 20) -> float:
    """Observations per second through a network (jitted forward pass, one seed's params)."""
    import time

    fwd = jax.jit(apply)
    x = jnp.zeros((batch, *obs_shape), jnp.float32)
    fwd(params_one, x).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        y = fwd(params_one, x)
    y.block_until_ready()
    return batch * reps / (time.perf_counter() - t)
