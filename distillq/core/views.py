"""What a privileged student sees: a transformed observation, while its teacher labels the
full state (cross-modal / privileged distillation).

Pixels (`pixels`): the student sees the env rendered from its state (frames.py: gymnasium's
picture, grayscale, 40x60 or 40x40) instead of numbers; with `--frame-stack K` its input is
the last K frames as channels, [H, W, K], ink in [0, 1]. Frames are kept as uint8 (in the
history and in replay: 2.4 kB a frame) and turned into floats only where a network reads
them (`inputs`).

A view is: keep some dimensions of the (flattened) observation (`drop=1,3` removes 1 and 3),
add Gaussian noise of std `noise` to what is kept, and stack the last `stack` views
(`--frame-stack K`), oldest first, so that a position-only student can recover velocities
from consecutive frames. At an episode's first step the history is that first view
repeated. The student's network input is the flattened stack, [stack * kept dims].

The same view is applied wherever the student acts or is scored: collection, the objective,
in-training and final evaluation, `evaluate`, `render` and `export` (whose artefacts take the
stacked view as input; the transform is written next to them).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from distillq.errors import ConfigError


class View(NamedTuple):
    keep: tuple[int, ...]   # kept dimensions of the flattened observation, in order
    noise: float            # std of the Gaussian noise added to every kept value
    stack: int              # views stacked (frame stack)
    obs_dim: int            # dimensions of the full observation
    pixels: str = ""        # the env whose rendered frames the student sees ('' = numbers)

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def frame(self) -> tuple[int, ...]:
        """One view's shape: a frame (H, W), or the kept dimensions (n,)."""
        from distillq.core import frames

        return frames.shape(self.pixels) if self.pixels else (len(self.keep),)

    @property
    def shape(self) -> tuple[int, ...]:
        """The student's input: [H, W, stack] frames, or [stack * kept] numbers."""
        return (*self.frame, self.stack) if self.pixels else (self.stack * len(self.keep),)

    def to_json(self) -> dict:
        out = {"keep": list(self.keep), "drop": [i for i in range(self.obs_dim)
                                                 if i not in self.keep],
               "noise": self.noise, "stack": self.stack, "input_dim": self.dim}
        if self.pixels:
            out.update(pixels=self.pixels, input_shape=list(self.shape))
        return out


def parse(text: str, frame_stack: int, obs_shape: tuple[int, ...], env_id: str = ""
          ) -> View | None:
    """'drop=1,3;noise=0.05', 2 -> View; 'pixels' -> the env's rendered frames; None when the
    student sees the observation."""
    specs = [x.strip() for x in text.split(";") if x.strip()]
    if not specs and frame_stack == 1:
        return None
    if "pixels" in specs:
        from distillq.core import frames

        if specs != ["pixels"]:
            raise ConfigError("student_obs: pixels is a view of its own (it takes no drop or "
                              "noise)")
        if not frames.supported(env_id):
            raise ConfigError(f"student_obs: pixels are drawn for "
                              f"{', '.join(frames.FRAMES)}; not for {env_id}")
        return View(tuple(range(obs_shape[0])), 0.0, frame_stack, obs_shape[0], env_id)
    if len(obs_shape) != 1:
        raise ConfigError(f"student_obs / frame_stack apply to vector observations; this env's "
                          f"are {tuple(obs_shape)} (image students see the frames as they are)")
    d = obs_shape[0]
    drop: set[int] = set()
    noise = 0.0
    for spec in specs:
        key, sep, val = spec.partition("=")
        if not sep:
            raise ConfigError(f"student_obs: expected drop=I,J or noise=S, got {spec!r}")
        if key == "drop":
            try:
                idx = [int(v) for v in val.split(",")]
            except ValueError:
                raise ConfigError(f"student_obs: drop takes observation indices, got {val!r}"
                                  ) from None
            bad = [i for i in idx if not 0 <= i < d]
            if bad:
                raise ConfigError(f"student_obs: drop index {bad[0]} is outside the "
                                  f"observation's {d} dimensions (0..{d - 1})")
            drop.update(idx)
        elif key == "noise":
            try:
                noise = float(val)
            except ValueError:
                raise ConfigError(f"student_obs: noise takes a number, got {val!r}") from None
            if not math.isfinite(noise) or noise < 0:
                raise ConfigError(f"student_obs: noise must be finite and >= 0, got {val!r}")
        else:
            raise ConfigError(f"student_obs: unknown transform {key!r} (drop, noise, "
                              f"pixels)")
    keep = tuple(i for i in range(d) if i not in drop)
    if not keep:
        raise ConfigError("student_obs: every observation dimension is dropped")
    return View(keep, noise, frame_stack, d)


def text(view: View) -> str:
    """The student_obs text that parses back to this view ('' = the whole observation)."""
    if view.pixels:
        return "pixels"
    drop = [i for i in range(view.obs_dim) if i not in view.keep]
    parts = ([f"drop={','.join(map(str, drop))}"] if drop else []) + \
        ([f"noise={view.noise:g}"] if view.noise else [])
    return ";".join(parts)


def from_meta(meta: dict) -> View | None:
    """The view of a run (None: a teacher, or a student that sees the observation)."""
    v = meta.get("student_view")
    if not v:
        return None
    return View(tuple(v["keep"]), float(v["noise"]), int(v["stack"]),
                len(v["keep"]) + len(v["drop"]), v.get("pixels", ""))


def scaling(view: View, shift: list[float], scale: list[float]) -> dict | None:
    """The bounds input scaling of the full observation, carried over to the view (None for
    pixels: frames are ink in [0, 1] already)."""
    if view.pixels:
        return None
    return {"shift": [shift[i] for i in view.keep] * view.stack,
            "scale": [scale[i] for i in view.keep] * view.stack}


def one(view: View, obs: Any, keys: Any) -> Any:
    """The kept (and noised) dimensions of observations [N, d] -> [N, kept]; keys [N]: one
    per row (the noise of a row depends only on its key). Pixels: frames [N, H, W] uint8."""
    import jax
    import jax.numpy as jnp

    if view.pixels:
        from distillq.core import frames

        return frames.draw_u8(view.pixels, obs)
    x = obs.reshape(obs.shape[0], -1)[:, jnp.asarray(view.keep)]
    if view.noise > 0:
        x = x + view.noise * jax.vmap(lambda k: jax.random.normal(k, x.shape[1:]))(keys)
    return x


def start(view: View, obs: Any, keys: Any) -> Any:
    """A history [N, stack, kept] at episodes' first observations (repeated)."""
    import jax.numpy as jnp

    x = one(view, obs, keys)
    return jnp.repeat(x[:, None], view.stack, axis=1)


def push(view: View, hist: Any, obs: Any, keys: Any, new_episode: Any = None) -> Any:
    """The history after observing `obs` [N, d]; where `new_episode`, it restarts."""
    import jax.numpy as jnp

    x = one(view, obs, keys)
    pushed = jnp.concatenate([hist[:, 1:], x[:, None]], axis=1)
    if new_episode is None:
        return pushed
    fresh = jnp.repeat(x[:, None], view.stack, axis=1)
    restart = new_episode.reshape(new_episode.shape + (1,) * (pushed.ndim - 1))
    return jnp.where(restart, fresh, pushed)


def stored(view: View, hist: Any) -> Any:
    """What replay keeps of a history: [N, stack * kept] float32 numbers, or the frames as
    channels [N, H, W, stack] uint8."""
    if view.pixels:
        return hist.transpose(0, 2, 3, 1)
    return hist.reshape(hist.shape[0], -1)


def inputs(view: View, x: Any) -> Any:
    """The network's input from what replay keeps (frames: uint8 -> ink in [0, 1])."""
    import jax.numpy as jnp

    return x.astype(jnp.float32) / 255.0 if view.pixels else x


def features(view: View, hist: Any) -> Any:
    """The student's input: the history flattened [N, stack * kept], or frames [N, H, W,
    stack] in [0, 1]."""
    return inputs(view, stored(view, hist))


def next_inputs(view: View, stored_rows: Any, next_obs: Any, key: Any) -> Any:
    """The student's input at each row's true successor (a td target's bootstrap state):
    the row's stored stack with the view of `next_obs` pushed on. stored_rows [B, n, *shape]
    (what `stored` kept), next_obs [B, n, *obs_shape]. Noise is drawn afresh (key)."""
    import jax

    lead = next_obs.shape[:2]
    flat = next_obs.reshape(lead[0] * lead[1], -1)
    x = one(view, flat, jax.random.split(key, flat.shape[0]))
    x = x.reshape(*lead, *x.shape[1:])
    import jax.numpy as jnp

    if view.pixels:     # channels: oldest first
        pushed = jnp.concatenate([stored_rows[..., 1:], x[..., None]], axis=-1)
    else:
        pushed = jnp.concatenate([stored_rows[..., x.shape[-1]:], x], axis=-1)
    return inputs(view, pushed)


def buffer(view: View, rows: int, num_envs: int) -> Any:
    """Replay storage of the student's inputs, one per transition."""
    import jax.numpy as jnp

    return jnp.zeros((rows, num_envs, *view.shape), jnp.uint8 if view.pixels else jnp.float32)


def repeated(view: View, obs: Any) -> Any:
    """The student's input at states without a history, in JAX: each view repeated (an
    episode's first step), no noise. obs [N, *obs_shape]."""
    quiet = view._replace(noise=0.0)
    return features(quiet, start(quiet, obs.reshape(obs.shape[0], -1), None))


def of_states(view: View, obs: Any) -> Any:
    """Inputs for states without a history (export parity): each view repeated, no noise."""
    import numpy as np

    if view.pixels:
        import jax.numpy as jnp

        x = np.asarray(one(view, jnp.asarray(obs, jnp.float32), None))
        return np.repeat(x[..., None], view.stack, axis=-1).astype(np.float32) / 255.0
    x = np.asarray(obs).reshape(len(obs), -1)[:, list(view.keep)]
    return np.tile(x, (1, view.stack)).astype(np.float32)
