"""Beyond same-task imitation: one command per claim, 8 seeds, 95% bootstrap CIs.

    python scripts/beyond_study.py qdagger     # does TD + distillation outgrow a weak teacher?
    python scripts/beyond_study.py multitask   # one N-param student vs N/k-param students
    python scripts/beyond_study.py privileged  # position-only CartPole with K = 1, 2, 4 frames
    python scripts/beyond_study.py robustness  # students vs teachers under env shifts, by loss
    (make study-qdagger, study-multitask, study-privileged, study-robust; all: study-beyond)

Every claim writes <out>/<claim>.md (the table the README quotes) and <claim>.json (every
per-seed value). Teachers are 8-seed runs on the env's defaults (trained here, or given with
--teacher-dir ENV=RUN); every cell distils 8 students, student i from teacher seed i.
Retention is normalised, (S - R) / (T - R), with T the student's own teacher seed and R a
uniform-random policy on the same episode keys. A 95% CI is a percentile bootstrap of the
mean over the 8 seeds (10,000 resamples). Complete cells are reused when run again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import _clear, _complete, bootstrap_ci  # noqa: E402

SEEDS = 8


def _ci(values) -> dict:
    vals = [float(v) for v in values if v is not None]
    lo, hi = bootstrap_ci(vals) if len(vals) > 1 else (float("nan"), float("nan"))
    return {"mean": sum(vals) / len(vals), "lo": lo, "hi": hi, "min": min(vals),
            "values": vals}


def _pct(c: dict) -> str:
    return f"{100 * c['mean']:.1f}% [{100 * c['lo']:.1f}, {100 * c['hi']:.1f}]"


def _num(c: dict, fmt: str = ".1f") -> str:
    return f"{c['mean']:{fmt}} [{c['lo']:{fmt}}, {c['hi']:{fmt}}]"


class Study:
    def __init__(self, out: Path, given: dict[str, str]):
        self.out, self.given = out, given
        self.runs = out / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)

    def teacher(self, env: str, steps: int | None = None, label: str = "teacher") -> Path:
        """An 8-seed teacher on the env's defaults (steps: an early-stopped one)."""
        from distillq import config
        from distillq.commands import train as train_cmd

        if steps is None and env in self.given:
            return Path(self.given[env])
        d = self.runs / f"{env}-{label}"
        if not _complete(d):
            _clear(d)
            over = {"env": env, "seeds": SEEDS}
            if steps is not None:
                over.update(total_steps=steps, stop_return=None)
            train_cmd.run(config.load("teacher", None, over, env=env), out=str(d),
                                   show_progress=False)
        return d

    def distil(self, label: str, teachers: list[Path], over: dict, env: str | None) -> dict:
        """A cell of 8 students (reused when complete); returns its meta.json."""
        from distillq import config
        from distillq.commands import distill as distill_cmd
        from distillq.runs import store

        d = self.runs / label
        if not _complete(d):
            _clear(d)
            t0 = time.perf_counter()
            cfg = config.load("distill", None, over, env=env)
            distill_cmd.run(cfg, [str(t) for t in teachers], seeds=SEEDS, out=str(d),
                             show_progress=False)
            print(f"{label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        return store.read_meta(d)

    def write(self, claim: str, lines: list[str], data: dict, wall: float) -> None:
        lines = [*lines, "", f"{SEEDS} seeds per cell; 95% CIs: percentile bootstrap of the "
                 f"mean over seeds. {wall / 60:.1f} min on this machine (cells already done "
                 "are reused, so a rerun is faster)."]
        (self.out / f"{claim}.md").write_text("\n".join(lines) + "\n")
        (self.out / f"{claim}.json").write_text(json.dumps(data, indent=1) + "\n")
        print("\n".join(lines))


def retentions(meta: dict) -> list[float | None]:
    return [r["retention"] for r in meta["evaluation"]["per_seed"]]


# --------------------------------------------------------------------------- qdagger


QD_STUDENTS = {   # label -> distill overrides (all: --collect student, 64-32, 100k steps)
    "imitation (kl)": {"loss": ("kl",)},
    "from scratch (td)": {"loss": ("td",)},
    "td + kl, lambda linear 1 -> 0": {"loss": ("td", "kl"), "lambda_schedule": "linear"},
    "td + kl, lambda qdagger": {"loss": ("td", "kl"), "lambda_schedule": "qdagger"},
}


def _steps_to(rows: list[dict], seed: int, level: float) -> int | None:
    """First env step at which the seed's in-training evaluation reached `level`."""
    for r in rows:
        if r["seed"] == seed and r.get("eval_return") is not None and r["eval_return"] >= level:
            return int(r["env_steps"])
    return None


def qdagger(st: Study, args) -> None:
    env = "CartPole-v1"
    t_dir = st.teacher(env, steps=args.weak_steps, label=f"weak{args.weak_steps}")
    t_meta = json.loads((t_dir / "meta.json").read_text())
    t_ret = [r["mean"] for r in t_meta["evaluation"]["per_seed"]]
    goal = 475.0
    cells = {}
    for label, over in QD_STUDENTS.items():
        slug = label.split(" (")[0].replace(" ", "").replace(",", "-").replace(">", "")
        meta = st.distil(f"qdagger-{slug}", [t_dir], {
            **over, "collect": "student", "total_steps": args.steps, "chunk_steps": 64},
            env)
        rows = [json.loads(x) for x in (st.runs / f"qdagger-{slug}" / "metrics.jsonl")
                .read_text().splitlines()]
        per = meta["evaluation"]["per_seed"]
        final = [r["mean"] for r in per]
        to_t = [_steps_to(rows, r["seed"], t_ret[r["teacher_seed"]]) for r in per]
        to_goal = [_steps_to(rows, r["seed"], goal) for r in per]
        cells[label] = {"final": final, "teacher": [t_ret[r["teacher_seed"]] for r in per],
                        "steps_to_teacher": to_t, "steps_to_475": to_goal,
                        "wall_s": meta["train"]["wall_s"]}
    lines = [f"Weak CartPole teacher ({args.weak_steps:,} steps, {SEEDS} seeds): return "
             + ", ".join(f"{x:.0f}" for x in t_ret) + f" (mean {sum(t_ret) / len(t_ret):.1f}).",
             f"64-32 students acting themselves (`--collect student`), {args.steps:,} env "
             "steps; final return: 100 greedy episodes per seed; env steps from the "
             "in-training evaluation (32 episodes, every 1,024 env steps).", "",
             "| student | final return, mean [95% CI] | seeds above their teacher | "
             "reached 475 (seeds) | env steps to 475, median of those | wall s |",
             "|---|---|---|---|---|---|"]
    for label, c in cells.items():
        above = sum(f > t for f, t in zip(c["final"], c["teacher"], strict=True))
        reached = sorted(s for s in c["steps_to_475"] if s is not None)
        med = f"{reached[len(reached) // 2] / 1000:.0f}k" if reached else "-"
        lines.append(f"| {label} | {_num(_ci(c['final']))} | {above}/{SEEDS} | "
                     f"{len(reached)}/{SEEDS} | {med} | {c['wall_s']:.0f} |")
    gain = [q - t for q, t in zip(cells["td + kl, lambda qdagger"]["final"],
                                  cells["td + kl, lambda qdagger"]["teacher"], strict=True)]
    lines += ["", f"QDagger student minus its teacher, per seed: {_num(_ci(gain))}."]
    st.write("qdagger", lines, {"teacher_returns": t_ret, "cells": cells}, time.perf_counter()
             - args.t0)


# --------------------------------------------------------------------------- multitask


MT_ENVS = ["CartPole-v1", "Acrobot-v1"]
MT_WIDTHS = [4, 8, 16, 32]     # one hidden layer, shared


def _single_width(env, budget: float) -> int:
    """One hidden layer of h units: |obs| h + h + h |A| + |A| params; the h closest to
    `budget`."""
    d, a = env.obs_dim, env.num_actions
    return max(1, min(range(1, 512), key=lambda h: abs(d * h + h + h * a + a - budget)))


def multitask_claim(st: Study, args) -> None:
    from distillq.core import envs, multitask, networks

    t_dirs = [st.teacher(e) for e in MT_ENVS]
    env_objs = [envs.make(e) for e in MT_ENVS]
    k = len(MT_ENVS)
    common = {"loss": ("kl",), "temp": (2.0,), "collect": args.collect}
    bar = {"CartPole-v1": 0.99, "Acrobot-v1": 0.95}
    table, data = [], []
    for h in MT_WIDTHS:
        spec = multitask.make_spec(str(h), "relu", env_objs, "none")
        n = networks.param_count(spec)
        meta = st.distil(f"mt-{h}", t_dirs, {**common, "network": str(h), "multitask": True},
                         None)
        mt = {b["env"]: [r["retention"] for r in b["evaluation"]["per_seed"]]
              for b in meta["evaluation"]["per_env"]}
        for env, t_dir in zip(env_objs, t_dirs, strict=True):
            w = _single_width(env, n / k)
            single = st.distil(f"st-{env.name}-{w}", [t_dir], {**common, "network": str(w)},
                               env.name)
            st_ret = retentions(single)
            row = {"width": h, "params": n, "env": env.name, "single_width": w,
                   "single_params": single["params_per_seed"], "multitask": _ci(mt[env.name]),
                   "single": _ci(st_ret), "bar": bar[env.name],
                   "multitask_at_bar": sum(r >= bar[env.name] for r in mt[env.name]),
                   "single_at_bar": sum(r >= bar[env.name] for r in st_ret),
                   "difference": _ci([a - b for a, b in zip(mt[env.name], st_ret,
                                                            strict=True)])}
            data.append(row)
            table.append(f"| {h} ({n}) | {env.name} | {_pct(row['multitask'])} | "
                         f"{row['multitask_at_bar']}/{SEEDS} | {w} ({row['single_params']}) | "
                         f"{_pct(row['single'])} | {row['single_at_bar']}/{SEEDS} | "
                         f"{_pct(row['difference'])} |")
    lines = [f"One multi-task student (CartPole-v1 + Acrobot-v1: shared 1-layer trunk of h "
             f"units, a head per env; N params) against one single-task student per env with "
             f"about N/{k} params (1 hidden layer). Hinton KL, T = 2, `--collect "
             f"{args.collect}`, distill defaults (40k env steps per env). Bars: 99% CartPole, "
             "95% Acrobot.", "",
             "| multi-task h (N) | env | multi-task retention [95% CI] | at the bar | "
             "single-task h (params) | single-task retention [95% CI] | at the bar | "
             "multi − single, paired [95% CI] |", "|---|---|---|---|---|---|---|---|"] + table
    st.write("multitask", lines, {"rows": data}, time.perf_counter() - args.t0)


# --------------------------------------------------------------------------- privileged


def privileged(st: Study, args) -> None:
    env = "CartPole-v1"
    t_dir = st.teacher(env)
    cells = {}
    for frames in (1, 2, 4):
        for mode in ("teacher", "student"):
            meta = st.distil(f"priv-k{frames}-{mode}", [t_dir], {
                "loss": ("kl",), "temp": (2.0,), "collect": mode,
                "student_obs": "drop=1,3", "frame_stack": frames}, env)
            cells[f"{frames}-{mode}"] = retentions(meta)
    lines = ["Position-only CartPole students (`--student-obs drop=1,3`: cart position and "
             "pole angle), 64-32, Hinton KL T = 2, 40k env steps; retention [95% CI] and its "
             "minimum over seeds.", "",
             "| frames K | student input | teacher-driven | min | student-driven | min |",
             "|---|---|---|---|---|---|"]
    for frames in (1, 2, 4):
        a, b = _ci(cells[f"{frames}-teacher"]), _ci(cells[f"{frames}-student"])
        lines.append(f"| {frames} | {2 * frames} | {_pct(a)} | {100 * a['min']:.1f}% | "
                     f"{_pct(b)} | {100 * b['min']:.1f}% |")
    st.write("privileged", lines, {"cells": cells}, time.perf_counter() - args.t0)


# --------------------------------------------------------------------------- robustness


ROBUST_STUDENTS = {"KL T=2": {"loss": ("kl",), "temp": (2.0,)}, "MSE": {"loss": ("mse",)},
                   "CE": {"loss": ("ce",)}}
LENGTHS = [0.25, 0.5, 1.0, 2.0]
NOISES = [0.0, 0.05, 0.2]


def robustness(st: Study, args) -> None:
    from distillq.commands import evaluate as evaluate_cmd
    from distillq.core import robustness as rb

    env = "CartPole-v1"
    t_dir = st.teacher(env)
    shifts = rb.grid(rb.parse_env_params([f"length={','.join(map(str, LENGTHS))}"]),
                     rb.parse_noise(",".join(map(str, NOISES))))
    students = {label: st.runs / f"robust-{label.split()[0].lower()}"
                for label in ROBUST_STUDENTS}
    for label, over in ROBUST_STUDENTS.items():
        st.distil(students[label].name, [t_dir], over, env)
    ev = evaluate_cmd.run([str(p) for p in students.values()], episodes=args.episodes,
                                shifts=shifts)
    data, lines = {}, []
    head = ("| shift | teacher return | " + " | ".join(
        f"{lab}: return | {lab}: student − teacher [95% CI]" for lab in ROBUST_STUDENTS) + " |")
    lines = [f"CartPole, the default 8-seed teacher (128-64) and 64-32 students from it "
             f"(40k env steps); {args.episodes} episodes per seed and shift, on the same keys "
             "for teacher and student. Shifts: pole length (default 0.5) × observation noise "
             "σ. Difference = student return minus its own teacher seed's, paired per seed.",
             "", head, "|---|---|" + "---|---|" * len(ROBUST_STUDENTS)]
    by_label = dict(zip(ROBUST_STUDENTS, ev["results"], strict=True))
    for i, s in enumerate(shifts):
        t_vals = None
        cells = []
        for label, res in by_label.items():
            block = res["robustness"]["shifts"][i]["evaluation"]
            rows = block["per_seed"]
            s_vals = [r["mean"] for r in rows]
            t_vals = [r["teacher_mean"] for r in rows]
            diff = _ci([a - b for a, b in zip(s_vals, t_vals, strict=True)])
            data.setdefault(label, []).append({**s, "student": s_vals, "teacher": t_vals,
                                               "retention": [r["retention"] for r in rows]})
            cells.append(f"{sum(s_vals) / len(s_vals):.0f} | {_num(diff, '.0f')}")
        name = f"length {s['env_params'].get('length', 0.5):g}, σ {s['obs_noise']:g}"
        lines.append(f"| {name} | {sum(t_vals) / len(t_vals):.0f} | " + " | ".join(cells)
                     + " |")
    st.write("robustness", lines, data, time.perf_counter() - args.t0)


CLAIMS = {"qdagger": qdagger, "multitask": multitask_claim, "privileged": privileged,
          "robustness": robustness}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("claim", choices=[*CLAIMS, "all"])
    ap.add_argument("--out", default="results/study-beyond")
    ap.add_argument("--teacher-dir", action="append", default=[], metavar="ENV=RUN",
                    help="reuse an 8-seed teacher run for ENV")
    ap.add_argument("--weak-steps", type=int, default=12_000, help="qdagger: the weak "
                    "teacher's env steps")
    ap.add_argument("--steps", type=int, default=100_000, help="qdagger: student env steps")
    ap.add_argument("--collect", default="student", help="multitask: collection mode")
    ap.add_argument("--episodes", type=int, default=100, help="robustness: per seed and shift")
    args = ap.parse_args(argv)
    from distillq import _setup

    _setup.configure()
    st = Study(Path(args.out), dict(x.split("=", 1) for x in args.teacher_dir))
    for name in CLAIMS if args.claim == "all" else [args.claim]:
        args.t0 = time.perf_counter()
        CLAIMS[name](st, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
