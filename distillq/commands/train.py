"""`distillq train-teacher`: a teacher (its algorithm from registry.ALGOS: DQN or PQN), all
seeds in one vmapped run, as a plan for the run lifecycle."""

from __future__ import annotations

import time
from pathlib import Path

from distillq import _setup, config, registry
from distillq.runs import console, lifecycle, limits, parallel, store, summaries


def algorithm(cfg: config.TeacherConfig, env):
    """The teacher's System module, built (registry.ALGOS[cfg.algo])."""
    return registry.load(registry.ALGOS[cfg.algo].impl)(cfg, env)


def run(cfg: config.TeacherConfig | None, *, out: str | None = None, force: bool = False,
        show_progress: bool = True, started: float | None = None,
        resume: str | None = None) -> dict:
    """Train a teacher run (or continue an interrupted one with resume=RUN_DIR)."""
    from distillq.core import envs, networks

    started = time.perf_counter() if started is None else started
    reopened = None
    if resume is not None:
        reopened, cfg, algo = lifecycle.reopen(
            "teacher", resume, lambda _m, c: algorithm(c, envs.make(c.env)))
        seeds = list(reopened.meta["seeds"])
    else:
        algo = algorithm(cfg, envs.make(cfg.env))      # validates before any disk write
        limits.preflight_teacher(cfg, algo)
        seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
        parallel.local_slice(len(seeds))
    n_params = networks.param_count(algo.net_spec)

    def meta(_run_dir: Path | None) -> dict:
        return {**store.base_meta("teacher", cfg.env, algo.net_spec, seeds,
                                  config.to_dict(cfg)), "algo": cfg.algo,
                "xla_flags": _setup.xla_flags()}

    def summarise(m: dict, final) -> dict:
        return summaries.teacher_evaluation(m["seeds"], final["returns"])

    stop_at = None
    if cfg.stop_return is not None:
        stop_at = lambda _ctx, _local: cfg.stop_return   # noqa: E731
    plan = lifecycle.Plan("teacher", cfg, algo.system, seeds, None, meta, summarise, n_params,
                          stop_at)
    res = lifecycle.run(plan, out=out, force=force, reopened=reopened,
                        show_progress=show_progress, started=started)
    if res.files.main:
        console.print_eval_table(f"teacher {res.files.dir}", res.evaluation["per_seed"])
    out_json = res.summary("teacher", env=cfg.env, algo=cfg.algo, seeds=seeds,
                           network=algo.net_spec, params=n_params)
    if res.files.main:
        out_json["shown"] = [str(res.files.dir.resolve())]
    return out_json
