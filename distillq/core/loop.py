"""The chunk skeleton, written once: every algorithm is a `System` plugged into it.

A chunk is a `lax.scan` over `chunk_iterations` iterations followed by a tail:

    iteration t            (those past the budget, the end of a last partial chunk, idle)
      keys                 key, k_collect..., k_learn = split(state.key, 2 + collect_keys)
      collect              system.collect(state, ctx, t, k_collect) -> (state, feed, out)
      learn                warm-up (t < warmup_iterations): skipped; otherwise
                           updates_per_step updates, update j with fold_in(k_learn, j):
                           system.learn(learner, ctx, feed, t, j, key) -> (learner, out)
    tail
      score                key, k_eval = split(key); system.score(params, state, ctx, k_eval)
                           -> Score (the in-training greedy evaluation; None: not scored)
      keep best            the evaluated params with the best score so far (ties: newer)
      after_score          system.after_score(state, score) (e.g. QDagger's next lambda)
      metrics              ChunkMetrics(score, best_score, finite, figures)

`ctx` holds what a member of the vmapped axis learns from that is not trained (a student's
teachers and hyperparameters; nothing for a teacher). `t0` (iterations done so far) is the
same for every member and is passed unbatched: replay write positions and schedules derive
from it. The loop never prints: the host reads the ChunkMetrics between chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Learner(NamedTuple):
    """What gradient updates change."""

    params: Any          # the trained params (a student's: {"student", "terms"})
    target: Any          # target network params (None: the system has none)
    opt_state: Any


class LoopState(NamedTuple):
    """One member's whole training state (a pytree; vmapped over members)."""

    learner: Learner
    actor: Any           # what collection carries: env states, observations, replay, ...
    key: jax.Array
    best_params: Any     # the evaluated params with the best score so far
    best_score: jax.Array
    aux: Any = None      # carried between chunks, updated after the score (QDagger's lambda)


class Score(NamedTuple):
    """The in-training evaluation of one member's params."""

    value: jax.Array     # scalar, higher is better: keep-best and early stopping read it
    figures: dict        # named figures for metrics.jsonl (e.g. the return per env)


class ChunkMetrics(NamedTuple):
    """What the host sees of a chunk, per member."""

    score: jax.Array         # this chunk's score (NaN when not scored)
    best_score: jax.Array    # the best score so far: the params that are kept
    finite: jax.Array        # loss and params free of NaN/Inf
    figures: dict            # the system's named figures (metrics.jsonl columns)


class Schedule(NamedTuple):
    """The loop's sizes (static ints; the training configs provide them)."""

    total_iterations: int
    warmup_iterations: int
    chunk_iterations: int
    updates_per_step: int

    @classmethod
    def of(cls, cfg: Any) -> Schedule:
        return cls(cfg.total_iterations, cfg.warmup_iterations, cfg.chunk_iterations,
                   cfg.updates_per_iteration)


class System(NamedTuple):
    """An algorithm, as the chunk skeleton runs it. Every function is pure and jittable."""

    schedule: Schedule
    init: Callable           # (key, ctx) -> LoopState
    collect_keys: int        # keys collect takes
    collect: Callable        # (state, ctx, t, keys) -> (state, feed, collect_out)
    collect_idle: Any        # collect_out of an idle iteration
    learn: Callable          # (learner, ctx, feed, t, j, key) -> (learner, learn_out[.loss])
    learn_skipped: Any       # learn_out of a warm-up iteration
    evaluated: Callable      # learner params -> the params scored, kept and saved
    score: Callable | None   # (params, state, ctx, key) -> Score; None: never scored
    summarise: Callable      # (collect_outs [T], learn_means, learning [T], ts) -> figures
    final: Callable          # (params, ctx, key) -> the final evaluation's outputs
    score_name: str = "return"   # figures eval_<name> / best_<name>: "return", "retention"
    after_score: Callable | None = None   # (state, score value) -> state
    select: Callable | None = None   # (params, ctx, key) -> per-episode returns [N] that
    # choose among a member's initialisations (the lifecycle's inits; None: no choice)


def updates(update: Callable, carry: Any, n: int, key: jax.Array):
    """n gradient updates in a scan: update(carry, j, key_j) -> (carry, outputs) for
    j = 0..n-1 with key_j = fold_in(key, j); returns the last carry and each output averaged
    over the n updates."""
    def one(c, j):
        return update(c, j, jax.random.fold_in(key, j))

    carry, out = jax.lax.scan(one, carry, jnp.arange(n))
    return carry, jax.tree.map(lambda x: x.mean(0), out)


def keep_best(params: Any, best_params: Any, best_score: jax.Array, score: jax.Array):
    """The params with the best score so far (ties: the newer ones)."""
    better = score >= best_score
    best = jax.tree.map(lambda a, b: jnp.where(better, a, b), params, best_params)
    return best, jnp.maximum(score, best_score)


def all_finite(*trees: Any) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for t in trees
                              for x in jax.tree.leaves(t)]))


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over the leading axis where `mask` (0 when nothing is selected)."""
    m = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim))
    return jnp.where(m, values, 0.0).sum(0) / jnp.maximum(mask.sum(), 1)


def start(system: System, learner: Learner, actor: Any, key: jax.Array,
          aux: Any = None) -> LoopState:
    """A fresh state: nothing scored yet, the initial params kept."""
    return LoopState(learner, actor, key, system.evaluated(learner.params),
                     jnp.asarray(-jnp.inf, jnp.float32), aux)


def make_chunk(system: System) -> Callable:
    """chunk(state, ctx, t0) -> (state, ChunkMetrics): one jittable chunk of `system`."""
    sch = system.schedule
    zeros = jax.tree.map(jnp.zeros_like, system.learn_skipped)

    def live(state: LoopState, ctx: Any, t: jax.Array):
        key, *k_collect, k_learn = jax.random.split(state.key, 2 + system.collect_keys)
        state, feed, c_out = system.collect(state, ctx, t, k_collect)

        def one(learner, j, k):
            return system.learn(learner, ctx, feed, t, j, k)

        learner, l_out = jax.lax.cond(
            t >= sch.warmup_iterations,
            lambda lr: updates(one, lr, sch.updates_per_step, k_learn),
            lambda lr: (lr, system.learn_skipped), state.learner)
        return state._replace(learner=learner, key=key), (c_out, l_out)

    def iteration(state: LoopState, t: jax.Array, ctx: Any):
        return jax.lax.cond(t < sch.total_iterations,
                            lambda s: live(s, ctx, t),
                            lambda s: (s, (system.collect_idle, zeros)), state)

    def chunk(state: LoopState, ctx: Any, t0: jax.Array):
        ts = t0 + jnp.arange(sch.chunk_iterations, dtype=jnp.int32)
        state, (c_outs, l_outs) = jax.lax.scan(lambda s, t: iteration(s, t, ctx), state, ts)
        key, k_eval = jax.random.split(state.key)
        params = system.evaluated(state.learner.params)
        if system.score is None:       # nothing scored: the last params are kept
            score = Score(jnp.float32(jnp.nan), {})
            best, best_score = params, score.value
        else:
            score = system.score(params, state, ctx, k_eval)
            best, best_score = keep_best(params, state.best_params, state.best_score,
                                         score.value)
        state = state._replace(key=key, best_params=best, best_score=best_score)
        if system.after_score is not None:
            state = system.after_score(state, score.value)
        learning = (ts >= sch.warmup_iterations) & (ts < sch.total_iterations)
        l_means = jax.tree.map(lambda x: masked_mean(x, learning), l_outs)
        name = system.score_name
        figures = {**system.summarise(c_outs, l_means, learning, ts),
                   f"eval_{name}": score.value, **score.figures, f"best_{name}": best_score}
        metrics = ChunkMetrics(score.value, best_score,
                               all_finite(state.learner.params, l_outs.loss), figures)
        return state, metrics

    return chunk
