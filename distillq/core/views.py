"""What a privileged student sees: a transformed observation, while its teacher labels the
full state (cross-modal / privileged distillation).

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

    @property
    def dim(self) -> int:
        return self.stack * len(self.keep)

    def to_json(self) -> dict:
        return {"keep": list(self.keep), "drop": [i for i in range(self.obs_dim)
                                                  if i not in self.keep],
                "noise": self.noise, "stack": self.stack, "input_dim": self.dim}


def parse(text: str, frame_stack: int, obs_shape: tuple[int, ...]) -> View | None:
    """'drop=1,3;noise=0.05', 2 -> View; None when the student sees the observation."""
    specs = [x.strip() for x in text.split(";") if x.strip()]
    if not specs and frame_stack == 1:
        return None
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
            raise ConfigError(f"student_obs: unknown transform {key!r} (drop, noise)")
    keep = tuple(i for i in range(d) if i not in drop)
    if not keep:
        raise ConfigError("student_obs: every observation dimension is dropped")
    return View(keep, noise, frame_stack, d)


def from_meta(meta: dict) -> View | None:
    """The view of a run (None: a teacher, or a student that sees the observation)."""
    v = meta.get("student_view")
    if not v:
        return None
    return View(tuple(v["keep"]), float(v["noise"]), int(v["stack"]),
                len(v["keep"]) + len(v["drop"]))


def scaling(view: View, shift: list[float], scale: list[float]) -> dict:
    """The bounds input scaling of the full observation, carried over to the view."""
    return {"shift": [shift[i] for i in view.keep] * view.stack,
            "scale": [scale[i] for i in view.keep] * view.stack}


def one(view: View, obs: Any, keys: Any) -> Any:
    """The kept (and noised) dimensions of observations [N, d] -> [N, kept]; keys [N]: one
    per row (the noise of a row depends only on its key)."""
    import jax
    import jax.numpy as jnp

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
    return jnp.where(new_episode[:, None, None], fresh, pushed)


def features(hist: Any) -> Any:
    """The student's input: the history flattened [N, stack * kept]."""
    return hist.reshape(hist.shape[0], -1)


def of_states(view: View, obs: Any) -> Any:
    """Inputs for states without a history (export parity): each view repeated, no noise."""
    import numpy as np

    x = np.asarray(obs).reshape(len(obs), -1)[:, list(view.keep)]
    return np.tile(x, (1, view.stack)).astype(np.float32)
