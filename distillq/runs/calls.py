"""Jitted calls from the host: per-seed keys, and calls run to the end interruptibly.

Importing it applies distillq's process-wide jax settings first (_setup.py: compile flags,
the persistent compilation cache), before jax is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from distillq import _setup
from distillq.runs import parallel, signals

_setup.configure()


def _derived_keys(derive: Callable, seeds: list[int]):
    """derive(seed) for every seed, in one vectorised call."""
    import jax
    import jax.numpy as jnp

    return jax.vmap(derive)(jnp.asarray(seeds, jnp.uint32))


def keys(seeds: list[int]):
    """One PRNG key per seed, made in one vectorised call (a Python loop over 100,000 seeds
    took minutes)."""
    import jax

    return _derived_keys(jax.random.PRNGKey, seeds)


def init_keys(seeds: list[int], init: int):
    """The training keys of initialisation `init` of seeds: init 0 is the seeds' own keys
    (a run without --inits is that run exactly); the others fold the init in."""
    import jax

    base = keys(seeds)
    return base if init == 0 else jax.vmap(lambda k: jax.random.fold_in(k, 0x1A17 + init))(base)


def select_keys(seeds: list[int]):
    """The held-out episodes' keys that choose among initialisations (rollout.select_key)."""
    from distillq.core import rollout

    return _derived_keys(rollout.select_key, seeds)


def eval_keys(seeds: list[int]):
    """The evaluation keys of seeds: shared by train-teacher, distill and evaluate."""
    from distillq.core import rollout

    return _derived_keys(rollout.eval_key, seeds)


def jit_vmap(fn: Callable, in_axes: Any = 0, donate: tuple = ()):
    import jax

    return jax.jit(jax.vmap(fn, in_axes=in_axes), donate_argnums=donate)


def ready(fn: Callable, *args):
    """fn(*args) computed to the end, interruptibly (a signal is acted on at once)."""
    import jax

    return signals.blocking(lambda: jax.block_until_ready(fn(*args)))


def timed(fn: Callable, *args):
    """(gathered host result, seconds) of a jitted call, run interruptibly."""
    t = time.perf_counter()
    out = signals.blocking(lambda: parallel.gather(fn(*args)))
    return out, time.perf_counter() - t
