"""`distillq evaluate`: teacher and student runs, greedy episodes vmapped over seeds; a
pipeline's students are evaluated with their teachers ("evaluates both")."""

from __future__ import annotations

from distillq.errors import RunDirError
from distillq.runs import evaluation, limits, store, teachers


def run(paths: list[str], *, episodes: int = 100, with_teacher: bool = True,
        add_teachers: bool = False, shown: list[str] = (),
        shifts: list[dict] | None = None) -> dict:
    """Evaluate teacher and/or student runs with greedy episodes, vmapped over seeds.

    add_teachers: a student's teachers are evaluated too (a pipeline "evaluates both").
    shown: runs whose tables the pipeline printed already; a run evaluated with the same
    episode count (hence the same numbers) is not printed twice.
    shifts: robustness.grid points (env params, observation noise) each run is also
    evaluated under, as a vmap axis (result["robustness"])."""
    runs = [store.load_run(p) for p in paths]  # fail fast on any bad path
    if shifts:
        from distillq.core import envs, robustness

        for r in runs:   # names checked against each run's env before any work
            if r.meta.get("multitask"):
                raise RunDirError(f"{r.path} is a multi-task student: --env-param / "
                                  "--obs-noise evaluate single-env runs")
            robustness.stack_params(envs.make(r.meta["env"]), shifts)
    if add_teachers:
        seen = {r.path.resolve() for r in runs}
        for r in list(runs):
            for t in (teachers.find(r.meta, r.path) or []
                      if r.meta["kind"] == "student" else []):
                if t.resolve() not in seen:
                    seen.add(t.resolve())
                    runs.append(store.load_run(t))
    for r in runs:
        limits.preflight_evaluate(r.meta, episodes, evaluation.EVAL_CHUNK)
    printed = set(shown)
    results = []
    for r in runs:
        key = str(r.path.resolve())
        same = key in printed and episodes == r.meta["config"].get("final_episodes")
        results.append(evaluation.evaluate_run(r, episodes, with_teacher, show=not same,
                                               shifts=shifts))
        printed.add(key)
    return {"kind": "evaluation", "episodes": episodes, "results": results,
            "shown": sorted(printed)}
