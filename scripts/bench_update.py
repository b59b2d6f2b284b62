"""`make bench`'s update figures for one env's default teacher: the gradient update's FLOPs and
GFLOP/s against this machine's measured float32 matmul peak, and the loop efficiency (the
updates alone against the whole jitted training loop, same number of iterations).

    python scripts/bench_update.py --env Breakout-MinAtar [--iterations 64]   # one JSON line

Runs under the XLA flags the real run of that config gets (_setup.configure by run length).
FLOPs are XLA's own count (`compiled.cost_analysis()`) of one update (one minibatch step:
forward, backward, Adam); the peak is the best of 1024x1024 and 2048x2048 float32 matmuls,
jitted, on however many threads XLA uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def timed(fn, *args, reps: int = 5) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Breakout-MinAtar")
    ap.add_argument("--iterations", type=int, default=64)
    args = ap.parse_args()
    from distillq import _setup, config

    cfg = config.load("teacher", None, {"env": args.env, "seeds": "1"})
    full = config.load("teacher", None, {"env": args.env})     # the default run's flags
    _setup.configure(full.update_rows)
    import jax
    import jax.numpy as jnp

    from distillq.commands import train
    from distillq.core import envs, loop

    peak = 0.0
    for n in (1024, 2048):
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
        mm = jax.jit(lambda x, y: x @ y)
        peak = max(peak, 2 * n ** 3 / timed(mm, a, a) / 1e9)

    algo = train.algorithm(cfg, envs.make(cfg.env))
    system = algo.system
    state = jax.jit(system.init)(jax.random.PRNGKey(0))
    upi = cfg.updates_per_iteration
    t_end = cfg.warmup_iterations + args.iterations
    # one iteration's feed (after warm-up, so that the updates run)
    _, feed, _ = jax.jit(system.collect, static_argnums=())(
        state, None, jnp.int32(t_end), list(jax.random.split(jax.random.PRNGKey(1),
                                                             system.collect_keys)))

    def one(learner, j):
        return system.learn(learner, None, feed, jnp.int32(t_end), j % upi,
                            jax.random.PRNGKey(2))[0]

    single = jax.jit(one).lower(state.learner, jnp.int32(0)).compile()
    cost = single.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    n_updates = args.iterations * upi

    def updates(learner):
        return jax.lax.fori_loop(0, n_updates, lambda j, ln: one(ln, j), learner)

    upd_s = timed(jax.jit(updates), state.learner, reps=3)

    # the whole loop: chunks of the real skeleton over the same iterations after warm-up
    chunk = jax.jit(loop.make_chunk(system), donate_argnums=0)
    st = jax.jit(system.init)(jax.random.PRNGKey(0))
    t0 = jnp.int32(cfg.warmup_iterations)
    st, _ = chunk(st, None, t0)             # compile and warm
    jax.block_until_ready(st)
    ci = cfg.chunk_iterations
    n_chunks = max(1, args.iterations // ci)
    t = time.perf_counter()
    for i in range(n_chunks):
        st, _ = chunk(st, None, t0 + ci * (i + 1))
    jax.block_until_ready(st)
    loop_s = (time.perf_counter() - t) * args.iterations / (n_chunks * ci)
    print(json.dumps({
        "env": args.env, "algo": cfg.algo, "network": cfg.network, "xla_flags":
        _setup.xla_flags(), "flops_per_update": flops, "updates": n_updates,
        "updates_per_s": n_updates / upd_s, "update_gflops": flops * n_updates / upd_s / 1e9,
        "matmul_peak_gflops": peak, "iterations": args.iterations,
        "env_steps_per_iteration": cfg.steps_per_iteration,
        "loop_s": loop_s, "updates_only_s": upd_s, "efficiency": upd_s / loop_s,
        "loop_env_steps_per_s": args.iterations * cfg.steps_per_iteration / loop_s}))


if __name__ == "__main__":
    main()
