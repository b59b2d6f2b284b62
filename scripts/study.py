"""The distillation study: retention and fidelity vs student size, per loss and collection mode.

    make study                              # or: python scripts/study.py [--out results/study]
    python scripts/study.py --seeds 8 --teacher runs/<teacher>   # reuse a teacher run

Trains (or reuses) an 8-seed default teacher, then distils every (student size, loss,
collection mode) cell with 8 students each (student i <- teacher seed i) and writes
study.md (table), study.csv and study.png into --out. Retention = student return / teacher
return on the same episode keys (100 greedy episodes per seed); the 95% CI is a percentile
bootstrap over seeds. Finished cells are reused when the study is run again.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

SIZES = [(64, 32), (32,), (16,), (8,), (4,)]
LOSSES = {  # label -> config overrides
    "mse": {"loss": ("mse",)},
    "ce (NLL)": {"loss": ("ce",)},
    "kl rusu tau=0.01": {"loss": ("kl",), "kl_mode": "rusu", "temp": (0.01,)},
    "kl hinton T=2": {"loss": ("kl",), "kl_mode": "hinton", "temp": (2.0,)},
    "kl+feature": {"loss": ("kl", "feature=0.5"), "temp": (2.0,)},
    "kl+rkd": {"loss": ("kl", "rkd_distance=1", "rkd_angle=2"), "temp": (2.0,)},
}
MODES = ["teacher", "student", "mixed", "dataset"]


def bootstrap_ci(values, n: int = 10_000, seed: int = 0) -> tuple[float, float]:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def cell_config(base, size, loss_over, mode):
    from distillq import config

    over = dict(config.to_dict(base))
    over.update(loss_over)
    over["network"] = ",".join(map(str, size))
    over["collect"] = mode
    if mode == "dataset":  # same number of gradient updates as the online modes
        over["total_steps"] = base.dataset_steps + base.total_steps - base.learning_starts
    return config.build(config.DistillConfig, over)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/study")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--teacher", default=None, help="reuse this teacher run")
    ap.add_argument("--sizes", default=None, help="e.g. '64,32;16;8'")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--losses", default=None, help="comma-separated labels (default: all)")
    ap.add_argument("--steps", type=int, default=None, help="distill total_steps override")
    args = ap.parse_args(argv)

    from distillq import config
    from distillq.commands import distill as distill_cmd
    from distillq.commands import train as train_cmd
    from distillq.core import networks

    out = Path(args.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if args.teacher:
        teacher_dir = Path(args.teacher)
    else:
        teacher_dir = runs / f"teacher-{args.seeds}seeds"
        if not _complete(teacher_dir):
            tcfg = config.load("teacher", None, {"seeds": args.seeds})
            _clear(teacher_dir)
            train_cmd.run(tcfg, out=str(teacher_dir), show_progress=False)
    t_meta = json.loads((teacher_dir / "meta.json").read_text())
    t_params = networks.param_count(t_meta["network"])
    t_returns = [p["mean"] for p in t_meta["evaluation"]["per_seed"]]
    print(f"teacher {teacher_dir}: {t_params} params, returns {t_returns}", file=sys.stderr)

    sizes = SIZES if not args.sizes else [tuple(int(x) for x in s.split(","))
                                          for s in args.sizes.split(";")]
    losses = LOSSES if not args.losses else {k: LOSSES[k] for k in args.losses.split(",")}
    modes = args.modes.split(",")
    base_over = {} if args.steps is None else {"total_steps": args.steps}
    base = config.load("distill", None, base_over)
    rows = []
    for mode in modes:
        for label, loss_over in losses.items():
            for size in sizes:
                cfg = cell_config(base, size, loss_over, mode)
                tag = label.split()[0] + ("-" + label.split()[1] if " " in label else "")
                name = f"{mode}-{tag}-{'x'.join(map(str, size))}"
                run_dir = runs / name.replace(" ", "_").replace("=", "")
                if not _complete(run_dir):
                    _clear(run_dir)
                    t0 = time.perf_counter()
                    distill_cmd.run(cfg, [str(teacher_dir)], out=str(run_dir),
                                     show_progress=False)
                    print(f"{name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
                meta = json.loads((run_dir / "meta.json").read_text())
                per = meta["evaluation"]["per_seed"]
                ret = [p["retention"] for p in per]
                lo, hi = bootstrap_ci(ret)
                s_params = networks.param_count(meta["network"])
                rows.append({
                    "mode": mode, "loss": label, "student": "-".join(map(str, size)),
                    "params": s_params, "param_pct": round(100 * s_params / t_params, 2),
                    "retention_mean": round(sum(ret) / len(ret), 4),
                    "ci_low": round(lo, 4), "ci_high": round(hi, 4),
                    "retention_min": round(min(ret), 4),
                    "fidelity": round(meta["evaluation"]["overall"]["fidelity"], 4),
                    "return_mean": round(meta["evaluation"]["overall"]["mean"], 2),
                    "seeds": len(per), "run_dir": str(run_dir),
                })
    _write(out, rows, t_meta, t_params, time.perf_counter() - t_start)
    return 0


def teacher_run(runs: Path, env: str, seeds: int, given: dict[str, str]) -> Path:
    """The env's teacher of a study: the run given as --teacher-dir ENV=RUN (it must be
    complete), else <runs>/<env>-teacher, trained on the env's defaults when not complete."""
    if env in given:
        d = Path(given[env])
        if not _complete(d):
            raise SystemExit(f"--teacher-dir {env}={d}: not a complete run")
        return d
    d = runs / f"{env}-teacher"
    if not _complete(d):
        from distillq import config
        from distillq.commands import train

        _clear(d)
        train.run(config.load("teacher", None, {"env": env, "seeds": seeds}, env=env),
                  out=str(d), show_progress=False)
    return d


def _complete(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "meta.json").read_text())["status"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def _clear(run_dir: Path) -> None:
    import shutil

    if run_dir.exists():
        shutil.rmtree(run_dir)


def _write(out: Path, rows: list[dict], t_meta: dict, t_params: int, wall: float) -> None:
    from distillq import registry

    with open(out / "study.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [f"Teacher: MLP {registry.network_text(t_meta['network'])} ({t_params} "
             f"params), {len(t_meta['seeds'])} seeds, greedy return "
             f"{t_meta['evaluation']['overall']['mean']:.1f}. Study wall time {wall / 60:.1f} min.",
             "",
             "| collect | loss | student | params (% of teacher) | retention mean [95% CI] | "
             "retention min | fidelity |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['loss']} | {r['student']} | {r['params']} "
                     f"({r['param_pct']}%) | {100 * r['retention_mean']:.1f}% "
                     f"[{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}] | "
                     f"{100 * r['retention_min']:.1f}% | {100 * r['fidelity']:.1f}% |")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    _plot(out, rows)
    print("\n".join(lines))


def _plot(out: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["mode"] for r in rows))
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    fig, axes = plt.subplots(2, len(modes), figsize=(4.2 * len(modes), 7), squeeze=False,
                             sharex=True)
    for j, mode in enumerate(modes):
        for loss in losses:
            rs = sorted((r for r in rows if r["mode"] == mode and r["loss"] == loss),
                        key=lambda r: r["params"])
            x = [r["params"] for r in rs]
            y = [100 * r["retention_mean"] for r in rs]
            lo = [100 * r["ci_low"] for r in rs]
            hi = [100 * r["ci_high"] for r in rs]
            line, = axes[0, j].plot(x, y, marker="o", label=loss)
            axes[0, j].fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
            axes[1, j].plot(x, [100 * r["fidelity"] for r in rs], marker="o", label=loss)
        axes[0, j].set_title(f"collect: {mode}")
        axes[0, j].set_xscale("log")
        axes[1, j].set_xlabel("student parameters")
        axes[0, j].axhline(99, color="grey", lw=0.8, ls="--")
    axes[0, 0].set_ylabel("return retention % (95% CI)")
    axes[1, 0].set_ylabel("fidelity %")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "study.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
