"""A MinAtar peer for `make bench`: rejax 0.1.3's PQN with purejaxql's MinAtar settings.

    python scripts/bench_rejax_pqn.py --env Breakout-MinAtar --seeds 4 --target 28 \
        --steps 10000000        # prints one JSON line

Settings: purejaxql's `purejaxql/config/alg/pqn_minatar.yaml` (commit 47af6d7): 128 envs,
rollouts of 32 steps, 2 epochs of 32 minibatches, lr 5e-4, gradient clip 10, gamma 0.99,
lambda 0.65, epsilon 1 -> 0.05 over the first 1M steps (10% of its TOTAL_TIMESTEPS_DECAY,
1e7, which purejaxql keeps whatever the budget, so a shorter run explores alike). rejax's
PQN is its adaptation of purejaxql's `pqn_gymnax.py`: an MLP 64-64 with LayerNorm on the
flattened frames and a constant learning rate (rejax has no decay). The env is wrapped
for rejax by scripts/rejax_env.py.

Time to target: every --eval-freq env steps each seed's policy (rejax's own act, epsilon
0.005) plays 16 episodes inside the jitted scan, and a host callback stamps the wall clock;
the figure is the process time (from start) at which every seed's mean first reached
--target. The final figure is rejax's `evaluate` over 100 episodes per seed at the end of the
budget. Seeds are a vmap axis, as in distillq.
"""

import argparse
import json
import time

T0 = time.perf_counter()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

CONFIG = dict(num_envs=128, num_steps=32, num_minibatches=32, num_epochs=2, learning_rate=5e-4,
              max_grad_norm=10.0, gamma=0.99, td_lambda=0.65, eps_start=1.0, eps_end=0.05,
              normalize_observations=False)
DECAY_STEPS = 1_000_000         # 0.1 x TOTAL_TIMESTEPS_DECAY (1e7)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="Breakout-MinAtar")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10_000_000)
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--eval-freq", type=int, default=131_072)
    args = ap.parse_args()
    import rejax
    import rejax_env
    from rejax.evaluate import evaluate

    t_import = time.perf_counter() - T0
    env, params = rejax_env.make(args.env)
    algo = rejax.PQN.create(env=env, env_params=params, total_timesteps=args.steps,
                            eval_freq=args.eval_freq, skip_initial_evaluation=True,
                            exploration_fraction=min(1.0, DECAY_STEPS / args.steps), **CONFIG)
    stamps: list[tuple[float, int, int, float]] = []

    def stamp(sid, step, ret):
        stamps.append((time.perf_counter() - T0, int(sid), int(step), float(ret)))

    def train(key, sid):
        def callback(a, ts, rng):
            _, returns = evaluate(a.make_act(ts), rng, a.env, a.env_params, 16,
                                  a.env_params.max_steps_in_episode)
            jax.debug.callback(stamp, sid, ts.global_step, returns.mean())
            return returns.mean()

        return algo.replace(eval_callback=callback).train(key)

    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    sids = jnp.arange(args.seeds)
    t = time.perf_counter()
    compiled = jax.jit(jax.vmap(train)).lower(keys, sids).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    ts, _ = jax.block_until_ready(compiled(keys, sids))
    train_s = time.perf_counter() - t

    def final(ts1, k):
        return evaluate(algo.make_act(ts1), k, algo.env, params, 100,
                        params.max_steps_in_episode)[1].mean()

    returns = np.asarray(jax.jit(jax.vmap(final))(ts, jax.random.split(jax.random.PRNGKey(1),
                                                                        args.seeds)))
    by_step: dict[int, dict[int, tuple[float, float]]] = {}
    for when, sid, step, ret in stamps:
        by_step.setdefault(step, {})[sid] = (when, ret)
    first = None
    for step in sorted(by_step):
        seen = by_step[step]
        if len(seen) == args.seeds and all(r >= args.target for _, r in seen.values()):
            first = {"env_steps": step, "process_s": max(w for w, _ in seen.values())}
            break
    steps = max(by_step) if by_step else args.steps     # rejax rounds up to whole evals
    iters = steps // (CONFIG["num_envs"] * CONFIG["num_steps"])
    print(json.dumps({
        "peer": "rejax 0.1.3 PQN (purejaxql MinAtar settings)", "env": args.env,
        "seeds": args.seeds, "env_steps_per_seed": steps, "target": args.target,
        "import_s": t_import, "compile_s": compile_s, "train_s": train_s,
        "wall_s": time.perf_counter() - T0,
        "env_steps_per_s": steps * args.seeds / train_s,
        "updates_per_s": iters * CONFIG["num_epochs"] * CONFIG["num_minibatches"] * args.seeds
        / train_s,
        "first_every_seed_at_target": first,
        "final_per_seed": [round(float(x), 2) for x in returns],
        "solved": int(sum(float(x) >= args.target for x in returns)),
        "curve": [{"env_steps": s, "returns": [round(by_step[s][i][1], 2)
                                               for i in sorted(by_step[s])]}
                  for s in sorted(by_step)]}))


if __name__ == "__main__":
    main()
