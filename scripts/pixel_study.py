"""Cross-modal students: a state teacher teaches a pixel student (`make study-pixels`).

    python scripts/pixel_study.py --out results/study-pixels [--envs CartPole-v1,Acrobot-v1]
        [--teacher-dir ENV=RUN ...] [--seeds 8]

Per env: the env's 8-seed teacher (trained on its defaults, or --teacher-dir), then cells of 8
pixel students each (student i learns from teacher seed i), all with the recipe below on
rendered frames (`--student-obs pixels`, a `strided` CNN), one factor varied at a time from
the base (Hinton KL at T = 2, mixed collection, K = 2 frames):
  frames     K = 1, 2, 4
  loss       kl, kl + feature (FitNets, last layers), kl + fsp (the relation between the last
             two layers of each, Yim et al. 2017)
  collect    mixed, teacher, student
  scratch    the same CNN on the same frames trained by DQN alone (the td term, collecting
             itself) for the same env steps: what the privileged teacher is worth.
Retention is normalised, (S - R) / (T - R), against the student's own teacher seed on the
same episodes; "steps to 95%" is the first in-training evaluation at >= 95% of the teacher's
final return (median over seeds; "-" where a seed never got there). Writes <out>/pixels.md
and pixels-<env>.json; cells already complete are reused (envs may run as separate
processes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import _clear, _complete, bootstrap_ci, teacher_run  # noqa: E402

BAR = 0.95
STUDENT = "strided:8,16,32"
BASE = {"student_obs": "pixels", "network": STUDENT, "loss": ("kl",), "temp": (2.0,),
        "kl_mode": "hinton", "collect": "mixed", "frame_stack": 2}
# (factor, label, keys over BASE); the base cell is "frames K = 2"
CELLS = [
    ("frames", "K = 2", {}),
    ("frames", "K = 4", {"frame_stack": 4}),
    ("collect", "student", {"collect": "student"}),
    ("scratch", "DQN from scratch (td only)", {"loss": ("td",), "collect": "student"}),
    ("frames", "K = 1", {"frame_stack": 1}),
    ("loss", "kl + fsp", {"loss": ("kl", "fsp")}),
    ("loss", "kl + feature", {"loss": ("kl", "feature")}),
    ("collect", "teacher", {"collect": "teacher"}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/study-pixels")
    ap.add_argument("--envs", default="CartPole-v1,Acrobot-v1")
    ap.add_argument("--teacher-dir", action="append", default=[], metavar="ENV=RUN")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None, help="total_steps of every cell")
    ap.add_argument("--only", default="", help="comma-separated cell labels to run")
    ap.add_argument("--rescore", action="store_true",
                    help="only score the cells already complete (no training)")
    args = ap.parse_args(argv)

    from distillq import _setup

    _setup.configure()
    out = Path(args.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    given = dict(x.split("=", 1) for x in args.teacher_dir)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    t0 = time.perf_counter()
    for env in args.envs.split(","):
        rows = []
        teacher = None if args.rescore else teacher_run(runs, env, args.seeds, given)
        for factor, label, keys in CELLS:
            if only and label not in only:
                continue
            if args.rescore and not _complete(runs / f"{env}-{factor}-{_slug(label)}"):
                continue
            over = {**BASE, **keys}
            if args.steps:
                over["total_steps"] = args.steps
            d = _cell(runs, env, factor, label, teacher, over, args.seeds)
            rows.append(_score(d, env, factor, label, over))
            (out / f"pixels-{env}.json").write_text(json.dumps(rows, indent=1) + "\n")
            _write(out)
    _write(out, quiet=False)
    print(f"{(time.perf_counter() - t0) / 60:.1f} min", file=sys.stderr)
    return 0


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cell(runs: Path, env: str, factor: str, label: str, teacher: Path, over: dict,
          n: int) -> Path:
    from distillq import config
    from distillq.commands import distill as distill_cmd

    d = runs / f"{env}-{factor}-{_slug(label)}"
    if not _complete(d):
        _clear(d)
        cfg = config.load("distill", None, over, env=env)
        distill_cmd.run(cfg, str(teacher), seeds=n, out=str(d), show_progress=False)
    return d


def steps_to(d: Path, seeds: list[int], target: dict[int, float]) -> list[int | None]:
    """Per seed: env steps of the first in-training evaluation at >= target[seed]."""
    first: dict[int, int] = {}
    for line in (d / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        s = r.get("seed")
        if s in target and s not in first and r.get("eval_return", -1e18) >= target[s]:
            first[s] = int(r["env_steps"])
    return [first.get(s) for s in seeds]


def _score(d: Path, env: str, factor: str, label: str, over: dict) -> dict:
    from distillq.runs import store

    meta = store.read_meta(d)
    per = meta["evaluation"]["per_seed"]
    ret = [r["retention"] for r in per]
    seeds = [r["seed"] for r in per]
    target = {r["seed"]: r["random_mean"] + BAR * (r["teacher_mean"] - r["random_mean"])
              for r in per}
    reached = steps_to(d, seeds, target)
    got = sorted(x for x in reached if x is not None)
    row = {"env": env, "factor": factor, "cell": label, "frames": over["frame_stack"],
           "loss": "+".join(over["loss"]), "collect": over["collect"],
           "params": meta["params_per_seed"], "students": len(ret),
           "passing": sum(r >= BAR for r in ret), "retention_min": min(ret),
           "retention_mean": sum(ret) / len(ret), "retention_ci95": bootstrap_ci(ret),
           "retention": ret, "steps_to_bar": reached,
           "steps_to_bar_median": (statistics.median(got) if len(got) == len(reached)
                                   else None),
           "env_steps": meta["config"]["total_steps"], "train_s": meta["train"]["train_s"],
           "run_dir": str(d)}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _write(out: Path, quiet: bool = True) -> None:
    """pixels.md from every env's pixels-<env>.json (envs may run in separate processes)."""
    rows = [r for f in sorted(out.glob("pixels-*.json")) for r in json.loads(f.read_text())]
    order = ["K = 1", "K = 2", "K = 4", "kl + feature", "kl + fsp", "student", "teacher",
             "DQN from scratch (td only)"]
    rows.sort(key=lambda r: (r["env"] != "CartPole-v1", r["env"],
                             order.index(r["cell"]) if r["cell"] in order else len(order)))
    lines = ["| env | varied | cell | students at 95% | retention min | mean [95% CI] | "
             "env steps to 95% (median) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["retention_ci95"]
        med = r["steps_to_bar_median"]
        reached = sum(x is not None for x in r["steps_to_bar"])
        steps = (f"{med / 1000:.0f}k" if med is not None
                 else f"- ({reached}/{r['students']} within {r['env_steps'] // 1000}k)")
        lines.append(f"| {r['env']} | {r['factor']} | {r['cell']} | "
                     f"{r['passing']}/{r['students']} | {r['retention_min']:.1%} | "
                     f"{r['retention_mean']:.1%} [{lo:.1%}, {hi:.1%}] | {steps} |")
    wall = sum(r["train_s"] or 0 for r in rows)
    lines.append(f"\nStudent: {STUDENT} on 40x60 (CartPole) / 40x40 (Acrobot) frames; "
                 f"{wall / 60:.0f} min of training on this machine.")
    (out / "pixels.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
