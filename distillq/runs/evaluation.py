"""Evaluating a saved run: greedy episodes of every seed (vmapped, in chunks of episodes),
against its teachers and a uniform-random policy on the same episodes, under robustness
shifts, and the figures `evaluate` reports (returns, retention, fidelity, size, speed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from distillq.core import robustness
from distillq.runs import calls, signals, store, summaries, teachers
from distillq.runs.console import console, print_eval_table, print_shift_table, progress

EVAL_CHUNK = 512     # episodes per jitted call of `evaluate` (per seed)


def in_chunks(run: Callable, episodes: int, chunk: int, desc: str | None = None) -> dict:
    """run(first) evaluates `chunk` episodes (ids first..) for every seed ([seeds, chunk]
    leaves); call it until `episodes` are done and join along the episode axis. Between
    calls the host can act on a signal, and memory stays bounded by one chunk. With `desc`
    and more than one chunk, a progress bar on stderr counts the episodes per seed."""
    import numpy as np

    parts = []
    bar = progress("episodes/seed", transient=True, disable=desc is None or episodes <= chunk)
    with bar:
        task = bar.add_task(desc or "", total=episodes)
        for first in range(0, episodes, chunk):
            out = run(first)
            n = min(chunk, episodes - first)
            parts.append({k: np.asarray(v)[:, :n] for k, v in out.items()})
            bar.update(task, advance=n)
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}



def forward_throughput(apply: Callable, params_one: Any, obs_shape: tuple[int, ...],
                       batch: int = 4096, reps: int = 20) -> float:
    """Observations per second through a network (jitted forward pass, one seed's params)."""
    import jax
    import jax.numpy as jnp

    fwd = jax.jit(apply)
    x = jnp.zeros((batch, *obs_shape), jnp.float32)
    fwd(params_one, x).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        y = fwd(params_one, x)
    y.block_until_ready()
    return batch * reps / (time.perf_counter() - t)


def _teachers_of(run: store.Run, with_teacher: bool = True) -> list[store.Run] | None:
    """The student's teachers, verified to be the runs it was distilled from; None when it
    is a teacher, when asked for the student alone, or (with a warning) when one is gone."""
    if not with_teacher:
        return None
    return teachers.of_student(run.path, run.meta, missing="warn")


def _against_original(ev: dict, original: dict) -> None:
    """Adds `retention_original`: (S - R) / (T0 - R), with T0 the original teacher's return
    as recorded when it completed (it is not re-run) and R the random policy's return on
    these episodes (T0 was recorded, not re-run: its gap is judged by the standard error of
    T - R on these episodes, as for `retention`)."""
    t0 = original.get("mean_return")
    for block in (ev["overall"], *ev["per_seed"], *ev.get("per_point", [])):
        block["retention_original"] = (None if t0 is None else summaries.normalised_retention(
            block["mean"], t0, block["random_mean"], block.get("gap_se", 0.0)))


def _chunked(fn, args: tuple, episodes: int, chunk: int, desc: str):
    """Compile fn(*args, first) once, run it over `episodes` in chunks (interruptible).
    Returns (out, compile_s, run_s)."""
    import jax
    import jax.numpy as jnp

    t0 = time.perf_counter()
    compiled = signals.blocking(lambda: fn.lower(*args, jnp.int32(0)).compile())
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = in_chunks(lambda first: signals.blocking(
        lambda: jax.device_get(compiled(*args, jnp.int32(first)))), episodes, chunk, desc=desc)
    return out, compile_s, time.perf_counter() - t0


def _multitask(run: store.Run, episodes: int, with_teacher: bool = True,
               show: bool = True) -> dict:
    """A multi-task student, env by env (head e on env e), each against its own teacher."""
    import jax
    import jax.numpy as jnp

    from distillq.core import envs, networks, rollout

    meta = run.meta
    spec, names, seeds = meta["network"], meta["multitask"]["envs"], list(meta["seeds"])
    params = jax.tree.map(jnp.asarray, run.params)
    keys = calls.eval_keys(seeds)
    t_runs = _teachers_of(run, with_teacher)
    chunk = min(episodes, EVAL_CHUNK)
    finals, compile_s, run_s = [], 0.0, 0.0
    for e, name in enumerate(names):
        env, apply = envs.make(name), networks.task_apply(spec, e)
        if t_runs is not None:
            t_apply = networks.ensemble_apply(networks.build(t_runs[e].meta["network"]).apply)
            t_params = teachers.per_student_params([t_runs[e]], meta["teacher"]["seed_index"][e],
                                                   len(seeds))
            fn = jax.jit(jax.vmap(rollout.make_comparison(env, apply, t_apply, chunk),
                                  in_axes=(0, 0, 0, None)))
            args = (params, t_params, jax.vmap(lambda k, e=e: jax.random.fold_in(k, e))(keys))
        else:
            fn = jax.jit(jax.vmap(rollout.make_rollout(env, apply, chunk),
                                  in_axes=(0, 0, None, None)))
            args = (params, jax.vmap(lambda k, e=e: jax.random.fold_in(k, e))(keys), None)
        out, c_s, r_s = _chunked(fn, args, episodes, chunk, f"evaluate {run.path.name} on {name}")
        finals.append(out)
        compile_s, run_s = compile_s + c_s, run_s + r_s
    result: dict[str, Any] = {
        "run_dir": str(run.path), "kind": meta["kind"], "env": meta["env"], "multitask": True,
        "envs": names, "seeds": seeds, "params": networks.param_count(spec), "network": spec}
    if t_runs is not None:
        ev = summaries.multitask_evaluation(meta, finals)
        result["teacher"] = [str(t.path) for t in t_runs]
        result["teacher_params"] = [networks.param_count(t.meta["network"]) for t in t_runs]
    else:
        ev = {"per_env": [{"env": n, "evaluation": summaries.teacher_evaluation(
            seeds, out["returns"])} for n, out in zip(names, finals, strict=True)]}
    result["evaluation"] = ev
    result["speed"] = {
        "eval_env_steps_per_s": round(sum(float(o["lengths"].sum()) for o in finals)
                                      / max(run_s, 1e-9), 1),
        "eval_compile_s": round(compile_s, 3),
        "eval_s": round(run_s, 3)}
    if show:
        for block in ev["per_env"]:
            print_eval_table(f"{meta['kind']} {run.path} on {block['env']}",
                             block["evaluation"]["per_seed"])
    else:
        console.print(f"[dim]{meta['kind']} {run.path}: the same numbers as its tables above"
                      "[/dim]")
    return result


class Call(NamedTuple):
    """evaluate's jitted, seed-vmapped call for a single-env run: `fn(*args, first)` plays
    episodes first .. first + chunk - 1 of every seed ([seeds, chunk] leaves); traced,
    `fn(*args, first, watch)` also returns episode first + watch's trace (rollout.py)."""

    fn: Callable
    args: tuple
    chunk: int
    env: Any
    net: Any
    params: Any
    keys: Any
    t_runs: list[store.Run] | None
    t_apply: Callable | None
    t_params: Any


def evaluation_call(run: store.Run, t_runs: list[store.Run] | None, chunk: int,
                    trace: bool = False) -> Call:
    """The call `evaluate` makes for a single-env run (its student against its teachers
    `t_runs` with a random policy on the same episodes, or the run alone when t_runs is
    None), `chunk` episodes per seed; with `trace` the very same computation that also
    records one watched episode (`render`)."""
    import jax
    import jax.numpy as jnp

    from distillq.core import envs, networks, rollout, views

    meta = run.meta
    view = views.from_meta(meta)
    env = envs.make(meta["env"])
    net = networks.build(meta["network"])
    params = jax.tree.map(jnp.asarray, run.params)
    keys = calls.eval_keys(list(meta["seeds"]))
    t_apply = t_params = None
    if t_runs is not None:
        t_apply = networks.ensemble_apply(networks.build(t_runs[0].meta["network"]).apply)
        t_params = teachers.per_student_params(t_runs, meta["teacher"]["seed_index"],
                                               len(meta["seeds"]))
        fn = rollout.make_comparison(env, net.apply, t_apply, chunk, view,
                                     views.from_meta(t_runs[0].meta), trace=trace)
        args = (params, t_params, keys)
        in_axes = (0, 0, 0, None, None) if trace else (0, 0, 0, None)
    else:
        fn = rollout.make_rollout(env, net.apply, chunk, view=view, trace=trace)
        if trace:
            roll = fn

            def fn(p, k, o, first, watch):
                return roll(p, k, o, first, watch=watch)
        args = (params, keys, None)
        in_axes = (0, 0, None, None, None) if trace else (0, 0, None, None)
    return Call(jax.jit(jax.vmap(fn, in_axes=in_axes)), args, chunk, env, net, params, keys,
                t_runs, t_apply, t_params)


def evaluate_run(run: store.Run, episodes: int, with_teacher: bool = True,
                 show: bool | None = True, shifts: list[dict] | None = None) -> dict:
    """`evaluate`'s result for one run: its episodes (a student's against its teachers and a
    random policy on the same episodes), size and speed; under `shifts` too. `show` prints
    its table (a pipeline that printed the same numbers already passes False; None prints
    nothing: the caller shows the numbers its own way)."""
    import jax

    from distillq.core import networks, views

    meta = run.meta
    if meta.get("multitask"):
        return _multitask(run, episodes, with_teacher, show)
    call = evaluation_call(run, _teachers_of(run, with_teacher), min(episodes, EVAL_CHUNK))
    env, net, params, keys, t_runs = call.env, call.net, call.params, call.keys, call.t_runs
    t_apply, t_params, seeds = call.t_apply, call.t_params, list(meta["seeds"])
    out, compile_s, run_s = _chunked(call.fn, call.args, episodes, call.chunk,
                                     f"evaluate {run.path.name}")
    result: dict[str, Any] = {
        "run_dir": str(run.path), "kind": meta["kind"], "env": meta["env"], "seeds": seeds,
        "params": networks.param_count(meta["network"]), "network": meta["network"],
    }
    if t_runs is not None:
        ev = summaries.student_evaluation(meta, out)
        result["teacher"] = [str(t.path) for t in t_runs]
        result["teacher_params"] = networks.param_count(t_runs[0].meta["network"])
        result["size_ratio"] = result["params"] / result["teacher_params"]
        chain = meta.get("lineage", [])
        if len(chain) > 1:   # a chain: retention against the original teacher's recorded return
            _against_original(ev, chain[-1])
            result["original_teacher"] = chain[-1]["run_dir"]
            result["original_teacher_params"] = chain[-1]["params"]
    else:
        ev = summaries.teacher_evaluation(seeds, out["returns"])
    result["evaluation"] = ev
    one = jax.tree.map(lambda x: x[0], params)
    result["speed"] = {
        "eval_env_steps_per_s": round(float(out["lengths"].sum()) / max(run_s, 1e-9), 1),
        "eval_compile_s": round(compile_s, 3),
        "eval_s": round(run_s, 3),
        "forward_obs_per_s": round(forward_throughput(
            net.apply, one, networks.obs_shape(meta["network"])), 1),
    }
    if show:
        print_eval_table(f"{meta['kind']} {run.path}", ev["per_seed"])
    elif show is not None:
        console.print(f"[dim]{meta['kind']} {run.path}: the same numbers as its table above"
                      "[/dim]")
    if shifts:
        result["robustness"] = _shifts(
            run, env, net, params, t_apply, t_params, keys, episodes, shifts,
            views.from_meta(t_runs[0].meta) if t_runs is not None else None)
        print_shift_table(f"{meta['kind']} {run.path}", result["robustness"]["shifts"])
    return result


def _shifts(run: store.Run, env, net, params, t_apply, t_params, keys,
            episodes: int, shifts: list[dict], t_view=None) -> dict:
    """The run (and its teacher, and a random policy) under every shift of the grid, on the
    same episode keys as the unshifted evaluation; in chunks of episodes (interruptible)."""
    import jax
    import jax.numpy as jnp

    from distillq.core import views

    g, n_seeds = len(shifts), len(run.meta["seeds"])
    chunk = max(1, min(episodes, EVAL_CHUNK // g))
    fn = robustness.make_grid_eval(env, net.apply, chunk, t_apply, views.from_meta(run.meta),
                                   t_view)
    env_params = robustness.stack_params(env, shifts)
    noise = jnp.asarray([s["obs_noise"] for s in shifts], jnp.float32)
    args = (params, t_params, keys)
    compiled = signals.blocking(lambda: fn.lower(*args, jnp.int32(0), env_params,
                                                 noise).compile())

    def run_chunk(first):   # [G, S, chunk] -> [G * S, chunk]
        out = signals.blocking(lambda: jax.device_get(
            compiled(*args, jnp.int32(first), env_params, noise)))
        return {k: v.reshape(g * n_seeds, -1) for k, v in out.items()}

    out = in_chunks(run_chunk, episodes, chunk, desc=f"shifts {run.path.name}")
    rows = []
    for i, s in enumerate(shifts):
        part = {k: v[i * n_seeds:(i + 1) * n_seeds] for k, v in out.items()}
        ev = (summaries.student_evaluation(run.meta, part) if t_apply is not None
              else summaries.teacher_evaluation(run.meta["seeds"], part["returns"]))
        rows.append({**s, "evaluation": ev})
    return {"episodes": episodes, "shifts": rows}
