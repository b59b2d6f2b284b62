"""The peer for `make bench`: rejax 0.1.3's DQN with its own CartPole-v1 config.

    python scripts/bench_rejax.py --seeds 8     # prints one JSON line

Config: rejax's repository `configs/gymnax/cartpole.yaml` (tag v0.1.3), section `dqn`
(copied below). The env is wrapped for rejax by scripts/rejax_env.py. The final policy
is evaluated with rejax's own `evaluate` and act function (epsilon 0.005), 100 episodes/seed.
"""

import argparse
import json
import time

T0 = time.perf_counter()

import jax  # noqa: E402
import numpy as np  # noqa: E402

CONFIG = dict(agent="DuelingQNetwork", agent_kwargs={"activation": "swish"}, num_envs=10,
              buffer_size=50_000, fill_buffer=5_000, batch_size=100, max_grad_norm=10,
              learning_rate=0.001, num_epochs=5, total_timesteps=100_000, eval_freq=2_500,
              polyak=0.98, eps_start=1.0, eps_end=0.05, exploration_fraction=0.5, gamma=0.99,
              ddqn=True, normalize_observations=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    import rejax
    import rejax_env
    from rejax.evaluate import evaluate

    t_import = time.perf_counter() - T0
    env, params = rejax_env.make("CartPole-v1")
    algo = rejax.DQN.create(env=env, env_params=params, **CONFIG)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    train = jax.jit(jax.vmap(algo.train))
    t = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    ts, _ = jax.block_until_ready(compiled(keys))
    train_s = time.perf_counter() - t

    def final(ts1, k):
        return evaluate(algo.make_act(ts1), k, algo.env, params, 100, 500)[1]

    t = time.perf_counter()
    returns = np.asarray(jax.jit(jax.vmap(final))(ts, jax.random.split(jax.random.PRNGKey(1),
                                                                        args.seeds)))
    eval_s = time.perf_counter() - t
    means = returns.mean(axis=1)
    updates = int((CONFIG["total_timesteps"] - CONFIG["fill_buffer"]) / CONFIG["num_envs"]
                  * CONFIG["num_epochs"])
    print(json.dumps({"peer": "rejax", "version": getattr(rejax, "__version__", "0.1.3"),
                      "seeds": args.seeds, "per_seed_mean": means.tolist(),
                      "solved": int((means >= 475).sum()), "import_s": round(t_import, 3),
                      "compile_s": round(compile_s, 3), "train_s": round(train_s, 3),
                      "eval_s": round(eval_s, 3), "env_steps_per_seed": CONFIG["total_timesteps"],
                      "updates_per_seed": updates,
                      "wall_s": round(time.perf_counter() - T0, 3)}))


if __name__ == "__main__":
    main()
