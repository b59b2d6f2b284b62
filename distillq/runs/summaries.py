"""Evaluation summaries: the numbers in a command's JSON and in meta.json (host numpy; the
tables humans read are console.py's)."""

from __future__ import annotations

from typing import Any


def summary(returns) -> dict:
    """Mean/std/min/max of an array of episode returns (host side)."""
    import numpy as np

    r = np.asarray(returns, dtype=np.float64)
    return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
            "max": float(r.max()), "episodes": int(r.size)}


# How many standard errors the teacher's mean must clear the random policy's by before a
# normalised retention is reported (one-sided, about 2.3% false positives for normal means).
RETENTION_Z = 2.0


def gap_se(teacher_returns, random_returns) -> float:
    """Standard error of mean(T) - mean(R) from the episodes' returns (Welch: each side's
    variance over its episode count; 0 for deterministic returns)."""
    import numpy as np

    t = np.asarray(teacher_returns, dtype=np.float64).ravel()
    r = np.asarray(random_returns, dtype=np.float64).ravel()
    var = (t.var(ddof=1) / t.size if t.size > 1 else 0.0) + \
        (r.var(ddof=1) / r.size if r.size > 1 else 0.0)
    return float(np.sqrt(var))


def normalised_retention(student: float, teacher: float, random: float,
                         se: float = 0.0) -> float | None:
    """(S - R) / (T - R): 1 = the teacher's return, 0 = a uniform-random policy's, on the same
    episodes. Meaningful for negative and zero-floored returns, unlike S / T. None unless the
    teacher is distinguishably better than random: T - R > RETENTION_Z standard errors `se`
    of T - R (and > 1e-9), since a ratio over a gap within noise is noise (a teacher at 32.30
    over random's 32.25 would give retentions of +-1000s of %)."""
    gap = teacher - random
    return (student - random) / gap if _judged(gap, se) else None


def _judged(gap: float, se: float) -> bool:
    return gap > max(1e-9, RETENTION_Z * se)


def retention_why(teacher: float, random: float, se: float) -> str | None:
    """Why normalised_retention gave None (None when it did not)."""
    gap = teacher - random
    if _judged(gap, se):
        return None
    return (f"teacher not distinguishably better than random: T - R = {gap:.4g}, needs > "
            f"{RETENTION_Z:g} standard errors ({RETENTION_Z * se:.4g})")


def raw_retention(student: float, teacher: float, floor: float) -> float | None:
    """S / T, only where it means something: every return involved is >= 0 (`floor` is the
    lowest of them) and the teacher's is > 0."""
    return student / teacher if floor >= 0 and teacher > 0 else None


def episodes(returns) -> list[float]:
    """Every episode's return, in episode order (so users can compute their own statistics)."""
    import numpy as np

    return [float(x) for x in np.asarray(returns, dtype=np.float64).ravel()]


def per_seed(seeds: list[int], returns) -> list[dict]:
    return [{"seed": s, **summary(returns[i]), "returns": episodes(returns[i])}
            for i, s in enumerate(seeds)]


def teacher_evaluation(seeds: list[int], returns) -> dict:
    return {"overall": summary(returns), "per_seed": per_seed(seeds, returns)}


def student_evaluation(meta: dict, final: dict) -> dict:
    """Per student (seed and sweep point), per sweep point, and overall summaries of a
    student-vs-teacher comparison (evaluate.make_comparison's output, gathered).

    `retention` is normalised against a uniform-random policy on the same episodes,
    (S - R) / (T - R), reported only where T - R exceeds RETENTION_Z standard errors
    (`gap_se`; otherwise None and `retention_why`); `retention_raw` is S / T where returns
    cannot be negative."""
    import numpy as np

    seeds = meta["seeds"]
    points = meta.get("points") or [{}]
    point_of = meta.get("point_index") or [0] * len(seeds)
    t_seeds = meta["teacher"]["seeds"]
    s_ret, t_ret = np.asarray(final["returns"]), np.asarray(final["teacher_returns"])
    r_ret = np.asarray(final["random_returns"])
    agree, length = np.asarray(final["agree"]), np.asarray(final["lengths"])
    floor = float(min(s_ret.min(), t_ret.min(), r_ret.min()))

    def means(idx):
        return float(s_ret[idx].mean()), float(t_ret[idx].mean()), float(r_ret[idx].mean())

    def retentions(idx) -> dict:
        s, t, r = means(idx)
        se = gap_se(t_ret[idx], r_ret[idx])
        why = retention_why(t, r, se)
        return {"teacher_mean": t, "random_mean": r, "gap_se": se,
                "retention": normalised_retention(s, t, r, se),
                "retention_raw": raw_retention(s, t, floor),
                **({"retention_why": why} if why else {})}

    def fidelity(idx) -> float:
        return float(agree[idx].sum() / max(length[idx].sum(), 1))

    def block(idx: list[int]) -> dict:
        per = [retentions(i)["retention"] for i in idx]
        valid = [r for r in per if r is not None]
        return {**summary(s_ret[idx]), **retentions(idx),
                "retention_min": min(valid) if valid else None, "fidelity": fidelity(idx)}

    rows = []
    for i, s in enumerate(seeds):
        row = {"seed": s, "teacher_seed": t_seeds[i], **summary(s_ret[i]), **retentions(i),
               "fidelity": fidelity(i), "returns": episodes(s_ret[i]),
               "teacher_returns": episodes(t_ret[i]), "random_returns": episodes(r_ret[i])}
        if len(points) > 1:
            row["point"] = point_of[i]
        rows.append(row)
    out: dict[str, Any] = {"overall": block(list(range(len(seeds)))), "per_seed": rows}
    if len(points) > 1:
        out["per_point"] = [{**points[p], **block([i for i in range(len(seeds))
                                                   if point_of[i] == p])}
                            for p in range(len(points))]
    return out


def multitask_evaluation(meta: dict, finals: list[dict]) -> dict:
    """A multi-task student's evaluation: per env (in the run's env order) the usual
    student-vs-teacher blocks against that env's teacher; overall, the mean and the minimum
    over envs of each env's overall retention, and every student's worst env."""
    import numpy as np

    per_env = []
    for e, (name, final) in enumerate(zip(meta["multitask"]["envs"], finals, strict=True)):
        sub = {**meta, "teacher": {**meta["teacher"], "seeds": meta["teacher"]["seeds"][e]}}
        per_env.append({"env": name, "teacher": meta["teacher"]["runs"][e]["run_dir"],
                        "evaluation": student_evaluation(sub, final)})
    rets = [b["evaluation"]["overall"]["retention"] for b in per_env]
    valid = [r for r in rets if r is not None]
    worst = []    # per student: its lowest retention over envs
    for i in range(len(meta["seeds"])):
        vals = [b["evaluation"]["per_seed"][i]["retention"] for b in per_env]
        vals = [v for v in vals if v is not None]
        worst.append(min(vals) if vals else None)
    return {"overall": {"retention": float(np.mean(valid)) if valid else None,
                        "retention_min_env": min(valid) if valid else None,
                        "retention_worst_student": min((w for w in worst if w is not None),
                                                       default=None),
                        "envs": len(per_env)},
            "per_env": per_env, "worst_env_per_student": worst}
