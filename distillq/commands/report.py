"""`distillq report`: plots and a markdown table from run directories (no jax needed).

Writes into the output directory:
  learning_curves.png  in-training greedy evaluation return vs env steps per seed, one line
                       per run (mean across seeds, band = min..max across seeds)
  comparison.png       final return (mean, std across seeds) and parameter count per run,
                       with each student's retention of its teacher
  report.md            the same numbers as a table (one row per sweep point)
Runs still training are reported too (their curves so far: live monitoring); complete runs
are validated as `evaluate` validates them (params digest, teacher identity), without jax.
"""

from __future__ import annotations

import json
from pathlib import Path

from distillq import registry
from distillq.errors import DistillqError, RunDirError
from distillq.runs import store, teachers


def _label(meta: dict, run_dir: Path) -> str:
    return f"{meta['kind']} {registry.network_text(meta['network'])} ({run_dir.name})"


def collect_runs(paths: list[str]) -> list[tuple[Path, dict]]:
    """The runs given, plus the teachers of any students (each once), validated as evaluate
    validates them: a complete run's params must be the ones it saved, and a student's
    teachers the runs it was distilled from. Runs still training (or interrupted) are
    reported too: their curves so far, from metrics.jsonl."""
    out: dict[Path, dict] = {}
    for p in paths:
        meta = store.read_meta(p)
        if meta["status"] == "complete":
            store.check_digest(Path(p), meta)
        if meta["kind"] == "student":
            found = teachers.find(meta, Path(p)) or []
            t_metas = [store.read_meta(t) for t in found]
            teachers.verify(Path(p), meta, found, t_metas)
            for t, tm in zip(found, t_metas, strict=True):
                if tm["status"] == "complete":
                    store.check_digest(t, tm)
                out.setdefault(t.resolve(), tm)
        out[Path(p).resolve()] = meta
    # teachers first, then students, each in the order met
    return sorted(out.items(), key=lambda kv: kv[1]["kind"] != "teacher")


def check_out_dir(out_dir: Path) -> None:
    """A report never writes into a run dir (nor into a dir inside one)."""
    inside = store.enclosing_run(out_dir)
    if inside is not None:
        raise RunDirError(f"{out_dir} is inside the run dir {inside}; a report is written "
                          "elsewhere (runs are never modified)")


def _table_rows(run_dir: Path, meta: dict) -> list[dict]:
    """One row per run, or per sweep point of a sweep (its students grouped by point)."""
    import numpy as np

    ev = meta.get("evaluation", {})
    base = {"run": run_dir.name, "status": meta["status"], "kind": meta["kind"],
            "network": registry.network_text(meta["network"]),
            "params": meta.get("params_per_seed"),
            "env_steps_per_seed": meta.get("train", {}).get("env_steps_per_seed"),
            "wall_s": meta.get("train", {}).get("wall_s"), "seeds": len(meta["seeds"])}
    per_seed = ev.get("per_seed", [])
    groups = [(None, ev.get("overall", {}), per_seed)]
    if ev.get("per_point"):
        groups = [(p, p, [r for r in per_seed if r.get("point") == i])
                  for i, p in enumerate(ev["per_point"])]
    rows = []
    for point, ov, seeds in groups:
        per = [r["mean"] for r in seeds]
        label = base["run"]
        if point is not None:
            w = " ".join(f"{k}={v:g}" for k, v in point["weights"].items())
            label = f"{base['run']} (T={point['temp']:g} {w})"
        rows.append({**base, "run": label, "return_mean": ov.get("mean"),
                     "return_std_seeds": float(np.std(per)) if per else None,
                     "retention": ov.get("retention"), "retention_min": ov.get("retention_min"),
                     "fidelity": ov.get("fidelity")})
    return rows


def gif_links(gif_dir: Path, runs: list[tuple[Path, dict]], out_dir: Path) -> list[str]:
    """Markdown images of the GIFs `distillq render` wrote into gif_dir for these runs (each
    GIF has a .json beside it naming its run)."""
    import os

    wanted = {p.resolve() for p, _ in runs}
    lines = []
    for side in sorted(Path(gif_dir).glob("*.json")):
        try:
            info = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        gif = side.with_suffix(".gif")
        if (isinstance(info, dict) and info.get("kind") == "render" and gif.exists()
                and Path(str(info.get("run_dir", ""))).resolve() in wanted):
            rel = os.path.relpath(gif.resolve(), Path(out_dir).resolve())
            lines.append(f"![{info['env']}: {Path(info['run_dir']).name}, seed {info['seed']}, "
                         f"episode {info['episode']}]({rel})")
    return lines


def output_dir(out: Path | None) -> Path:
    """--out, checked before any work; by default a new runs/report-<date>-<id>/."""
    if out is None:
        return store.new_output_dir("report")
    store.check_writable_parent(out)
    if out.exists() and not out.is_dir():
        raise DistillqError(f"{out} exists and is not a directory")
    return out


def run(paths: list[str], out: Path | None, gif_dir: Path | None = None) -> dict:
    """The command's JSON: the files written and the runs reported."""
    result = make_report(paths, output_dir(out), gif_dir)
    result.pop("table")
    return result


def make_report(paths: list[str], out_dir: Path, gif_dir: Path | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = collect_runs(paths)
    check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run_dir, meta in runs:
        rows = [r for r in store.read_metrics(run_dir) if r.get("eval_return") is not None]
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

    table = [row for run_dir, meta in runs for row in _table_rows(run_dir, meta)]

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    names = [f"{r['kind']} {r['network']}\n{r['run']}" for r in table]
    colors = ["tab:blue" if r["kind"] == "teacher" else "tab:orange" for r in table]
    a1.bar(range(len(table)), [r["return_mean"] or 0 for r in table],
           yerr=[r["return_std_seeds"] or 0 for r in table], color=colors, capsize=3)
    for i, r in enumerate(table):
        if r["retention"] is not None:
            a1.text(i, (r["return_mean"] or 0) * 0.5, f"{100 * r['retention']:.1f}%\nretention",
                    ha="center", fontsize=7, color="white")
    a1.set_xticks(range(len(table)), names, fontsize=6, rotation=30, ha="right")
    a1.set_ylabel("final greedy return (std over seeds)")
    a2.bar(range(len(table)), [r["params"] or 0 for r in table], color=colors)
    a2.set_yscale("log")
    a2.set_ylim(bottom=1)
    a2.set_xticks(range(len(table)), names, fontsize=6, rotation=30, ha="right")
    a2.set_ylabel("parameters")
    fig.tight_layout()
    bars = out_dir / "comparison.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = ["| run | status | kind | network | params | return (mean ± std over seeds) | "
             "retention | retention min | fidelity | env steps/seed | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        ret = "-" if r["return_mean"] is None else \
            f"{r['return_mean']:.1f} ± {r['return_std_seeds']:.1f}"
        lines.append(f"| {r['run']} | {r['status']} | {r['kind']} | {r['network']} | "
                     f"{r['params']} | {ret} | "
                     f"{pct(r['retention'])} | {pct(r['retention_min'])} | "
                     f"{pct(r['fidelity'])} | {r['env_steps_per_seed']} | {r['wall_s']} |")
    if gif_dir is not None:
        gifs = gif_links(gif_dir, runs, out_dir)
        if gifs:
            lines += ["", "Rollouts (`distillq render`):", "", *gifs]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines) + "\n")
    _print(table)
    return {"kind": "report", "out_dir": str(out_dir),
            "files": [str(curves), str(bars), str(md)],
            "runs": [str(p) for p, _ in runs], "table": table}


def _print(table: list[dict]) -> None:
    from rich.table import Table

    from distillq.runs.console import console

    t = Table(title="report", title_style="bold")
    for c in ("run", "status", "kind", "network", "params", "return", "retention", "fidelity"):
        t.add_column(c, justify="right")
    for r in table:
        t.add_row(r["run"], r["status"], r["kind"], r["network"], str(r["params"]),
                  "-" if r["return_mean"] is None else f"{r['return_mean']:.1f}",
                  "-" if r["retention"] is None else f"{100 * r['retention']:.1f}%",
                  "-" if r["fidelity"] is None else f"{100 * r['fidelity']:.1f}%")
    console.print(t)
