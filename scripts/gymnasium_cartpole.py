"""Run an exported CartPole policy on gymnasium's CartPole-v1 (not gymnax), outside distillq.

    python scripts/gymnasium_cartpole.py exports/<run>-numpy [--episodes 100]
    python scripts/gymnasium_cartpole.py exports/<run>-onnx

Needs only numpy and gymnasium (plus onnxruntime for an ONNX export); distillq and jax are
not imported. Prints one JSON line: the mean, min and max return over the episodes.
"""

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np


def load_policy(export_dir: Path):
    """obs -> action, from an export dir made by `distillq export`."""
    if (export_dir / "policy.onnx").exists():
        import onnxruntime as ort

        sess = ort.InferenceSession(str(export_dir / "policy.onnx"),
                                    providers=["CPUExecutionProvider"])
        return lambda obs: int(sess.run(["action"], {"obs": obs[None].astype(np.float32)})[0][0])
    sys.path.insert(0, str(export_dir))
    from policy import Policy  # the exported numpy-only policy.py

    pi = Policy(str(export_dir / "policy.npz"))
    return pi.act


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    act = load_policy(args.export_dir)
    env = gym.make("CartPole-v1")            # 500-step time limit, as gymnax's CartPole-v1
    returns = []
    for ep in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + ep)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(np.asarray(obs, np.float32)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    print(json.dumps({"env": "gymnasium CartPole-v1", "episodes": args.episodes,
                      "mean": float(np.mean(returns)), "min": float(np.min(returns)),
                      "max": float(np.max(returns)),
                      "jax_imported": "jax" in sys.modules,
                      "distillq_imported": "distillq" in sys.modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
