"""Teachers of a distillation: finding, loading and verifying the runs a student learns (or
learnt) from, and laying out their params per student.

`of_student(run)` is the one way every command finds a student's teachers: the recorded
paths (relative first: runs/ may have moved), each verified to be the very run the student
was distilled from (its params digest), a sweep point selected where the teacher swept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillq.errors import RunDirError
from distillq.runs import store


def load_teachers(teacher_dirs: list[str], point: int | None = None,
                  multitask: bool = False) -> list[store.Run]:
    """Complete runs that can teach together (same env, same architecture): teacher runs, or
    student runs (chains: teacher -> assistant -> student; born-again students). A student
    run that swept several points teaches from one of them, `point`."""
    runs = [store.load_run(p) for p in teacher_dirs]
    for r in runs:   # before a point is chosen: no point of such a run can teach
        check_can_teach(r)
    runs = [select_point(r, point) for r in runs]
    if multitask:   # one run per env (commands.distill_multitask checks them)
        return runs
    first = runs[0].meta
    for r in runs[1:]:
        if r.meta["env"] != first["env"]:
            raise RunDirError(f"teacher runs disagree on the env: {first['env']} vs "
                              f"{r.meta['env']} ({r.path})")
        if r.meta.get("student_view") != first.get("student_view"):
            raise RunDirError(f"teacher runs of an ensemble must see the same view of the "
                              f"observation ({r.path} differs from {runs[0].path})")
        if r.meta["network"] != first["network"]:
            raise RunDirError("teacher runs of an ensemble must share a network architecture "
                              f"({runs[0].path} vs {r.path})")
    return runs


def find(meta: dict, student_dir: Path) -> list[Path] | None:
    """The teacher run dirs of a student: relative path first (runs/ moved), then absolute.
    None when any of them is missing."""
    found = []
    for entry in meta.get("teacher", {}).get("runs", []):
        for cand in (entry.get("relative_run_dir"), entry.get("run_dir")):
            if not cand:
                continue
            p = Path(cand)
            if not p.is_absolute():
                p = (Path(student_dir).resolve() / p).resolve()
            if store.has_meta(p):
                found.append(p)
                break
        else:
            return None
    return found or None


def verify(student: Path, meta: dict, teacher_dirs: list[Path],
           teacher_metas: list[dict]) -> None:
    """Each teacher found for a student is the run it was distilled from: same params digest
    as recorded in the student's meta.json (students from before digests: unchecked)."""
    for entry, path, tmeta in zip(meta.get("teacher", {}).get("runs", []), teacher_dirs,
                                  teacher_metas, strict=False):
        want = entry.get("params_digest")
        if want is not None and tmeta.get("params_digest") != want:
            raise RunDirError(f"teacher {path} is not the run {student} was distilled from "
                              "(its params digest differs from the one recorded then); restore "
                              "that teacher, or evaluate the student alone with --no-teacher")


MISSING = ("raise", "warn", "none")


def of_student(path: Path, meta: dict, missing: str = "raise") -> list[store.Run] | None:
    """The teacher runs of a student (None for a teacher run), loaded and verified. A
    teacher that cannot be found: RunDirError (`raise`, what --resume needs), a warning and
    None (`warn`: evaluate reports the student alone), or None (`none`)."""
    if meta["kind"] != "student":
        return None
    paths = find(meta, path)
    if paths is None:
        if missing == "raise":
            raise RunDirError(f"a teacher run of {path} is missing")
        if missing == "warn":
            from distillq.runs.console import warn

            warn(f"a teacher run of {path} is missing; reporting the student alone")
        return None
    runs = load_teachers([str(p) for p in paths], meta["teacher"].get("point"),
                         multitask=bool(meta.get("multitask")))
    verify(path, meta, paths, [t.meta for t in runs])
    return runs


def check_can_teach(r: store.Run) -> None:
    """A run that cannot teach a single env is refused in one line (a view student teaches
    students with its own view: distill.make checks that)."""
    if r.meta.get("multitask"):
        raise RunDirError(f"{r.path} is a multi-task student ({r.meta['env']}): it cannot "
                          "teach (distil each env from its own teacher run)")


def describe_point(p: dict) -> str:
    w = " ".join(f"{k}={v:g}" for k, v in p.get("weights", {}).items())
    return f"temp={p.get('temp', 1.0):g} {w}".strip()


def select_point(run: store.Run, point: int | None) -> store.Run:
    """A run as a teacher. A student run of several sweep points holds several students per
    seed: which one teaches must be said (`point`), else a one-line error names the choices.
    The view keeps only that point's students (their seeds are then unique)."""
    points = run.meta.get("points") or [{}]
    if run.meta["kind"] != "student" or len(points) == 1:
        if point not in (None, 0):
            raise RunDirError(f"--teacher-point {point}: {run.path} has no sweep points")
        return run
    if point is None or not 0 <= point < len(points):
        choices = "; ".join(f"{i}: {describe_point(p)}" for i, p in enumerate(points))
        what = "choose one with --teacher-point" if point is None else f"no point {point}"
        raise RunDirError(f"{run.path} swept {len(points)} points, so its seeds repeat: "
                          f"{what} ({choices})")
    import jax
    import numpy as np

    idx = [i for i, p in enumerate(run.meta["point_index"]) if p == point]
    meta = {**run.meta, "seeds": [run.meta["seeds"][i] for i in idx], "points": [points[point]],
            "point_index": [0] * len(idx), "teacher_point": point,
            "evaluation": {"overall": run.meta["evaluation"]["per_point"][point]}}
    return store.Run(run.path, meta, jax.tree.map(lambda x: np.asarray(x)[idx],
                                                       run.params))


def lineage(runs: list[store.Run], param_count) -> list[dict]:
    """The chain from the direct teacher up to the original teacher (of the first run when
    several teach as an ensemble): run dir, kind, network, params and recorded mean return."""
    r = runs[0]
    ev = (r.meta.get("evaluation") or {}).get("overall") or {}
    me = {"run_dir": str(r.path.resolve()), "kind": r.meta["kind"],
          "network": r.meta["network"], "params": param_count(r.meta["network"]),
          "params_digest": r.meta.get("params_digest"), "mean_return": ev.get("mean")}
    if r.meta.get("teacher_point") is not None:
        me["point"] = r.meta["teacher_point"]
    return [me, *r.meta.get("lineage", [])]


def per_student_params(teachers: list[store.Run], seed_index: list[int] | None,
                       n_students: int) -> Any:
    """Teacher params per student with an ensemble axis: leaves [n_students, K, ...].

    seed_index None: every student gets the whole ensemble (all seeds of all runs, K = their
    count); otherwise student i gets teacher seed seed_index[i] (K = 1).
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


def labels(teachers: list[store.Run]) -> list[int]:
    """Every teacher seed, in the order of per_student_params' stacking."""
    return [s for t in teachers for s in t.meta["seeds"]]
