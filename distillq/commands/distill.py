"""`distillq distill`: students from teacher runs (one env, or --multitask over several), as a
plan for the run lifecycle. A teacher may itself be a student run (chains, born-again).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from distillq import config
from distillq.errors import RunDirError
from distillq.runs import calls, console, lifecycle, limits, parallel, store, summaries, teachers


class Students(NamedTuple):
    """Who learns from whom. Students are point-major: student (p, i) has seed seeds[i] and
    the same episode keys for every point, so points are compared on identical initial
    states. seed_index[i]: the teacher seed student i learns from (None: the ensemble of
    all); a multi-task student has one list per env."""

    seeds: list[int]            # every student's seed
    point_of: list[int]         # every student's sweep point
    points: list[dict]          # the sweep points ({"temp", "weights"})
    seed_index: Any

    @classmethod
    def new(cls, cfg: config.DistillConfig, runs: list[store.Run], n: int | None) -> Students:
        points = cfg.sweep_points
        if cfg.multitask:
            n = max(len(r.meta["seeds"]) for r in runs) if n is None else n
            index: Any = [[i % len(r.meta["seeds"]) for _ in points for i in range(n)]
                          for r in runs]
        else:
            if len(runs) > 1 and not cfg.ensemble:
                raise RunDirError("several teacher runs are distilled as an ensemble: add "
                                  "--ensemble")
            n_teachers = len(teachers.labels(runs))
            if n is None:
                n = len(runs[0].meta["seeds"]) if cfg.ensemble else n_teachers
            index = None if cfg.ensemble else [i % n_teachers for _ in points for i in range(n)]
        seed_list = list(range(cfg.seed, cfg.seed + n))
        return cls([s for _ in points for s in seed_list],
                   [p for p in range(len(points)) for _ in seed_list], points, index)

    @classmethod
    def of(cls, meta: dict) -> Students:
        return cls(meta["seeds"], meta["point_index"], meta["points"],
                   meta["teacher"]["seed_index"])

    @property
    def seed_list(self) -> list[int]:
        return list(dict.fromkeys(self.seeds))


def _relpath(target: Path, start: Path) -> str:
    return os.path.relpath(target, Path(start).resolve())


def _teacher_entry(r: store.Run, student_dir: Path | None, multitask: bool) -> dict:
    entry = {"run_dir": str(r.path.resolve()),
             "relative_run_dir": _relpath(r.path.resolve(), student_dir or Path(".")),
             "params_digest": r.meta.get("params_digest")}
    return {**entry, "env": r.meta["env"]} if multitask else entry


def teacher_meta(st: Students, runs: list[store.Run], student_dir: Path | None,
                 multitask: bool) -> dict:
    """meta.json's "teacher": the runs (found again by evaluate, resume, render, report and
    verified by digest), which seed taught each student, and the teachers' networks."""
    out = {"runs": [_teacher_entry(r, student_dir, multitask) for r in runs],
           "point": runs[0].meta.get("teacher_point")}
    if multitask:
        return {**out, "ensemble": False, "seed_index": st.seed_index,
                "seeds": [[r.meta["seeds"][i] for i in st.seed_index[e]]
                          for e, r in enumerate(runs)],
                "network": [r.meta["network"] for r in runs]}
    labels = teachers.labels(runs)
    return {**out, "ensemble": st.seed_index is None, "seed_index": st.seed_index,
            "seeds": ([f"ensemble of {len(labels)}"] * len(st.seeds) if st.seed_index is None
                      else [labels[i] for i in st.seed_index]),
            "network": runs[0].meta["network"]}


def _multitask_teachers(teacher_dirs: list[str], point: int | None) -> list[store.Run]:
    """One teacher run per env, each env once."""
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


def _resume_teachers(meta: dict, run_dir: Path) -> list[store.Run]:
    runs = teachers.of_student(run_dir, meta, missing="none")
    if runs is None:
        raise RunDirError(f"a teacher run of {run_dir} is missing; cannot resume")
    return runs


def _stop_at_retention(cfg: config.DistillConfig, baselines):
    """stop_retention as per-student return thresholds: R + s (T - R), with T and R the
    teacher's and a random policy's returns on the final evaluation's episodes."""
    import numpy as np

    def thresholds(ctx, local: list[int]):
        base, _ = calls.timed(calls.jit_vmap(baselines), ctx.teacher_params,
                              calls.eval_keys(local))
        t_mean, r_mean = base["teacher"].mean(-1), base["random"].mean(-1)
        if np.any(t_mean <= r_mean):
            console.warn("a teacher is no better than a random policy; its students stop on "
                         "matching its return")
        # a teacher no better than random: retention is undefined; match its return
        return np.where(t_mean > r_mean, r_mean + cfg.stop_retention * (t_mean - r_mean),
                        t_mean)

    return thresholds if cfg.stop_retention > 0 else None


def _teacher_scaling(cfg: config.DistillConfig, env, t_spec: dict, runs: list[store.Run],
                     st: Students) -> dict:
    """obs_norm = "teacher": shift and scale from the states the students' teachers visit
    (each teacher seed that teaches, or the ensemble, playing epsilon-greedy at collect_eps for
    obs_norm_steps env steps), pooled with every teacher weighing alike; measured once, before
    training, so the scaling is part of the student's spec from its first update on."""
    import jax

    from distillq.core import distill

    taught = (None if st.seed_index is None
              else sorted({int(i) for i in st.seed_index}))
    params = teachers.per_student_params(runs, taught, 1 if taught is None else len(taught))
    steps = max(1, -(-cfg.obs_norm_steps // cfg.num_envs))
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0x0B5A)

    def one(p, k):
        return distill.visited_sums(env, t_spec, p, k, cfg.num_envs, steps, cfg.collect_eps)

    n = jax.tree.leaves(params)[0].shape[0]
    sums, _ = calls.timed(calls.jit_vmap(one), params, jax.random.split(key, n))
    return distill.pooled_scaling(sums)


def input_norm(cfg: config.DistillConfig, env, t_spec: dict, runs: list[store.Run],
               st: Students, meta: dict | None) -> dict | None:
    """The observation-level scaling of obs_norm = "teacher" (None otherwise): measured for a
    new run, read back from meta.json's "teacher_scaling" for a resumed one. Not the spec's
    input_norm: a view student's spec holds the scaling of its view, which distill.make derives
    from this one (deriving it from the spec's would map the view twice)."""
    if cfg.obs_norm != "teacher" or cfg.pixels:
        return None         # a pixel student's frames are ink in [0, 1] already
    return meta["teacher_scaling"] if meta is not None else _teacher_scaling(
        cfg, env, t_spec, runs, st)


def run(cfg: config.DistillConfig | None, teacher_dirs: list[str] | str | None = None, *,
        seeds: int | None = None, out: str | None = None, force: bool = False,
        show_progress: bool = True, started: float | None = None, resume: str | None = None,
        shown: list[str] = (), teacher_point: int | None = None) -> dict:
    """Distil teacher run(s) into students (or continue an interrupted run: resume=RUN_DIR).
    A teacher may itself be a student run (teacher_point: which of its sweep points)."""
    from distillq.core import distill, envs, multitask, networks, student

    started = time.perf_counter() if started is None else started
    reopened = None
    if resume is not None:
        reopened, cfg, runs = lifecycle.reopen(
            "student", resume, lambda meta, _c: _resume_teachers(meta, Path(resume)))
        st = Students.of(reopened.meta)
    else:
        dirs = [teacher_dirs] if isinstance(teacher_dirs, str) else list(teacher_dirs or [])
        runs = (_multitask_teachers(dirs, teacher_point) if cfg.multitask
                else teachers.load_teachers(dirs, teacher_point))
        st = Students.new(cfg, runs, seeds)
    n = len(st.seeds)
    hyper = student.hyper_arrays([st.points[p] for p in st.point_of], cfg.term_names)
    norm = None               # obs_norm = "teacher": the observation's scaling
    if cfg.multitask:
        if parallel.process_count() > 1:
            raise RunDirError("--multitask runs on a single process")
        env_list = [envs.make(r.meta["env"]) for r in runs]
        t_specs = [r.meta["network"] for r in runs]
        algo = multitask.make(cfg, env_list, t_specs)
        env_name = "+".join(e.name for e in env_list)
        if reopened is None:
            limits.preflight_multitask(cfg, algo.layouts, algo.net_spec, t_specs, n)
        t_params = tuple(teachers.per_student_params([r], st.seed_index[e], n)
                         for e, r in enumerate(runs))
        stop_at = None
        if cfg.stop_retention > 0:
            stop_at = lambda _ctx, _local: cfg.stop_retention   # noqa: E731
    else:
        t_spec = runs[0].meta["network"]
        env_name = runs[0].meta["env"]
        env_ = envs.make(env_name)
        norm = input_norm(cfg, env_, t_spec, runs, st,
                          None if reopened is None else reopened.meta)
        from distillq.core import views

        algo = distill.make(cfg, env_, t_spec, norm, views.from_meta(runs[0].meta))
        if reopened is None:
            limits.preflight_distill(cfg, algo, t_spec, n * cfg.inits,
                                     1 if st.seed_index is not None
                                     else len(teachers.labels(runs)))
        t_params = teachers.per_student_params(runs, st.seed_index, n)
        stop_at = _stop_at_retention(cfg, algo.baselines)

    def meta(run_dir: Path | None) -> dict:
        m = store.base_meta("student", env_name, algo.net_spec, st.seeds, config.to_dict(cfg))
        m.update(points=st.points, point_index=st.point_of)
        if cfg.multitask:
            m["multitask"] = {"envs": [e.name for e in algo.envs]}
        elif algo.view is not None:
            m["student_view"] = algo.view.to_json()
        if norm is not None:   # the observation's scaling (a view's spec holds its own)
            m["teacher_scaling"] = norm
        m["teacher"] = teacher_meta(st, runs, run_dir, cfg.multitask)
        m["lineage"] = ([teachers.lineage([r], networks.param_count) for r in runs]
                        if cfg.multitask else teachers.lineage(runs, networks.param_count))
        return m

    def summarise(m: dict, final) -> dict:
        return (summaries.multitask_evaluation(m, list(final)) if cfg.multitask
                else summaries.student_evaluation(m, final))

    n_params = networks.param_count(algo.net_spec)
    plan = lifecycle.Plan("student", cfg, algo.system, st.seeds,
                          student.Teaching(t_params, hyper), meta, summarise, n_params, stop_at,
                          inits=cfg.inits)
    res = lifecycle.run(plan, out=out, force=force, reopened=reopened,
                        show_progress=show_progress, started=started)
    files, ev = res.files, res.evaluation
    if files.main:
        if cfg.multitask:
            for block in ev["per_env"]:
                console.print_eval_table(f"student {files.dir} on {block['env']}",
                                         block["evaluation"]["per_seed"])
        else:
            console.print_eval_table(f"student {files.dir}", ev["per_seed"])
            if len(st.points) > 1:
                console.print_point_table(ev["per_point"])
    common = {"env": files.meta["env"], "seeds": st.seed_list, "students": n}
    if cfg.multitask:
        fields = {**common, "multitask": True, "envs": files.meta["multitask"]["envs"],
                  "teacher": [str(r.path) for r in runs], "loss": list(cfg.loss),
                  "temp": list(cfg.temp), "collect": cfg.collect, "network": algo.net_spec,
                  "params": n_params,
                  "teacher_params": [networks.param_count(r.meta["network"]) for r in runs]}
    else:
        fields = {**common,
                  "teacher": ([str(t.path) for t in runs] if len(runs) > 1
                              else str(runs[0].path)),
                  "loss": list(cfg.loss), "temp": list(cfg.temp), "kl_mode": cfg.kl_mode,
                  "collect": cfg.collect, "ensemble": cfg.ensemble, "network": algo.net_spec,
                  "params": n_params,
                  "teacher_params": networks.param_count(runs[0].meta["network"]),
                  "lineage": files.meta.get("lineage", [])}
        if "student_view" in files.meta:
            fields["student_view"] = files.meta["student_view"]
        if "inits" in files.meta:      # which initialisation of each student was kept
            fields["inits"] = {k: files.meta["inits"][k] for k in ("inits", "chosen")}
    out_json = res.summary("student", **fields)
    if files.main:
        out_json["shown"] = sorted({*shown, str(files.dir.resolve())})
    return out_json
