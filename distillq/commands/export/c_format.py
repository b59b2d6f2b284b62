"""The C artefact: policy.h / policy.c with weights as constant arrays and no allocation, and
a small harness that compiles it to check parity and time batch-1 decisions."""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np

from distillq.commands.export.program import LN_EPS, conv_shape
from distillq.errors import ConfigError, RunDirError

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


def write_c(layers: list[dict], spec: dict, out: Path, name: str = "policy",
            inputs: str | None = None) -> list[Path]:
    """policy.h / policy.c: `int act(const float *obs)` and `void q_values(const float *obs,
    float *q)`; weights are constant arrays, activations live in static buffers (no
    allocation); the observation is row-major in its own shape."""
    out.mkdir(parents=True, exist_ok=True)
    obs_dim = int(math.prod(spec["obs_shape"]))
    n_act = int(spec["num_actions"])
    widths = [obs_dim] + [int(x["w"].shape[1]) for x in layers if x["op"] == "dense"]
    widths += [math.prod(conv_shape(x)) for x in layers if x["op"] == "conv"]
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
        ln = "ln_scale" in layer      # LayerNorm over the outputs, then the activation
        act_of = ("" if layer["act"] is None else
                  f" {{ float v = acc; acc = {_C_ACTS[layer['act']]}; }}")
        act = ""     # activations in their own pass: keeps the output loop vectorisable
        if ln:
            decls.append(_c_array(f"L{i}_g", layer["ln_scale"], "float"))
            decls.append(_c_array(f"L{i}_beta", layer["ln_bias"], "float"))
        if op == "dense":
            n_in, n_out = layer["w"].shape
            code.append(f"""    for (int o = 0; o < {n_out}; o++) {{
        float acc = L{i}_b[o];
        for (int j = 0; j < {n_in}; j++) acc += x[j] * {wexpr.format(idx=f"j * {n_out} + o",
                                                                      o="o")};
       {act}
        y[o] = acc;
    }}""")
            if ln:
                code.append(_c_layer_norm(i, 1, n_out, act_of))
            elif act_of:
                code.append(_c_activation(n_out, act_of))
            code.append("    { float *t = x; x = y; y = t; }")
        else:
            kh, kw, c_in, f = layer["kernel"].shape
            ww = layer["in_shape"][1]
            oh, ow, _ = conv_shape(layer)
            st = layer.get("stride", 1)
            idx = f"((a * {kw} + b) * {c_in} + c) * {f} + o"
            at = f"((r * {st} + a) * {ww} + (s * {st} + b)) * {c_in} + c"
            code.append(f"""    for (int r = 0; r < {oh}; r++) for (int s = 0; s < {ow}; s++)
    for (int o = 0; o < {f}; o++) {{
        float acc = L{i}_b[o];
        for (int a = 0; a < {kh}; a++) for (int b = 0; b < {kw}; b++)
        for (int c = 0; c < {c_in}; c++)
            acc += x[{at}] * {wexpr.format(idx=idx, o="o")};
       {act}
        y[(r * {ow} + s) * {f} + o] = acc;
    }}""")
            if ln:
                code.append(_c_layer_norm(i, oh * ow, f, act_of))
            elif act_of:
                code.append(_c_activation(oh * ow * f, act_of))
            code.append("    { float *t = x; x = y; y = t; }")
    first = "" if layers[0]["op"] == "scale" else (
        f"    for (int j = 0; j < {obs_dim}; j++) x[j] = obs[j];")
    header = f"""/* distillq policy ({spec['type']}, activation {act_fn}): generated, do not edit.
   Input: {inputs or f"one observation of shape {tuple(spec['obs_shape'])}, float32"},
   row-major.
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


def _c_activation(n: int, act: str) -> str:
    """The activation over y's first n values, as a pass of its own (an activation inside
    the output loop kept compilers from vectorising that loop across outputs)."""
    return f"""    for (int o = 0; o < {n}; o++) {{
        float acc = y[o];
       {act}
        y[o] = acc;
    }}"""


def _c_layer_norm(i: int, groups: int, n: int, act: str) -> str:
    """y's `groups` consecutive groups of n values, each normalised (mean 0, variance 1, eps
    as flax's), scaled and shifted per value, then activated."""
    return f"""    for (int g = 0; g < {groups}; g++) {{
        float *z = y + g * {n}, m = 0.0f, var = 0.0f;
        for (int o = 0; o < {n}; o++) m += z[o];
        m /= {n}.0f;
        for (int o = 0; o < {n}; o++) var += (z[o] - m) * (z[o] - m);
        float inv = 1.0f / sqrtf(var / {n}.0f + {_c_float(LN_EPS)});
        for (int o = 0; o < {n}; o++) {{
            float acc = (z[o] - m) * inv * L{i}_g[o] + L{i}_beta[o];
           {act}
            z[o] = acc;
        }}
    }}"""


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
