"""`distillq report`: plots and a markdown table from run directories (no jax needed).

Writes into the output directory (by default a new reports/report-<date>-<id>/; an existing
one only with --force and only if it is a report; staged and moved into place complete):
  learning_curves.png  in-training greedy evaluation return vs env steps per seed, a panel
                       per env, one line per run (mean across seeds, band = min..max across
                       seeds), runs numbered as in report.md
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
from distillq.runs import outputs, store, teachers


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


REPORTS_ROOT = Path("reports")


def _is_report_dir(p: Path) -> bool:
    return (p / "report.md").is_file() and not store.has_meta(p)


def output_dir(out: Path | None, force: bool = False) -> Path:
    """--out, checked before any work (exit 2): a new dir, an empty one, or with --force a
    previous report (nothing else is replaced). By default a new reports/report-<date>-<id>
    (runs/ holds run dirs only)."""
    if out is None:
        out = store.stamped("report", REPORTS_ROOT)
    outputs.check([outputs.Target(store.printable(out), "report dir", True,
                                  _is_report_dir)], force)
    return out


def run(paths: list[str], out: Path | None, gif_dir: Path | None = None,
        force: bool = False) -> dict:
    """The command's JSON: the files written and the runs reported."""
    result = make_report(paths, output_dir(out, force), gif_dir)
    result.pop("table")
    return result


def _colours(n: int) -> list:
    """n distinguishable colours: tab10/tab20 while they last, then evenly spaced hues."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    return [matplotlib.colormaps["turbo"](0.05 + 0.9 * i / (n - 1)) for i in range(n)]


def _curves(runs: list[tuple[Path, dict]], number: dict, path: Path) -> None:
    """In-training evaluation per env (one panel each: returns of different envs are not
    comparable), distinct colours within a panel, runs numbered as in report.md, each
    panel's legend beside it (one column per 25 runs)."""
    import matplotlib.pyplot as plt
    import numpy as np

    envs = list(dict.fromkeys(m["env"] for _, m in runs))
    per_env = {e: [(p, m) for p, m in runs if m["env"] == e] for e in envs}
    cols = max(-(-len(v) // 25) for v in per_env.values())
    fig, axes = plt.subplots(len(envs), 1, figsize=(6.5 + 3.4 * cols, 3.4 * len(envs) + 0.6),
                             squeeze=False, layout="constrained")
    for ax, env in zip(axes[:, 0], envs, strict=True):
        mine = per_env[env]
        for (run_dir, meta), c in zip(mine, _colours(len(mine)), strict=True):
            rows = [r for r in store.read_metrics(run_dir) if r.get("eval_return") is not None]
            label = f"#{number[run_dir]} {_label(meta, run_dir)}"
            if not rows:
                ax.plot([], [], color=c, label=label + " (no evaluations yet)")
                continue
            steps = sorted({r["env_steps"] for r in rows})
            by = {s: [r["eval_return"] for r in rows if r["env_steps"] == s] for s in steps}
            ax.plot(steps, [np.mean(by[s]) for s in steps], color=c, lw=1.2, label=label)
            ax.fill_between(steps, [np.min(by[s]) for s in steps],
                            [np.max(by[s]) for s in steps], alpha=0.12, color=c, lw=0)
            best = [np.mean([r["best_return"] for r in rows if r["env_steps"] == s
                             and r.get("best_return") is not None] or [np.nan])
                    for s in steps]
            ax.plot(steps, best, ls="--", lw=0.8, color=c)
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("env steps per seed", fontsize=8)
        ax.set_ylabel("greedy eval return", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=6 if len(mine) > 12
                  else 7, ncol=-(-len(mine) // 25), frameon=False)
    fig.suptitle("in-training evaluation: mean over seeds (band: min..max; dashed: best so "
                 "far = the params kept)", fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(table: list[dict], path: Path) -> None:
    """Final return and parameter count per row, as horizontal bars (one line per run, so
    every label stays readable however many runs), teachers blue, students orange, each
    student's retention written beside its bar."""
    import matplotlib.pyplot as plt

    n = len(table)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.22 * n), sharey=True,
                                 layout="constrained")
    ys = list(range(n))[::-1]
    names = [f"#{r['number']} {r['kind']} {r['network']} ({r['run']})" for r in table]
    colors = ["tab:blue" if r["kind"] == "teacher" else "tab:orange" for r in table]
    a1.barh(ys, [r["return_mean"] or 0 for r in table],
            xerr=[r["return_std_seeds"] or 0 for r in table], color=colors, capsize=2)
    for y, r in zip(ys, table, strict=True):
        if r["retention"] is not None:
            a1.annotate(f" {100 * r['retention']:.1f}%", (max(r["return_mean"] or 0, 0), y),
                        va="center", fontsize=6)
    a1.set_yticks(ys, names, fontsize=6)
    a1.set_xlabel("final greedy return (std over seeds; text: retention)", fontsize=8)
    a2.barh(ys, [r["params"] or 0 for r in table], color=colors)
    a2.set_xscale("log")
    a2.set_xlabel("parameters", fontsize=8)
    for a in (a1, a2):
        a.tick_params(labelsize=6)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_report(paths: list[str], out_dir: Path, gif_dir: Path | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")

    runs = collect_runs(paths)
    number = {p: i + 1 for i, (p, _) in enumerate(runs)}
    table = [{**row, "number": number[run_dir]}
             for run_dir, meta in runs for row in _table_rows(run_dir, meta)]
    final = out_dir
    # written into a staging dir beside --out and moved into place complete: a full disk or
    # a signal leaves no half-written report (and a replaced one intact)
    # constrained layout (not tight_layout, which warned on many runs) sizes the legends
    with outputs.staging(final) as tmp:
        out_dir = tmp / "report"
        out_dir.mkdir()
        _curves(runs, number, out_dir / "learning_curves.png")
        _bars(table, out_dir / "comparison.png")
        (out_dir / "report.md").write_text(_markdown(table, runs, gif_dir, final))
        store.place(out_dir, final)
    _print(table)
    files = [final / n for n in ("learning_curves.png", "comparison.png", "report.md")]
    return {"kind": "report", "out_dir": str(final), "files": [str(f) for f in files],
            "runs": [str(p) for p, _ in runs], "table": table}


def _markdown(table: list[dict], runs: list[tuple[Path, dict]], gif_dir: Path | None,
              out_dir: Path) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = ["| # | run | status | kind | network | params | return (mean ± std over seeds) | "
             "retention | retention min | fidelity | env steps/seed | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        ret = "-" if r["return_mean"] is None else \
            f"{r['return_mean']:.1f} ± {r['return_std_seeds']:.1f}"
        lines.append(f"| {r['number']} | {r['run']} | {r['status']} | {r['kind']} | "
                     f"{r['network']} | {r['params']} | {ret} | "
                     f"{pct(r['retention'])} | {pct(r['retention_min'])} | "
                     f"{pct(r['fidelity'])} | {r['env_steps_per_seed']} | {r['wall_s']} |")
    if gif_dir is not None:
        gifs = gif_links(gif_dir, runs, out_dir)
        if gifs:
            lines += ["", "Rollouts (`distillq render`):", "", *gifs]
    return "\n".join(lines) + "\n"


def _print(table: list[dict]) -> None:
    from rich.table import Table

    from distillq.runs.console import console

    t = Table(title="report", title_style="bold")
    for c in ("#", "run", "status", "kind", "network", "params", "return", "retention", "fidelity"):
        t.add_column(c, justify="right")
    for r in table:
        t.add_row(str(r["number"]), r["run"], r["status"], r["kind"], r["network"],
                  str(r["params"]),
                  "-" if r["return_mean"] is None else f"{r['return_mean']:.1f}",
                  "-" if r["retention"] is None else f"{100 * r['retention']:.1f}%",
                  "-" if r["fidelity"] is None else f"{100 * r['fidelity']:.1f}%")
    console.print(t)
