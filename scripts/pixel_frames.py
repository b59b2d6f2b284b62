"""The picture of what a pixel student sees (README "Pixel students"): for each env, a state
drawn by gymnasium's own renderer (rgb_array, full size) beside distillq's frame of the same
state (frames.py, the student's input), enlarged with nearest-neighbour pixels so each frame
pixel is visible; the student's ink is shown dark on white, as gymnasium draws it.

    python scripts/pixel_frames.py --out results/study-pixels/frames.png
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

STATES = [("CartPole-v1", [0.6, 0.0, 0.15, 0.0], [0.6, 0.0, 0.15, 0.0]),
          ("Acrobot-v1", [1.2, 0.9, 0.0, 0.0],
           [math.cos(1.2), math.sin(1.2), math.cos(0.9), math.sin(0.9), 0.0, 0.0]),
          ("MountainCar-v0", [-0.9, 0.0], [-0.9, 0.0])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/study-pixels/frames.png")
    args = ap.parse_args(argv)
    import os

    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import gymnasium as gym
    import jax.numpy as jnp
    from PIL import Image, ImageDraw

    from distillq.core import frames

    height = 200
    tiles = []
    for env_id, state, obs in STATES:
        env = gym.make(env_id, render_mode="rgb_array")
        env.reset(seed=0)
        env.unwrapped.state = np.asarray(state, np.float64)
        big = Image.fromarray(env.render()).convert("RGB")
        env.close()
        ink = np.asarray(frames.draw(env_id, jnp.asarray([obs], jnp.float32))[0])
        small = Image.fromarray(np.round((1 - ink) * 255).astype(np.uint8)).convert("RGB")
        h, w = frames.shape(env_id)
        scale = height / h
        row = [big.resize((round(big.width * height / big.height), height), Image.BILINEAR),
               small.resize((round(w * scale), height), Image.NEAREST)]
        tile = Image.new("RGB", (row[0].width + row[1].width + 32, height + 24), "white")
        tile.paste(row[0], (0, 24))
        tile.paste(row[1], (row[0].width + 30, 24))
        d = ImageDraw.Draw(tile)
        d.text((4, 4), f"{env_id}: gymnasium {big.width}x{big.height}", fill="black")
        d.text((row[0].width + 34, 4), f"student's view {w}x{h}", fill="black")
        for x in (0, row[0].width + 29):
            d.rectangle([x, 24, x + (row[0].width if x == 0 else row[1].width) + 1,
                         24 + height - 1], outline=(180, 180, 180))
        tiles.append(tile)
    out = Image.new("RGB", (max(t.width for t in tiles), sum(t.height + 10 for t in tiles)),
                    "white")
    y = 0
    for t in tiles:
        out.paste(t, (0, y))
        y += t.height + 10
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
