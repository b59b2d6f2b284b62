"""A network lowered to a flat list of layers, the form every export format is generated from:
an optional input scaling (the spec's `input_norm`, so every artefact takes raw observations),
a convolution (CNN), dense layers with their activation, and the Q head. A network with
LayerNorm (`+ln`) carries it on its conv and hidden layers: `ln_scale` / `ln_bias`, applied
over the layer's last axis before the activation (eps LN_EPS, as flax's). The same list with
int8 weights and per-output-channel scales is the quantised policy; `numpy_forward` runs a
list and is the reference every format is checked against.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from distillq.errors import RunDirError

LN_EPS = 1e-6     # flax.linen.LayerNorm's default


def lower(spec: dict, params: Any) -> list[dict]:
    """The network as layers: {"op": "scale"|"conv"|"flatten"|"dense", arrays, "act"}.
    `params` are one seed's flax params (numpy)."""
    from distillq.core import networks

    kind = spec["type"]
    if kind not in ("mlp", "linear", "cnn", "strided"):
        raise RunDirError(f"cannot export a network of type {kind!r} (known: mlp, linear, cnn, "
                          "strided)")
    p = params["params"]
    act = spec.get("activation", "relu")
    shape = list(networks.obs_shape(spec))
    layers: list[dict] = []
    norm = spec.get("input_norm")
    if norm is not None:
        layers.append({"op": "scale", "shift": np.asarray(norm["shift"], np.float32),
                       "scale": np.asarray(norm["scale"], np.float32)})
    ln = bool(spec.get("layer_norm", False))

    def norm(name: str) -> dict:
        return ({"ln_scale": np.asarray(p[name]["scale"], np.float32),
                 "ln_bias": np.asarray(p[name]["bias"], np.float32)} if ln else {})

    convs = ([("conv", 1, "conv_norm")] if kind == "cnn" else
             [(f"conv_{i}", int(spec["stride"]), None) for i in range(len(spec["convs"]))]
             if kind == "strided" else [])
    for name, stride, ln_name in convs:
        k = np.asarray(p[name]["kernel"], np.float32)              # [kh, kw, C, F]
        layers.append({"op": "conv", "name": name, "stride": stride, "kernel": k,
                       "bias": np.asarray(p[name]["bias"], np.float32), "act": act,
                       "in_shape": shape, **(norm(ln_name) if ln_name else {})})
        shape = conv_shape(layers[-1])
    layers.append({"op": "flatten", "size": int(math.prod(shape))})
    n_hidden = len(spec.get("hidden", spec.get("dense", [])))
    for i in range(n_hidden):
        d = p[f"hidden_{i}"]
        layers.append({"op": "dense", "w": np.asarray(d["kernel"], np.float32),
                       "b": np.asarray(d["bias"], np.float32), "act": act,
                       **norm(f"norm_{i}")})
    layers.append({"op": "dense", "w": np.asarray(p["q"]["kernel"], np.float32),
                   "b": np.asarray(p["q"]["bias"], np.float32), "act": None})
    return layers


def conv_shape(layer: dict) -> list[int]:
    """[h, w, F] that a conv layer outputs (VALID, its stride)."""
    kh, kw, _c, f = layer["kernel"].shape
    s = layer.get("stride", 1)
    return [(layer["in_shape"][0] - kh) // s + 1, (layer["in_shape"][1] - kw) // s + 1, f]


def quantise(layers: list[dict]) -> list[dict]:
    """int8 weights with one symmetric scale per output channel (post-training): w ~ q * s,
    q in [-127, 127]. Biases and the input scaling stay float32."""
    out = []
    for original in layers:
        layer = dict(original)
        key = {"dense": "w", "conv": "kernel"}.get(layer["op"])
        if key is not None:
            w = layer[key]
            flat = w.reshape(-1, w.shape[-1])
            s = np.abs(flat).max(axis=0) / 127.0
            s = np.where(s > 0, s, 1.0).astype(np.float32)
            q = np.clip(np.round(flat / s), -127, 127).astype(np.int8)
            layer[key] = q.reshape(w.shape)
            layer[key + "_scale"] = s
        out.append(layer)
    return out


def dequantised(layers: list[dict]) -> list[dict]:
    """float32 layers whose weights are the int8 weights times their scales."""
    out = []
    for original in layers:
        layer = dict(original)
        for key in ("w", "kernel"):
            if key + "_scale" in layer:
                layer[key] = layer[key].astype(np.float32) * layer.pop(key + "_scale")
        out.append(layer)
    return out


def to_params(layers: list[dict], spec: dict) -> dict:
    """The flax params a (dequantised) program came from, so distillq can evaluate it."""
    p: dict[str, Any] = {}
    dense = [x for x in layers if x["op"] == "dense"]
    for i, d in enumerate(dense[:-1]):
        p[f"hidden_{i}"] = {"kernel": d["w"], "bias": d["b"]}
        if "ln_scale" in d:
            p[f"norm_{i}"] = {"scale": d["ln_scale"], "bias": d["ln_bias"]}
    p["q"] = {"kernel": dense[-1]["w"], "bias": dense[-1]["b"]}
    for conv in (x for x in layers if x["op"] == "conv"):
        p[conv["name"]] = {"kernel": conv["kernel"], "bias": conv["bias"]}
        if "ln_scale" in conv:
            p["conv_norm"] = {"scale": conv["ln_scale"], "bias": conv["ln_bias"]}
    return {"params": p}



_NP_ACTS = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh,
            "silu": lambda x: x / (1.0 + np.exp(-x))}


def numpy_forward(layers: list[dict], obs: np.ndarray) -> np.ndarray:
    """Q-values [N, A] of observations [N, *obs_shape] (the reference for every format)."""
    x = np.asarray(obs, np.float32)
    n = x.shape[0]
    for layer in layers:
        op = layer["op"]
        if op == "scale":
            x = (x.reshape(n, -1) - layer["shift"]) * layer["scale"]
            x = x.reshape(obs.shape)
        elif op == "conv":
            k = layer["kernel"].astype(np.float32) * layer.get("kernel_scale", 1.0)
            kh, kw = k.shape[:2]
            st = layer.get("stride", 1)
            h, w = (x.shape[1] - kh) // st + 1, (x.shape[2] - kw) // st + 1
            cols = np.concatenate([x[:, i:i + st * (h - 1) + 1:st, j:j + st * (w - 1) + 1:st, :]
                                   for i in range(kh) for j in range(kw)], axis=-1)
            x = cols @ k.reshape(-1, k.shape[-1]) + layer["bias"]
            x = _np_act(layer["act"], _np_ln(layer, x))
        elif op == "flatten":
            x = x.reshape(n, -1)
        else:
            w = layer["w"].astype(np.float32) * layer.get("w_scale", 1.0)
            x = x @ w + layer["b"]
            x = _np_act(layer["act"], _np_ln(layer, x))
    return x


def _np_ln(layer: dict, x: np.ndarray) -> np.ndarray:
    """The layer's LayerNorm over the last axis, if it has one."""
    if "ln_scale" not in layer:
        return x
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * layer["ln_scale"] + layer["ln_bias"]


def _np_act(name: str | None, x: np.ndarray) -> np.ndarray:
    return x if name is None else _NP_ACTS[name](x)
