"""`distillq render`: a GIF of one greedy episode, drawn by gymnax's own Visualizer.

The episode is episode `e` of a seed's evaluation (the same key as `evaluate`'s episode e),
so a student and its teacher can be shown side by side on the same initial state. Frames
past the episode's end are dropped, and long episodes keep every k-th frame (at most
`max_frames`) so the GIFs stay small. Classic-control envs are drawn by gymnasium's
renderer, which needs pygame (the `render` extra); MinAtar needs nothing more.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from distillq.errors import ConfigError, RunDirError


def episode(env, apply, params: Any, key, index: int, view: Any = None
            ) -> tuple[list, list[float]]:
    """States and cumulative returns of evaluation episode `index` (greedy), up to its end:
    the same episode as rollout.make_rollout's (same keys, same student view)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from distillq.core import views

    k_reset, k_steps = jax.random.split(key)
    k_view = jax.random.fold_in(k_steps, 0x51E3)
    obs, state = env.env.reset(jax.random.fold_in(k_reset, index), env.params)

    def vkey(k):
        return jax.random.fold_in(k, index)[None]

    hist = (views.start(view, obs[None].astype(jnp.float32),
                        vkey(jax.random.fold_in(k_view, 0x7FFF0000)))
            if view is not None else None)

    def body(carry, i):
        obs, state, alive, hist = carry
        seen = views.features(view, hist) if view is not None else obs.astype(jnp.float32)[None]
        a = jnp.argmax(apply(params, seen)[0])
        k = jax.random.fold_in(jax.random.fold_in(k_steps, i), index)
        obs2, state2, r, term, trunc, _ = env.env.step(k, state, a, env.params)
        done = jnp.logical_or(term, trunc)
        if view is not None:
            hist = views.push(view, hist, obs2[None].astype(jnp.float32),
                              vkey(jax.random.fold_in(k_view, i)))
        return (obs2, state2, alive & ~done, hist), (state, r, alive)

    _, (states, rewards, alive) = jax.lax.scan(
        jax.jit(body), (obs, state, jnp.bool_(True), hist), jnp.arange(env.max_steps))
    n = int(np.asarray(alive).sum())
    rewards = np.asarray(rewards)[:n]
    seq = [jax.tree.map(lambda x, t=t: x[t], states) for t in range(n)]
    return seq, np.cumsum(rewards).tolist()


def _gif(env, states: list, returns: list[float], path: Path, max_frames: int) -> None:
    import os

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")      # gymnasium's pygame, no screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    import matplotlib

    matplotlib.use("Agg")
    from gymnax.visualize import Visualizer

    from distillq.core import envs

    step = max(1, math.ceil(len(states) / max_frames))
    keep = list(range(0, len(states), step))
    if keep[-1] != len(states) - 1:
        keep.append(len(states) - 1)
    try:
        game, params = env.env, env.params
        if isinstance(game, envs.Sticky):    # draw the game's own states
            game, params = game.inner, params.inner
            states = [s.inner for s in states]
        Visualizer(game, params, [states[i] for i in keep],
                   [returns[i] for i in keep]).animate(str(path))
    except Exception as e:  # noqa: BLE001 (gymnasium's renderer and its optional pygame)
        if "pygame" in str(e) or type(e).__name__ == "DependencyNotInstalled":
            raise ConfigError("drawing classic-control envs needs pygame: pip install "
                              "'distillq[render]'") from None
        raise


def compose(gifs: list[tuple[str, Path]], out: Path, scale: float = 0.5) -> None:
    """GIFs side by side, frame by frame (a shorter one holds its last frame), each labelled
    with its name and scaled down, saved with a small palette: small files."""
    from PIL import Image, ImageDraw, ImageSequence

    seqs = []
    for _, path in gifs:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(Image.open(path))]
        seqs.append([f.resize((int(f.width * scale), int(f.height * scale))) for f in frames])
    n = max(len(s) for s in seqs)
    width = sum(s[0].width for s in seqs)
    height = max(s[0].height for s in seqs)
    frames = []
    for i in range(n):
        canvas = Image.new("RGB", (width, height), "white")
        x = 0
        for (name, _), seq in zip(gifs, seqs, strict=True):
            f = seq[min(i, len(seq) - 1)]
            canvas.paste(f, (x, 0))
            ImageDraw.Draw(canvas).text((x + 6, 4), name, fill=(200, 30, 30))
            x += f.width
        frames.append(canvas.quantize(colors=32))
    duration = Image.open(gifs[0][1]).info.get("duration", 100)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=duration, loop=0,
                   optimize=True)


def run(path: str, out: str, *, seed_index: int = 0, episode_index: int = 0,
               with_teacher: bool = True, max_frames: int = 120, force: bool = False) -> dict:
    import jax
    import jax.numpy as jnp

    from distillq.core import envs, networks, rollout, views
    from distillq.runs import store, teachers

    out_path = Path(out)
    if out_path.suffix.lower() != ".gif":
        raise ConfigError(f"--out must end in .gif, got {out}")
    inside = store.enclosing_run(out_path.resolve().parent)
    if inside is not None:
        raise RunDirError(f"{out} is inside the run dir {inside}; render elsewhere")
    if out_path.exists() and not force:
        raise RunDirError(f"{out} already exists; choose another --out or pass --force")
    run = store.load_run(path)
    store.check_single_env(run, "render")
    if not 0 <= seed_index < len(run.meta["seeds"]):
        raise ConfigError(f"--seed-index must be in 0..{len(run.meta['seeds']) - 1}")
    env = envs.make(run.meta["env"])
    seed = run.meta["seeds"][seed_index]
    key = rollout.eval_key(seed)
    sides = [("student" if run.meta["kind"] == "student" else "teacher", run.meta["network"],
              jax.tree.map(lambda x: jnp.asarray(x[seed_index]), run.params),
              views.from_meta(run.meta))]
    t_runs = teachers.of_student(run.path, run.meta, missing="none") if with_teacher else None
    if t_runs is not None:
        idx = run.meta["teacher"]["seed_index"]
        if idx is not None and len(t_runs) == 1:
            t_params = jax.tree.map(lambda x: jnp.asarray(x[idx[seed_index]]),
                                    t_runs[0].params)
            sides.append(("teacher", t_runs[0].meta["network"], t_params,
                          views.from_meta(t_runs[0].meta)))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"kind": "render", "run_dir": str(run.path), "env": env.name,
                               "seed": seed, "episode": episode_index, "out": str(out_path)}
    with tempfile.TemporaryDirectory() as tmp:
        gifs = []
        for name, spec, params, view in sides:
            net = networks.build(spec)
            states, returns = episode(env, net.apply, params, key, episode_index, view)
            gif = Path(tmp) / f"{name}.gif"
            _gif(env, states, returns, gif, max_frames)
            gifs.append((name, gif))
            summary[f"{name}_return"] = returns[-1] if returns else 0.0
            summary[f"{name}_steps"] = len(states)
        compose(gifs, out_path)
    summary["size_bytes"] = out_path.stat().st_size
    out_path.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
