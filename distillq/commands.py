"""What each CLI command does, as plain functions returning the command's JSON summary.

The CLI (cli.py) only parses arguments and loads configs; everything here may import jax.
The run dir's lifecycle is in rundir.py, teachers in teachers.py, the numbers and tables in
summaries.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distillq import (
    _setup,
    checkpoint,
    config,
    limits,
    robustness,
    rundir,
    signals,
    summaries,
    teachers,
)
from distillq.errors import RunDirError
from distillq.runner import console, warn

_setup.configure()


def _keys(seeds: list[int]):
    """One PRNG key per seed, made in one vectorised call (a Python loop over 100,000 seeds
    took minutes)."""
    import jax
    import jax.numpy as jnp

    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))


def _eval_keys(seeds: list[int]):
    import jax
    import jax.numpy as jnp

    from distillq import evaluate

    return jax.vmap(evaluate.eval_key)(jnp.asarray(seeds, jnp.uint32))


def _jit_vmap(fn, in_axes=0, donate: tuple = ()):
    import jax

    return jax.jit(jax.vmap(fn, in_axes=in_axes), donate_argnums=donate)


def _timed(fn, *args):
    """(gathered host result, seconds) of a jitted call, run interruptibly."""
    from distillq import parallel

    t = time.perf_counter()
    out = signals.blocking(lambda: parallel.gather(fn(*args)))
    return out, time.perf_counter() - t


def _ready(fn, *args):
    """fn(*args) computed to the end, interruptibly (a signal is acted on at once)."""
    import jax

    return signals.blocking(lambda: jax.block_until_ready(fn(*args)))


def _param_count(spec: dict) -> int:
    from distillq import networks

    return networks.param_count(spec)


# --------------------------------------------------------------------------- train-teacher


def train_teacher(cfg: config.TeacherConfig | None, *, out: str | None = None,
                  force: bool = False, show_progress: bool = True,
                  started: float | None = None, resume: str | None = None) -> dict:
    """Train a teacher run (or continue an interrupted one with resume=RUN_DIR)."""
    import jax

    from distillq import dqn, envs, parallel

    started = time.perf_counter() if started is None else started
    if resume is not None:
        files, cfg, trainer = rundir.reopen(
            "teacher", resume, lambda _meta, c: dqn.make_trainer(c, envs.make(c.env)))
        seeds = list(files.meta["seeds"])
    else:
        trainer = dqn.make_trainer(cfg, envs.make(cfg.env))  # validates before any disk write
        limits.preflight_teacher(cfg, trainer)
        seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        parallel.local_slice(len(seeds))
        files = rundir.create("teacher", out, force, checkpoint.base_meta(
            "teacher", cfg.env, trainer.net_spec, seeds, config.to_dict(cfg)))
    local = seeds[parallel.local_slice(len(seeds))]
    with rundir.guard(files, "teacher"):
        state = parallel.shard(_ready(jax.jit(jax.vmap(trainer.init)), _keys(local)))
        state, start = rundir.begin(files, cfg, state, resume is not None, len(local))

        def stop(m: dict) -> bool:
            return (cfg.stop_return is not None
                    and bool((m["best_return"] >= cfg.stop_return).all()))

        res = rundir.fit(kind="teacher", cfg=cfg, files=files, state=state, args=(),
                         chunk=_jit_vmap(trainer.chunk, in_axes=(0, None), donate=(0,)),
                         seeds=seeds, stop=stop, start=start, show_progress=show_progress)
        state = res["state"]
        params = state.best_params if cfg.eval_episodes > 0 else state.params
        final, eval_s = _timed(_jit_vmap(trainer.final_eval), params, _eval_keys(local))
        stats = rundir.stats(cfg, res, eval_s, started)
        evaluation = summaries.teacher_evaluation(seeds, final["returns"])
        n_params = _param_count(trainer.net_spec)
        rundir.complete(files, parallel.gather(params), evaluation=evaluation, train=stats,
                        params_per_seed=n_params)
    if not files.main:
        return rundir.worker_summary("teacher", files, local)
    summaries.print_eval_table(f"teacher {files.dir}", evaluation["per_seed"])
    return {"run_dir": str(files.dir), "kind": "teacher", "env": cfg.env, "seeds": seeds,
            "network": trainer.net_spec, "params": n_params, "evaluation": evaluation,
            **stats, "shown": [str(files.dir.resolve())]}


# --------------------------------------------------------------------------- distill


class _Plan:
    """Who learns from whom: students (point-major: student (p, i) has seed seed_list[i] and
    the same episode keys for every point, so points are compared on identical initial
    states), their sweep points and their teachers (seed_index None: the ensemble)."""

    def __init__(self, student_seeds: list[int], point_of: list[int], points: list[dict],
                 seed_index: list[int] | None):
        self.student_seeds, self.point_of = student_seeds, point_of
        self.points, self.seed_index = points, seed_index

    @classmethod
    def new(cls, cfg: config.DistillConfig, runs: list[checkpoint.Run],
            seeds: int | None) -> _Plan:
        if len(runs) > 1 and not cfg.ensemble:
            raise RunDirError("several teacher runs are distilled as an ensemble: add --ensemble")
        n_teachers = len(teachers.labels(runs))
        n = ((len(runs[0].meta["seeds"]) if cfg.ensemble else n_teachers)
             if seeds is None else seeds)
        points = cfg.sweep_points
        seed_list = list(range(cfg.seed, cfg.seed + n))
        return cls([s for _ in points for s in seed_list],
                   [p for p in range(len(points)) for _ in seed_list], points,
                   None if cfg.ensemble else [i % n_teachers for _ in points for i in range(n)])

    @classmethod
    def of(cls, meta: dict) -> _Plan:
        return cls(meta["seeds"], meta["point_index"], meta["points"],
                   meta["teacher"]["seed_index"])

    @property
    def seed_list(self) -> list[int]:
        return list(dict.fromkeys(self.student_seeds))

    def teacher_meta(self, runs: list[checkpoint.Run], student_dir: Path | None) -> dict:
        labels = teachers.labels(runs)
        n = len(self.student_seeds)
        return {
            "runs": [{"run_dir": str(t.path.resolve()),
                      "relative_run_dir": _relpath(t.path.resolve(), student_dir or Path(".")),
                      "params_digest": t.meta.get("params_digest")}
                     for t in runs],
            "point": runs[0].meta.get("teacher_point"),
            "ensemble": self.seed_index is None, "seed_index": self.seed_index,
            "seeds": ([f"ensemble of {len(labels)}"] * n if self.seed_index is None
                      else [labels[i] for i in self.seed_index]),
            "network": runs[0].meta["network"],
        }


def _resume_teachers(meta: dict, run_dir: Path) -> list[checkpoint.Run]:
    paths = checkpoint.find_teachers(meta, run_dir)
    if paths is None:
        raise RunDirError(f"a teacher run of {run_dir} is missing; cannot resume")
    runs = teachers.load_teachers([str(p) for p in paths], meta["teacher"].get("point"),
                                  multitask=bool(meta.get("multitask")))
    checkpoint.check_teachers(run_dir, meta, paths, [t.meta for t in runs])
    return runs


def distill(cfg: config.DistillConfig | None, teacher_dirs: list[str] | str | None = None,
            *, seeds: int | None = None, out: str | None = None, force: bool = False,
            show_progress: bool = True, started: float | None = None,
            resume: str | None = None, shown: list[str] = (),
            teacher_point: int | None = None) -> dict:
    """Distil teacher run(s) into students (or continue an interrupted run: resume=RUN_DIR).
    A teacher may itself be a student run (teacher_point: which of its sweep points)."""
    import jax
    import numpy as np

    from distillq import distill as D
    from distillq import envs, parallel

    started = time.perf_counter() if started is None else started
    if (cfg is not None and cfg.multitask) or (
            resume is not None and checkpoint.read_meta(resume).get("multitask")):
        return distill_multitask(cfg, teacher_dirs, seeds=seeds, out=out, force=force,
                                 show_progress=show_progress, started=started, resume=resume,
                                 shown=shown, teacher_point=teacher_point)
    if resume is not None:
        files, cfg, runs = rundir.reopen("student", resume, lambda meta, _c: _resume_teachers(
            meta, Path(resume)))
        plan = _Plan.of(files.meta)
    else:
        runs = teachers.load_teachers([teacher_dirs] if isinstance(teacher_dirs, str)
                                      else list(teacher_dirs), teacher_point)
        plan = _Plan.new(cfg, runs, seeds)
    t_meta = runs[0].meta
    n_students = len(plan.student_seeds)
    sl = parallel.local_slice(n_students)
    local_seeds = plan.student_seeds[sl]
    distiller = D.make_distiller(cfg, envs.make(t_meta["env"]), t_meta["network"])
    if resume is None:
        limits.preflight_distill(cfg, distiller, t_meta["network"], n_students,
                                 1 if plan.seed_index is not None
                                 else len(teachers.labels(runs)))
    teacher_params = jax.tree.map(lambda x: x[sl], teachers.per_student_params(
        runs, plan.seed_index, n_students))
    hyper = D.hyper_arrays([plan.points[p] for p in plan.point_of[sl]], cfg.term_names)
    if resume is None:
        meta = checkpoint.base_meta("student", t_meta["env"], distiller.net_spec,
                                    plan.student_seeds, config.to_dict(cfg))
        meta.update(points=plan.points, point_index=plan.point_of)
        if distiller.view is not None:
            meta["student_view"] = distiller.view.to_json()
        files = rundir.create("student", out, force, meta)
        meta["teacher"] = plan.teacher_meta(runs, files.dir)
        meta["lineage"] = teachers.lineage(runs, _param_count)
    with rundir.guard(files, "student"):
        teacher_params, hyper = parallel.shard((teacher_params, hyper))
        state = parallel.shard(_ready(jax.jit(jax.vmap(distiller.init)), _keys(local_seeds),
                                      teacher_params))
        state, start = rundir.begin(files, cfg, state, resume is not None, len(local_seeds))
        target = None
        if cfg.stop_retention > 0:   # (normalised) retention: between random and teacher
            base, _ = _timed(_jit_vmap(distiller.baselines), teacher_params,
                             _eval_keys(local_seeds))
            t_mean, r_mean = base["teacher"].mean(-1), base["random"].mean(-1)
            # a teacher no better than random: retention is undefined; match its return
            target = np.where(t_mean > r_mean,
                              r_mean + cfg.stop_retention * (t_mean - r_mean), t_mean)
            if np.any(t_mean <= r_mean):
                warn("a teacher is no better than a random policy; its students stop on "
                     "matching its return")

        def stop(m: dict) -> bool:
            return target is not None and bool(np.all(m["best_return"] >= target))

        res = rundir.fit(kind="student", cfg=cfg, files=files, state=state,
                         chunk=_jit_vmap(distiller.chunk, in_axes=(0, 0, 0, None), donate=(0,)),
                         args=(teacher_params, hyper), seeds=plan.student_seeds, stop=stop,
                         start=start, show_progress=show_progress)
        state = res["state"]
        params = state.best_params if cfg.eval_episodes > 0 else state.params["student"]
        final, eval_s = _timed(_jit_vmap(distiller.final_eval), params, teacher_params,
                               _eval_keys(local_seeds))
        env_iters = (min(res["t"], cfg.dataset_iterations) if cfg.collect == "dataset"
                     else None)
        stats = rundir.stats(cfg, res, eval_s, started, env_iters)
        evaluation = summaries.student_evaluation(files.meta, final)
        n_params = _param_count(distiller.net_spec)
        rundir.complete(files, parallel.gather(params), evaluation=evaluation, train=stats,
                        params_per_seed=n_params)
    if not files.main:
        return rundir.worker_summary("student", files, local_seeds)
    summaries.print_eval_table(f"student {files.dir}", evaluation["per_seed"])
    if len(plan.points) > 1:
        summaries.print_point_table(evaluation["per_point"])
    return {"run_dir": str(files.dir), "kind": "student", "env": t_meta["env"],
            "seeds": plan.seed_list, "students": n_students,
            "teacher": [str(t.path) for t in runs] if len(runs) > 1 else str(runs[0].path),
            "loss": list(cfg.loss), "temp": list(cfg.temp), "kl_mode": cfg.kl_mode,
            "collect": cfg.collect, "ensemble": cfg.ensemble, "network": distiller.net_spec,
            "params": n_params, "teacher_params": _param_count(t_meta["network"]),
            "lineage": files.meta.get("lineage", []),
            **({"student_view": files.meta["student_view"]} if "student_view" in files.meta
               else {}),
            "evaluation": evaluation, **stats,
            "shown": sorted({*shown, str(files.dir.resolve())})}


def _multitask_teachers(teacher_dirs: list[str], point: int | None) -> list[checkpoint.Run]:
    """One teacher run per env, each env once (several runs of one env: --ensemble)."""
    runs = teachers.load_teachers(teacher_dirs, point, multitask=True)
    if len(runs) < 2:
        raise RunDirError("--multitask distils teachers of different envs: give one --teacher "
                          "per env (at least 2)")
    seen: dict[str, Path] = {}
    for r in runs:
        if r.meta["env"] in seen:
            raise RunDirError(f"--multitask: {seen[r.meta['env']]} and {r.path} are both "
                              f"{r.meta['env']} teachers; give one teacher run per env")
        seen[r.meta["env"]] = r.path
    return runs


def distill_multitask(cfg: config.DistillConfig | None, teacher_dirs: list[str] | None = None,
                      *, seeds: int | None = None, out: str | None = None,
                      force: bool = False, show_progress: bool = True,
                      started: float | None = None, resume: str | None = None,
                      shown: list[str] = (), teacher_point: int | None = None) -> dict:
    """One student for teachers of different envs (multitask.py): student i learns env e
    from seed i mod n_e of that env's teacher run; per-env retention and fidelity."""
    import jax
    import numpy as np

    from distillq import distill as D
    from distillq import envs, multitask, parallel

    started = time.perf_counter() if started is None else started
    if parallel.process_count() > 1:
        raise RunDirError("--multitask runs on a single process")
    if resume is not None:
        files, cfg, runs = rundir.reopen("student", resume, lambda meta, _c: _resume_teachers(
            meta, Path(resume)))
        meta = files.meta
        student_seeds, point_of, points = meta["seeds"], meta["point_index"], meta["points"]
        seed_index = meta["teacher"]["seed_index"]
    else:
        runs = _multitask_teachers(list(teacher_dirs or []), teacher_point)
        points = cfg.sweep_points
        n = max(len(r.meta["seeds"]) for r in runs) if seeds is None else seeds
        seed_list = list(range(cfg.seed, cfg.seed + n))
        student_seeds = [s for _ in points for s in seed_list]
        point_of = [p for p in range(len(points)) for _ in seed_list]
        seed_index = [[i % len(r.meta["seeds"]) for _ in points for i in range(n)]
                      for r in runs]
    env_list = [envs.make(r.meta["env"]) for r in runs]
    t_specs = [r.meta["network"] for r in runs]
    md = multitask.make(cfg, env_list, t_specs)
    n_students = len(student_seeds)
    env_names = [e.name for e in env_list]
    if resume is None:
        limits.preflight_multitask(cfg, md.layouts, md.net_spec, t_specs, n_students)
    t_params = tuple(teachers.per_student_params([r], seed_index[e], n_students)
                     for e, r in enumerate(runs))
    hyper = D.hyper_arrays([points[p] for p in point_of], cfg.term_names)
    if resume is None:
        meta = checkpoint.base_meta("student", "+".join(env_names), md.net_spec, student_seeds,
                                    config.to_dict(cfg))
        meta.update(points=points, point_index=point_of, multitask={"envs": env_names})
        files = rundir.create("student", out, force, meta)
        labels = [[r.meta["seeds"][i] for i in seed_index[e]] for e, r in enumerate(runs)]
        meta["teacher"] = {
            "runs": [{"run_dir": str(r.path.resolve()),
                      "relative_run_dir": _relpath(r.path.resolve(), files.dir),
                      "params_digest": r.meta.get("params_digest"), "env": r.meta["env"]}
                     for r in runs],
            "point": runs[0].meta.get("teacher_point"), "ensemble": False,
            "seed_index": seed_index, "seeds": labels, "network": t_specs}
        meta["lineage"] = [teachers.lineage([r], _param_count) for r in runs]
    with rundir.guard(files, "student"):
        state = _ready(jax.jit(jax.vmap(md.init)), _keys(student_seeds), t_params)
        state, start = rundir.begin(files, cfg, state, resume is not None, n_students)

        def stop(m: dict) -> bool:
            return cfg.stop_retention > 0 and bool(np.all(m["best_retention"]
                                                          >= cfg.stop_retention))

        res = rundir.fit(kind="student", cfg=cfg, files=files, state=state,
                         chunk=_jit_vmap(md.chunk, in_axes=(0, 0, 0, None), donate=(0,)),
                         args=(t_params, hyper), seeds=student_seeds, stop=stop, start=start,
                         show_progress=show_progress)
        state = res["state"]
        params = state.best_params if cfg.eval_episodes > 0 else state.params["student"]
        final, eval_s = _timed(_jit_vmap(md.final_eval), params, t_params,
                               _eval_keys(student_seeds))
        stats = rundir.stats(cfg, res, eval_s, started)
        evaluation = summaries.multitask_evaluation(files.meta, list(final))
        n_params = multitask.param_count(md.net_spec)
        rundir.complete(files, params, evaluation=evaluation, train=stats,
                        params_per_seed=n_params)
    for block in evaluation["per_env"]:
        summaries.print_eval_table(f"student {files.dir} on {block['env']}",
                                   block["evaluation"]["per_seed"])
    return {"run_dir": str(files.dir), "kind": "student", "env": files.meta["env"],
            "multitask": True, "envs": env_names, "seeds": list(dict.fromkeys(student_seeds)),
            "students": n_students, "teacher": [str(r.path) for r in runs],
            "loss": list(cfg.loss), "temp": list(cfg.temp), "collect": cfg.collect,
            "network": md.net_spec, "params": n_params,
            "teacher_params": [_param_count(s) for s in t_specs],
            "evaluation": evaluation, **stats,
            "shown": sorted({*shown, str(files.dir.resolve())})}


def _relpath(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target, Path(start).resolve())


# --------------------------------------------------------------------------- evaluate

EVAL_CHUNK = 512     # episodes per jitted call of `evaluate` (per seed)


def evaluate_runs(paths: list[str], *, episodes: int = 100, with_teacher: bool = True,
                  add_teachers: bool = False, shown: list[str] = (),
                  shifts: list[dict] | None = None) -> dict:
    """Evaluate teacher and/or student runs with greedy episodes, vmapped over seeds.

    add_teachers: a student's teachers are evaluated too (a pipeline "evaluates both").
    shown: runs whose tables the pipeline printed already; a run evaluated with the same
    episode count (hence the same numbers) is not printed twice.
    shifts: robustness.grid points (env params, observation noise) each run is also
    evaluated under, as a vmap axis (result["robustness"])."""
    runs = [checkpoint.load_run(p) for p in paths]  # fail fast on any bad path
    if shifts:
        from distillq import envs

        for r in runs:   # names checked against each run's env before any work
            if r.meta.get("multitask"):
                raise RunDirError(f"{r.path} is a multi-task student: --env-param / "
                                  "--obs-noise evaluate single-env runs")
            robustness.stack_params(envs.make(r.meta["env"]), shifts)
    if add_teachers:
        seen = {r.path.resolve() for r in runs}
        for r in list(runs):
            for t in (checkpoint.find_teachers(r.meta, r.path) or []
                      if r.meta["kind"] == "student" else []):
                if t.resolve() not in seen:
                    seen.add(t.resolve())
                    runs.append(checkpoint.load_run(t))
    for r in runs:
        limits.preflight_evaluate(r.meta, episodes, EVAL_CHUNK)
    printed = set(shown)
    results = []
    for r in runs:
        key = str(r.path.resolve())
        same = key in printed and episodes == r.meta["config"].get("final_episodes")
        results.append(_evaluate_one(r, episodes, with_teacher, show=not same,
                                     shifts=shifts))
        printed.add(key)
    return {"kind": "evaluation", "episodes": episodes, "results": results,
            "shown": sorted(printed)}


def _teachers_of(run: checkpoint.Run, with_teacher: bool = True) -> list[checkpoint.Run] | None:
    """The student's teachers, verified to be the runs it was distilled from; None when it
    is a teacher, when asked for the student alone, or (with a warning) when one is gone."""
    if run.meta["kind"] != "student" or not with_teacher:
        return None
    paths = checkpoint.find_teachers(run.meta, run.path)
    if paths is None:
        warn(f"a teacher run of {run.path} is missing; reporting the student alone")
        return None
    runs = teachers.load_teachers([str(p) for p in paths], run.meta["teacher"].get("point"),
                                  multitask=bool(run.meta.get("multitask")))
    checkpoint.check_teachers(run.path, run.meta, paths, [t.meta for t in runs])
    return runs


def _against_original(ev: dict, original: dict) -> None:
    """Adds `retention_original`: (S - R) / (T0 - R), with T0 the original teacher's return
    as recorded when it completed (it is not re-run) and R the random policy's return on
    these episodes."""
    t0 = original.get("mean_return")
    for block in (ev["overall"], *ev["per_seed"], *ev.get("per_point", [])):
        block["retention_original"] = (None if t0 is None else summaries.normalised_retention(
            block["mean"], t0, block["random_mean"]))


def _chunked(fn, args: tuple, episodes: int, chunk: int, desc: str):
    """Compile fn(*args, first) once, run it over `episodes` in chunks (interruptible).
    Returns (out, compile_s, run_s)."""
    import jax
    import jax.numpy as jnp

    from distillq import evaluate

    t0 = time.perf_counter()
    compiled = signals.blocking(lambda: fn.lower(*args, jnp.int32(0)).compile())
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = evaluate.in_chunks(lambda first: signals.blocking(
        lambda: jax.device_get(compiled(*args, jnp.int32(first)))), episodes, chunk, desc=desc)
    return out, compile_s, time.perf_counter() - t0


def _evaluate_multitask(run: checkpoint.Run, episodes: int, with_teacher: bool = True,
                        show: bool = True) -> dict:
    """A multi-task student, env by env (head e on env e), each against its own teacher."""
    import jax
    import jax.numpy as jnp

    from distillq import envs, evaluate, multitask, networks

    meta = run.meta
    spec, names, seeds = meta["network"], meta["multitask"]["envs"], list(meta["seeds"])
    params = jax.tree.map(jnp.asarray, run.params)
    keys = _eval_keys(seeds)
    t_runs = _teachers_of(run, with_teacher)
    chunk = min(episodes, EVAL_CHUNK)
    finals, compile_s, run_s = [], 0.0, 0.0
    for e, name in enumerate(names):
        env, apply = envs.make(name), multitask.task_apply(spec, e)
        if t_runs is not None:
            t_apply = networks.ensemble_apply(networks.build(t_runs[e].meta["network"]).apply)
            t_params = teachers.per_student_params([t_runs[e]], meta["teacher"]["seed_index"][e],
                                                   len(seeds))
            fn = jax.jit(jax.vmap(evaluate.make_comparison(env, apply, t_apply, chunk),
                                  in_axes=(0, 0, 0, None)))
            args = (params, t_params, jax.vmap(lambda k, e=e: jax.random.fold_in(k, e))(keys))
        else:
            fn = jax.jit(jax.vmap(evaluate.make_rollout(env, apply, chunk),
                                  in_axes=(0, 0, None, None)))
            args = (params, jax.vmap(lambda k, e=e: jax.random.fold_in(k, e))(keys), None)
        out, c_s, r_s = _chunked(fn, args, episodes, chunk, f"evaluate {run.path.name} on {name}")
        finals.append(out)
        compile_s, run_s = compile_s + c_s, run_s + r_s
    result: dict[str, Any] = {
        "run_dir": str(run.path), "kind": meta["kind"], "env": meta["env"], "multitask": True,
        "envs": names, "seeds": seeds, "params": _param_count(spec), "network": spec}
    if t_runs is not None:
        ev = summaries.multitask_evaluation(meta, finals)
        result["teacher"] = [str(t.path) for t in t_runs]
        result["teacher_params"] = [_param_count(t.meta["network"]) for t in t_runs]
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
            summaries.print_eval_table(f"{meta['kind']} {run.path} on {block['env']}",
                                       block["evaluation"]["per_seed"])
    else:
        console.print(f"[dim]{meta['kind']} {run.path}: the same numbers as its tables above"
                      "[/dim]")
    return result


def _evaluate_one(run: checkpoint.Run, episodes: int, with_teacher: bool = True,
                  show: bool = True, shifts: list[dict] | None = None) -> dict:
    import jax
    import jax.numpy as jnp

    from distillq import envs, evaluate, networks, views

    meta = run.meta
    if meta.get("multitask"):
        return _evaluate_multitask(run, episodes, with_teacher, show)
    view = views.from_meta(meta)
    env = envs.make(meta["env"])
    net = networks.build(meta["network"])
    seeds = list(meta["seeds"])
    params = jax.tree.map(jnp.asarray, run.params)
    keys = _eval_keys(seeds)
    t_runs = _teachers_of(run, with_teacher)
    chunk = min(episodes, EVAL_CHUNK)
    t_apply = t_params = None
    if t_runs is not None:
        t_apply = networks.ensemble_apply(networks.build(t_runs[0].meta["network"]).apply)
        t_params = teachers.per_student_params(t_runs, meta["teacher"]["seed_index"],
                                               len(seeds))
        fn = jax.jit(jax.vmap(evaluate.make_comparison(env, net.apply, t_apply, chunk, view),
                              in_axes=(0, 0, 0, None)))
        args = (params, t_params, keys)
    else:
        fn = jax.jit(jax.vmap(evaluate.make_rollout(env, net.apply, chunk, view=view),
                              in_axes=(0, 0, None, None)))
        args = (params, keys, None)
    out, compile_s, run_s = _chunked(fn, args, episodes, chunk, f"evaluate {run.path.name}")
    result: dict[str, Any] = {
        "run_dir": str(run.path), "kind": meta["kind"], "env": meta["env"], "seeds": seeds,
        "params": _param_count(meta["network"]), "network": meta["network"],
    }
    if t_runs is not None:
        ev = summaries.student_evaluation(meta, out)
        result["teacher"] = [str(t.path) for t in t_runs]
        result["teacher_params"] = _param_count(t_runs[0].meta["network"])
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
        "forward_obs_per_s": round(evaluate.forward_throughput(
            net.apply, one, networks.obs_shape(meta["network"])), 1),
    }
    if show:
        summaries.print_eval_table(f"{meta['kind']} {run.path}", ev["per_seed"])
    else:
        console.print(f"[dim]{meta['kind']} {run.path}: the same numbers as its table above"
                      "[/dim]")
    if shifts:
        result["robustness"] = _evaluate_shifts(run, env, net, params, t_apply, t_params, keys,
                                                episodes, shifts)
        robustness.print_table(f"{meta['kind']} {run.path}", result["robustness"]["shifts"])
    return result


def _evaluate_shifts(run: checkpoint.Run, env, net, params, t_apply, t_params, keys,
                     episodes: int, shifts: list[dict]) -> dict:
    """The run (and its teacher, and a random policy) under every shift of the grid, on the
    same episode keys as the unshifted evaluation; in chunks of episodes (interruptible)."""
    import jax
    import jax.numpy as jnp

    from distillq import evaluate, views

    g, n_seeds = len(shifts), len(run.meta["seeds"])
    chunk = max(1, min(episodes, EVAL_CHUNK // g))
    fn = robustness.make_grid_eval(env, net.apply, chunk, t_apply,
                                   views.from_meta(run.meta))
    env_params = robustness.stack_params(env, shifts)
    noise = jnp.asarray([s["obs_noise"] for s in shifts], jnp.float32)
    args = (params, t_params, keys)
    compiled = signals.blocking(lambda: fn.lower(*args, jnp.int32(0), env_params,
                                                 noise).compile())

    def run_chunk(first):   # [G, S, chunk] -> [G * S, chunk]
        out = signals.blocking(lambda: jax.device_get(
            compiled(*args, jnp.int32(first), env_params, noise)))
        return {k: v.reshape(g * n_seeds, -1) for k, v in out.items()}

    out = evaluate.in_chunks(run_chunk, episodes, chunk, desc=f"shifts {run.path.name}")
    rows = []
    for i, s in enumerate(shifts):
        part = {k: v[i * n_seeds:(i + 1) * n_seeds] for k, v in out.items()}
        ev = (summaries.student_evaluation(run.meta, part) if t_apply is not None
              else summaries.teacher_evaluation(run.meta["seeds"], part["returns"]))
        rows.append({**s, "evaluation": ev})
    return {"episodes": episodes, "shifts": rows}
