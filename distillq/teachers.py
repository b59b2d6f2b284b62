"""Teachers of a distillation: loading teacher runs and laying out their params per student."""

from __future__ import annotations

from typing import Any

from distillq import checkpoint
from distillq.errors import RunDirError


def load_teachers(teacher_dirs: list[str]) -> list[checkpoint.Run]:
    """Complete teacher runs that can teach together (same env, same architecture)."""
    runs = [checkpoint.load_run(p, kind="teacher") for p in teacher_dirs]
    first = runs[0].meta
    for r in runs[1:]:
        if r.meta["env"] != first["env"]:
            raise RunDirError(f"teacher runs disagree on the env: {first['env']} vs "
                              f"{r.meta['env']} ({r.path})")
        if r.meta["network"] != first["network"]:
            raise RunDirError("teacher runs of an ensemble must share a network architecture "
                              f"({runs[0].path} vs {r.path})")
    return runs


def per_student_params(teachers: list[checkpoint.Run], seed_index: list[int] | None,
                       n_students: int) -> Any:
    """Teacher params per student with an ensemble axis: leaves [n_students, K, ...].

    seed_index None: every student gets the whole ensemble (all seeds of all runs, K = their
    count); otherwise student i gets teacher seed seed_index[i] (K = 1).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    stacked = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *[t.params for t in teachers])
    if seed_index is None:
        return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x)[None],
                                                       (n_students, *x.shape)), stacked)
    idx = np.asarray(seed_index)
    return jax.tree.map(lambda x: jnp.asarray(x)[idx][:, None], stacked)


def labels(teachers: list[checkpoint.Run]) -> list[int]:
    """Every teacher seed, in the order of per_student_params' stacking."""
    return [s for t in teachers for s in t.meta["seeds"]]
