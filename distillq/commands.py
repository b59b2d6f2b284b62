"""What each CLI command does, as plain functions returning the command's JSON summary.

The CLI (cli.py) only parses arguments and loads configs; everything here may import jax.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distillq import _setup, checkpoint, config
from distillq.errors import RunDirError
from distillq.runner import console

_setup.configure()


def _stack_keys(seeds: list[int]):
    import jax
    import jax.numpy as jnp

    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


def _eval_keys(seeds: list[int]):
    import jax.numpy as jnp

    from distillq import evaluate

    return jnp.stack([evaluate.eval_key(s) for s in seeds])


def _per_seed(seeds: list[int], returns) -> list[dict]:
    from distillq.evaluate import summary

    return [{"seed": s, **summary(returns[i])} for i, s in enumerate(seeds)]


def _jit_vmap(fn, in_axes=0, donate: tuple = ()):
    import jax

    return jax.jit(jax.vmap(fn, in_axes=in_axes), donate_argnums=donate)


class _NoLock:
    def release(self) -> None:
        pass


class RunFiles:
    """A run directory as seen by one process: process 0 writes, other processes only take
    part in the collectives (gathers) that feed process 0. run_dir is None on workers."""

    def __init__(self, run_dir: Path | None, meta: dict, lock=None):
        self.dir = run_dir
        self.name = None if run_dir is None else str(run_dir)   # workers learn it from rank 0
        self.meta = meta
        self.lock = lock or _NoLock()

    @property
    def main(self) -> bool:
        return self.dir is not None

    def write_meta(self) -> None:
        if self.main:
            checkpoint.write_json_atomic(self.dir / checkpoint.META, self.meta)

    def finish(self, status: str, **extra) -> None:
        self.meta.update(status=status, **extra)
        self.write_meta()
        self.lock.release()

    def save_state(self, state, host: dict) -> None:
        from distillq import parallel

        if parallel.process_count() > 1:
            state = parallel.gather(state)   # a collective: every process calls it
        if self.main:
            checkpoint.save_state(self.dir, state, host)

    def append_metrics(self, rows: list[dict]) -> None:
        if self.main:
            checkpoint.append_metrics(self.dir, rows)


def _resume_cmd(kind: str, run_dir: Path | None) -> str:
    cmd = "train-teacher" if kind == "teacher" else "distill"
    return f"distillq {cmd} --resume {run_dir}"


def _fit(*, kind: str, cfg, files: RunFiles, state, chunk, args: tuple, seeds: list[int],
         stop, t0: int, chunk0: int, prior_train_s: float, show_progress: bool) -> dict:
    """Run the jitted chunks with metrics, periodic full-state checkpoints and signals.

    On SIGINT/SIGTERM: finish the chunk, write the full state, mark the run interrupted and
    raise Interrupted (exit 130). On NaN/Inf: mark it diverged, keep the last good full-state
    checkpoint, raise DivergedError. `seeds` are all seeds (every process); `state` holds this
    process's share.
    """
    from distillq import parallel, runner
    from distillq.errors import DivergedError, Interrupted

    t_start = time.perf_counter()
    multi = parallel.process_count() > 1

    def save(st, t: int, chunks: int) -> None:
        files.save_state(st, {"t": int(t), "chunk": int(chunks),
                              "train_s": prior_train_s + time.perf_counter() - t_start})

    def on_chunk(c: int, t: int, m: dict, sps: float) -> None:
        files.append_metrics(runner.seed_rows(c, t, cfg.num_envs, seeds, m, sps))

    try:
        with runner.catch_signals() as flag:
            res = runner.run_chunks(
                chunk=chunk, state=state, args=args, t0=t0, chunk0=chunk0,
                total_iterations=cfg.total_iterations, chunk_steps=cfg.chunk_steps,
                num_envs=cfg.num_envs, seeds=seeds, desc=kind, stop=stop, on_chunk=on_chunk,
                checkpoint=save, checkpoint_secs=cfg.checkpoint_secs, flag=flag,
                show_progress=show_progress and files.main,
                gather=parallel.gather if multi else None,
                agree=parallel.any_process if multi else None)
    except DivergedError as e:
        step = checkpoint.state_step(files.dir) if files.main else None
        msg = (f"{e}; the last good full-state checkpoint (env step "
               f"{step * cfg.num_envs:,}) is kept in {files.dir}/state" if step is not None
               else f"{e}; no full-state checkpoint had been written before it")
        raise DivergedError(msg) from None
    if res["interrupted"]:
        save(res["state"], res["t"], res["chunks"])
        files.meta.update(resume={"env_steps_per_seed": int(res["t"] * cfg.num_envs),
                                  "command": _resume_cmd(kind, files.name)})
        raise Interrupted(str(files.name), _resume_cmd(kind, files.name))
    res["train_s"] += prior_train_s
    return res


def _stats(cfg, res: dict, eval_s: float, started: float, env_iters: int | None = None) -> dict:
    t = res["t"]
    return {
        "env_steps_per_seed": int((t if env_iters is None else env_iters) * cfg.num_envs),
        "updates_per_seed": int(max(0, t - cfg.warmup_iterations) * cfg.updates_per_step),
        "stopped_early": res["stopped_early"],
        "compile_s": round(res["compile_s"], 3),
        "train_s": round(res["train_s"], 3),
        "eval_s": round(eval_s, 3),
        "wall_s": round(time.perf_counter() - started, 3),
    }


def _guard(files: RunFiles):
    """Context manager: record how a run ended in meta.json, whatever happens."""
    from contextlib import contextmanager

    from distillq.errors import DivergedError, Interrupted

    @contextmanager
    def guard():
        try:
            yield
        except Interrupted:
            files.finish("interrupted")
            raise
        except DivergedError as e:
            files.finish("diverged", error=str(e))
            raise
        except BaseException as e:
            files.finish("failed", error=f"{type(e).__name__}: {e}")
            raise

    return guard()


def _open_files(kind: str, out: str | None, force: bool, meta: dict) -> RunFiles:
    """Process 0 creates and locks the run dir; every process learns its name."""
    from distillq import parallel

    if parallel.is_main():
        run_dir, lock = checkpoint.new_run_dir(kind, out, force)
        files = RunFiles(run_dir, meta, lock)
        parallel.broadcast_text(str(run_dir))
        return files
    name = parallel.broadcast_text("")
    files = RunFiles(None, meta)
    files.name = name
    return files


def _begin(files: RunFiles, cfg, state, resuming: bool, n_local: int):
    """Fresh run: write config.toml. Resume: restore the full state into `state`'s structure
    and drop metrics rows written after it. Returns (state, t0, chunk0, prior train_s)."""
    from distillq import parallel

    t0 = chunk0 = 0
    prior = 0.0
    if resuming:
        state, host = checkpoint.restore_state(files.dir, state)
        t0, chunk0, prior = int(host["t"]), int(host["chunk"]), float(host["train_s"])
        checkpoint.truncate_metrics(files.dir, chunk0)
        files.meta["status"] = "running"
    elif files.main:
        checkpoint.write_text_atomic(files.dir / "config.toml", config.to_toml(cfg))
    files.meta["devices"] = parallel.devices_used(n_local)
    files.meta["processes"] = parallel.process_count()
    files.write_meta()
    return state, t0, chunk0, prior


def _local(seq: list, sl: slice) -> list:
    return list(seq)[sl]


def _worker_summary(kind: str, files: RunFiles, seeds: list[int]) -> dict:
    import jax

    from distillq import parallel

    return {"kind": f"{kind}-worker", "run_dir": files.name,
            "process_id": jax.process_index(), "num_processes": parallel.process_count(),
            "seeds": seeds}


# --------------------------------------------------------------------------- train-teacher


def train_teacher(cfg: config.TeacherConfig | None, *, out: str | None = None,
                  force: bool = False, show_progress: bool = True,
                  started: float | None = None, resume: str | None = None) -> dict:
    """Train a teacher run (or continue an interrupted one with resume=RUN_DIR)."""
    import jax
    import numpy as np

    from distillq import dqn, envs, parallel
    from distillq.evaluate import summary

    started = time.perf_counter() if started is None else started
    if resume is not None:
        if parallel.process_count() > 1:
            raise config.ConfigError("--resume runs on a single process")
        run_dir, meta, lock = checkpoint.open_for_resume(resume, "teacher")
        try:
            cfg = config.from_dict("teacher", meta["config"])
            trainer = dqn.make_trainer(cfg, envs.make(cfg.env))
        except BaseException:
            lock.release()
            raise
        seeds = list(meta["seeds"])
        files = RunFiles(run_dir, meta, lock)
    else:
        trainer = dqn.make_trainer(cfg, envs.make(cfg.env))  # validates before any disk write
        seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        parallel.local_slice(len(seeds))
        meta = checkpoint.base_meta("teacher", cfg.env, trainer.net_spec, seeds,
                                    config.to_dict(cfg))
        files = _open_files("teacher", out, force, meta)
    local = _local(seeds, parallel.local_slice(len(seeds)))
    with _guard(files):
        state = parallel.shard(jax.jit(jax.vmap(trainer.init))(_stack_keys(local)))
        state, t0, chunk0, prior = _begin(files, cfg, state, resume is not None, len(local))
        chunk = _jit_vmap(trainer.chunk, in_axes=(0, None), donate=(0,))

        def stop(m: dict) -> bool:
            return cfg.stop_return > 0 and bool(np.all(m["best_return"] >= cfg.stop_return))

        res = _fit(kind="teacher", cfg=cfg, files=files, state=state, chunk=chunk, args=(),
                   seeds=seeds, stop=stop, t0=t0, chunk0=chunk0, prior_train_s=prior,
                   show_progress=show_progress)
        state = res["state"]
        params = state.best_params if cfg.eval_episodes > 0 else state.params
        t_eval = time.perf_counter()
        final = parallel.gather(_jit_vmap(trainer.final_eval)(params, _eval_keys(local)))
        eval_s = time.perf_counter() - t_eval
        params = parallel.gather(params)
        stats = _stats(cfg, res, eval_s, started)
        if not files.main:
            files.finish("complete")
            return _worker_summary("teacher", files, local)
        checkpoint.save_params(files.dir, params)
        per_seed = _per_seed(seeds, final["returns"])
        evaluation = {"overall": summary(final["returns"]), "per_seed": per_seed}
        meta.pop("resume", None)
        files.finish("complete", evaluation=evaluation, train=stats,
                     params_per_seed=_param_count(trainer.net_spec))
        checkpoint.remove_state(files.dir)
    _print_eval_table("teacher " + str(files.dir), per_seed)
    return {"run_dir": str(files.dir), "kind": "teacher", "env": cfg.env, "seeds": seeds,
            "params": _param_count(trainer.net_spec), "evaluation": evaluation, **stats}


def _param_count(spec: dict) -> int:
    from distillq.networks import param_count

    return param_count(spec)


# --------------------------------------------------------------------------- distill


def load_teachers(teacher_dirs: list[str]) -> list[checkpoint.Run]:
    runs = [checkpoint.load_run(p, kind="teacher") for p in teacher_dirs]
    first = runs[0].meta
    for r in runs[1:]:
        if r.meta["env"] != first["env"]:
            raise RunDirError(f"teacher runs disagree on the env: {first['env']} vs "
                              f"{r.meta['env']} ({r.path})")
        if r.meta["network"] != first["network"]:
            raise RunDirError("teacher runs of an ensemble must share a network architecture "
                              f"({runs[0].path} vs {r.path})")
    return runs


def student_teacher_params(teachers: list[checkpoint.Run], seed_index: list[int] | None,
                           n_students: int):
    """Teacher params per student with an ensemble axis: leaves [n_students, K, ...].

    seed_index None: every student gets the whole ensemble (all seeds of all runs);
    otherwise student i gets teacher seed seed_index[i] (K = 1).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    stacked = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *[t.params for t in teachers])
    if seed_index is None:
        return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x)[None],
                                                       (n_students, *x.shape)), stacked)
    idx = np.asarray(seed_index)
    return jax.tree.map(lambda x: jnp.asarray(x)[idx][:, None], stacked)


def distill(cfg: config.DistillConfig | None, teacher_dirs: list[str] | str | None = None,
            *, seeds: int | None = None, out: str | None = None, force: bool = False,
            show_progress: bool = True, started: float | None = None,
            resume: str | None = None) -> dict:
    """Distil teacher run(s) into students (or continue an interrupted run: resume=RUN_DIR)."""
    import jax
    import numpy as np

    from distillq import distill as D
    from distillq import envs, parallel

    started = time.perf_counter() if started is None else started
    meta = None
    if resume is not None:
        if parallel.process_count() > 1:
            raise config.ConfigError("--resume runs on a single process")
        run_dir, meta, lock = checkpoint.open_for_resume(resume, "student")
        try:
            cfg = config.from_dict("distill", meta["config"])
            paths = _find_teachers(meta, run_dir)
            if paths is None:
                raise RunDirError(f"a teacher run of {run_dir} is missing; cannot resume")
            teachers = load_teachers([str(p) for p in paths])
        except BaseException:
            lock.release()
            raise
        student_seeds, point_of = meta["seeds"], meta["point_index"]
        seed_index = meta["teacher"]["seed_index"]
        points = meta["points"]
        seed_list = list(dict.fromkeys(student_seeds))
    else:
        teacher_dirs = [teacher_dirs] if isinstance(teacher_dirs, str) else list(teacher_dirs)
        teachers = load_teachers(teacher_dirs)
        if len(teachers) > 1 and not cfg.ensemble:
            raise RunDirError("several teacher runs are distilled as an ensemble: add --ensemble")
        n_teachers = sum(len(t.meta["seeds"]) for t in teachers)
        n = ((len(teachers[0].meta["seeds"]) if cfg.ensemble else n_teachers)
             if seeds is None else seeds)
        points = cfg.sweep_points
        seed_list = list(range(cfg.seed, cfg.seed + n))
        # students: point-major; student (p, i) has seed seed_list[i] and the same episode
        # keys for every point, so points are compared on identical initial states
        student_seeds = [s for _ in points for s in seed_list]
        point_of = [p for p in range(len(points)) for _ in seed_list]
        seed_index = None if cfg.ensemble else [i % n_teachers for _ in points for i in range(n)]
    t_meta = teachers[0].meta
    t_labels = [s for t in teachers for s in t.meta["seeds"]]
    t_returns = [p["mean"] for t in teachers for p in t.meta["evaluation"]["per_seed"]]
    n_students = len(student_seeds)
    sl = parallel.local_slice(n_students)
    local_seeds = _local(student_seeds, sl)
    env = envs.make(t_meta["env"])
    distiller = D.make_distiller(cfg, env, t_meta["network"])
    all_teacher_params = student_teacher_params(teachers, seed_index, n_students)
    teacher_params = jax.tree.map(lambda x: x[sl], all_teacher_params)
    hyper = D.hyper_arrays([points[p] for p in _local(point_of, sl)], cfg.term_names)
    if meta is None:
        meta = checkpoint.base_meta("student", t_meta["env"], distiller.net_spec, student_seeds,
                                    config.to_dict(cfg))
        meta["points"] = points
        meta["point_index"] = point_of
        files = _open_files("student", out, force, meta)
        meta["teacher"] = {
            "runs": [{"run_dir": str(t.path.resolve()),
                      "relative_run_dir": _relpath(t.path.resolve(), files.dir or Path("."))}
                     for t in teachers],
            "ensemble": cfg.ensemble, "seed_index": seed_index,
            "seeds": ([f"ensemble of {len(t_labels)}"] * n_students if seed_index is None
                      else [t_labels[i] for i in seed_index]),
            "network": t_meta["network"],
        }
    else:
        files = RunFiles(run_dir, meta, lock)
    with _guard(files):
        teacher_params, hyper = parallel.shard((teacher_params, hyper))
        state = parallel.shard(jax.jit(jax.vmap(distiller.init))(_stack_keys(local_seeds),
                                                                  teacher_params))
        state, t0, chunk0, prior = _begin(files, cfg, state, resume is not None,
                                          len(local_seeds))
        chunk = _jit_vmap(distiller.chunk, in_axes=(0, 0, 0, None), donate=(0,))
        target = None
        if cfg.stop_retention > 0:
            if seed_index is None:   # the ensemble's own return, measured once up front
                t_ret = parallel.gather(_jit_vmap(distiller.teacher_eval)(
                    teacher_params, _eval_keys(local_seeds)))
                target = cfg.stop_retention * np.asarray(t_ret).mean(-1)
            else:
                target = cfg.stop_retention * np.array([t_returns[i] for i in seed_index])

        def stop(m: dict) -> bool:
            return target is not None and bool(np.all(m["best_return"] >= target))

        res = _fit(kind="student", cfg=cfg, files=files, state=state, chunk=chunk,
                   args=(teacher_params, hyper), seeds=student_seeds, stop=stop, t0=t0,
                   chunk0=chunk0, prior_train_s=prior, show_progress=show_progress)
        state = res["state"]
        params = state.best_params if cfg.eval_episodes > 0 else state.params["student"]
        t_eval = time.perf_counter()
        final = parallel.gather(_jit_vmap(distiller.final_eval)(params, teacher_params,
                                                                _eval_keys(local_seeds)))
        eval_s = time.perf_counter() - t_eval
        params = parallel.gather(params)
        env_iters = (min(res["t"], cfg.dataset_iterations) if cfg.collect == "dataset"
                     else None)
        stats = _stats(cfg, res, eval_s, started, env_iters)
        if not files.main:
            files.finish("complete")
            return _worker_summary("student", files, local_seeds)
        checkpoint.save_params(files.dir, params)
        evaluation = student_evaluation(meta, final)
        meta.pop("resume", None)
        files.finish("complete", evaluation=evaluation, train=stats,
                     params_per_seed=_param_count(distiller.net_spec))
        checkpoint.remove_state(files.dir)
    _print_eval_table("student " + str(files.dir), evaluation["per_seed"])
    if len(points) > 1:
        _print_point_table(evaluation["per_point"])
    return {"run_dir": str(files.dir), "kind": "student", "env": t_meta["env"],
            "seeds": seed_list, "students": n_students,
            "teacher": [str(t.path) for t in teachers] if len(teachers) > 1
            else str(teachers[0].path),
            "loss": list(cfg.loss), "temp": list(cfg.temp), "kl_mode": cfg.kl_mode,
            "collect": cfg.collect, "ensemble": cfg.ensemble,
            "params": _param_count(distiller.net_spec),
            "teacher_params": _param_count(t_meta["network"]),
            "evaluation": evaluation, **stats}


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, Path(start).resolve())


def student_evaluation(meta: dict, final: dict) -> dict:
    """Per student (seed and sweep point), per sweep point, and overall summaries."""
    import numpy as np

    from distillq.evaluate import summary

    seeds = meta["seeds"]
    points = meta.get("points") or [{}]
    point_of = meta.get("point_index") or [0] * len(seeds)
    t_seeds = meta["teacher"]["seeds"]
    s_ret, t_ret = np.asarray(final["returns"]), np.asarray(final["teacher_returns"])
    agree, length = np.asarray(final["agree"]), np.asarray(final["lengths"])

    def block(idx) -> dict:
        tm = float(t_ret[idx].mean())
        rets = [float(s_ret[i].mean() / t_ret[i].mean()) if t_ret[i].mean() else None
                for i in idx]
        valid = [r for r in rets if r is not None]
        return {**summary(s_ret[idx]), "teacher_mean": tm,
                "retention": float(s_ret[idx].mean() / tm) if tm else None,
                "retention_min": min(valid) if valid else None,
                "fidelity": float(agree[idx].sum() / max(length[idx].sum(), 1))}

    per_seed = []
    for i, s in enumerate(seeds):
        tm = float(t_ret[i].mean())
        row = {"seed": s, "teacher_seed": t_seeds[i], **summary(s_ret[i]), "teacher_mean": tm,
               "retention": float(s_ret[i].mean() / tm) if tm else None,
               "fidelity": float(agree[i].sum() / max(length[i].sum(), 1))}
        if len(points) > 1:
            row["point"] = point_of[i]
        per_seed.append(row)
    out = {"overall": block(list(range(len(seeds)))), "per_seed": per_seed}
    if len(points) > 1:
        out["per_point"] = [{**points[p], **block([i for i in range(len(seeds))
                                                   if point_of[i] == p])}
                            for p in range(len(points))]
    return out


# --------------------------------------------------------------------------- evaluate


def evaluate_runs(paths: list[str], *, episodes: int = 100) -> dict:
    """Evaluate teacher and/or student runs with greedy episodes, vmapped over seeds."""
    runs = [checkpoint.load_run(p) for p in paths]  # fail fast on any bad path
    results = [_evaluate_one(r, episodes) for r in runs]
    return {"kind": "evaluation", "episodes": episodes, "results": results}


def _forward_throughput(net, params_one, obs_dim: int, batch: int = 4096, reps: int = 20):
    """Observations per second through the network (jitted forward pass, one seed's params)."""
    import jax
    import jax.numpy as jnp

    fwd = jax.jit(net.apply)
    x = jnp.zeros((batch, obs_dim), jnp.float32)
    fwd(params_one, x).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        y = fwd(params_one, x)
    y.block_until_ready()
    return batch * reps / (time.perf_counter() - t)


def _evaluate_one(run: checkpoint.Run, episodes: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from distillq import envs, evaluate, networks
    from distillq.evaluate import summary

    meta = run.meta
    env = envs.make(meta["env"])
    net = networks.build(meta["network"])
    seeds = list(meta["seeds"])
    params = jax.tree.map(jnp.asarray, run.params)
    keys = _eval_keys(seeds)
    teachers = None
    if meta["kind"] == "student":
        paths = _find_teachers(meta, run.path)
        if paths is None:
            console.print(f"[yellow]warning: a teacher run of {run.path} is missing; reporting "
                          "the student alone[/yellow]")
        else:
            teachers = load_teachers([str(p) for p in paths])
    if teachers is not None:
        t_apply = networks.ensemble_apply(networks.build(teachers[0].meta["network"]).apply)
        t_params = student_teacher_params(teachers, meta["teacher"]["seed_index"], len(seeds))
        fn = jax.jit(jax.vmap(evaluate.make_comparison(env, net.apply, t_apply, episodes)))
        args = (params, t_params, keys)
    else:
        fn = jax.jit(jax.vmap(evaluate.make_rollout(env, net.apply, episodes)))
        args = (params, keys)
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.device_get(jax.block_until_ready(compiled(*args)))
    run_s = time.perf_counter() - t0
    steps = float(np.asarray(out["lengths"]).sum())
    one = jax.tree.map(lambda x: x[0], params)
    result: dict[str, Any] = {
        "run_dir": str(run.path), "kind": meta["kind"], "env": meta["env"], "seeds": seeds,
        "params": networks.param_count(meta["network"]),
        "network": meta["network"],
    }
    if teachers is not None:
        ev = student_evaluation(meta, out)
        result["teacher"] = [str(t.path) for t in teachers]
        result["teacher_params"] = networks.param_count(teachers[0].meta["network"])
        result["size_ratio"] = result["params"] / result["teacher_params"]
    else:
        ev = {"overall": summary(out["returns"]), "per_seed": _per_seed(seeds, out["returns"])}
    result["evaluation"] = ev
    result["speed"] = {
        "eval_env_steps_per_s": round(steps / max(run_s, 1e-9), 1),
        "eval_compile_s": round(compile_s, 3),
        "eval_s": round(run_s, 3),
        "forward_obs_per_s": round(_forward_throughput(net, one, meta["network"]["obs_dim"]), 1),
    }
    _print_eval_table(f"{meta['kind']} {run.path}", ev["per_seed"])
    return result


def _find_teachers(meta: dict, student_dir: Path) -> list[Path] | None:
    """The teacher run dirs of a student: relative path first (runs/ moved), then absolute."""
    found = []
    for entry in meta.get("teacher", {}).get("runs", []):
        for cand in (entry.get("relative_run_dir"), entry.get("run_dir")):
            if not cand:
                continue
            p = Path(cand)
            if not p.is_absolute():
                p = (Path(student_dir).resolve() / p).resolve()
            if (p / checkpoint.META).exists():
                found.append(p)
                break
        else:
            return None
    return found or None


# --------------------------------------------------------------------------- output


def _print_point_table(per_point: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="sweep points", title_style="bold")
    for c in ("temp", "weights", "mean", "retention", "retention_min", "fidelity"):
        table.add_column(c, justify="right")
    for p in per_point:
        w = " ".join(f"{k}={v:g}" for k, v in p["weights"].items())
        r, rm = p["retention"], p["retention_min"]
        table.add_row(f"{p['temp']:g}", w, f"{p['mean']:.1f}",
                      "-" if r is None else f"{100 * r:.1f}%",
                      "-" if rm is None else f"{100 * rm:.1f}%", f"{100 * p['fidelity']:.1f}%")
    console.print(table)


def _print_eval_table(title: str, per_seed: list[dict]) -> None:
    from rich.table import Table

    table = Table(title=title, title_style="bold", show_lines=False)
    cols = ["seed", "mean", "std", "min", "max"]
    extra = [c for c in ("teacher_mean", "retention", "fidelity") if per_seed and c in per_seed[0]]
    for c in cols + extra:
        table.add_column(c, justify="right")
    for row in per_seed:
        cells = [str(row["seed"])] + [f"{row[c]:.1f}" for c in cols[1:]]
        for c in extra:
            v = row[c]
            cells.append("-" if v is None else (f"{v:.1f}" if c == "teacher_mean"
                                                else f"{100 * v:.1f}%"))
        table.add_row(*cells)
    console.print(table)


def read_upstream(stdin_text: str) -> dict:
    """Parse the JSON a previous distillq command printed on stdout."""
    import json

    text = stdin_text.strip()
    if not text:
        raise RunDirError("no run given: pass a run dir, or pipe the JSON output of "
                          "train-teacher / distill into this command")
    obj = None
    for raw in reversed(text.splitlines()):  # the last JSON object wins
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    if not isinstance(obj, dict) or not isinstance(obj.get("run_dir"), str):
        raise RunDirError("stdin is not the JSON output of a distillq command (expected an "
                          "object with a run_dir)")
    return obj
