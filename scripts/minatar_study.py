"""Game AI on MinAtar: what distillation buys, one command per question (`make study-minatar`
runs them all; README "Game AI").

    python scripts/minatar_study.py frontier    # smallest student at >= 95% in every seed
    python scripts/minatar_study.py time        # distillation time against the teacher's
    python scripts/minatar_study.py robust      # teacher vs students under sticky actions
    python scripts/minatar_study.py grid        # loss x collection mode at 3 student sizes
    python scripts/minatar_study.py qdagger     # a weak teacher -> td + kl student
    python scripts/minatar_study.py multitask   # one student for two games, channels padded

Teachers are each game's default teacher, 4 seeds (`distillq train-teacher --env GAME --seeds
4`; trained here, or given with --teacher-dir GAME=RUN). Every cell distils 8 students: 2
initialisations per teacher seed (student i learns from teacher seed i mod 4). Retention is
normalised, (S - R) / (T - R), with T the student's own teacher seed and R a uniform-random
policy on the same 100 episodes. A 95% CI is a percentile bootstrap of the mean over the 8
students (10,000 resamples). Cells already complete are reused when run again. Writes
<out>/<question>.md (the table the README quotes) and <question>.json (every value).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import beyond_study  # noqa: E402
from beyond_study import _ci, _num, _pct, retentions  # noqa: E402
from study import _clear, _complete  # noqa: E402

GAMES = ("Breakout-MinAtar", "SpaceInvaders-MinAtar", "Freeway-MinAtar", "Asterix-MinAtar")
TEACHER_SEEDS = 4
SEEDS = 8                      # 2 initialisations x 4 teacher seeds
BAR = 0.95
LADDER = ("32", "24", "16", "8", "4", "linear")     # MLP hidden sizes, then no hidden layer
LADDERS = {   # where a game's students pass or fail elsewhere (measured: frontier.md)
    "Freeway-MinAtar": ("32", "16", "8", "4", "linear"),      # 16 units already pass
    "Asterix-MinAtar": ("128", "64", "32"),       # 32 units keep 48-87%: none smaller
}
CNN_LADDER = ("cnn:4,8", "cnn:2,8")     # CNN students (slow on a CPU: --cnn-games only)
# the students' recipe (README "Game AI"): KL to the teacher's sharpened policy (Rusu et al.'s
# tau = 0.01; on Breakout a 16-unit student agreed with its teacher on 94-96% of the states
# against 79-86% with Hinton's T = 2), the teacher's policy mixed with the student's while
# states are collected, 200k env steps per student
RECIPE = {"loss": ("kl",), "kl_mode": "rusu", "temp": (0.01,), "collect": "mixed",
          "total_steps": 200_000}


class Study(beyond_study.Study):
    """beyond_study's cells (8 students each, reused when complete), with 4-seed teachers
    and this study's own table footer."""

    def teacher(self, env: str, over: dict | None = None, label: str = "teacher") -> Path:
        from distillq import config
        from distillq.commands import train as train_cmd

        if over is None and env in self.given:
            return Path(self.given[env])
        d = self.runs / f"{env}-{label}"
        if not _complete(d):
            _clear(d)
            t0 = time.perf_counter()
            cfg = config.load("teacher", None, {"env": env, "seeds": TEACHER_SEEDS,
                                                **(over or {})}, env=env)
            train_cmd.run(cfg, out=str(d), show_progress=False)
            print(f"{d.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        return d

    def write(self, name: str, lines: list[str], data: dict, wall: float) -> None:
        lines = [*lines, "", f"{wall / 60:.1f} min on this machine for this table (cells "
                 "already done are reused, so a rerun is faster)."]
        (self.out / f"{name}.md").write_text("\n".join(lines) + "\n")
        (self.out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print("\n".join(lines))


def _meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def _slug(network: str) -> str:
    return network.replace(",", "-").replace(":", "")


def c_latency(run: Path, out: Path) -> dict:
    """Batch-1 decision latency of seed 0's network as compiled C (`distillq export --format c
    --bench`), in microseconds."""
    exe = str(ROOT / ".venv" / "bin" / "distillq")
    d = out / "exports" / run.name
    res = subprocess.run([exe, "export", str(run), "--format", "c", "--bench", "--states", "2000",
                          "--out", str(d), "--force"], capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout)


# --------------------------------------------------------------------------- frontier


def frontier_cells(st: Study, env: str, t_dir: Path, ladder=LADDER) -> list[dict]:
    rows = []
    t_meta = _meta(t_dir)
    t_params = t_meta["params_per_seed"]
    for net in ladder:
        meta = st.distil(f"{env}-{_slug(net)}", [t_dir], {**RECIPE, "network": net}, env)
        ret = retentions(meta)
        rows.append({"env": env, "network": net, "params": meta["params_per_seed"],
                     "share": meta["params_per_seed"] / t_params, "retention": _ci(ret),
                     "min": min(ret), "passes": min(ret) >= BAR,
                     "returns": [r["mean"] for r in meta["evaluation"]["per_seed"]],
                     "train_s": meta["train"]["train_s"], "wall_s": meta["train"]["wall_s"],
                     "run": str(st.runs / f"{env}-{_slug(net)}")})
    return rows


def frontier(st: Study, args) -> None:
    data, lines = {}, []
    table = ["| game | teacher (params) | student | params (share) | retention [95% CI] | "
             "min over 8 | ≥ 95% in every seed |", "|---|---|---|---|---|---|---|"]
    summary = ["| game | smallest student ≥ 95% in every seed | params, share of the "
               "teacher's | C latency, batch 1: student / teacher (µs) |", "|---|---|---|---|"]
    for env in args.games:
        t_dir = st.teacher(env)
        t_meta = _meta(t_dir)
        rows = frontier_cells(st, env, t_dir, LADDERS.get(env, LADDER)
                              + (CNN_LADDER if env in args.cnn_games else ()))
        data[env] = {"teacher": {"network": t_meta["network"],
                                 "params": t_meta["params_per_seed"],
                                 "returns": [r["mean"] for r in
                                             t_meta["evaluation"]["per_seed"]],
                                 "run": str(t_dir)}, "students": rows}
        for r in rows:
            table.append(f"| {env} | {_net_text(t_meta['network'])} "
                         f"({t_meta['params_per_seed']:,}) | "
                         f"{r['network']} | {r['params']:,} ({100 * r['share']:.1f}%) | "
                         f"{_pct(r['retention'])} | {100 * r['min']:.1f}% | "
                         f"{'yes' if r['passes'] else 'no'} |")
        passing = [r for r in rows if r["passes"]]
        if passing:
            best = min(passing, key=lambda r: r["params"])
            lat_s = c_latency(Path(best["run"]), st.out)
            lat_t = c_latency(t_dir, st.out)
            best["c_latency"], data[env]["teacher"]["c_latency"] = lat_s, lat_t
            us_s, us_t = _c_us(lat_s), _c_us(lat_t)
            summary.append(f"| {env} | {best['network']} | {best['params']:,} "
                           f"({100 * best['share']:.1f}%) | {us_s:.2f} / {us_t:.2f} "
                           f"({us_t / us_s:.1f}× faster) |")
        else:
            summary.append(f"| {env} | none of {', '.join(r['network'] for r in rows)} | - "
                           "| - |")
    lines = ["Students of each game's default 4-seed teacher: KL to the teacher's policy at "
             "tau = 0.01 (Rusu), mixed "
             "collection, 200k env steps, 8 students per size (2 initialisations per teacher "
             "seed). Retention over 100 greedy episodes per student.", "", *summary, "",
             *table]
    st.write("frontier", lines, data, time.perf_counter() - args.t0)
    plot_frontier(data, st.out / "frontier.png")


def _net_text(spec: dict) -> str:
    from distillq import registry

    return registry.network_text(spec)


def _c_us(lat: dict) -> float:
    return float(lat["latency_us"]["c"])


def plot_frontier(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for env, d in data.items():
        rows = sorted(d["students"], key=lambda r: r["params"])
        x = [100 * r["share"] for r in rows]
        m = [100 * r["retention"]["mean"] for r in rows]
        lo = [100 * (r["retention"]["mean"] - r["retention"]["lo"]) for r in rows]
        hi = [100 * (r["retention"]["hi"] - r["retention"]["mean"]) for r in rows]
        ax.errorbar(x, m, yerr=[lo, hi], marker="o", capsize=3, label=env.split("-")[0])
        ax.scatter(x, [100 * r["min"] for r in rows], marker="v", s=14, alpha=0.5)
    ax.axhline(100 * BAR, color="grey", ls="--", lw=1)
    ax.axvline(5, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("student parameters, % of the teacher's (log)")
    ax.set_ylabel("normalised retention, % (mean, 95% CI; ▼ worst seed)")
    ax.set_ylim(0, 125)
    ax.legend(fontsize=8)
    ax.set_title("MinAtar: retention vs student size (8 students per point)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------- robust


STICKY = (0.0, 0.1, 0.25)
ROBUST_NETS = ("64", "32", "24", "16")     # the frontier's students around each game's bar


def robust(st: Study, args) -> None:
    """Teacher and the frontier's students under sticky actions (the original MinAtar's
    default is 0.1): returns, and retention against the teacher seed under the same shift."""
    from distillq.commands import evaluate as evaluate_cmd
    from distillq.core import robustness as rb

    shifts = rb.grid({"sticky": list(STICKY)}, [0.0])
    data, lines = {}, []
    head = ["| game | student (params) | " + " | ".join(
        f"p = {p:g}: return, retention [95% CI]" for p in STICKY) + " |",
        "|---|---|" + "---|" * len(STICKY)]
    for env in args.games:
        t_dir = st.teacher(env)
        nets = [n for n in ROBUST_NETS if _complete(st.runs / f"{env}-{_slug(n)}")]
        runs = [st.runs / f"{env}-{_slug(n)}" for n in nets]
        ev = evaluate_cmd.run([str(t_dir), *map(str, runs)], episodes=args.episodes,
                              shifts=shifts)["results"]
        t_res, s_res = ev[0], ev[1:]
        t_rows = [[r["mean"] for r in blk["evaluation"]["per_seed"]]
                  for blk in t_res["robustness"]["shifts"]]
        data[env] = {"teacher": t_rows, "students": {}}
        lines.append(f"| {env} | teacher ({t_res['params']:,}) | "
                     + " | ".join(f"{_num(_ci(v))}" for v in t_rows) + " |")
        for net, res in zip(nets, s_res, strict=True):
            cells, rows = [], []
            for blk in res["robustness"]["shifts"]:
                per = blk["evaluation"]["per_seed"]
                ret = [r["mean"] for r in per]
                keep = [r["retention"] for r in per]
                rows.append({"returns": ret, "retention": keep,
                             "teacher": [r["teacher_mean"] for r in per]})
                cells.append(f"{sum(ret) / len(ret):.1f}, {_pct(_ci(keep))}")
            data[env]["students"][net] = rows
            lines.append(f"| {env} | {net} ({res['params']:,}) | " + " | ".join(cells) + " |")
    text = [f"Sticky actions: with probability p the game repeats the previous action "
            f"(`distillq evaluate RUNS --env-param sticky={','.join(f'{p:g}' for p in STICKY)}`"
            f"). Teachers: return per seed's mean [95% CI over the 4 seeds]; students: mean "
            f"return over 8 students, then normalised retention against their teacher seed "
            f"under the same p [95% CI]. {args.episodes} episodes per seed and p.", "",
            *head, *lines]
    st.write("robust", text, data, time.perf_counter() - args.t0)


# --------------------------------------------------------------------------- time


FAST = {**RECIPE, "num_envs": 64, "updates_per_step": 8, "buffer_size": 100_000,
        "total_steps": 600_000, "chunk_steps": 32, "stop_retention": BAR}


def _cli(args: list[str]) -> tuple[dict, float]:
    exe = str(ROOT / ".venv" / "bin" / "distillq")
    t0 = time.perf_counter()
    res = subprocess.run([exe, *args, "-q"], capture_output=True, text=True, check=True)
    return json.loads(res.stdout), time.perf_counter() - t0


def distill_time(st: Study, args) -> None:
    """A student at >= 95% retention, timed against its teacher: each game's default teacher
    (stopped at its target) and a strong one (`--budget long`), whole process and training
    alone; the student stops once every seed's in-training evaluation reaches 95%."""
    rows, lines = [], []
    for env in args.time_games:
        for kind in ("default", "long"):
            if kind == "default":
                t_dir = st.teacher(env)
                t_whole = json.loads((ROOT / "results" / "teachers" / f"{env}.json")
                                     .read_text())["wall_s"] if env in st.given else None
            else:
                t_dir = st.runs / f"{env}-long"
                if not _complete(t_dir):
                    _clear(t_dir)
                    _, t_whole = _cli(["train-teacher", "--env", env, "--seeds",
                                       str(TEACHER_SEEDS), "--budget", "long",
                                       "--out", str(t_dir)])
                    (t_dir / "whole_process_s").write_text(f"{t_whole:.1f}\n")
                t_whole = float((t_dir / "whole_process_s").read_text())
            t_meta = _meta(t_dir)
            for net in args.time_students:
                d = st.runs / f"time-{env}-{kind}-{_slug(net)}"
                _clear(d)
                sets = [x for k, v in FAST.items() if k not in ("loss", "temp", "collect",
                                                                 "total_steps")
                        for x in ("--set", f"{k}={v}")]
                _, s_whole = _cli(["distill", "--teacher", str(t_dir), "--student", net,
                                   "--loss", "kl", "--temp", "0.01", "--collect", "mixed",
                                   "--steps", str(FAST["total_steps"]), "--out", str(d),
                                   *sets])
                s_meta = _meta(d)
                ret = retentions(s_meta)
                row = {"env": env, "teacher": kind, "teacher_returns": [
                    r["mean"] for r in t_meta["evaluation"]["per_seed"]],
                    "teacher_whole_s": t_whole, "teacher_train_s": t_meta["train"]["train_s"],
                    "student": net, "retention": ret, "student_whole_s": s_whole,
                    "student_train_s": s_meta["train"]["train_s"],
                    "env_steps": s_meta["train"]["env_steps_per_seed"],
                    "stopped": s_meta["train"]["stopped_early"]}
                rows.append(row)
                whole = (f"{s_whole:.0f} / {t_whole:.0f} = {100 * s_whole / t_whole:.0f}%"
                         if t_whole else f"{s_whole:.0f} / -")
                lines.append(
                    f"| {env} | {kind} ({', '.join(f'{x:.0f}' for x in row['teacher_returns'])})"
                    f" | {net} | {', '.join(f'{100 * x:.0f}' for x in ret)} | "
                    f"{row['env_steps'] / 1000:.0f}k{' (stopped)' if row['stopped'] else ''} | "
                    f"{whole} | {row['student_train_s']:.0f} / {row['teacher_train_s']:.0f} = "
                    f"{100 * row['student_train_s'] / row['teacher_train_s']:.0f}% |")
    text = ["Students of 4-seed teachers, one per teacher seed, timed through the CLI alone on "
            "the machine: KL at tau = 0.01, mixed collection, 64 envs, 8 updates per step, "
            f"stopping once every seed's in-training evaluation keeps {100 * BAR:.0f}% "
            f"(at most {FAST['total_steps'] // 1000}k env steps); retention over 100 episodes "
            "per seed. Teacher times: the same CLI, `train-teacher --env GAME --seeds 4` "
            "(default: stops at the target) or with `--budget long` (the whole 10M steps).",
            "", "| game | teacher (returns) | student | retention per seed, % | env steps | "
            "whole process s: student / teacher | training s: student / teacher |",
            "|---|---|---|---|---|---|---|", *lines]
    st.write("time", text, {"rows": rows}, time.perf_counter() - args.t0)


# --------------------------------------------------------------------------- qdagger


QD_STUDENTS = {   # label -> distill overrides (all: --collect student, 64-64 MLP)
    "imitation (kl)": {"loss": ("kl",), "temp": (2.0,)},
    "from scratch (td)": {"loss": ("td",)},
    "td + kl, lambda qdagger": {"loss": ("td", "kl"), "temp": (2.0,),
                                "lambda_schedule": "qdagger"},
}


def _steps_to(rows: list[dict], seed: int, level: float) -> int | None:
    for r in rows:
        if r["seed"] == seed and r.get("eval_return") is not None and r["eval_return"] >= level:
            return int(r["env_steps"])
    return None


def qdagger(st: Study, args) -> None:
    env = args.qd_game
    weak = st.teacher(env, {"total_steps": args.weak_steps, "stop_return": None}, "weak")
    t_meta = _meta(weak)
    t_ret = [r["mean"] for r in t_meta["evaluation"]["per_seed"]]
    cells = {}
    for label, over in QD_STUDENTS.items():
        slug = "qd-" + label.split(" (")[0].replace(" ", "").replace(",", "-")
        meta = st.distil(slug, [weak], {**over, "collect": "student", "network": "64,64",
                                        "total_steps": args.qd_steps}, env)
        rows = [json.loads(x) for x in (st.runs / slug / "metrics.jsonl").read_text()
                .splitlines()]
        per = meta["evaluation"]["per_seed"]
        final = [r["mean"] for r in per]
        teach = [t_ret[r["teacher_seed"]] for r in per]
        cells[label] = {"final": final, "teacher": teach, "wall_s": meta["train"]["wall_s"],
                        "steps_to_teacher": [_steps_to(rows, r["seed"], t)
                                             for r, t in zip(per, teach, strict=True)]}
    lines = [f"A weak {env} teacher ({args.weak_steps:,} env steps, 10% of its budget; 4 "
             "seeds): return " + ", ".join(f"{x:.1f}" for x in t_ret) + ". 64-64 students "
             f"acting themselves (`--collect student`), {args.qd_steps:,} env steps, 8 "
             "students (2 per teacher seed); env steps to the teacher's return from the "
             "in-training evaluation (32 episodes per chunk).", "",
             "| student | final return [95% CI] | above its teacher seed | reached the "
             "teacher's return (students) | env steps to it, median of those | wall s |",
             "|---|---|---|---|---|---|"]
    for label, c in cells.items():
        above = sum(f > t for f, t in zip(c["final"], c["teacher"], strict=True))
        got = sorted(s for s in c["steps_to_teacher"] if s is not None)
        med = f"{got[len(got) // 2] / 1000:.0f}k" if got else "-"
        lines.append(f"| {label} | {_num(_ci(c['final']))} | {above}/{SEEDS} | "
                     f"{len(got)}/{SEEDS} | {med} | {c['wall_s']:.0f} |")
    qd = cells["td + kl, lambda qdagger"]
    gain = [q - t for q, t in zip(qd["final"], qd["teacher"], strict=True)]
    lines += ["", f"QDagger student minus its teacher seed: {_num(_ci(gain))}."]
    st.write("qdagger", lines, {"teacher_returns": t_ret, "cells": cells},
             time.perf_counter() - args.t0)


# --------------------------------------------------------------------------- multitask


MT_GAMES = ("Breakout-MinAtar", "SpaceInvaders-MinAtar")


def _single_width(env, budget: float) -> int:
    d, a = env.obs_dim, env.num_actions
    return max(1, min(range(1, 1024), key=lambda h: abs(d * h + h + h * a + a - budget)))


def multitask(st: Study, args) -> None:
    from distillq.core import envs, networks
    from distillq.core import multitask as mt_core

    t_dirs = [st.teacher(e) for e in MT_GAMES]
    games = [envs.make(e) for e in MT_GAMES]
    k = len(games)
    rows, table = [], []
    for h in args.mt_widths:
        spec = mt_core.make_spec(str(h), "relu", games, "none")
        n = networks.param_count(spec)
        meta = st.distil(f"mt-{h}", t_dirs, {**RECIPE, "network": str(h), "multitask": True},
                         None)
        mt = {b["env"]: [r["retention"] for r in b["evaluation"]["per_seed"]]
              for b in meta["evaluation"]["per_env"]}
        for game, t_dir in zip(games, t_dirs, strict=True):
            w = _single_width(game, n / k)
            single = st.distil(f"{game.name}-{w}", [t_dir], {**RECIPE, "network": str(w)},
                               game.name)
            s_ret = retentions(single)
            row = {"width": h, "params": n, "env": game.name, "single_width": w,
                   "single_params": single["params_per_seed"], "multitask": _ci(mt[game.name]),
                   "single": _ci(s_ret), "multitask_min": min(mt[game.name]),
                   "single_min": min(s_ret),
                   "difference": _ci([a - b for a, b in zip(mt[game.name], s_ret,
                                                            strict=True)])}
            rows.append(row)
            table.append(f"| {h} ({n:,}) | {game.name} | {_pct(row['multitask'])} | "
                         f"{100 * row['multitask_min']:.0f}% | {w} ({row['single_params']:,})"
                         f" | {_pct(row['single'])} | {100 * row['single_min']:.0f}% | "
                         f"{_pct(row['difference'])} |")
    lines = [f"One student for {' and '.join(MT_GAMES)} (frames padded to 6 channels, a shared "
             "1-layer trunk of h units, one head per game; N params) against one single-task "
             f"student per game with about N/{k} params, all with the students' recipe (KL "
             "at tau = 0.01, mixed collection, 200k env steps per game), 8 students each.", "",
             "| multi-task h (N) | game | multi-task retention [95% CI] | min | single-task h "
             "(params) | single-task retention [95% CI] | min | multi − single, paired [95% "
             "CI] |", "|---|---|---|---|---|---|---|---|", *table]
    st.write("multitask", lines, {"rows": rows}, time.perf_counter() - args.t0)


# --------------------------------------------------------------------------- grid


GRID_SIZES = ("16", "8")     # where the recipe starts to fail (frontier)
GRID_SIZES_BY_GAME = {"SpaceInvaders-MinAtar": ("16",)}     # the second game: one size
GRID_LOSSES = {   # label -> overrides, all with mixed collection
    "mse": {"loss": ("mse",)},
    "ce": {"loss": ("ce",)},
    "kl rusu tau=0.01": {"loss": ("kl",), "kl_mode": "rusu", "temp": (0.01,)},
    "kl hinton T=2": {"loss": ("kl",), "kl_mode": "hinton", "temp": (2.0,)},
    "kl+feature": {"loss": ("kl", "feature=0.5"), "temp": (2.0,)},
    "kl+rkd": {"loss": ("kl", "rkd_distance=1", "rkd_angle=2"), "temp": (2.0,)},
}
GRID_MODES = ("teacher", "student", "dataset")     # with the recipe's KL (mixed: in the losses)


def grid(st: Study, args) -> None:
    cells, lines = [], []
    steps = args.grid_steps
    for env in args.grid_games:
        t_dir = st.teacher(env)
        for net in GRID_SIZES_BY_GAME.get(env, GRID_SIZES):
            plan = [(lab, "mixed", over) for lab, over in GRID_LOSSES.items()]
            plan += [("kl rusu tau=0.01", m, GRID_LOSSES["kl rusu tau=0.01"])
                     for m in GRID_MODES]
            for lab, mode, over in plan:
                o = {**over, "network": net, "collect": mode, "total_steps": steps}
                if mode == "dataset":    # the same gradient updates as the online modes
                    o.update(dataset_steps=steps // 2, buffer_size=steps // 2,
                             total_steps=steps // 2 + steps - 1024)
                slug = f"grid-{env}-{_slug(net)}-{lab.split()[0]}-{lab.split()[-1]}-{mode}"
                meta = st.distil(slug.replace("=", ""), [t_dir], o, env)
                ret = retentions(meta)
                cells.append({"env": env, "network": net, "params": meta["params_per_seed"],
                              "loss": lab, "collect": mode, "retention": _ci(ret),
                              "min": min(ret)})
                lines.append(f"| {env} | {net} ({meta['params_per_seed']:,}) | {lab} | {mode} "
                             f"| {_pct(_ci(ret))} | {100 * min(ret):.0f}% |")
    text = [f"Each game's default 4-seed teacher, 8 students per cell, {steps // 1000}k env "
            "steps; every loss with mixed collection, then KL at tau = 0.01 with each other "
            "collection mode (dataset: half the steps collected by the teacher once, then the "
            "same number of updates as online).", "",
            "| game | student (params) | loss | collection | retention [95% CI] | min |",
            "|---|---|---|---|---|---|", *lines]
    st.write("grid", text, {"cells": cells}, time.perf_counter() - args.t0)


QUESTIONS = {"frontier": frontier, "robust": robust, "qdagger": qdagger,
             "multitask": multitask, "grid": grid, "time": distill_time}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("question", choices=[*QUESTIONS, "all"])
    ap.add_argument("--out", default="results/study-minatar")
    ap.add_argument("--games", default=",".join(GAMES))
    ap.add_argument("--teacher-dir", action="append", default=[], metavar="GAME=RUN",
                    help="reuse a 4-seed teacher run for GAME")
    ap.add_argument("--cnn-games", default="Breakout-MinAtar", help="frontier: games that "
                    "also get CNN students")
    ap.add_argument("--episodes", type=int, default=100, help="robust: per seed and p")
    ap.add_argument("--weak-steps", type=int, default=1_000_000, help="qdagger: the weak "
                    "teacher's env steps (10%% of its 10M budget)")
    ap.add_argument("--qd-steps", type=int, default=500_000, help="qdagger: student env steps")
    ap.add_argument("--qd-game", default="Breakout-MinAtar")
    ap.add_argument("--mt-widths", default="32,64", help="multitask: shared trunk widths")
    ap.add_argument("--grid-games", default="Breakout-MinAtar,SpaceInvaders-MinAtar")
    ap.add_argument("--grid-steps", type=int, default=100_000)
    ap.add_argument("--time-students", default="32", help="time: student networks")
    ap.add_argument("--time-games", default="Breakout-MinAtar", help="time: games (each "
                    "trains a strong teacher, 6-15 min)")
    args = ap.parse_args(argv)
    args.games = args.games.split(",")
    args.grid_games = args.grid_games.split(",")
    args.cnn_games = args.cnn_games.split(",")
    args.time_games = args.time_games.split(",")
    args.mt_widths = [int(x) for x in args.mt_widths.split(",")]
    args.time_students = args.time_students.split(",")
    from distillq import _setup

    _setup.configure()
    st = Study(Path(args.out), dict(x.split("=", 1) for x in args.teacher_dir))
    for name in QUESTIONS if args.question == "all" else [args.question]:
        args.t0 = time.perf_counter()
        QUESTIONS[name](st, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
