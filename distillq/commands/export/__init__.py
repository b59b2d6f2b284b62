"""`distillq export`: a trained network where policies run (NumPy, C, ONNX), with a parity
check against distillq's own forward pass, batch-1 decision latency and int8 weights.

The network is lowered once to a flat list of layers (program.py); each format (one module
each, registered in FORMATS) is generated from that list and knows how to run its artefact.
The int8 policy's return is measured through distillq's own greedy evaluation (same episode
keys). Everything runs on the host with numpy; onnx/onnxruntime (the `export` extra) and a C
compiler are needed only for their formats.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from distillq.commands.export import c_format, numpy_format, onnx_format
from distillq.commands.export.program import dequantised, lower, quantise, to_params
from distillq.errors import ConfigError, ParityError
from distillq.runs import outputs


class Format(NamedTuple):
    """An export format: how to write its artefact and how to run it."""

    write: Callable        # (layers, spec, out_dir) -> files written
    q_values: Callable     # (out_dir, files, obs) -> the artefact's Q-values [N, A]
    decide: Callable       # (out_dir, files, obs) -> (runtime name, median µs per decision)
    runnable: Callable     # () -> None, or why the artefact cannot run on this machine


def _always() -> None:
    return None


def _c_runnable() -> str | None:
    return None if c_format.c_compiler() else "no C compiler (cc, gcc or clang) on this machine"


def _numpy_decide(out_dir, _files, obs):
    return "numpy", latency(numpy_format.load_numpy_policy(out_dir).act, obs)


def _onnx_decide(_out_dir, files, obs):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
    return "onnxruntime", latency(lambda x: int(sess.run(["action"], {"obs": x[None]})[0][0]),
                                  obs)


def _c_decide(out_dir, _files, obs):
    _, ns = c_format.run_c(out_dir, obs[:1000], repeat=1000)
    return "c", ns / 1000.0


FORMATS: dict[str, Format] = {
    "numpy": Format(numpy_format.write_numpy,   # the generated policy.py itself
                    lambda out_dir, _f, obs: numpy_format.load_numpy_policy(out_dir).q(obs),
                    _numpy_decide, _always),
    "c": Format(c_format.write_c, lambda out_dir, _f, obs: c_format.run_c(out_dir, obs)[0],
                _c_decide, _c_runnable),
    "onnx": Format(onnx_format.write_onnx, lambda _d, files, obs: onnx_format.run_onnx(
        files[0], obs), _onnx_decide, _always),
}


def sample_states(run, n: int, seed_index: int, key_seed: int = 1234) -> np.ndarray:
    """n states visited by the run's own greedy policy with 30% random actions (so states
    off its usual path appear too), from vmapped envs, as float32 [n, *obs_shape]."""
    import jax
    import jax.numpy as jnp

    from distillq.core import envs, networks, views

    env = envs.make(run.meta["env"])
    net = networks.build(run.meta["network"])
    view = views.from_meta(run.meta)
    seen_by = (lambda o: o) if view is None else (lambda o: views.repeated(view, o))
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
            greedy = jnp.argmax(net.apply(params, seen_by(obs)), -1)
            rand = jax.random.randint(kr, (n_envs,), 0, env.num_actions)
            a = jnp.where(jax.random.uniform(ka, (n_envs,)) < 0.3, rand, greedy)
            st = envs.step(env, jax.random.split(ks, n_envs), state, a)
            return (st.obs, st.state), obs

        _, seen = jax.lax.scan(body, (obs, state), jnp.arange(steps))
        return seen.reshape(-1, *env.obs_shape)

    from distillq.runs import signals

    out = signals.blocking(lambda: np.asarray(jax.jit(collect)(jax.random.PRNGKey(key_seed))))
    return out[:n]


def reference_q(spec: dict, params: Any, obs: np.ndarray) -> np.ndarray:
    """distillq's own forward pass (jitted flax) on one seed's params."""
    import jax
    import jax.numpy as jnp

    from distillq.core import networks

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


FILE_SUFFIX = {".onnx": "onnx"}          # formats whose artefact is one file
DIR_ONLY = (".npz", ".py", ".c", ".h")    # the files of numpy/c exports: they need a dir


def format_of(fmt: str | None, out: str | None) -> str:
    """--format, or the format an --out file names (`--out student.onnx`); numpy otherwise."""
    suffix = Path(out).suffix.lower() if out else ""
    named = FILE_SUFFIX.get(suffix)
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if named is not None and fmt not in (None, named):
        raise ConfigError(f"--out {out} names a {named} file, but --format is {fmt}")
    fmt = fmt or named or "numpy"
    if suffix in DIR_ONLY:
        raise ConfigError(f"a {fmt} export is a directory of files; --out names the "
                          f"directory, not {Path(out).name}")
    return fmt


def _is_export_dir(p: Path) -> bool:
    return (p / "export.json").is_file()


def _is_export_file(p: Path) -> bool:
    """An ONNX file distillq wrote (its producer_name), read without onnx installed."""
    try:
        with open(p, "rb") as fh:
            return b"distillq" in fh.read(256)
    except OSError:
        return False


def target(out: Path) -> outputs.Target:
    """The export's output: one file (`--out NAME.onnx`) or a directory."""
    if out.suffix.lower() in FILE_SUFFIX:
        return outputs.Target(out, "ONNX export", False, _is_export_file)
    return outputs.Target(out, "export", True, _is_export_dir)


def run(path: str, fmt: str, out: str, *, seed_index: int = 0, int8: bool = False,
        force: bool = False, states: int = 10_000, bench: bool = False) -> dict:
    """Write the artefact, check its parity with distillq's forward pass on `states` env
    states, and optionally time batch-1 decisions in every runtime available; prints a
    summary line and returns the command's JSON."""
    import jax

    from distillq.runs import store

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    final = store.printable(out)
    goal = target(final)
    outputs.check([goal], force)          # before any work: exit 2, nothing computed
    run = store.load_run(path)
    store.check_single_env(run, "export")
    n_seeds = len(run.meta["seeds"])
    if not 0 <= seed_index < n_seeds:
        raise ConfigError(f"--seed-index must be in 0..{n_seeds - 1} for {path}")
    spec = run.meta["network"]
    one = jax.tree.map(lambda x: np.asarray(x[seed_index]), run.params)
    layers = lower(spec, one)
    if int8:
        layers = quantise(layers)
    # written into a staging dir beside the target and moved into place once checked: a
    # failed or interrupted export leaves the old one (if any) and nothing else
    with outputs.staging(final) as tmp:
        work = tmp / "export"
        work.mkdir()
        result = _export(run, layers, spec, one, fmt, work, final, seed_index, int8,
                         states, bench, single=not goal.is_dir)
        if goal.is_dir:
            (work / "export.json").write_text(json.dumps(result, indent=2) + "\n")
            store.place(work, final)
        else:
            store.place(work / "policy.onnx", final)
    _print(result)
    return result


def _print(res: dict) -> None:
    from rich.table import Table

    from distillq.runs.console import console

    par = res.get("parity", {})
    if "skipped" in par:
        console.print(f"[yellow]parity not checked: {par['skipped']}[/yellow]")
    else:
        console.print(f"{res['format']} export of {res['run_dir']} -> {res['out']}: "
                      f"{par['action_mismatches']} action mismatches on "
                      f"{par['decided_states']:,} decided states (of {par['states']:,}), "
                      f"max relative Q error {par['max_rel_q_error']:.2e}")
    if "latency_us" in res:
        console.print("batch-1 decision, median µs: " + ", ".join(
            f"{k} {v:.2f}" for k, v in res["latency_us"].items()))
    if "int8_evaluation" in res:
        ev = res["int8_evaluation"]
        t = Table(title="float vs int8 weights (every seed, evaluate's episodes)",
                  title_style="bold")
        cols = [c for c in ("mean", "min", "retention", "retention_min", "fidelity")
                if c in ev["float"]]
        for c in ["weights", *cols]:
            t.add_column(c, justify="right")
        for name in ("float", "int8"):
            t.add_row(name, *("-" if ev[name][c] is None else
                              f"{100 * ev[name][c]:.1f}%" if c.startswith(("ret", "fid"))
                              else f"{ev[name][c]:.1f}" for c in cols))
        console.print(t)


def input_text(spec: dict, view: Any) -> str:
    """What the artefact takes, said where its users read (C header, policy.py, ONNX
    metadata, export.json): a view student's input is its view, not a raw observation
    (raw observations of the same width would run and play badly)."""
    shape = tuple(spec["obs_shape"])
    if view is None:
        return f"one observation of shape {shape}, float32"
    what = ("the last {k} frames drawn from the observations (uint8 / 255), as channels"
            if view.pixels else "the last {k} observations, each reduced to indices {keep}, "
            "concatenated").format(k=view.stack, keep=list(view.keep) if view.keep else "all")
    return (f"NOT a raw observation: the student's view of shape {shape}, float32: {what}, "
            "oldest first, the first repeated at an episode's start (transform.json)")


def _export(run, layers, spec, one, fmt, out_dir: Path, final: Path, seed_index: int,
            int8: bool, states: int, bench: bool, single: bool = False) -> dict:
    from distillq.core import views

    form = FORMATS[fmt]
    view = views.from_meta(run.meta)
    inputs = input_text(spec, view)
    files = form.write(layers, spec, out_dir, inputs=inputs)
    obs = sample_states(run, states, seed_index)
    if view is not None:   # the artefact takes the student's stacked view, not the obs
        obs = views.of_states(view, obs)
        text = ("the last `stack` frames as channels [H, W, stack], oldest first: each "
                "observation drawn by distillq.core.frames (gymnasium's picture, grayscale "
                "ink: 0 background, 1 black), uint8 / 255; at an episode's first step, the "
                "first frame repeated" if view.pixels else
                "the last `stack` observations (oldest first), each reduced to the `keep` "
                "indices of the flattened observation, concatenated; at an episode's first "
                "step, the first observation repeated; `noise` was a training and evaluation "
                "condition (add it only to reproduce them)")
        if not single:     # a single ONNX file carries the same in its metadata
            (out_dir / "transform.json").write_text(json.dumps(
                {**view.to_json(), "input": text}, indent=2) + "\n")
            files = [*files, out_dir / "transform.json"]
    ref_params = to_params(dequantised(layers), spec) if int8 else one
    q_ref = reference_q(spec, ref_params, obs)
    shipped = [final] if single else [final / f.name for f in files]
    result: dict[str, Any] = {
        "kind": "export", "run_dir": str(run.path), "format": fmt, "out": str(final),
        "files": [str(f) for f in shipped], "seed_index": seed_index,
        "seed": run.meta["seeds"][seed_index], "int8": int8, "network": spec,
        "input": inputs,
        "size_bytes": sum(f.stat().st_size for f in files if f.name != "transform.json"),
        **({"student_view": view.to_json()} if view is not None else {}),
        "weights_bytes": sum(v.nbytes for x in layers for v in x.values()
                             if isinstance(v, np.ndarray)),
    }
    why_not = form.runnable()
    result["parity"] = ({"skipped": why_not} if why_not is not None
                        else parity(q_ref, form.q_values(out_dir, files, obs)))
    par = result["parity"]
    if not par.get("ok", True):
        raise ParityError(f"the {fmt} export disagrees with distillq's forward pass: "
                          f"{par['action_mismatches']} action mismatches on "
                          f"{par['decided_states']:,} decided states, max relative Q error "
                          f"{par['max_rel_q_error']:.2e}; nothing written")
    if bench:
        result["latency_us"] = bench_latency(spec, one, layers, fmt, files, out_dir, obs)
    if int8:
        result["int8_evaluation"] = int8_evaluation(run)
    return result


def bench_latency(spec: dict, params: Any, layers: list[dict], fmt: str,
                  files: list[Path], out_dir: Path, obs: np.ndarray) -> dict:
    """Median microseconds per batch-1 decision: jitted JAX, and the artefacts as they ship:
    the generated policy.py (this export's, or for C/ONNX one written beside it from the
    same layers), onnxruntime on the .onnx, the compiled C."""
    import jax
    import jax.numpy as jnp

    from distillq.core import networks

    net = networks.build(spec)
    p = jax.tree.map(jnp.asarray, params)
    fwd = jax.jit(lambda x: jnp.argmax(net.apply(p, x[None]), -1)[0])
    res = {"jax": latency(lambda x: int(fwd(x)), obs)}
    np_dir = out_dir
    if fmt != "numpy":
        np_dir = out_dir.parent / "bench-numpy"       # in the staging dir, never shipped
        numpy_format.write_numpy(layers, spec, np_dir)
    res["numpy"] = FORMATS["numpy"].decide(np_dir, [], obs)[1]
    form = FORMATS[fmt]
    if fmt != "numpy" and form.runnable() is None:
        name, us = form.decide(out_dir, files, obs)
        res[name] = us
    return {k: round(v, 3) for k, v in res.items()}


def int8_evaluation(run, episodes: int | None = None) -> dict:
    """Every seed's network with int8 weights, evaluated the way `evaluate` evaluates the run
    (greedy, the same episode keys), beside the float network: returns, and for a student
    retention against its teacher."""
    import jax

    from distillq.runs import evaluation, store

    spec = run.meta["network"]
    n = len(run.meta["seeds"])
    seeds = [to_params(dequantised(quantise(lower(spec, jax.tree.map(
        lambda x, i=i: np.asarray(x[i]), run.params)))), spec) for i in range(n)]
    qparams = jax.tree.map(lambda *xs: np.stack(xs), *seeds)
    episodes = episodes or int(run.meta["config"].get("final_episodes", 100))
    out = {}
    for name, params in (("float", run.params), ("int8", qparams)):
        r = evaluation.evaluate_run(store.Run(run.path, run.meta, params), episodes,
                                    show=None)
        ov = r["evaluation"]["overall"]
        out[name] = {k: ov.get(k) for k in ("mean", "min", "retention", "retention_min",
                                             "fidelity") if k in ov}
    return out
