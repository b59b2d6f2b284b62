"""`distillq report`: plots and a markdown table from run directories (no jax needed).

Writes into the output directory:
  learning_curves.png  in-training greedy evaluation return vs env steps per seed, one line
                       per run (mean across seeds, band = min..max across seeds)
  comparison.png       final return (mean, std across seeds) and parameter count per run,
                       with each student's retention of its teacher
  report.md            the same numbers as a table
"""

from __future__ import annotations

import json
from pathlib import Path

from distillq import checkpoint, registry


def _rows(run_dir: Path) -> list[dict]:
    p = run_dir / checkpoint.METRICS
    if not p.exists():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _label(meta: dict, run_dir: Path) -> str:
    return f"{meta['kind']} {registry.network_text(meta['network'])} ({run_dir.name})"


def collect_runs(paths: list[str]) -> list[tuple[Path, dict]]:
    """Complete runs given, plus the teachers of any students (each once, in order)."""
    out: dict[Path, dict] = {}
    for p in paths:
        meta = checkpoint.read_meta(p)
        if meta["status"] != "complete":
            raise checkpoint.RunDirError(f"run {p} is not complete (status: {meta['status']})")
        if meta["kind"] == "student":
            for t in checkpoint.find_teachers(meta, Path(p)) or []:
                out.setdefault(t.resolve(), checkpoint.read_meta(t))
        out[Path(p).resolve()] = meta
    # teachers first, then students, each in the order met
    return sorted(out.items(), key=lambda kv: kv[1]["kind"] != "teacher")


def make_report(paths: list[str], out_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = collect_runs(paths)
    out_dir.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run_dir, meta in runs:
        rows = [r for r in _rows(run_dir) if r.get("eval_return") is not None]
        if not rows:
            continue
        steps = sorted({r["env_steps"] for r in rows})
        by = {s: [r["eval_return"] for r in rows if r["env_steps"] == s] for s in steps}
        mean = np.array([np.mean(by[s]) for s in steps])
        lo = np.array([np.min(by[s]) for s in steps])
        hi = np.array([np.max(by[s]) for s in steps])
        line, = ax.plot(steps, mean, label=_label(meta, run_dir))
        ax.fill_between(steps, lo, hi, alpha=0.15, color=line.get_color())
        best = [np.mean([r["best_return"] for r in rows if r["env_steps"] == s
                         and r.get("best_return") is not None] or [np.nan]) for s in steps]
        ax.plot(steps, best, ls="--", lw=1, color=line.get_color())
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("greedy eval return (mean, min..max over seeds)")
    ax.set_title("in-training evaluation (dashed: best so far = the params kept)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    curves = out_dir / "learning_curves.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    table = []
    for run_dir, meta in runs:
        ev = meta.get("evaluation", {})
        ov = ev.get("overall", {})
        per = [p["mean"] for p in ev.get("per_seed", [])]
        table.append({
            "run": run_dir.name, "kind": meta["kind"],
            "network": registry.network_text(meta["network"]),
            "params": meta.get("params_per_seed"),
            "return_mean": ov.get("mean"), "return_std_seeds": float(np.std(per)) if per else None,
            "retention": ov.get("retention"), "retention_min": ov.get("retention_min"),
            "fidelity": ov.get("fidelity"),
            "env_steps_per_seed": meta.get("train", {}).get("env_steps_per_seed"),
            "wall_s": meta.get("train", {}).get("wall_s"), "seeds": len(meta["seeds"]),
        })

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [f"{r['kind']}\n{r['network']}\n{r['run'][-12:]}" for r in table]
    colors = ["tab:blue" if r["kind"] == "teacher" else "tab:orange" for r in table]
    a1.bar(range(len(table)), [r["return_mean"] or 0 for r in table],
           yerr=[r["return_std_seeds"] or 0 for r in table], color=colors, capsize=3)
    for i, r in enumerate(table):
        if r["retention"] is not None:
            a1.text(i, (r["return_mean"] or 0) * 0.5, f"{100 * r['retention']:.1f}%\nretention",
                    ha="center", fontsize=7, color="white")
    a1.set_xticks(range(len(table)), names, fontsize=7)
    a1.set_ylabel("final greedy return (std over seeds)")
    a2.bar(range(len(table)), [r["params"] or 0 for r in table], color=colors)
    a2.set_yscale("log")
    a2.set_ylim(bottom=1)
    a2.set_xticks(range(len(table)), names, fontsize=7)
    a2.set_ylabel("parameters")
    fig.tight_layout()
    bars = out_dir / "comparison.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = ["| run | kind | network | params | return (mean ± std over seeds) | retention | "
             "retention min | fidelity | env steps/seed | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        ret = "-" if r["return_mean"] is None else \
            f"{r['return_mean']:.1f} ± {r['return_std_seeds']:.1f}"
        lines.append(f"| {r['run']} | {r['kind']} | {r['network']} | {r['params']} | {ret} | "
                     f"{pct(r['retention'])} | {pct(r['retention_min'])} | "
                     f"{pct(r['fidelity'])} | {r['env_steps_per_seed']} | {r['wall_s']} |")
    md = out_dir / "report.md"
    md.write_text("\n".join(lines) + "\n")
    _print(table)
    return {"kind": "report", "out_dir": str(out_dir),
            "files": [str(curves), str(bars), str(md)],
            "runs": [str(p) for p, _ in runs], "table": table}


def _print(table: list[dict]) -> None:
    from rich.table import Table

    from distillq.runner import console

    t = Table(title="report", title_style="bold")
    for c in ("run", "kind", "network", "params", "return", "retention", "fidelity"):
        t.add_column(c, justify="right")
    for r in table:
        t.add_row(r["run"], r["kind"], r["network"], str(r["params"]),
                  "-" if r["return_mean"] is None else f"{r['return_mean']:.1f}",
                  "-" if r["retention"] is None else f"{100 * r['retention']:.1f}%",
                  "-" if r["fidelity"] is None else f"{100 * r['fidelity']:.1f}%")
    console.print(t)
