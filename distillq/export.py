"""Export a trained network to where policies run: NumPy, C and ONNX, with parity checks,
batch-1 decision latency and int8 weights.

A network is first lowered to a flat list of layers (`program`): an optional input scaling
(the spec's `input_norm`, so every artefact takes raw observations), a convolution (CNN),
dense layers with their activation, and the Q head; each format is generated from that list.
The same list, with int8 weights and per-output-channel scales, gives the quantised policy,
whose return is measured through distillq's own greedy evaluation (same episode keys).

Everything here runs on the host with numpy; onnx/onnxruntime (the `export` extra) and a C
compiler are needed only for their formats.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from distillq.errors import ConfigError, RunDirError

FORMATS = ("numpy", "c", "onnx")


# --------------------------------------------------------------------------- the program


def program(spec: dict, params: Any) -> list[dict]:
    """The network as layers: {"op": "scale"|"conv"|"flatten"|"dense", arrays, "act"}.
    `params` are one seed's flax params (numpy)."""
    from distillq import networks

    kind = spec["type"]
    if kind not in ("mlp", "linear", "cnn"):
        raise RunDirError(f"cannot export a network of type {kind!r} (known: mlp, linear, cnn)")
    p = params["params"]
    act = spec.get("activation", "relu")
    shape = list(networks.obs_shape(spec))
    layers: list[dict] = []
    norm = spec.get("input_norm")
    if norm is not None:
        layers.append({"op": "scale", "shift": np.asarray(norm["shift"], np.float32),
                       "scale": np.asarray(norm["scale"], np.float32)})
    if kind == "cnn":
        k = np.asarray(p["conv"]["kernel"], np.float32)            # [kh, kw, C, F]
        layers.append({"op": "conv", "kernel": k, "bias": np.asarray(p["conv"]["bias"],
                                                                      np.float32),
                       "act": act, "in_shape": shape})
        h, w = shape[0] - k.shape[0] + 1, shape[1] - k.shape[1] + 1
        shape = [h, w, k.shape[3]]
    layers.append({"op": "flatten", "size": int(math.prod(shape))})
    n_hidden = len(spec.get("hidden", spec.get("dense", [])))
    for i in range(n_hidden):
        d = p[f"hidden_{i}"]
        layers.append({"op": "dense", "w": np.asarray(d["kernel"], np.float32),
                       "b": np.asarray(d["bias"], np.float32), "act": act})
    layers.append({"op": "dense", "w": np.asarray(p["q"]["kernel"], np.float32),
                   "b": np.asarray(p["q"]["bias"], np.float32), "act": None})
    return layers


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
    p["q"] = {"kernel": dense[-1]["w"], "bias": dense[-1]["b"]}
    conv = [x for x in layers if x["op"] == "conv"]
    if conv:
        p["conv"] = {"kernel": conv[0]["kernel"], "bias": conv[0]["bias"]}
    return {"params": p}


# --------------------------------------------------------------------------- numpy forward

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
            h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
            cols = np.concatenate([x[:, i:i + h, j:j + w, :] for i in range(kh)
                                   for j in range(kw)], axis=-1)
            x = cols @ k.reshape(-1, k.shape[-1]) + layer["bias"]
            x = _np_act(layer["act"], x)
        elif op == "flatten":
            x = x.reshape(n, -1)
        else:
            w = layer["w"].astype(np.float32) * layer.get("w_scale", 1.0)
            x = x @ w + layer["b"]
            x = _np_act(layer["act"], x)
    return x


def _np_act(name: str | None, x: np.ndarray) -> np.ndarray:
    return x if name is None else _NP_ACTS[name](x)


# --------------------------------------------------------------------------- numpy artefact

POLICY_PY = '''\
"""A distillq policy in plain NumPy: Q-values and greedy actions (numpy is all it needs).

    import numpy as np
    from policy import Policy
    pi = Policy("policy.npz")
    a = pi.act(obs)                   # obs: one observation {shape}, float32
    q = pi.q(batch)                   # [N, {n_actions}] Q-values of [N, {shape}]
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
                h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
                cols = np.concatenate([x[:, a:a + h, b:b + w, :] for a in range(kh)
                                       for b in range(kw)], axis=-1)
                x = ACTS[layer["act"]](cols @ k.reshape(-1, k.shape[-1])
                                       + self.arrays[f"{{i}}_bias"])
            elif op == "flatten":
                x = x.reshape(n, -1)
            else:
                x = ACTS[layer["act"]](x @ self._w(i, "w") + self.arrays[f"{{i}}_b"])
        return x

    def act(self, obs):
        return int(np.argmax(self.q(np.asarray(obs, np.float32)[None])[0]))
'''


def write_numpy(layers: list[dict], spec: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    arrays, meta = {}, []
    for i, layer in enumerate(layers):
        meta.append({"op": layer["op"], "act": layer.get("act")})
        for k, v in layer.items():
            if isinstance(v, np.ndarray):
                arrays[f"{i}_{k}"] = v
    np.savez(out / "policy.npz", layers=np.asarray(json.dumps(meta)), **arrays)
    shape = tuple(spec["obs_shape"])
    (out / "policy.py").write_text(POLICY_PY.format(shape=shape,
                                                   n_actions=spec["num_actions"]))
    return [out / "policy.npz", out / "policy.py"]


def load_numpy_policy(out_dir: Path):
    """The exported policy.py, imported from its file, with its policy.npz."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"distillq_export_{abs(hash(str(out_dir)))}",
                                                  Path(out_dir) / "policy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Policy(str(Path(out_dir) / "policy.npz"))


# --------------------------------------------------------------------------- C artefact

_C_ACTS = {"relu": "v > 0.0f ? v : 0.0f", "tanh": "tanhf(v)",
           "silu": "v / (1.0f + expf(-v))"}


def _c_float(v: float) -> str:
    t = f"{v:.9g}"
    if "e" not in t and "." not in t and "n" not in t:
        t += ".0"
    return t + "f"


def _c_array(name: str, a: np.ndarray, ctype: str) -> str:
    flat = a.ravel()
    if ctype == "float":       # repr-exact floats; "0f" is not C, so always a point or e
        vals = ", ".join(_c_float(float(v)) for v in flat)
    else:
        vals = ", ".join(str(int(v)) for v in flat)
    body = "\n".join(textwrap.wrap(vals, 96, initial_indent="    ", subsequent_indent="    "))
    return f"static const {ctype} {name}[{flat.size}] = {{\n{body}\n}};\n"


def write_c(layers: list[dict], spec: dict, out: Path, name: str = "policy") -> list[Path]:
    """policy.h / policy.c: `int act(const float *obs)` and `void q_values(const float *obs,
    float *q)`; weights are constant arrays, activations live in static buffers (no
    allocation); the observation is row-major in its own shape."""
    out.mkdir(parents=True, exist_ok=True)
    obs_dim = int(math.prod(spec["obs_shape"]))
    n_act = int(spec["num_actions"])
    widths = [obs_dim] + [int(x["w"].shape[1]) for x in layers if x["op"] == "dense"]
    conv = [x for x in layers if x["op"] == "conv"]
    if conv:
        k = conv[0]["kernel"]
        h, w = conv[0]["in_shape"][0] - k.shape[0] + 1, conv[0]["in_shape"][1] - k.shape[1] + 1
        widths.append(h * w * k.shape[3])
    buf = max(widths)
    decls, code = [], []
    act_fn = spec.get("activation", "relu")
    for i, layer in enumerate(layers):
        op = layer["op"]
        if op == "scale":
            decls.append(_c_array(f"L{i}_shift", layer["shift"], "float"))
            decls.append(_c_array(f"L{i}_scale", layer["scale"], "float"))
            code.append(f"    for (int j = 0; j < {obs_dim}; j++) "
                        f"x[j] = (obs[j] - L{i}_shift[j]) * L{i}_scale[j];")
            continue
        if op == "flatten":
            continue
        wkey = "w" if op == "dense" else "kernel"
        quant = wkey + "_scale" in layer
        decls.append(_c_array(f"L{i}_w", layer[wkey], "signed char" if quant else "float"))
        if quant:
            decls.append(_c_array(f"L{i}_s", layer[wkey + "_scale"], "float"))
        decls.append(_c_array(f"L{i}_b", layer["b" if op == "dense" else "bias"], "float"))
        wexpr = f"L{i}_w[{{idx}}] * L{i}_s[{{o}}]" if quant else f"L{i}_w[{{idx}}]"
        act = ("" if layer["act"] is None else
               f" {{ float v = acc; acc = {_C_ACTS[layer['act']]}; }}")
        if op == "dense":
            n_in, n_out = layer["w"].shape
            code.append(f"""    for (int o = 0; o < {n_out}; o++) {{
        float acc = L{i}_b[o];
        for (int j = 0; j < {n_in}; j++) acc += x[j] * {wexpr.format(idx=f"j * {n_out} + o",
                                                                      o="o")};
       {act}
        y[o] = acc;
    }}
    {{ float *t = x; x = y; y = t; }}""")
        else:
            kh, kw, c_in, f = layer["kernel"].shape
            hh, ww = layer["in_shape"][0], layer["in_shape"][1]
            oh, ow = hh - kh + 1, ww - kw + 1
            idx = f"((a * {kw} + b) * {c_in} + c) * {f} + o"
            code.append(f"""    for (int r = 0; r < {oh}; r++) for (int s = 0; s < {ow}; s++)
    for (int o = 0; o < {f}; o++) {{
        float acc = L{i}_b[o];
        for (int a = 0; a < {kh}; a++) for (int b = 0; b < {kw}; b++)
        for (int c = 0; c < {c_in}; c++)
            acc += x[((r + a) * {ww} + (s + b)) * {c_in} + c] * {wexpr.format(idx=idx, o="o")};
       {act}
        y[(r * {ow} + s) * {f} + o] = acc;
    }}
    {{ float *t = x; x = y; y = t; }}""")
    first = "" if layers[0]["op"] == "scale" else (
        f"    for (int j = 0; j < {obs_dim}; j++) x[j] = obs[j];")
    header = f"""/* distillq policy ({spec['type']}, activation {act_fn}): generated, do not edit.
   Input: one observation of shape {tuple(spec['obs_shape'])}, float32, row-major.
   act() returns the greedy action in 0..{n_act - 1}; q_values() writes {n_act} Q-values. */
#ifndef {name.upper()}_H
#define {name.upper()}_H
#define {name.upper()}_OBS_DIM {obs_dim}
#define {name.upper()}_NUM_ACTIONS {n_act}
int act(const float *obs);
void q_values(const float *obs, float *q);
#endif
"""
    source = f"""/* distillq policy: weights as constant arrays, no allocation. Generated. */
#include <math.h>
#include "{name}.h"

{"".join(decls)}
static float buf_a[{buf}], buf_b[{buf}];

void q_values(const float *obs, float *q) {{
    float *x = buf_a, *y = buf_b;
{first}
{chr(10).join(code)}
    for (int j = 0; j < {n_act}; j++) q[j] = x[j];
}}

int act(const float *obs) {{
    float q[{n_act}];
    q_values(obs, q);
    int best = 0;
    for (int j = 1; j < {n_act}; j++) if (q[j] > q[best]) best = j;
    return best;
}}
"""
    (out / f"{name}.h").write_text(header)
    (out / f"{name}.c").write_text(source)
    return [out / f"{name}.h", out / f"{name}.c"]


def c_compiler() -> str | None:
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            return shutil.which(cc)
    return None


HARNESS = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "policy.h"
/* argv: n, obs.bin, q.bin [, repeat]: Q-values of n observations; with repeat, also the
   median ns per act() call over `repeat` calls (batch 1) */
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    float *obs = malloc(sizeof(float) * n * POLICY_OBS_DIM);
    float *q = malloc(sizeof(float) * n * POLICY_NUM_ACTIONS);
    FILE *f = fopen(argv[2], "rb");
    if (fread(obs, sizeof(float), (size_t)n * POLICY_OBS_DIM, f) != (size_t)n * POLICY_OBS_DIM)
        return 2;
    fclose(f);
    for (int i = 0; i < n; i++) q_values(obs + i * POLICY_OBS_DIM, q + i * POLICY_NUM_ACTIONS);
    f = fopen(argv[3], "wb");
    fwrite(q, sizeof(float), (size_t)n * POLICY_NUM_ACTIONS, f);
    fclose(f);
    if (argc > 4) {
        int reps = atoi(argv[4]);
        double *t = malloc(sizeof(double) * reps);
        volatile int sink = 0;
        for (int r = 0; r < reps; r++) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            sink += act(obs + (r % n) * POLICY_OBS_DIM);
            clock_gettime(CLOCK_MONOTONIC, &b);
            t[r] = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
        }
        qsort(t, reps, sizeof(double), cmp);
        printf("%.1f\n", t[reps / 2]);
    }
    return 0;
}
"""


def run_c(c_dir: Path, obs: np.ndarray, repeat: int = 0) -> tuple[np.ndarray, float | None]:
    """Compile the C policy with a small harness, return its Q-values for `obs` (and the
    median ns per act() call when `repeat`)."""
    cc = c_compiler()
    if cc is None:
        raise ConfigError("no C compiler (cc, gcc or clang) on this machine")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "harness.c").write_text(HARNESS)
        exe = t / "harness"
        p = subprocess.run([cc, "-O2", "-std=c99", "-o", str(exe), str(t / "harness.c"),
                            str(c_dir / "policy.c"), f"-I{c_dir}", "-lm"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            err = " ".join(p.stderr.split())
            raise RunDirError(f"the generated C does not compile: {err[:300]}")
        x = np.ascontiguousarray(obs, np.float32).reshape(len(obs), -1)
        x.tofile(t / "obs.bin")
        args = [str(exe), str(len(x)), str(t / "obs.bin"), str(t / "q.bin")]
        if repeat:
            args.append(str(repeat))
        p = subprocess.run(args, capture_output=True, text=True)
        if p.returncode != 0:
            raise RunDirError(f"the compiled C policy failed (exit {p.returncode})")
        q = np.fromfile(t / "q.bin", np.float32).reshape(len(x), -1)
        ns = float(p.stdout.strip()) if repeat else None
        return q, ns


# --------------------------------------------------------------------------- ONNX artefact


def write_onnx(layers: list[dict], spec: dict, out: Path) -> list[Path]:
    """policy.onnx (opset 17): input "obs" [N, *obs_shape] float32, outputs "q" [N, A] and
    "action" [N] int64. Built with onnx's own helpers: these graphs are a handful of
    standard ops (Sub, Mul, Transpose, Conv, Reshape, MatMul, Add, Relu/Tanh/Sigmoid, ArgMax),
    so no converter is needed (and none has to trace jax)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install "
                          "'distillq[export]'") from None
    out.mkdir(parents=True, exist_ok=True)
    layers = dequantised(layers)
    shape = list(spec["obs_shape"])
    nodes, inits = [], []
    cur = "obs"

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def act(i: int, name: str | None, x: str) -> str:
        if name is None:
            return x
        y = f"a{i}"
        if name == "relu":
            nodes.append(helper.make_node("Relu", [x], [y]))
        elif name == "tanh":
            nodes.append(helper.make_node("Tanh", [x], [y]))
        else:
            nodes.append(helper.make_node("Sigmoid", [x], [f"sg{i}"]))
            nodes.append(helper.make_node("Mul", [x, f"sg{i}"], [y]))
        return y

    for i, layer in enumerate(layers):
        op = layer["op"]
        if op == "scale":
            s = layer["shift"].reshape(shape)
            c = layer["scale"].reshape(shape)
            nodes.append(helper.make_node("Sub", [cur, const(f"shift{i}", s)], [f"sub{i}"]))
            nodes.append(helper.make_node("Mul", [f"sub{i}", const(f"scale{i}", c)],
                                          [f"norm{i}"]))
            cur = f"norm{i}"
        elif op == "conv":
            k = layer["kernel"]                                    # [kh, kw, C, F]
            nodes.append(helper.make_node("Transpose", [cur], [f"nchw{i}"], perm=[0, 3, 1, 2]))
            nodes.append(helper.make_node(
                "Conv", [f"nchw{i}", const(f"k{i}", k.transpose(3, 2, 0, 1)),
                         const(f"cb{i}", layer["bias"])], [f"conv{i}"],
                kernel_shape=[k.shape[0], k.shape[1]], pads=[0, 0, 0, 0], strides=[1, 1]))
            nodes.append(helper.make_node("Transpose", [f"conv{i}"], [f"nhwc{i}"],
                                          perm=[0, 2, 3, 1]))
            cur = act(i, layer["act"], f"nhwc{i}")
        elif op == "flatten":
            nodes.append(helper.make_node(
                "Reshape", [cur, const(f"flat{i}", np.array([-1, layer["size"]], np.int64))],
                [f"flat_out{i}"]))
            cur = f"flat_out{i}"
        else:
            nodes.append(helper.make_node("MatMul", [cur, const(f"w{i}", layer["w"])],
                                          [f"mm{i}"]))
            nodes.append(helper.make_node("Add", [f"mm{i}", const(f"b{i}", layer["b"])],
                                          [f"lin{i}"]))
            cur = act(i, layer["act"], f"lin{i}")
    nodes.append(helper.make_node("Identity", [cur], ["q"]))
    nodes.append(helper.make_node("ArgMax", ["q"], ["action"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes, "distillq_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", spec["num_actions"]]),
         helper.make_tensor_value_info("action", TensorProto.INT64, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="distillq")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = out / "policy.onnx"
    onnx.save(model, str(path))
    return [path]


def run_onnx(path: Path, obs: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running ONNX needs onnxruntime: pip install "
                          "'distillq[export]'") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["q"], {"obs": np.asarray(obs, np.float32)})[0]


# --------------------------------------------------------------------------- the command


def sample_states(run, n: int, seed_index: int, key_seed: int = 1234) -> np.ndarray:
    """n states visited by the run's own greedy policy with 30% random actions (so states
    off its usual path appear too), from vmapped envs, as float32 [n, *obs_shape]."""
    import jax
    import jax.numpy as jnp

    from distillq import envs, networks

    env = envs.make(run.meta["env"])
    net = networks.build(run.meta["network"])
    params = jax.tree.map(lambda x: jnp.asarray(x[seed_index]), run.params)
    n_envs = 64
    steps = math.ceil(n / n_envs)

    def collect(key):
        k0, k1 = jax.random.split(key)
        obs, state = envs.reset(env, jax.random.split(k0, n_envs))

        def body(carry, i):
            obs, state = carry
            k = jax.random.fold_in(k1, i)
            ka, kr, ks = jax.random.split(k, 3)
            greedy = jnp.argmax(net.apply(params, obs), -1)
            rand = jax.random.randint(kr, (n_envs,), 0, env.num_actions)
            a = jnp.where(jax.random.uniform(ka, (n_envs,)) < 0.3, rand, greedy)
            st = envs.step(env, jax.random.split(ks, n_envs), state, a)
            return (st.obs, st.state), obs

        _, seen = jax.lax.scan(body, (obs, state), jnp.arange(steps))
        return seen.reshape(-1, *env.obs_shape)

    from distillq import signals

    out = signals.blocking(lambda: np.asarray(jax.jit(collect)(jax.random.PRNGKey(key_seed))))
    return out[:n]


def reference_q(spec: dict, params: Any, obs: np.ndarray) -> np.ndarray:
    """distillq's own forward pass (jitted flax) on one seed's params."""
    import jax
    import jax.numpy as jnp

    from distillq import networks

    net = networks.build(spec)
    p = jax.tree.map(jnp.asarray, params)
    return np.asarray(jax.jit(net.apply)(p, jnp.asarray(obs)))


def parity(q_ref: np.ndarray, q: np.ndarray, gap: float = 1e-4, rtol: float = 1e-4) -> dict:
    """Actions equal wherever the reference's top two Q-values differ by more than `gap`;
    Q-values equal to `rtol` relative (absolute below 1)."""
    top2 = np.sort(q_ref, axis=-1)[:, -2:] if q_ref.shape[1] > 1 else np.zeros((len(q_ref), 2))
    decided = (top2[:, 1] - top2[:, 0]) > gap
    same = np.argmax(q, -1) == np.argmax(q_ref, -1)
    err = np.abs(q - q_ref) / np.maximum(np.abs(q_ref), 1.0)
    return {"states": int(len(q_ref)), "decided_states": int(decided.sum()),
            "action_mismatches": int((~same & decided).sum()),
            "max_rel_q_error": float(err.max()), "ok": bool(np.all(same | ~decided)
                                                           and err.max() <= rtol)}


def latency(fn, obs: np.ndarray, calls: int = 1000) -> float:
    """Median microseconds per batch-1 decision over `calls` calls (after a warm-up)."""
    import statistics
    import time

    for i in range(20):
        fn(obs[i % len(obs)])
    ts = []
    for i in range(calls):
        x = obs[i % len(obs)]
        t = time.perf_counter()
        fn(x)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


def check_out(out: Path, force: bool) -> None:
    from distillq import checkpoint

    out = Path(out)
    for d in (out.resolve(), *out.resolve().parents):
        if (d / checkpoint.META).is_file():
            raise RunDirError(f"{out} is inside the run dir {d}; export elsewhere (runs are "
                              "never modified)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise RunDirError(f"{out} already exists; choose another --out or pass --force to "
                              "replace it")
        if not out.is_dir() or not (out / "export.json").exists():
            raise RunDirError(f"{out} is not a distillq export; refusing to replace it even "
                              "with --force")
        shutil.rmtree(out)


def export_run(path: str, fmt: str, out: str, *, seed_index: int = 0, int8: bool = False,
               force: bool = False, states: int = 10_000, bench: bool = False) -> dict:
    """Write the artefact, check its parity with distillq's forward pass on `states` env
    states, and optionally time batch-1 decisions in every runtime available."""
    import jax

    from distillq import checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    run = checkpoint.load_run(path)
    checkpoint.check_single_env(run, "export")
    n_seeds = len(run.meta["seeds"])
    if not 0 <= seed_index < n_seeds:
        raise ConfigError(f"--seed-index must be in 0..{n_seeds - 1} for {path}")
    spec = run.meta["network"]
    one = jax.tree.map(lambda x: np.asarray(x[seed_index]), run.params)
    layers = program(spec, one)
    if int8:
        layers = quantise(layers)
    final = Path(out)
    check_out(final, force)
    # written into a temporary dir beside the target and renamed once checked: a failed or
    # interrupted export leaves nothing behind
    final.parent.mkdir(parents=True, exist_ok=True)
    out_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        result = _export(run, layers, spec, one, fmt, out_dir, final, seed_index, int8,
                         states, bench)
        (out_dir / "export.json").write_text(json.dumps(result, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        out_dir.rename(final)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def _export(run, layers, spec, one, fmt, out_dir: Path, final: Path, seed_index: int,
            int8: bool, states: int, bench: bool) -> dict:
    writer = {"numpy": write_numpy, "c": write_c, "onnx": write_onnx}[fmt]
    from distillq import views

    files = writer(layers, spec, out_dir)
    obs = sample_states(run, states, seed_index)
    view = views.from_meta(run.meta)
    if view is not None:   # the artefact takes the student's stacked view, not the obs
        obs = views.of_states(view, obs)
        (out_dir / "transform.json").write_text(json.dumps({
            **view.to_json(), "input": "the last `stack` observations (oldest first), each "
            "reduced to the `keep` indices of the flattened observation, concatenated; at an "
            "episode's first step, the first observation repeated; `noise` was a training "
            "and evaluation condition (add it only to reproduce them)"}, indent=2) + "\n")
        files = [*files, out_dir / "transform.json"]
    ref_params = to_params(dequantised(layers), spec) if int8 else one
    q_ref = reference_q(spec, ref_params, obs)
    result: dict[str, Any] = {
        "kind": "export", "run_dir": str(run.path), "format": fmt, "out": str(final),
        "files": [str(final / f.name) for f in files], "seed_index": seed_index,
        "seed": run.meta["seeds"][seed_index], "int8": int8, "network": spec,
        "size_bytes": sum(f.stat().st_size for f in files if f.name != "transform.json"),
        **({"student_view": view.to_json()} if view is not None else {}),
        "weights_bytes": sum(v.nbytes for x in layers for v in x.values()
                             if isinstance(v, np.ndarray)),
    }
    if fmt == "numpy":
        q = load_numpy_policy(out_dir).q(obs)       # the generated policy.py itself
    elif fmt == "onnx":
        q = run_onnx(files[0], obs)
    elif c_compiler() is not None:
        q, _ = run_c(out_dir, obs)
    else:
        q = None
        result["parity"] = {"skipped": "no C compiler (cc, gcc or clang) on this machine"}
    if q is not None:
        result["parity"] = parity(q_ref, q)
    if bench:
        result["latency_us"] = bench_latency(spec, one, layers, fmt, files, out_dir, obs)
    if int8:
        result["int8_evaluation"] = int8_evaluation(run)
    return result


def bench_latency(spec: dict, params: Any, layers: list[dict], fmt: str, files: list[Path],
                  out_dir: Path, obs: np.ndarray) -> dict:
    """Median microseconds per batch-1 decision: jitted JAX, NumPy, onnxruntime, C."""
    import jax
    import jax.numpy as jnp

    from distillq import networks

    net = networks.build(spec)
    p = jax.tree.map(jnp.asarray, params)
    fwd = jax.jit(lambda x: jnp.argmax(net.apply(p, x[None]), -1)[0])
    res = {"jax": latency(lambda x: int(fwd(x)), obs)}
    if fmt == "numpy":
        pi = load_numpy_policy(out_dir)
        res["numpy"] = latency(pi.act, obs)
    else:
        res["numpy"] = latency(lambda x: int(np.argmax(numpy_forward(layers, x[None])[0])),
                               obs)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
        res["onnxruntime"] = latency(lambda x: int(sess.run(["action"], {"obs": x[None]})[0][0]),
                                     obs)
    if fmt == "c" and c_compiler() is not None:
        _, ns = run_c(out_dir, obs[:1000], repeat=1000)
        res["c"] = ns / 1000.0
    return {k: round(v, 3) for k, v in res.items()}


def int8_evaluation(run, episodes: int | None = None) -> dict:
    """Every seed's network with int8 weights, evaluated the way `evaluate` evaluates the run
    (greedy, the same episode keys), beside the float network: returns, and for a student
    retention against its teacher."""
    import jax

    from distillq import checkpoint, commands

    spec = run.meta["network"]
    n = len(run.meta["seeds"])
    seeds = [to_params(dequantised(quantise(program(spec, jax.tree.map(
        lambda x, i=i: np.asarray(x[i]), run.params)))), spec) for i in range(n)]
    qparams = jax.tree.map(lambda *xs: np.stack(xs), *seeds)
    episodes = episodes or int(run.meta["config"].get("final_episodes", 100))
    out = {}
    for name, params in (("float", run.params), ("int8", qparams)):
        r = commands._evaluate_one(checkpoint.Run(run.path, run.meta, params), episodes,
                                   show=False)
        ov = r["evaluation"]["overall"]
        out[name] = {k: ov.get(k) for k in ("mean", "min", "retention", "retention_min",
                                             "fidelity") if k in ov}
    return out
