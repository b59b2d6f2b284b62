"""`distillq render`: a GIF of one greedy evaluation episode, a student beside its teacher.

The episode is `evaluate`'s own: episode e of `evaluate --episodes N` (N = --episodes,
default 100 as evaluate's) is played by the very call evaluate makes for it
(evaluation.evaluation_call: the same seed-vmapped batch of min(N, EVAL_CHUNK) episodes,
first = (e // chunk) * chunk), traced (rollout.py's `trace`: the watched episode's raw
observations and rewards, carried through the same while_loop), so the returns in the GIF
are evaluate's per-episode returns, number for number. The teacher pane is the teacher's
own greedy episode from the same initial state (evaluate's `teacher_returns`).

Both panes are sampled at the same env steps (at most `max_frames` frames, every k-th step
and the last); a pane whose episode ended holds its final frame, captioned "ended at step
T". Each frame is captioned with its env step and the return so far.

Frames are drawn without matplotlib or pygame: classic control by distillq.core.frames
(the pixel students' renderer, at 5x its size: 300x200 for CartPole), all frames in one
jitted call; MinAtar as a colour per channel, upscaled 20x (nearest neighbour). Pillow
assembles the GIF. The GIF and its summary (`<gif>.json`, kind "render") are checked
before any work and written through runs/outputs.py (staged beside them, moved into place).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from distillq.errors import ConfigError

SCALE = 5            # classic-control frames: 5x the pixel student's (300x200 for CartPole)
MINATAR_SCALE = 20   # a MinAtar cell: 20x20 px (200x200 for the 10x10 board)
CAPTION_H = 30       # px above each pane: two lines of text
DURATION_MS = 100    # per frame

# The GIF's palette: GRAYS levels of ink (0 white .. GRAYS - 1 black), then fixed colours.
GRAYS = 224
TEXT, LABEL, ENDED, BOARD = GRAYS, GRAYS + 1, GRAYS + 2, GRAYS + 3
CHANNEL0 = GRAYS + 4           # MinAtar channel c: CHANNEL0 + c
CHANNEL_RGB = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
               (213, 94, 0), (204, 121, 167), (255, 255, 255), (160, 160, 160), (255, 80, 80),
               (120, 220, 120), (170, 120, 255)]


def _palette() -> list[int]:
    pal: list[int] = []
    for k in range(GRAYS):
        v = round(255 * (1 - k / (GRAYS - 1)))
        pal += [v, v, v]
    pal += [20, 20, 20, 200, 30, 30, 120, 120, 120, 0, 0, 0]
    for rgb in CHANNEL_RGB:
        pal += list(rgb)
    return pal + [0] * (768 - len(pal))


def drawable(env_name: str) -> str:
    """'classic' or 'minatar'; anything else is refused in one line (exit 2)."""
    from distillq import registry
    from distillq.core import frames

    if frames.supported(env_name):
        return "classic"
    e = registry.ENVS.get(env_name)
    if e is not None and e.family == "minatar":
        return "minatar"
    raise ConfigError(f"render draws CartPole, Acrobot, MountainCar and the MinAtar games; "
                      f"not {env_name}")


def frame_steps(last: int, max_frames: int) -> list[int]:
    """The env steps shown: 0, k, 2k, ... and `last` (the longer episode's end), at most
    `max_frames` of them (>= 2)."""
    if last <= 0:
        return [0]
    k = max(1, math.ceil(last / (max_frames - 1)))
    return [*range(0, last, k), last]


def draw_panes(kind: str, env_name: str, obs):
    """Palette indices [N, H, W] (uint8) of raw observations [N, *obs_shape]."""
    import numpy as np

    if kind == "minatar":
        obs = np.asarray(obs) > 0.5                                   # [N, 10, 10, C]
        c = obs.shape[-1]
        if c > len(CHANNEL_RGB):
            raise ConfigError(f"{env_name} has {c} channels; render colours at most "
                              f"{len(CHANNEL_RGB)}")
        top = np.max(obs * np.arange(1, c + 1, dtype=np.int32), axis=-1)   # the last wins
        idx = np.where(top > 0, CHANNEL0 + top - 1, BOARD).astype(np.uint8)
        return idx.repeat(MINATAR_SCALE, axis=1).repeat(MINATAR_SCALE, axis=2)
    return np.asarray(_classic(env_name)(np.asarray(obs, np.float32)))


_DRAWERS: dict[str, Any] = {}


def _classic(env_name: str):
    """A jitted function: observations [N, d] -> palette indices [N, H, W] (uint8), all
    frames in one call (lax.map in batches of 64: bounded memory for long episodes)."""
    if env_name not in _DRAWERS:
        import jax
        import jax.numpy as jnp

        from distillq.core import frames

        def one(o):
            ink = frames.draw(env_name, o[None], SCALE)[0]
            return jnp.round(jnp.clip(ink, 0.0, 1.0) * (GRAYS - 1)).astype(jnp.uint8)

        _DRAWERS[env_name] = jax.jit(lambda obs: jax.lax.map(one, obs, batch_size=64))
    return _DRAWERS[env_name]


def caption(name: str, t: int, length: int, returns: list[float]) -> tuple[str, str]:
    """A pane's two caption lines at env step t: the step (or, past its episode's end, the
    step it ended at) and the return so far (returns[t]: after t steps)."""
    tt = min(t, length)
    head = f"{name}  step {t}" if t < length else f"{name}  ended at step {length}"
    return head, f"return {returns[tt]:g}"


def write_gif(panes: list[dict], steps: list[int], path: Path, bar=None, task=None) -> int:
    """The side-by-side GIF: pane p shows its frame after min(t, length) steps at every
    step t of `steps`, captioned. panes: name, frames [n_p, H, W] indices (frame j: the
    state after steps[j] steps, clipped to the pane's length), length, returns (cumulative
    return after t steps, t = 0..length). Returns the number of frames written."""
    import numpy as np
    from PIL import Image, ImageDraw

    gap = 4
    h = max(p["frames"].shape[1] for p in panes)
    widths = [p["frames"].shape[2] for p in panes]
    width = sum(widths) + gap * (len(panes) - 1)
    palette = _palette()

    x_at = [sum(widths[:i]) + gap * i for i in range(len(panes))]
    base = np.zeros((h + CAPTION_H, width), np.uint8)      # white, gray between panes
    for x in x_at[1:]:
        base[:, x - gap:x] = GRAYS // 4

    def frames():
        for j, t in enumerate(steps):
            canvas = base.copy()
            for p, x in zip(panes, x_at, strict=True):
                img = p["frames"][j]
                canvas[CAPTION_H:CAPTION_H + img.shape[0], x:x + img.shape[1]] = img
            im = Image.fromarray(canvas, "P")
            im.putpalette(palette)
            d = ImageDraw.Draw(im)
            for p, x in zip(panes, x_at, strict=True):
                head, ret = caption(p["name"], t, p["length"], p["returns"])
                d.text((x + 4, 2), head, fill=LABEL if t < p["length"] else ENDED)
                d.text((x + 4, 15), ret, fill=TEXT)
            if bar is not None:
                bar.advance(task)
            yield im

    it = frames()
    first = next(it)
    first.save(path, save_all=True, append_images=it, duration=DURATION_MS, loop=0,
               optimize=False)
    return len(steps)


def _is_gif(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            return fh.read(6) in (b"GIF87a", b"GIF89a")
    except OSError:
        return False


def _is_render_summary(p: Path) -> bool:
    try:
        return json.loads(p.read_text()).get("kind") == "render"
    except (OSError, ValueError, AttributeError):
        return False


def targets(out: Path) -> list:
    """The GIF and its summary beside it: an existing GIF is replaced only with --force, a
    .json that is not a render summary (e.g. `make run`'s last-evaluation.json) never."""
    from distillq.runs import outputs

    return [outputs.Target(out, "GIF", False, _is_gif),
            outputs.Target(out.with_suffix(".json"), "render summary (kind \"render\")", False,
                           _is_render_summary)]


def run(path: str, out: str, *, seed_index: int = 0, episode_index: int = 0,
        episodes: int = 100, with_teacher: bool = True, max_frames: int = 120,
        force: bool = False) -> dict:
    """Render episode `episode_index` of `evaluate --episodes episodes` of one seed; writes
    the GIF and its summary and returns the summary (the command's JSON)."""
    from distillq.runs import outputs, store

    final = store.printable(out)
    if final.suffix.lower() != ".gif":
        raise ConfigError(f"--out must end in .gif, got {final}")
    if episodes < 1 or not 0 <= episode_index < episodes:
        raise ConfigError(f"--episode must be in 0..{episodes - 1} (episode E of `evaluate "
                          f"--episodes {episodes}`); got {episode_index}")
    if not 2 <= max_frames <= 10_000:
        raise ConfigError(f"--max-frames must be in 2..10000, got {max_frames}")
    outputs.check(targets(final), force)           # before any work: exit 2, nothing computed
    run = store.load_run(path)
    store.check_single_env(run, "render")
    n_seeds = len(run.meta["seeds"])
    if not 0 <= seed_index < n_seeds:
        raise ConfigError(f"--seed-index must be in 0..{n_seeds - 1}")
    kind = drawable(run.meta["env"])
    return _render(run, final, kind, seed_index, episode_index, episodes, with_teacher,
                   max_frames)


def _render(run, final: Path, kind: str, seed_index: int, e: int, episodes: int,
            with_teacher: bool, max_frames: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from distillq.runs import evaluation, outputs, signals, store, teachers
    from distillq.runs.console import console, progress

    t0 = time.perf_counter()
    t_runs = (teachers.of_student(run.path, run.meta, missing="warn") if with_teacher
              else None)
    chunk = min(episodes, evaluation.EVAL_CHUNK)
    first, watch = (e // chunk) * chunk, e % chunk
    seed = run.meta["seeds"][seed_index]
    console.print(f"[dim]render {run.path.name}: episode {e} of `evaluate --episodes "
                  f"{episodes}` (its batch: episodes {first}..{first + chunk - 1} of "
                  f"{len(run.meta['seeds'])} seeds); seed {seed}[/dim]")
    call = evaluation.evaluation_call(run, t_runs, chunk, trace=True)
    with console.status(f"playing evaluate's {chunk} episodes x {len(run.meta['seeds'])} "
                        "seeds (compiling first)"):
        out = signals.blocking(lambda: jax.device_get(
            call.fn(*call.args, jnp.int32(first), jnp.int32(watch))))
    play_s = time.perf_counter() - t0
    sides = [("student" if run.meta["kind"] == "student" else "teacher", "")]
    if t_runs is not None:
        sides.append(("teacher", "teacher_"))
    panes = []
    for name, pre in sides:
        length = int(np.asarray(out[f"{pre}lengths"])[seed_index, watch])
        rewards = np.asarray(out[f"{pre}trace_rewards"])[seed_index, :length]
        returns = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float32)])
        panes.append({"name": name, "length": length, "returns": returns.tolist(),
                      "obs": np.asarray(out[f"{pre}trace_obs"])[seed_index, :length + 1]})
    steps = frame_steps(max(p["length"] for p in panes), max_frames)
    # one drawing call for every frame of every pane, at the steps shown
    obs = np.concatenate([p["obs"][np.minimum(steps, p["length"])] for p in panes])
    drawn = draw_panes(kind, run.meta["env"], obs)
    for i, p in enumerate(panes):
        p["frames"] = drawn[i * len(steps):(i + 1) * len(steps)]
    summary: dict[str, Any] = {"kind": "render", "run_dir": str(run.path),
                               "env": run.meta["env"], "seed": seed, "episode": e,
                               "episodes": episodes, "out": str(final)}
    for p in panes:
        summary[f"{p['name']}_return"] = p["returns"][-1]
        summary[f"{p['name']}_steps"] = p["length"]
    summary["frames"] = len(steps)
    summary["frame_steps"] = steps
    bar = progress("frames", transient=True, disable=not console.is_terminal)
    with outputs.staging(final) as tmp, bar:
        task = bar.add_task(f"render {final.name}", total=len(steps))
        gif, js = tmp / final.name, tmp / final.with_suffix(".json").name
        write_gif(panes, steps, gif, bar, task)
        summary["size_bytes"] = gif.stat().st_size
        js.write_text(json.dumps(summary, indent=2) + "\n")
        store.place_all([(gif, final), (js, final.with_suffix(".json"))])   # both or none
    console.print(f"[dim]{final}: {len(steps)} frames, "
                  + ", ".join(f"{p['name']} return {p['returns'][-1]:g} in {p['length']} steps"
                              for p in panes)
                  + f"; episodes played in {play_s:.1f} s (compile included), "
                    f"{time.perf_counter() - t0:.1f} s in all[/dim]")
    return summary
