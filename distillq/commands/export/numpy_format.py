"""The NumPy artefact: policy.npz (the layers) and a numpy-only policy.py that runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

POLICY_PY = '''\
"""A distillq policy in plain NumPy: Q-values and greedy actions (numpy is all it needs).

    import numpy as np
    from policy import Policy
    pi = Policy("policy.npz")
    a = pi.act(obs)                   # obs: shape {shape}
    q = pi.q(batch)                   # [N, {n_actions}] Q-values of [N, {shape}]

Input: {inputs}.
"""

import json

import numpy as np

ACTS = {{"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh,
        "silu": lambda x: x / (1.0 + np.exp(-x)), None: lambda x: x}}


class Policy:
    def __init__(self, path="policy.npz"):
        data = np.load(path)
        self.layers = json.loads(str(data["layers"]))
        self.arrays = {{k: data[k] for k in data.files if k != "layers"}}

    def _w(self, i, key):
        w = self.arrays[f"{{i}}_{{key}}"]
        scale = self.arrays.get(f"{{i}}_{{key}}_scale")
        return w.astype(np.float32) if scale is None else w.astype(np.float32) * scale

    def _ln(self, i, x):
        scale = self.arrays.get(f"{{i}}_ln_scale")
        if scale is None:
            return x
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-6) * scale + self.arrays[f"{{i}}_ln_bias"]

    def q(self, obs):
        x = np.asarray(obs, np.float32)
        n, shape = x.shape[0], x.shape
        for i, layer in enumerate(self.layers):
            op = layer["op"]
            if op == "scale":
                x = ((x.reshape(n, -1) - self.arrays[f"{{i}}_shift"])
                     * self.arrays[f"{{i}}_scale"]).reshape(shape)
            elif op == "conv":
                k = self._w(i, "kernel")
                kh, kw = k.shape[:2]
                st = layer.get("stride", 1)
                h, w = (x.shape[1] - kh) // st + 1, (x.shape[2] - kw) // st + 1
                cols = np.concatenate([x[:, a:a + st * (h - 1) + 1:st, b:b + st * (w - 1) + 1:st]
                                       for a in range(kh) for b in range(kw)], axis=-1)
                x = ACTS[layer["act"]](self._ln(i, cols @ k.reshape(-1, k.shape[-1])
                                                + self.arrays[f"{{i}}_bias"]))
            elif op == "flatten":
                x = x.reshape(n, -1)
            else:
                x = ACTS[layer["act"]](self._ln(i, x @ self._w(i, "w")
                                                + self.arrays[f"{{i}}_b"]))
        return x

    def act(self, obs):
        return int(np.argmax(self.q(np.asarray(obs, np.float32)[None])[0]))
'''


def policy_py(shape: tuple[int, ...], n_actions: int, inputs: str | None = None) -> str:
    """The generated policy.py's text (`inputs`: what it takes; by default one observation)."""
    return POLICY_PY.format(shape=shape, n_actions=n_actions,
                            inputs=inputs or f"one observation of shape {shape}, float32")


def write_numpy(layers: list[dict], spec: dict, out: Path, inputs: str | None = None
                ) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    arrays, meta = {}, []
    for i, layer in enumerate(layers):
        meta.append({"op": layer["op"], "act": layer.get("act"),
                     **({"stride": layer["stride"]} if "stride" in layer else {})})
        for k, v in layer.items():
            if isinstance(v, np.ndarray):
                arrays[f"{i}_{k}"] = v
    np.savez(out / "policy.npz", layers=np.asarray(json.dumps(meta)), **arrays)
    (out / "policy.py").write_text(policy_py(tuple(spec["obs_shape"]), spec["num_actions"],
                                             inputs))
    return [out / "policy.npz", out / "policy.py"]


def load_numpy_policy(out_dir: Path):
    """The exported policy.py, imported from its file, with its policy.npz."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"distillq_export_{abs(hash(str(out_dir)))}",
                                                  Path(out_dir) / "policy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Policy(str(Path(out_dir) / "policy.npz"))
