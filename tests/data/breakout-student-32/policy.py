"""A distillq policy in plain NumPy: Q-values and greedy actions (numpy is all it needs).

    import numpy as np
    from policy import Policy
    pi = Policy("policy.npz")
    a = pi.act(obs)                   # obs: one observation (10, 10, 4), float32
    q = pi.q(batch)                   # [N, 3] Q-values of [N, (10, 10, 4)]
"""

import json

import numpy as np

ACTS = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh,
        "silu": lambda x: x / (1.0 + np.exp(-x)), None: lambda x: x}


class Policy:
    def __init__(self, path="policy.npz"):
        data = np.load(path)
        self.layers = json.loads(str(data["layers"]))
        self.arrays = {k: data[k] for k in data.files if k != "layers"}

    def _w(self, i, key):
        w = self.arrays[f"{i}_{key}"]
        scale = self.arrays.get(f"{i}_{key}_scale")
        return w.astype(np.float32) if scale is None else w.astype(np.float32) * scale

    def q(self, obs):
        x = np.asarray(obs, np.float32)
        n, shape = x.shape[0], x.shape
        for i, layer in enumerate(self.layers):
            op = layer["op"]
            if op == "scale":
                x = ((x.reshape(n, -1) - self.arrays[f"{i}_shift"])
                     * self.arrays[f"{i}_scale"]).reshape(shape)
            elif op == "conv":
                k = self._w(i, "kernel")
                kh, kw = k.shape[:2]
                h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
                cols = np.concatenate([x[:, a:a + h, b:b + w, :] for a in range(kh)
                                       for b in range(kw)], axis=-1)
                x = ACTS[layer["act"]](cols @ k.reshape(-1, k.shape[-1])
                                       + self.arrays[f"{i}_bias"])
            elif op == "flatten":
                x = x.reshape(n, -1)
            else:
                x = ACTS[layer["act"]](x @ self._w(i, "w") + self.arrays[f"{i}_b"])
        return x

    def act(self, obs):
        return int(np.argmax(self.q(np.asarray(obs, np.float32)[None])[0]))
