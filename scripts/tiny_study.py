"""The tiniest students, per env: the smallest that keeps the retention bar in every seed,
and whether a teacher assistant in between helps at that size (`make study-tiny`).

    python scripts/tiny_study.py --out results/study-tiny [--envs CartPole-v1,Acrobot-v1,...]

Per env: an 8-seed teacher on the env's defaults (or --teacher-dir ENV=RUN), then for every
(student size, collection mode) cell, 24 students (3 initialisations per teacher seed:
student i learns from teacher seed i mod 8) with Hinton KL, T = 2, at the distill defaults.
Then a 16-unit assistant per teacher seed, and students of the small sizes distilled from it.
The two levers against the initialisation lottery are columns of their own, each cell the same
24 students: collection mixed (the ablation's base), mixed with inputs scaled by the teachers'
visited states (obs_norm = teacher), and that with the best of 4 initialisations per student
kept on held-out episodes (inits = 4). They run first (`--only-levers` stops there).
Retention is normalised, (S - R) / (T - R), against the *original* teacher seed's return
(for assistant chains too) with R the random policy's on the student's episodes. A cell
passes when all 24 students reach the bar (99% CartPole, 95% otherwise). Writes
<out>/tiny.md and tiny.json; cells already done are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import _clear, _complete, bootstrap_ci, teacher_run  # noqa: E402  (cells reused the way make study does)

SIZES = {"CartPole-v1": ["linear", "2", "4", "8", "16", "32", "64,32"],
         "Acrobot-v1": ["linear", "2", "4", "8", "16", "64,32"],
         "MountainCar-v0": ["linear", "8", "16", "32", "64,32"]}
BAR = {"CartPole-v1": 0.99}
MODES = ["teacher", "student"]
ASSISTANT = {"MountainCar-v0": ("64,32", ("16", "32"))}   # env -> (assistant, via sizes)
DEFAULT_ASSISTANT = ("16", ("2", "4"))
INITS = 3
# recipe name -> (label suffix, config keys over the env's distill defaults)
LEVERS = {"mixed": ("mixed", {"collect": "mixed"}),
          "mixed, scaled": ("mixed-scaled", {"collect": "mixed", "obs_norm": "teacher"}),
          "mixed, scaled, best of 4": ("mixed-scaled-best4",
                                       {"collect": "mixed", "obs_norm": "teacher",
                                        "inits": 4})}
# MinAtar: the env's Game AI recipe (KL at tau = 0.01, mixed, 200k steps), then the levers
MINATAR_LEVERS = {"Game AI recipe": ("gameai", {"collect": "mixed"}),
                  "Game AI recipe, scaled": ("gameai-scaled",
                                             {"collect": "mixed", "obs_norm": "teacher"}),
                  "Game AI recipe, scaled, best of 4": ("gameai-scaled-best4",
                                                        {"collect": "mixed",
                                                         "obs_norm": "teacher", "inits": 4})}
# an env's own recipe for its smallest students: (name, label suffix, sizes, keys)
_MC = {"collect": "mixed", "obs_norm": "teacher", "kl_mode": "rusu", "temp": (0.01,),
       "total_steps": 200_000}
OWN = {"MountainCar-v0": [
    ("Rusu 0.01, 200k, mixed, scaled", "rusu200k-scaled", ["32"], _MC),
    ("Rusu 0.01, 200k, mixed, scaled, best of 4", "rusu200k-scaled-best4", ["32"],
     {**_MC, "inits": 4}),
    ("Rusu 0.01, 400k, mixed, scaled, best of 2 on 300 episodes", "rusu400k-scaled-best2",
     ["32"], {**_MC, "total_steps": 400_000, "inits": 2, "select_episodes": 300})]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/study-tiny")
    ap.add_argument("--envs", default="CartPole-v1,Acrobot-v1,MountainCar-v0")
    ap.add_argument("--teacher-dir", action="append", default=[], metavar="ENV=RUN")
    ap.add_argument("--minatar", action="append", default=[], metavar="GAME=RUN",
                    help="also the levers on a MinAtar game's teacher run: 16-unit students "
                    "on the Game AI recipe, 2 per teacher seed")
    ap.add_argument("--only-levers", action="store_true",
                    help="only the lever columns (mixed, scaled, best of 4)")
    args = ap.parse_args(argv)
    from distillq import _setup

    _setup.configure()
    from distillq.runs import store

    out = Path(args.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    given = dict(x.split("=", 1) for x in args.teacher_dir)
    t0 = time.perf_counter()
    results = []
    for env in args.envs.split(","):
        bar = BAR.get(env, 0.95)
        t_dir = teacher_run(runs, env, 8, given)
        teacher = store.read_meta(t_dir)
        t_seed = [r["mean"] for r in teacher["evaluation"]["per_seed"]]
        sizes = SIZES.get(env, SIZES["CartPole-v1"])
        cells = [(size, recipe, suffix, keys) for size in sizes
                 for recipe, (suffix, keys) in LEVERS.items()]
        cells += [(size, recipe, suffix, keys) for recipe, suffix, own_sizes, keys
                  in OWN.get(env, []) for size in own_sizes]
        for size, recipe, suffix, keys in cells:
            d = _cell(runs, env, f"{size}-{suffix}", t_dir, size, keys["collect"], 8 * INITS,
                      keys)
            results.append({**_score(d, env, size, keys["collect"], "teacher", bar, t_seed),
                            "recipe": recipe})
            _write(out, results, time.perf_counter() - t0, quiet=True)
        if args.only_levers:
            continue
        for size in SIZES.get(env, SIZES["CartPole-v1"]):
            for mode in MODES:
                d = _cell(runs, env, f"{size}-{mode}", t_dir, size, mode, 8 * INITS)
                results.append({**_score(d, env, size, mode, "teacher", bar, t_seed),
                                "recipe": "base"})
        assistant, via = ASSISTANT.get(env, DEFAULT_ASSISTANT)
        a_dir = _cell(runs, env, "assistant", t_dir, assistant, "teacher", 8)
        for size in via:
            d = _cell(runs, env, f"{size}-student-via{assistant.replace(',', '-')}", a_dir,
                      size, "student", 8 * INITS)
            results.append({**_score(d, env, size, "student", f"assistant {assistant}", bar,
                                     t_seed), "recipe": "base"})
    for game, run in (x.split("=", 1) for x in args.minatar):
        teacher = store.read_meta(run)
        t_seed = [r["mean"] for r in teacher["evaluation"]["per_seed"]]
        for recipe, (suffix, keys) in MINATAR_LEVERS.items():
            d = _cell(runs, game, f"16-{suffix}", Path(run), "16", "mixed",
                      2 * len(t_seed), {"temp": (0.01,), **keys})
            results.append({**_score(d, game, "16", "mixed", "teacher", 0.95, t_seed),
                            "recipe": recipe})
            _write(out, results, time.perf_counter() - t0, quiet=True)
    if args.only_levers and (out / "tiny-base.json").exists():
        # the base columns of an earlier full run (same command; its teachers were trained
        # by that time's defaults, not these runs)
        results += [{**r, "recipe": "base (earlier run)"}
                    for r in json.loads((out / "tiny-base.json").read_text())
                    if r["env"] in args.envs.split(",")]
    _write(out, results, time.perf_counter() - t0)
    return 0


def _cell(runs: Path, env: str, label: str, src: Path, size: str, mode: str, n: int,
          keys: dict | None = None) -> Path:
    """Distil n students of `size` from run `src` (reused when already complete); `keys`:
    config keys over the recipe (Hinton KL, T = 2, the env's distill defaults)."""
    from distillq import config
    from distillq.commands import distill as distill_cmd

    d = runs / f"{env}-{label}"
    if not _complete(d):
        _clear(d)
        cfg = config.load("distill", None, {"network": size, "collect": mode,
                                            "loss": ("kl",), "temp": (2.0,), **(keys or {})},
                          env=env)
        distill_cmd.run(cfg, str(src), seeds=n, out=str(d), show_progress=False)
    return d


def _score(d: Path, env: str, size: str, mode: str, via: str, bar: float,
           t_seed: list[float]) -> dict:
    """Each student's retention against the original teacher seed it descends from."""
    from distillq.runs import store

    meta = store.read_meta(d)
    rows = meta["evaluation"]["per_seed"]
    lin = meta["lineage"]
    idx = meta["teacher"]["seed_index"]
    if len(lin) > 1:   # through the assistant: its own teacher seeds
        a_meta = store.read_meta(lin[0]["run_dir"])
        idx = [a_meta["teacher"]["seed_index"][i] for i in idx]
    ret = [(r["mean"] - r["random_mean"]) / (t_seed[j] - r["random_mean"])
           for r, j in zip(rows, idx, strict=True)]
    row = {"env": env, "student": size, "collect": mode, "via": via,
           "params": meta["params_per_seed"], "students": len(ret),
           "passing": sum(r >= bar for r in ret), "retention_min": min(ret),
           "retention_mean": sum(ret) / len(ret), "retention_ci95": bootstrap_ci(ret),
           "retention": ret, "bar": bar,
           "teacher_params": lin[-1]["params"]}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _write(out: Path, rows: list[dict], wall: float, quiet: bool = False) -> None:
    (out / "tiny.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| env | student (params) | recipe | collect | taught by | students at the bar | "
             "retention min | mean [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["retention_ci95"]
        lines.append(f"| {r['env']} | {r['student']} ({r['params']}) | "
                     f"{r['recipe']} | {r['collect']} | "
                     f"{r['via']} | {r['passing']}/{r['students']} (bar {r['bar']:.0%}) | "
                     f"{r['retention_min']:.1%} | {r['retention_mean']:.1%} "
                     f"[{lo:.1%}, {hi:.1%}] |")
    lines.append(f"\n{wall / 60:.1f} min on this machine.")
    (out / "tiny.md").write_text("\n".join(lines) + "\n")
    (out / "tiny-wide.md").write_text(_wide(rows))
    if not quiet:
        print("\n".join(lines))


WIDE = [("base (earlier run)", "teacher", "teacher-driven"),
        ("base (earlier run)", "student", "student-driven"),
        ("mixed", "mixed", "mixed"), ("mixed, scaled", "mixed", "mixed, scaled"),
        ("mixed, scaled, best of 4", "mixed", "mixed, scaled, best of 4")]


def _wide(rows: list[dict]) -> str:
    """One row per (env, size) taught by the teacher, one column per recipe (README)."""
    def cell(r: dict | None) -> str:
        if r is None:
            return ""
        lo, hi = r["retention_ci95"]
        text = (f"{r['passing']}/{r['students']}, min {100 * r['retention_min']:.1f}%, "
                f"mean {100 * r['retention_mean']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]")
        return f"**{text}**" if r["passing"] == r["students"] else text

    lines = ["| env | student (params) | " + " | ".join(w[2] for w in WIDE) + " |",
             "|---|---|" + "---|" * len(WIDE)]
    keys = dict.fromkeys((r["env"], r["student"], r["params"]) for r in rows
                         if r["via"] == "teacher")
    for env, size, params in keys:
        found = {(r["recipe"], r["collect"]): r for r in rows
                 if r["env"] == env and r["student"] == size and r["via"] == "teacher"}
        cells = [cell(found.get((w[0], w[1]))) for w in WIDE]
        if any(cells):    # (MinAtar's recipes are rows of tiny.md only)
            lines.append(f"| {env} | {size} ({params:,}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
