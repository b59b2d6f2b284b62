"""Teachers at their targets (`make teachers`): every env's default teacher, `--seeds 4` and
nothing else, through the real CLI; per env: whole-process wall time, when each seed's
in-training evaluation first reached the target, and the final greedy evaluation (100
episodes per seed) of the params kept.

    python scripts/teachers_study.py --out results/teachers [--envs Breakout-MinAtar,...]
        [--seeds 4] [--extra "--algo dqn"]

Writes <out>/<env>.json (the CLI's JSON plus the figures below), <out>/<env>.png (every
seed's in-training evaluation against env steps) and <out>/README.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Breakout-MinAtar", "Asterix-MinAtar",
        "SpaceInvaders-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar")


def first_crossing(rows: list[dict], target: float, seeds: list[int]) -> dict:
    """Per seed: env steps and training seconds (from each chunk's speed) at which the
    in-training evaluation first reached the target (None: never)."""
    n = len(seeds)
    out = {s: None for s in seeds}
    elapsed, prev = 0.0, 0
    for chunk in sorted({r["chunk"] for r in rows}):
        these = [r for r in rows if r["chunk"] == chunk]
        steps = these[0]["env_steps"]
        elapsed += (steps - prev) * n / max(these[0]["steps_per_s"], 1e-9)
        prev = steps
        for r in these:
            if out[r["seed"]] is None and (r.get("eval_return") or -1e18) >= target:
                out[r["seed"]] = {"env_steps": steps, "train_s": round(elapsed, 1)}
    return out


def plot(rows: list[dict], env: str, target: float | None, path: Path) -> None:
    """The in-training evaluation of every seed against env steps (the curve behind a row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for seed in sorted({r["seed"] for r in rows}):
        pts = [(r["env_steps"], r["eval_return"]) for r in rows
               if r["seed"] == seed and r.get("eval_return") is not None]
        ax.plot([x for x, _ in pts], [y for _, y in pts], lw=1.2, label=f"seed {seed}")
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:g}")
    ax.set(xlabel="env steps per seed", ylabel="greedy return (in-training evaluation)",
           title=env)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def study(env: str, out: Path, seeds: int, extra: list[str]) -> dict:
    from distillq import config
    from distillq.runs import store

    run = out / "runs" / env
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "distillq", "train-teacher", "--env", env,
                        "--seeds", str(seeds), "--out", str(run), "--force", "-q", *extra],
                       capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{env}: {p.stderr[-2000:]}")
    res = json.loads(p.stdout)
    target = config.env_target(env)
    rows = store.read_metrics(run)
    per_seed = [r["mean"] for r in res["evaluation"]["per_seed"]]
    fig = {"env": env, "algo": res["algo"], "network": res["network"], "target": target,
           "wall_s": round(wall, 1), "train_s": res["train_s"],
           "env_steps_per_seed": res["env_steps_per_seed"],
           "stopped_early": res["stopped_early"], "final_per_seed": per_seed,
           "final_min": min(per_seed), "final_mean": res["evaluation"]["overall"]["mean"],
           "every_seed_at_target": None if target is None else min(per_seed) >= target,
           "first_at_target": (None if target is None else
                               first_crossing(rows, target, res["seeds"])),
           "command": "distillq train-teacher --env " + env + f" --seeds {seeds}"
           + (" " + " ".join(extra) if extra else "")}
    (out / f"{env}.json").write_text(json.dumps({**fig, "cli": res}, indent=1) + "\n")
    plot(rows, env, target, out / f"{env}.png")
    print(f"{env}: {fig['final_per_seed']} (target {target}), {wall:.0f} s", file=sys.stderr,
          flush=True)
    return fig


def table(figs: list[dict]) -> str:
    lines = ["| env | algo | network | target | final greedy return per seed (100 episodes) | "
             "every seed | first in-training eval at target, per seed (s of training) | "
             "env steps/seed | wall s |", "|---|---|---|---|---|---|---|---|---|"]
    from distillq import registry

    for f in figs:
        firsts = f["first_at_target"] or {}
        when = ", ".join("-" if v is None else f"{v['train_s']:.0f}" for v in firsts.values())
        every = f["every_seed_at_target"]
        every = "-" if every is None else "yes" if every else "no"
        lines.append(f"| {f['env']} | {f['algo']} | {registry.network_text(f['network'])} | "
                     f"{f['target']} | {', '.join(f'{x:.1f}' for x in f['final_per_seed'])} | "
                     f"{every} | {when or '-'} | {f['env_steps_per_seed']:,} | "
                     f"{f['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "teachers")
    ap.add_argument("--envs", default=",".join(ENVS))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--extra", default="", help="more train-teacher options for every env")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    figs = [study(e, args.out, args.seeds, shlex.split(args.extra))
            for e in args.envs.split(",")]
    done = {f["env"]: f for f in figs}
    for p in sorted(args.out.glob("*.json")):      # earlier envs of the same study stay
        f = json.loads(p.read_text())
        done.setdefault(f["env"], f)
    ordered = [done[e] for e in ENVS if e in done]
    (args.out / "README.md").write_text(
        "# Teachers at their targets\n\nEach row: `distillq train-teacher --env ENV --seeds "
        f"{args.seeds}` (the env's defaults, nothing else), on a 2-core CPU; written by "
        "`scripts/teachers_study.py`.\n\n" + table(ordered) + "\n")
    print(table(ordered))


if __name__ == "__main__":
    main()
