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
from beyond_study import _ci, _pct, retentions  # noqa: E402
from study import _clear, _complete  # noqa: E402

GAMES = ("Breakout-MinAtar", "SpaceInvaders-MinAtar", "Freeway-MinAtar", "Asterix-MinAtar")
TEACHER_SEEDS = 4
SEEDS = 8                      # 2 initialisations x 4 teacher seeds
BAR = 0.95
LADDER = ("64", "32", "16", "8", "4", "linear")     # MLP hidden sizes, then no hidden layer
# the students' recipe (README "Game AI"): Hinton KL at T = 2, the teacher's policy mixed
# with the student's while states are collected, 200k env steps per student
RECIPE = {"loss": ("kl",), "temp": (2.0,), "collect": "mixed", "total_steps": 200_000}


class Study:
    def __init__(self, out: Path, given: dict[str, str]):
        self.out, self.given = out, given
        self.runs = out / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)

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

    def distil(self, label: str, teachers: list[Path], over: dict, env: str | None,
               seeds: int = SEEDS) -> dict:
        """A cell of `seeds` students (reused when complete); its meta.json."""
        from distillq import config
        from distillq.commands import distill as distill_cmd
        from distillq.runs import store

        d = self.runs / label
        if not _complete(d):
            _clear(d)
            t0 = time.perf_counter()
            cfg = config.load("distill", None, over, env=env)
            distill_cmd.run(cfg, [str(t) for t in teachers], seeds=seeds, out=str(d),
                            show_progress=False)
            print(f"{label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        return store.read_meta(d)

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
        rows = frontier_cells(st, env, t_dir)
        data[env] = {"teacher": {"network": t_meta["network"],
                                 "params": t_meta["params_per_seed"],
                                 "returns": [r["mean"] for r in
                                             t_meta["evaluation"]["per_seed"]],
                                 "run": str(t_dir)}, "students": rows}
        for r in rows:
            table.append(f"| {env} | {t_meta['network']} ({t_meta['params_per_seed']:,}) | "
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
            summary.append(f"| {env} | none of {', '.join(LADDER)} | - | - |")
    lines = ["Students of each game's default 4-seed teacher: Hinton KL at T = 2, mixed "
             "collection, 200k env steps, 8 students per size (2 initialisations per teacher "
             "seed). Retention over 100 greedy episodes per student.", "", *summary, "",
             *table]
    st.write("frontier", lines, data, time.perf_counter() - args.t0)
    plot_frontier(data, st.out / "frontier.png")


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


QUESTIONS = {"frontier": frontier}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("question", choices=[*QUESTIONS, "all"])
    ap.add_argument("--out", default="results/study-minatar")
    ap.add_argument("--games", default=",".join(GAMES))
    ap.add_argument("--teacher-dir", action="append", default=[], metavar="GAME=RUN",
                    help="reuse a 4-seed teacher run for GAME")
    args = ap.parse_args(argv)
    args.games = args.games.split(",")
    from distillq import _setup

    _setup.configure()
    st = Study(Path(args.out), dict(x.split("=", 1) for x in args.teacher_dir))
    for name in QUESTIONS if args.question == "all" else [args.question]:
        args.t0 = time.perf_counter()
        QUESTIONS[name](st, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
