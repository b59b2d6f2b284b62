"""Q-networks: an MLP whose hidden activations can be read for feature distillation.

Parameter layout (flax.linen): {"params": {"hidden_0": {"kernel", "bias"}, ..., "q": {...}}}.
A network is fully described by a JSON-able spec, stored in every run's metadata.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "silu": nn.silu}


class MLP(nn.Module):
    hidden: tuple[int, ...]
    num_actions: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        act = ACTIVATIONS[self.activation]
        hiddens = []
        for i, width in enumerate(self.hidden):
            x = act(nn.Dense(width, name=f"hidden_{i}")(x))
            hiddens.append(x)
        q = nn.Dense(self.num_actions, name="q")(x)
        return (q, tuple(hiddens)) if return_hidden else q


def spec(hidden: tuple[int, ...], activation: str, obs_dim: int, num_actions: int) -> dict:
    return {"type": "mlp", "hidden": list(hidden), "activation": activation,
            "obs_dim": int(obs_dim), "num_actions": int(num_actions)}


def build(net_spec: dict) -> MLP:
    if net_spec.get("type") != "mlp":
        raise ValueError(f"unknown network type {net_spec.get('type')!r}")
    return MLP(tuple(net_spec["hidden"]), int(net_spec["num_actions"]), net_spec["activation"])


def init(net: MLP, key: jax.Array, obs_dim: int) -> Any:
    return net.init(key, jnp.zeros((obs_dim,), jnp.float32))


def ensemble_apply(apply):
    """(params with a leading ensemble axis K, obs) -> mean Q-values over the K networks."""
    def mean_q(params: Any, obs: jax.Array) -> jax.Array:
        return jax.vmap(apply, in_axes=(0, None))(params, obs).mean(axis=0)

    return mean_q


def param_count(net_spec: dict) -> int:
    """Number of parameters, computed from the spec alone."""
    sizes = [net_spec["obs_dim"], *net_spec["hidden"], net_spec["num_actions"]]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def set_output_bias(params: Any, bias: jax.Array) -> Any:
    """A copy of `params` whose Q-head bias is `bias` [num_actions]."""
    inner = dict(params["params"])
    inner["q"] = {**inner["q"], "bias": jnp.asarray(bias, inner["q"]["bias"].dtype)}
    return {**params, "params": inner}
