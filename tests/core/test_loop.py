"""The chunk skeleton, written once: a toy System whose every number is known drives it, as
a new algorithm would plug in (README "Extending distillq: a new algorithm")."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillq.core import loop


class Step(NamedTuple):
    loss: jax.Array
    lr: jax.Array


def counting_system(total=10, warmup=3, chunk=4, ups=2, score=True, after=False):
    """params count the updates (+ctx each), the actor counts collections; the score is the
    params' value, so keep-best and the figures are known by hand."""
    sch = loop.Schedule(total, warmup, chunk, ups)

    def init(key, ctx):
        return loop.start(system, loop.Learner(jnp.float32(0.0), None, None),
                          jnp.int32(0), key, jnp.float32(0.0))

    def collect(state, ctx, t, keys):
        assert len(keys) == 1
        return state._replace(actor=state.actor + 1), t + 1, t.astype(jnp.float32)

    def learn(learner, ctx, feed, t, j, key):
        return learner._replace(params=learner.params + ctx), Step(feed + j, jnp.float32(1.0))

    def summarise(collected, means, learning, ts):
        return {"collected": collected.sum(), "loss": means.loss,
                "learning": learning.sum().astype(jnp.float32)}

    def scored(params, state, ctx, key):
        return loop.Score(-jnp.abs(params - 5.0), {"params": params})

    def after_score(state, value):
        return state._replace(aux=state.aux + 1.0)

    system = loop.System(sch, init, 1, collect, jnp.float32(-1.0), learn,
                         Step(jnp.float32(0.0), jnp.float32(0.0)), lambda p: p,
                         scored if score else None, summarise, lambda p, c, k: p,
                         score_name="closeness", after_score=after_score if after else None)
    return system


def run_chunks(system, ctx=1.0, n=3):
    chunk = jax.jit(loop.make_chunk(system))
    st = system.init(jax.random.PRNGKey(0), ctx)
    out = []
    for c in range(n):
        st, m = chunk(st, jnp.float32(ctx), jnp.int32(c * system.schedule.chunk_iterations))
        out.append((st, jax.device_get(m)))
    return out


def test_the_skeleton_runs_the_budget_the_warm_up_and_the_updates():
    """total 10, warm-up 3, chunks of 4, 2 updates per iteration: chunk 0 learns at t = 3
    only, chunk 1 at t = 4..7, chunk 2 at t = 8, 9 (t = 10, 11 idle)."""
    (s0, m0), (s1, m1), (s2, m2) = run_chunks(counting_system())
    assert [int(s.actor) for s in (s0, s1, s2)] == [4, 8, 10]          # idle: no collection
    assert [float(s.learner.params) for s in (s0, s1, s2)] == [2.0, 10.0, 14.0]
    assert [float(m.figures["learning"]) for m in (m0, m1, m2)] == [1.0, 4.0, 2.0]
    # collected: t per live iteration, -1 per idle one
    assert float(m2.figures["collected"]) == 8 + 9 - 1 - 1
    # loss: the mean over updates j = 0, 1 of (t + 1 + j), then over learning iterations
    assert float(m0.figures["loss"]) == 4.5
    assert float(m1.figures["loss"]) == pytest.approx(np.mean([t + 1.5 for t in range(4, 8)]))
    assert bool(m0.finite)


def test_keep_best_score_figures_and_after_score():
    """score = -|params - 5|: chunk 0 (params 2) scores -3, chunk 1 (10) -5, chunk 2 (14) -9;
    the best (chunk 0's params) is kept; figures are named after the score."""
    runs = run_chunks(counting_system(after=True))
    (s0, m0), (s1, m1), (s2, m2) = runs
    assert [float(m.score) for _, m in runs] == [-3.0, -5.0, -9.0]
    assert [float(m.best_score) for _, m in runs] == [-3.0, -3.0, -3.0]
    assert float(s2.best_params) == 2.0
    assert float(m1.figures["eval_closeness"]) == -5.0 and \
        float(m1.figures["best_closeness"]) == -3.0 and float(m1.figures["params"]) == 10.0
    assert [float(s.aux) for s, _ in runs] == [1.0, 2.0, 3.0]          # once per chunk


def test_without_a_score_the_last_params_are_kept():
    (_, m0), (s1, m1) = run_chunks(counting_system(score=False), n=2)
    assert np.isnan(m1.score) and np.isnan(m1.best_score)
    assert float(s1.best_params) == float(s1.learner.params) == 10.0
    assert np.isnan(m0.figures["eval_closeness"])


def test_the_learning_rule_sees_its_context():
    _, _, (s2, _) = run_chunks(counting_system(), ctx=0.5)
    assert float(s2.learner.params) == 7.0                # 14 updates of +0.5


def test_a_nan_loss_is_reported_not_finite():
    system = counting_system()
    bad = system._replace(learn=lambda lr, c, f, t, j, k: (lr, Step(jnp.float32(jnp.nan),
                                                                     jnp.float32(0.0))))
    (_, m0), = run_chunks(bad, n=1)
    assert not bool(m0.finite)


def test_keep_best_ties_take_the_newer_params():
    new, old = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    best, ret = loop.keep_best(new, old, jnp.float32(3.0), jnp.float32(3.0))
    assert float(best["w"][0]) == 1.0 and float(ret) == 3.0
    best, ret = loop.keep_best(new, old, jnp.float32(3.0), jnp.float32(2.0))
    assert float(best["w"][0]) == 0.0 and float(ret) == 3.0


def test_masked_mean_of_the_chunk_metrics():
    """Per-chunk loss metrics average only the iterations that learned."""
    v = jnp.array([5.0, 1.0, 2.0, 6.0])
    m = jnp.array([False, True, True, False])
    assert float(loop.masked_mean(v, m)) == pytest.approx(1.5)
    assert float(loop.masked_mean(v, jnp.zeros(4, bool))) == 0.0           # warm-up only
    parts = jnp.array([[1.0, 10.0], [3.0, 30.0], [100.0, 100.0]])              # [iters, terms]
    np.testing.assert_allclose(np.asarray(loop.masked_mean(parts, jnp.array([1, 1, 0], bool))),
                               [2.0, 20.0])
