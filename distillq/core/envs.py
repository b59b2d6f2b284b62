"""gymnax environments behind one small interface, with auto-reset handled in one place.

gymnax 1.0 `step` returns (obs, state, reward, terminated, truncated, info) and auto-resets:
the returned obs already belongs to the next episode when an episode ends, and the true next
observation is `info["final_observation"]`. DQN must bootstrap on `terminated` only.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from distillq import registry
from distillq.errors import ConfigError


class Env(NamedTuple):
    name: str
    env: Any
    params: Any
    obs_shape: tuple[int, ...]
    num_actions: int
    max_steps: int
    binary_obs: bool = False   # observations are 0/1 frames (MinAtar): stored as uint8
    obs_low: tuple[float, ...] = ()    # observation bounds, flattened (inf: unbounded)
    obs_high: tuple[float, ...] = ()

    @property
    def obs_dim(self) -> int:
        """Number of values in one observation."""
        return math.prod(self.obs_shape)


class Step(NamedTuple):
    obs: jax.Array          # next observation to act on (new episode's first obs after a reset)
    state: Any
    reward: jax.Array
    terminated: jax.Array   # episode ended in a terminal state: do not bootstrap
    done: jax.Array         # terminated or truncated: the episode ended
    next_obs: jax.Array     # true successor of the acted-on obs (pre-reset)


# Importing only an env's own module costs ~0.03 s; `import gymnax` costs ~4 s (its __init__
# imports every env, and Pong imports seaborn/matplotlib, pulling in scipy and pandas). The
# envs in registry.ENVS take the fast path; any other gymnax env goes through `gymnax.make`.
_STUB = "_distillq_stub"


def _gymnax():
    """The full gymnax package (slow: ~4 s)."""
    import gymnax  # noqa: PLC0415

    return gymnax


def _fast_env_class(module: str, cls: str):
    """Import gymnax.environments.<module> without running gymnax's package __init__s.

    Missing parent packages are stood in for by empty package modules during the import and
    removed right after, so a later `import gymnax` runs the real package normally (and
    reuses the already imported env modules).
    """
    full = f"gymnax.environments.{module}"
    if full in sys.modules:
        return getattr(sys.modules[full], cls)
    spec = importlib.util.find_spec("gymnax")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("gymnax is not installed")
    root = list(spec.submodule_search_locations)[0]
    sub = module.split(".", maxsplit=1)[0]
    stubs = []
    for name, path in (("gymnax", root), ("gymnax.environments", f"{root}/environments"),
                       (f"gymnax.environments.{sub}", f"{root}/environments/{sub}")):
        if name not in sys.modules:
            stub = types.ModuleType(name)
            stub.__path__ = [path]
            setattr(stub, _STUB, True)
            sys.modules[name] = stub
            stubs.append(name)
    try:
        return getattr(importlib.import_module(full), cls)
    finally:
        for name in stubs:
            if getattr(sys.modules.get(name), _STUB, False):
                del sys.modules[name]


def make(name: str) -> Env:
    if name in registry.ENVS:
        e = registry.ENVS[name]
        env = _fast_env_class(e.module, e.cls)()
        if e.family == "minatar":
            env = Sticky(env)
        return from_gymnax(name, env, env.default_params, binary_obs=e.family == "minatar")
    check_name(name)
    env, params = _gymnax().make(name)
    return from_gymnax(name, env, params)


@struct.dataclass
class StickyParams:
    """A MinAtar game's own params and `sticky`, the probability that the env repeats the
    previous action instead of the chosen one (the original MinAtar package plays with 0.1;
    gymnax's games and distillq's defaults with 0). A float field: `--env-param sticky=...`."""

    inner: Any
    sticky: float = 0.0

    @property
    def max_steps_in_episode(self):
        return self.inner.max_steps_in_episode


@struct.dataclass
class StickyState:
    inner: Any
    last_action: jax.Array   # the action the env executed last (kept across episodes)


class Sticky:
    """Sticky actions over a gymnax env, as the original MinAtar package has them: with
    probability `params.sticky` the env executes its previous action instead of the chosen
    one, and the previous action is not reset between episodes (it starts at 0). The inner
    env gets the step's own key, so sticky = 0 plays exactly the unwrapped env's episodes."""

    def __init__(self, inner: Any):
        self.inner = inner

    @property
    def default_params(self) -> StickyParams:
        return StickyParams(self.inner.default_params)

    def action_space(self, params: StickyParams):
        return self.inner.action_space(params.inner)

    def observation_space(self, params: StickyParams):
        return self.inner.observation_space(params.inner)

    def reset(self, key: jax.Array, params: StickyParams):
        obs, state = self.inner.reset(key, params.inner)
        return obs, StickyState(state, jnp.int32(0))

    def step(self, key: jax.Array, state: StickyState, action: jax.Array,
             params: StickyParams):
        repeat = jax.random.uniform(jax.random.fold_in(key, 0x571C)) < params.sticky
        executed = jnp.where(repeat, state.last_action, action).astype(jnp.int32)
        obs, inner, reward, term, trunc, info = self.inner.step(key, state.inner, executed,
                                                                params.inner)
        return obs, StickyState(inner, executed), reward, term, trunc, info


def check_name(name: str) -> None:
    """A one-line error for an env distillq cannot train (no import needed)."""
    error = registry.env_error(name)
    if error:
        raise ConfigError(error)


def from_gymnax(name: str, env: Any, params: Any, binary_obs: bool = False) -> Env:
    """Wrap any object with gymnax's reset/step/action_space/observation_space interface
    (tests use it for probe environments with known answers)."""
    space = env.action_space(params)
    if not hasattr(space, "n"):
        raise ConfigError(f"env {name!r} has a continuous action space; DQN needs discrete actions")
    obs_space = env.observation_space(params)
    shape = tuple(int(d) for d in obs_space.shape)
    low, high = (_bounds(getattr(obs_space, a, None), shape) for a in ("low", "high"))
    return Env(name, env, params, shape, int(space.n), int(params.max_steps_in_episode),
               binary_obs, low, high)


def _bounds(b: Any, shape: tuple[int, ...]) -> tuple[float, ...]:
    """Flattened bounds; |b| >= 1e6 (gymnax writes float32's max for "none") becomes inf."""
    import numpy as np

    if b is None:
        return (math.inf,) * math.prod(shape)
    a = np.broadcast_to(np.asarray(b, np.float64), shape).ravel()
    return tuple(float(math.copysign(math.inf, x)) if abs(x) >= 1e6 else float(x) for x in a)


def input_scaling(env: Env) -> dict:
    """The fixed input scaling of `obs_norm = "bounds"`: (obs - shift) * scale maps each
    bounded observation dimension to [-1, 1]; unbounded dimensions are left as they are."""
    shift, scale = [], []
    for lo, hi in zip(env.obs_low, env.obs_high, strict=True):
        bounded = math.isfinite(lo) and math.isfinite(hi) and hi > lo
        shift.append((lo + hi) / 2 if bounded else 0.0)
        scale.append(2 / (hi - lo) if bounded else 1.0)
    return {"shift": shift, "scale": scale}


def reset(env: Env, keys: jax.Array, params: Any = None):
    """Vectorised reset over the leading axis of `keys`: (obs [n, *obs_shape], state).
    `params`: env params to use instead of the env's defaults (shifted dynamics)."""
    obs, state = jax.vmap(env.env.reset, in_axes=(0, None))(
        keys, env.params if params is None else params)
    return obs.astype(jnp.float32), state


def step(env: Env, keys: jax.Array, state: Any, action: jax.Array, params: Any = None) -> Step:
    obs, state, reward, term, trunc, info = jax.vmap(env.env.step, in_axes=(0, 0, 0, None))(
        keys, state, action, env.params if params is None else params)
    return Step(obs.astype(jnp.float32), state, reward.astype(jnp.float32), term,
                jnp.logical_or(term, trunc), info["final_observation"].astype(jnp.float32))
