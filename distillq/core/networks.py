"""Q-networks, one flax module per registered network type (registry.NETWORKS).

A network is fully described by a JSON-able spec, stored in every run's meta.json:
    {"type": "mlp" | "linear" | "cnn", <type options>, "activation": "relu",
     "obs_shape": [...], "num_actions": A}
Observations reach the network with their own shape; the network decides what to do with
them (MLP and linear flatten, CNN convolves). Every module's output head is named "q", and
`apply(params, obs, return_hidden=True)` also returns its hidden activations, each flattened
per sample ([..., features]), so feature and relation losses work across network families.
Parameter counts and shapes come from the params themselves (`jax.eval_shape` of init).

The multi-task network (`distill --multitask`) is registered like the others; its spec is
{"type": "multitask", "hidden", "activation", "tasks": [{"env", "obs_shape", "num_actions",
"input_norm"?}], "in_dim": D + k}: env e's observation is flattened, scaled, zero-padded to the
widest env's D and followed by a one-hot env id (`encode`); a shared trunk feeds one Q-head
per env (`q_0` ... `q_{k-1}`), and `task_apply(spec, e)` is env e's ordinary Q-function.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from distillq import registry

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "silu": nn.silu}


def _flatten(x: jax.Array, obs_ndim: int) -> jax.Array:
    """[..., *obs_shape] -> [..., prod(obs_shape)]."""
    return x.reshape(*x.shape[:x.ndim - obs_ndim], -1)


def _trunk(x: jax.Array, widths: tuple[int, ...], act, norm: bool = False
           ) -> tuple[jax.Array, list]:
    """Dense layers `hidden_i` with the activation (and, with `norm`, a LayerNorm `norm_i`
    before it), called inside a module's compact __call__: the last activation and every
    one (what feature losses compare)."""
    hiddens = []
    for i, width in enumerate(widths):
        x = nn.Dense(width, name=f"hidden_{i}")(x)
        if norm:
            x = nn.LayerNorm(name=f"norm_{i}")(x)
        x = act(x)
        hiddens.append(x)
    return x, hiddens


class MLP(nn.Module):
    hidden: tuple[int, ...]
    num_actions: int
    activation: str = "relu"
    obs_ndim: int = 1
    layer_norm: bool = False

    @classmethod
    def from_spec(cls, spec: dict) -> MLP:
        return cls(tuple(spec["hidden"]), int(spec["num_actions"]), spec["activation"],
                   len(obs_shape(spec)), bool(spec.get("layer_norm", False)))

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        x, hiddens = _trunk(_flatten(x, self.obs_ndim), self.hidden,
                            ACTIVATIONS[self.activation], self.layer_norm)
        q = nn.Dense(self.num_actions, name="q")(x)
        return (q, tuple(hiddens)) if return_hidden else q


class Linear(nn.Module):
    num_actions: int
    obs_ndim: int = 1

    @classmethod
    def from_spec(cls, spec: dict) -> Linear:
        return cls(int(spec["num_actions"]), len(obs_shape(spec)))

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        q = nn.Dense(self.num_actions, name="q")(_flatten(x, self.obs_ndim))
        return (q, ()) if return_hidden else q


class Conv(nn.Module):
    """A stride-1, VALID 2-D convolution (the same params and result as flax's nn.Conv:
    kernel [k, k, C, F], bias [F]), computed as shifted slices and one matmul (im2col).
    Measured on XLA:CPU (jax 0.10): a convolution's gradient inside lax.scan, as in every
    training loop here, ran 17x slower than outside it (41 ms vs 2.4 ms for a 3x3x4x16 conv,
    batch 128), while the im2col form costs 1.1 ms in the loop."""

    features: int
    kernel: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel, self.stride
        w = self.param("kernel", nn.initializers.lecun_normal(),
                       (k, k, x.shape[-1], self.features))
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        h, wd = conv_out(x.shape[-3], k, s), conv_out(x.shape[-2], k, s)
        cols = jnp.concatenate([x[..., i:i + s * (h - 1) + 1:s, j:j + s * (wd - 1) + 1:s, :]
                                for i in range(k) for j in range(k)], axis=-1)
        return cols @ w.reshape(-1, self.features) + b


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output positions of a VALID convolution along one axis."""
    return (size - kernel) // stride + 1


class CNN(nn.Module):
    """Conv(channels, kernel x kernel, stride 1, VALID) -> act -> flatten -> Dense... -> q.
    Inputs are [..., height, width, channels]; params are laid out as flax's nn.Conv would
    lay them out ({"conv": {"kernel": [k, k, C, F], "bias": [F]}, "hidden_i", "q"})."""

    channels: int
    kernel: int
    dense: tuple[int, ...]
    num_actions: int
    activation: str = "relu"
    layer_norm: bool = False

    @classmethod
    def from_spec(cls, spec: dict) -> CNN:
        return cls(int(spec["channels"]), int(spec["kernel"]), tuple(spec["dense"]),
                   int(spec["num_actions"]), spec["activation"],
                   bool(spec.get("layer_norm", False)))

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        act = ACTIVATIONS[self.activation]
        batch = x.shape[:-3]
        x = Conv(self.channels, self.kernel, name="conv")(x)
        if self.layer_norm:     # over each position's channels
            x = nn.LayerNorm(name="conv_norm")(x)
        x = act(x)
        conv = x.reshape(*batch, -1)
        x, hiddens = _trunk(conv, self.dense, act, self.layer_norm)
        hiddens = [conv, *hiddens]
        q = nn.Dense(self.num_actions, name="q")(x)
        return (q, tuple(hiddens)) if return_hidden else q


class StridedCNN(nn.Module):
    """For rendered frames (views.py pixels): convolutions (kernel x kernel, stride, VALID,
    `conv_i`) with the activation, flatten, dense layers (`hidden_i`), Q. Every conv's output
    (flattened) and every dense layer's is a hidden activation, in order."""

    convs: tuple[int, ...]
    kernel: int
    stride: int
    dense: tuple[int, ...]
    num_actions: int
    activation: str = "relu"

    @classmethod
    def from_spec(cls, spec: dict) -> StridedCNN:
        return cls(tuple(spec["convs"]), int(spec["kernel"]), int(spec["stride"]),
                   tuple(spec["dense"]), int(spec["num_actions"]), spec["activation"])

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        act = ACTIVATIONS[self.activation]
        batch = x.shape[:-3]
        hiddens = []
        for i, c in enumerate(self.convs):
            x = act(Conv(c, self.kernel, self.stride, name=f"conv_{i}")(x))
            hiddens.append(x.reshape(*batch, -1))
        x, dense = _trunk(x.reshape(*batch, -1), self.dense, act)
        q = nn.Dense(self.num_actions, name="q")(x)
        return (q, tuple(hiddens + dense)) if return_hidden else q


class MultiTaskMLP(nn.Module):
    """Shared trunk (Dense hidden_i + activation), one Q-head per env (q_e), on the encoded
    input of any env (`encode`)."""

    hidden: tuple[int, ...]
    heads: tuple[int, ...]      # actions per env
    activation: str = "relu"

    @classmethod
    def from_spec(cls, spec: dict) -> MultiTaskMLP:
        return cls(tuple(spec["hidden"]), tuple(t["num_actions"] for t in spec["tasks"]),
                   spec["activation"])

    @nn.compact
    def __call__(self, x: jax.Array, return_hidden: bool = False):
        x, hiddens = _trunk(x, self.hidden, ACTIVATIONS[self.activation])
        qs = tuple(nn.Dense(a, name=f"q_{e}")(x) for e, a in enumerate(self.heads))
        return (qs, tuple(hiddens)) if return_hidden else qs


def multitask_spec(hidden: list[int], activation: str, tasks: list[dict]) -> dict:
    """The spec of a multi-task network over `tasks` ({"env", "obs_shape", "num_actions",
    "input_norm"?} each)."""
    spec = {"type": "multitask", "hidden": list(hidden), "activation": activation,
            "tasks": tasks}
    frames = {tuple(t["obs_shape"][:2]) for t in tasks if len(t["obs_shape"]) == 3}
    if len(frames) == 1 and all(len(t["obs_shape"]) == 3 for t in tasks):
        # frames of one size (MinAtar games): channels zero-padded to the most channels,
        # so a pixel is at the same input position in every game
        (h, w), = frames
        spec["channels"] = max(t["obs_shape"][2] for t in tasks)
        width = h * w * spec["channels"]
    else:
        width = max(math.prod(t["obs_shape"]) for t in tasks)
    return {**spec, "in_dim": width + len(tasks)}


def encode(spec: dict, e: int, obs: jax.Array) -> jax.Array:
    """Env e's observations [..., *obs_shape] -> the shared input [..., D + k]: flattened,
    scaled (input_norm), zero-padded to D, then the one-hot env id. Frames of one size
    (spec "channels") are padded channel-wise before flattening instead."""
    task = spec["tasks"][e]
    shape = tuple(task["obs_shape"])
    lead = obs.shape[:obs.ndim - len(shape)]
    x = obs.reshape(*lead, -1).astype(jnp.float32)
    norm = task.get("input_norm")
    if norm is not None:
        x = (x - jnp.asarray(norm["shift"], jnp.float32)) * jnp.asarray(norm["scale"],
                                                                           jnp.float32)
    if "channels" in spec:
        x = x.reshape(*lead, *shape)
        x = jnp.concatenate([x, jnp.zeros((*lead, *shape[:2], spec["channels"] - shape[2]),
                                          jnp.float32)], -1).reshape(*lead, -1)
    k = len(spec["tasks"])
    pad = spec["in_dim"] - k - x.shape[-1]
    onehot = jnp.broadcast_to(jax.nn.one_hot(e, k, dtype=jnp.float32), (*x.shape[:-1], k))
    return jnp.concatenate([x, jnp.zeros((*x.shape[:-1], pad), jnp.float32), onehot], -1)


def task_apply(spec: dict, e: int):
    """Env e's Q-function of a multi-task network: (params, obs[, return_hidden]) -> its
    head's Q-values, as any network's apply."""
    mod = MultiTaskMLP.from_spec(spec)

    def apply(params: Any, obs: jax.Array, return_hidden: bool = False):
        qs, hs = mod.apply(params, encode(spec, e, obs), return_hidden=True)
        return (qs[e], hs) if return_hidden else qs[e]

    return apply


def set_head_bias(params: Any, head: str, bias: jax.Array) -> Any:
    """A copy of `params` whose Q-head `head` ("q", or "q_e" of a multi-task net) has bias
    `bias` [num_actions]."""
    inner = dict(params["params"])
    inner[head] = {**inner[head], "bias": jnp.asarray(bias, inner[head]["bias"].dtype)}
    return {**params, "params": inner}


# --------------------------------------------------------------------------- specs


def spec(text_or_fields: str | dict, activation: str, obs_shape_: tuple[int, ...],
         num_actions: int, input_norm: dict | None = None) -> dict:
    """A full network spec from the --hidden/--student grammar (or parsed fields).
    `input_norm` {"shift": [...], "scale": [...]} (flattened obs) is a fixed input scaling,
    (obs - shift) * scale, applied before the network (envs.input_scaling)."""
    fields = (registry.parse_network(text_or_fields) if isinstance(text_or_fields, str)
              else dict(text_or_fields))
    out = {**fields, "activation": activation, "obs_shape": [int(d) for d in obs_shape_],
           "num_actions": int(num_actions)}
    if input_norm is not None:
        out["input_norm"] = {k: [float(v) for v in input_norm[k]] for k in ("shift", "scale")}
    kind = registry.NETWORKS[out["type"]]
    if kind.image and len(out["obs_shape"]) != 3:
        from distillq.errors import ConfigError

        raise ConfigError(f"network {out['type']} needs image observations (height, width, "
                          f"channels); this env's observations have shape "
                          f"{tuple(out['obs_shape'])}")
    return out


def obs_shape(net_spec: dict) -> tuple[int, ...]:
    """The observation shape of a spec (runs written before 0.2 stored only obs_dim)."""
    if "obs_shape" in net_spec:
        return tuple(int(d) for d in net_spec["obs_shape"])
    return (int(net_spec["obs_dim"]),)


def input_shape(net_spec: dict) -> tuple[int, ...]:
    """The shape of one input of the network's module (a multi-task net: the encoded one)."""
    return (int(net_spec["in_dim"]),) if "in_dim" in net_spec else obs_shape(net_spec)


class Net(NamedTuple):
    """A built network: its flax module behind the spec's fixed input scaling, if any (the
    params are the module's own, so a checkpoint does not depend on the scaling)."""

    module: nn.Module
    shift: Any = None        # [*obs_shape] or None
    scale: Any = None

    def prep(self, x: jax.Array) -> jax.Array:
        return x if self.shift is None else (x - self.shift) * self.scale

    def init(self, key: jax.Array, x: jax.Array) -> Any:
        return self.module.init(key, self.prep(x))

    def apply(self, params: Any, x: jax.Array, return_hidden: bool = False):
        return self.module.apply(params, self.prep(x), return_hidden=return_hidden)


def build(net_spec: dict) -> Net:
    kind = net_spec.get("type")
    if kind not in registry.NETWORKS:
        raise ValueError(f"unknown network type {kind!r}")
    module = registry.load(registry.NETWORKS[kind].impl).from_spec(net_spec)
    norm = net_spec.get("input_norm")
    if norm is None:
        return Net(module)
    import numpy as np

    shape = obs_shape(net_spec)
    return Net(module, np.asarray(norm["shift"], np.float32).reshape(shape),
               np.asarray(norm["scale"], np.float32).reshape(shape))


def init(net: Net, key: jax.Array, shape: tuple[int, ...]) -> Any:
    return net.init(key, jnp.zeros(shape, jnp.float32))


def abstract_params(net_spec: dict) -> Any:
    """Shapes and dtypes of one network's params (no arrays allocated)."""
    net = build(net_spec)
    return jax.eval_shape(lambda k: init(net, k, input_shape(net_spec)), jax.random.PRNGKey(0))


def param_count(net_spec: dict) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params(net_spec)))


def _shapes(net_spec: dict):
    """(outputs, hidden activations) of one input, as shapes (nothing computed)."""
    net = build(net_spec)
    shape = input_shape(net_spec)

    def run(k):
        return net.apply(init(net, k, shape), jnp.zeros((1, *shape)), return_hidden=True)

    return jax.eval_shape(run, jax.random.PRNGKey(0))


def hidden_sizes(net_spec: dict) -> list[int]:
    """Flattened size of each hidden activation (what feature/relation losses compare)."""
    return [int(h.shape[-1]) for h in _shapes(net_spec)[1]]


def widths(net_spec: dict) -> list[int]:
    """Values per sample of the input, each hidden activation and each output (a multi-task
    net has one per env): what one sample keeps in flight."""
    outputs, hiddens = _shapes(net_spec)
    return [math.prod(input_shape(net_spec)), *(int(h.shape[-1]) for h in hiddens),
            *(int(q.shape[-1]) for q in jax.tree.leaves(outputs))]


def ensemble_apply(apply):
    """(params with a leading ensemble axis K, obs) -> mean Q-values over the K networks."""
    def mean_q(params: Any, obs: jax.Array) -> jax.Array:
        return jax.vmap(apply, in_axes=(0, None))(params, obs).mean(axis=0)

    return mean_q


def set_output_bias(params: Any, bias: jax.Array) -> Any:
    """A copy of `params` whose Q-head bias is `bias` [num_actions]."""
    return set_head_bias(params, "q", bias)
