"""Greedy evaluation: whole episodes in parallel, a loop over steps that ends at the env's
step limit or as soon as every episode has ended (a step after that would add nothing).

`make_rollout(env, apply, num_episodes, other_apply)` returns a pure function
`rollout(params, key, other_params=None) -> {"returns", "lengths", "agree"}` that plays
`num_episodes` greedy episodes (the first episode of each env only) and, when `other_apply`
is given, also asks a second network (e.g. the teacher) at every visited state which action
it would pick ("agree" counts the matches). vmap it over seeds; the same key gives the same
initial states for any network (a fair teacher comparison).

With `trace=True` (static: off, the compiled function is exactly the untraced one) the
rollout also takes `watch`, an episode's index in the batch (0 .. num_episodes - 1, dynamic),
and returns that episode's raw observations (`trace_obs` [max_steps + 1, *obs_shape]: the
observation after t steps at row t, the last one the true final observation, not the
auto-reset one; rows past the episode's end are zeros) and rewards (`trace_rewards`
[max_steps]: step t's reward, zero past the end), carried through the same while_loop as
the batch: `render` draws evaluate's own episode, number for number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from distillq.core import envs


def _per_episode(key: jax.Array, episodes: jax.Array) -> jax.Array:
    """One key per episode id: the same episode gets the same key however the episodes are
    split into calls (long evaluations run in chunks)."""
    return jax.vmap(lambda e: jax.random.fold_in(key, e))(episodes)


def make_rollout(env: envs.Env, apply_fn: Callable | None, num_episodes: int,
                 other_apply: Callable | None = None, shifted: bool = False,
                 view: Any = None, other_sees_view: bool = False,
                 trace: bool = False) -> Callable:
    """apply_fn None: a uniform-random policy (the baseline of normalised retention).
    `first` numbers the episodes (first .. first + num_episodes - 1): episode e's initial
    state and dynamics depend only on (key, e).

    shifted: the rollout also takes `env_params` (replacing the env's own: shifted dynamics)
    and `obs_noise`, the std of Gaussian noise added to every observation the networks see
    (the env's state is untouched); the noise depends only on (key, episode, step).

    view: a views.View: `apply_fn` sees the stacked, transformed observation (a privileged
    student), `other_apply` (its teacher) the observation itself, or with `other_sees_view`
    the same view (a teacher that is itself a view student: chains in the student's
    modality).

    trace: the rollout takes `watch` too and returns the watched episode's trace (module
    docstring)."""
    from distillq.core import views
    def rollout(params: Any, key: jax.Array, other_params: Any = None, first: Any = 0,
                env_params: Any = None, obs_noise: Any = 0.0, watch: Any = 0) -> dict:
        k_reset, k_steps = jax.random.split(key)
        k_act = jax.random.fold_in(k_steps, 0x7A4D)
        k_noise = jax.random.fold_in(k_steps, 0x0B5E)
        k_view = jax.random.fold_in(k_steps, 0x51E3)
        k_view_noise = jax.random.fold_in(k_steps, 0x51E4)
        episodes = jnp.asarray(first, jnp.int32) + jnp.arange(num_episodes, dtype=jnp.int32)
        obs, state = envs.reset(env, _per_episode(k_reset, episodes), env_params)
        zeros = jnp.zeros((num_episodes,), jnp.float32)
        hist = (views.start(view, obs, _per_episode(jax.random.fold_in(k_view, 0x7FFF0000),
                                                    episodes))
                if view is not None else None)

        def body(carry, i):
            obs, state, alive, ret, length, agree, hist = carry
            raw, was = obs, alive      # for a trace: the raw observation, alive before the step
            if shifted:
                keys = _per_episode(jax.random.fold_in(k_noise, i), episodes)
                obs = obs + obs_noise * jax.vmap(
                    lambda k: jax.random.normal(k, env.obs_shape))(keys)
            if apply_fn is None:
                keys = _per_episode(jax.random.fold_in(k_act, i), episodes)
                action = jax.vmap(lambda k: jax.random.randint(k, (), 0, env.num_actions))(keys)
            else:
                seen = views.features(view, hist) if view is not None else obs
                if view is not None and shifted:   # the shift's noise reaches the view too
                    keys = _per_episode(jax.random.fold_in(k_view_noise, i), episodes)
                    seen = seen + obs_noise * jax.vmap(
                        lambda k: jax.random.normal(k, seen.shape[1:]))(keys)
                action = jnp.argmax(apply_fn(params, seen), axis=-1)
            if other_apply is not None:
                other_in = seen if (other_sees_view and view is not None) else obs
                same = jnp.argmax(other_apply(other_params, other_in), axis=-1) == action
                agree = agree + alive * same
            st = envs.step(env, _per_episode(jax.random.fold_in(k_steps, i), episodes), state,
                           action, env_params)
            ret = ret + alive * st.reward
            length = length + alive
            alive = alive * (1.0 - st.done.astype(jnp.float32))
            if view is not None:   # only the first episode counts: no restart needed
                hist = views.push(view, hist, st.obs,
                                  _per_episode(jax.random.fold_in(k_view, i), episodes))
            return (st.obs, st.state, alive, ret, length, agree, hist), (raw, was, st)

        def running(c):   # stop at the step limit, or once every episode has ended
            return (c[0] < env.max_steps) & jnp.any(c[1][2] > 0)

        def step(c):
            i, carry = c[0], c[1]
            new, (raw, was, st) = body(carry, i)
            if not trace:
                return i + 1, new
            t_obs, t_rew = c[2]
            w = jnp.asarray(watch, jnp.int32)
            on = was[w] > 0       # the watched episode was running at step i: record it
            t_obs = t_obs.at[i].set(jnp.where(on, raw[w], t_obs[i]))
            t_obs = t_obs.at[i + 1].set(jnp.where(on, st.next_obs[w], t_obs[i + 1]))
            t_rew = t_rew.at[i].set(jnp.where(on, st.reward[w], 0.0))
            return i + 1, new, (t_obs, t_rew)

        init = (obs, state, jnp.ones_like(zeros), zeros, zeros, zeros, hist)
        loop = (jnp.int32(0), init)
        if trace:
            loop += ((jnp.zeros((env.max_steps + 1, *obs.shape[1:]), obs.dtype),
                      jnp.zeros((env.max_steps,), jnp.float32)),)
        end = jax.lax.while_loop(running, step, loop)
        _, _, _, ret, length, agree, _ = end[1]
        out = {"returns": ret, "lengths": length, "agree": agree}
        if trace:
            out["trace_obs"], out["trace_rewards"] = end[2]
        return out

    return rollout


def make_comparison(env: envs.Env, student_apply: Callable, teacher_apply: Callable,
                    num_episodes: int, view: Any = None, teacher_view: Any = None,
                    trace: bool = False) -> Callable:
    """compare(params, teacher_params, key): the student's greedy episodes, the teacher's
    action at every state the student visits (fidelity), and the teacher's own greedy
    episodes and a uniform-random policy's episodes on the same keys (same initial states).
    teacher_view: the teacher's own view (a view student teaching one with the same view).

    trace: compare(..., first, watch) also returns the watched episode's trace of the
    student (`trace_obs`, `trace_rewards`) and of the teacher (`teacher_trace_obs`,
    `teacher_trace_rewards`, and `teacher_lengths`); the numbers are the untraced ones."""
    student = make_rollout(env, student_apply, num_episodes, other_apply=teacher_apply,
                           view=view, other_sees_view=teacher_view is not None, trace=trace)
    teacher = make_rollout(env, teacher_apply, num_episodes, view=teacher_view, trace=trace)
    uniform = make_rollout(env, None, num_episodes)

    def compare(params: Any, teacher_params: Any, key: jax.Array, first: Any = 0,
                watch: Any = 0) -> dict:
        s = student(params, key, teacher_params, first, watch=watch)
        t = teacher(teacher_params, key, None, first, watch=watch)
        out = {**s, "teacher_returns": t["returns"],
               "random_returns": uniform(None, key, None, first)["returns"]}
        if trace:
            out.update(teacher_lengths=t["lengths"], teacher_trace_obs=t["trace_obs"],
                       teacher_trace_rewards=t["trace_rewards"])
        return out

    return compare


def eval_key(seed: int) -> jax.Array:
    """The evaluation key of a seed: shared by train-teacher, distill and evaluate."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED)


def select_key(seed: int) -> jax.Array:
    """The key of the held-out episodes that choose among a seed's initialisations: never
    eval_key (episode e of a key is the same game whatever the episode count, so a shared
    key would choose on the final evaluation's first episodes)."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), 0x5E1EC7)
