"""What humans read: one rich console on stderr, warnings, progress bars and the tables.

stdout is kept for the command's one JSON object (pipes.py); everything here goes to stderr.
"""

from __future__ import annotations

import math

from rich.console import Console

LOG_WIDTH = 200      # stderr to a file or a pipe (CI, 2>log): wide enough for every table


def _width() -> int | None:
    """None (rich measures the terminal, or reads COLUMNS) on a terminal; LOG_WIDTH when
    stderr is a file or a pipe, where rich would otherwise cut every table to 80 columns
    ("teache…", "retenti…")."""
    import os
    import sys

    if os.environ.get("COLUMNS"):
        return None
    try:
        return None if sys.stderr.isatty() else LOG_WIDTH
    except (AttributeError, ValueError):
        return LOG_WIDTH


console = Console(stderr=True, highlight=False, width=_width())


def warn(msg: str) -> None:
    """One warning line on stderr (never wrapped: paths in it stay whole)."""
    from rich.markup import escape

    console.print(f"[yellow]warning: {escape(msg)}[/yellow]", soft_wrap=True)


def progress(unit: str, *, transient: bool = False, disable: bool = False, fields: bool = False):
    """A progress bar counting `unit` (e.g. "env steps/seed"); with `fields`, two more
    columns: speed and the latest score."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cols = [TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} " + unit)]
    if fields:
        cols += [TextColumn("{task.fields[sps]}"), TextColumn("{task.fields[ret]}"),
                 TimeElapsedColumn()]
    else:
        cols.append(TimeRemainingColumn())
    return Progress(*cols, console=console, transient=transient, disable=disable)


def fmt_values(values) -> str:
    """Per-seed values, short: each (at most 8 seeds) or min/mean/max; NaNs left out."""
    vals = [float(v) for v in values if not math.isnan(float(v))]
    if not vals:
        return "-"
    if len(vals) <= 8:
        return " ".join(f"{v:.0f}" for v in vals)
    return f"min {min(vals):.0f} mean {sum(vals) / len(vals):.0f} max {max(vals):.0f}"


def print_point_table(per_point: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="sweep points", title_style="bold")
    for c in ("temp", "weights", "mean", "retention", "retention_min", "fidelity"):
        table.add_column(c, justify="right")
    for p in per_point:
        w = " ".join(f"{k}={v:g}" for k, v in p["weights"].items())
        r, rm = p["retention"], p["retention_min"]
        table.add_row(f"{p['temp']:g}", w, f"{p['mean']:.1f}",
                      "-" if r is None else f"{100 * r:.1f}%",
                      "-" if rm is None else f"{100 * rm:.1f}%", f"{100 * p['fidelity']:.1f}%")
    console.print(table)


def print_eval_table(title: str, rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title=title, title_style="bold", show_lines=False)
    cols = ["seed", "mean", "std", "min", "max"]
    extra = [c for c in ("teacher_mean", "random_mean", "retention", "retention_original",
                         "fidelity")
             if rows and c in rows[0]]
    for c in cols + extra:
        table.add_column(c, justify="right")
    for row in rows:
        cells = [str(row["seed"])] + [f"{row[c]:.1f}" for c in cols[1:]]
        for c in extra:
            v = row[c]
            cells.append("-" if v is None else (f"{v:.1f}" if c.endswith("_mean")
                                                else f"{100 * v:.1f}%"))
        table.add_row(*cells)
    _caption_unjudged(table, rows)
    console.print(table)


def _caption_unjudged(table, blocks: list[dict]) -> None:
    """Say why a retention cell is empty (summaries.retention_why, one example)."""
    why = next((b["retention_why"] for b in blocks if b.get("retention_why")), None)
    if why:
        table.caption = f"retention -: {why} (JSON: retention_why)"


def print_shift_table(title: str, shifts: list[dict]) -> None:
    """A run's evaluation under every shift of a robustness grid."""
    from rich.table import Table

    from distillq.core.robustness import label

    student = "retention" in shifts[0]["evaluation"]["overall"]
    table = Table(title=f"{title} under shifts", title_style="bold")
    cols = ["shift", "mean", "min seed"] + (["teacher", "random", "retention",
                                             "retention_min"] if student else [])
    for c in cols:
        table.add_column(c, justify="right")
    for s in shifts:
        o = s["evaluation"]["overall"]
        cells = [label(s), f"{o['mean']:.1f}",
                 f"{min(r['mean'] for r in s['evaluation']['per_seed']):.1f}"]
        if student:
            cells += [f"{o['teacher_mean']:.1f}", f"{o['random_mean']:.1f}"] + [
                "-" if o[k] is None else f"{100 * o[k]:.1f}%"
                for k in ("retention", "retention_min")]
        table.add_row(*cells)
    _caption_unjudged(table, [s["evaluation"]["overall"] for s in shifts])
    console.print(table)
