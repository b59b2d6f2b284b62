"""Robustness: greedy evaluation under shifted env parameters and observation noise.

`distillq evaluate RUN --env-param length=0.25,0.5,1 --obs-noise 0,0.05` evaluates every
point of the grid (env-param values x noise levels) as one more vmap axis, on the same
episode keys as the unshifted evaluation: a point's env params replace the env's own (its
dynamics), and its noise level is the std of Gaussian noise added to every observation the
networks see. A student is compared with its teacher and a uniform-random policy at every
point, so retention under a shift is (S - R) / (T - R) on that shift's episodes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

from distillq.errors import ConfigError

MAX_POINTS = 1024
# Fields gymnax computes from others at definition time: recomputed after a shift unless given.
DERIVED = {"total_mass": (("masscart", "masspole"), lambda a, b: a + b),
           "polemass_length": (("masspole", "length"), lambda a, b: a * b)}
# Params that are probabilities (MinAtar's sticky actions): a shift outside [0, 1] is refused.
PROBABILITIES = ("sticky",)


def parse_floats(name: str, text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"{name}: values must be finite numbers, got {text!r}")
    return vals


def parse_env_params(specs: list[str]) -> dict[str, list[float]]:
    """['length=0.25,0.5', 'force_mag=5'] -> {'length': [0.25, 0.5], 'force_mag': [5.0]}."""
    out: dict[str, list[float]] = {}
    for spec in specs:
        name, sep, vals = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--env-param: expected NAME=V[,V...], got {spec!r}")
        if name in out:
            raise ConfigError(f"--env-param: {name} given twice")
        out[name] = parse_floats(f"--env-param {name}", vals)
    return out


def parse_noise(text: str | None) -> list[float]:
    vals = [0.0] if text is None else parse_floats("--obs-noise", text)
    if any(v < 0 for v in vals):
        raise ConfigError(f"--obs-noise: a noise std must be >= 0, got {text!r}")
    return vals


def grid(env_params: dict[str, list[float]], noise: list[float]) -> list[dict]:
    """Every combination, env params first (in the order given), noise last."""
    names = list(env_params)
    points = [{"env_params": dict(zip(names, combo, strict=True)), "obs_noise": s}
              for combo in itertools.product(*(env_params[n] for n in names)) for s in noise]
    if len(points) > MAX_POINTS:
        raise ConfigError(f"the shift grid has {len(points):,} points; at most {MAX_POINTS:,}")
    return points


def shiftable(params: Any) -> list[str]:
    """The env params that can be shifted: scalar float fields."""
    return [f.name for f in dataclasses.fields(params)
            if isinstance(getattr(params, f.name), float)]


def shifted_params(env_name: str, params: Any, values: dict[str, float]) -> Any:
    """The env's params with `values` replaced (derived fields recomputed unless given)."""
    allowed = shiftable(params)
    for name in values:
        if name not in allowed:
            raise ConfigError(f"--env-param {name}: not a shiftable parameter of {env_name} "
                              f"(choose from: {', '.join(allowed) or 'none'})")
    for name, v in values.items():
        if name in PROBABILITIES and not 0.0 <= v <= 1.0:
            raise ConfigError(f"--env-param {name}: a probability, between 0 and 1; got {v:g}")
    p = params.replace(**values)
    for field, (deps, fn) in DERIVED.items():
        if field in allowed and field not in values and all(d in allowed for d in deps):
            p = p.replace(**{field: fn(*(getattr(p, d) for d in deps))})
    return p


def stack_params(env, points: list[dict]) -> Any:
    """The grid's env params, leaves stacked [G, ...]; None when no env param is shifted."""
    import jax
    import jax.numpy as jnp

    if not any(pt["env_params"] for pt in points):
        return None
    each = [shifted_params(env.name, env.params, pt["env_params"]) for pt in points]
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *each)


def make_grid_eval(env, apply: Callable, chunk: int, t_apply: Callable | None = None,
                   view: Any = None, teacher_view: Any = None):
    """fn(params, t_params, keys, first, env_params, noise) -> leaves [G, S, chunk]: vmapped
    over seeds (params, t_params, keys) and over the grid (env_params, noise)."""
    import jax

    from distillq.core import rollout

    student = rollout.make_rollout(env, apply, chunk, other_apply=t_apply, shifted=True,
                                    view=view, other_sees_view=teacher_view is not None)
    if t_apply is not None:
        teacher = rollout.make_rollout(env, t_apply, chunk, shifted=True, view=teacher_view)
        uniform = rollout.make_rollout(env, None, chunk, shifted=True)

    def one(params, t_params, key, first, env_params, noise):
        s = student(params, key, t_params, first, env_params, noise)
        if t_apply is None:
            return s
        return {**s, "teacher_returns": teacher(t_params, key, None, first, env_params,
                                                noise)["returns"],
                "random_returns": uniform(None, key, None, first, env_params, noise)["returns"]}

    per_seed = jax.vmap(one, in_axes=(0, 0, 0, None, None, None))
    return jax.jit(jax.vmap(per_seed, in_axes=(None, None, None, None, 0, 0)))


def label(point: dict) -> str:
    parts = [f"{k}={v:g}" for k, v in point["env_params"].items()]
    return " ".join([*parts, f"noise={point['obs_noise']:g}"])
