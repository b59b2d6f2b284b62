"""Host side: runs jitted chunks, shows progress, writes metrics and checkpoints, handles signals.

The host never reaches into a chunk; it only sees the state and the per-chunk metrics the
chunk returns (one value per seed), between large jitted calls.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from rich.console import Console

console = Console(stderr=True, highlight=False)


def warn(msg: str) -> None:
    """One warning line on stderr (never wrapped: paths in it stay whole)."""
    from rich.markup import escape

    console.print(f"[yellow]warning: {escape(msg)}[/yellow]", soft_wrap=True)


class StopFlag:
    """Set by SIGINT/SIGTERM inside the chunk loop: the loop finishes the running chunk,
    then stops cleanly (a checkpoint, exit 130 with the resume command)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def set(self, signum: int) -> None:
        # the chunk in flight cannot be cut short; a repeated signal waits for the same
        # checkpoint (kill -9 abandons the run; --resume then uses the last periodic one)
        again = self.signum is not None
        self.signum = signum
        console.print(f"[yellow]{signal.Signals(signum).name}: "
                      f"{'still ' if again else ''}finishing the current chunk, then writing a "
                      "checkpoint...[/yellow]")


@contextmanager
def catch_signals():
    from distillq import signals

    with signals.deferred(StopFlag()) as flag:
        yield flag


def _fmt_returns(values) -> str:
    vals = [float(v) for v in values if not math.isnan(float(v))]
    if not vals:
        return "-"
    if len(vals) <= 8:
        return " ".join(f"{v:.0f}" for v in vals)
    return f"min {min(vals):.0f} mean {sum(vals) / len(vals):.0f} max {max(vals):.0f}"


def compile_chunk(chunk: Callable, state: Any, args: tuple, t0: int):
    """Compile the jitted chunk (interruptible: signals.blocking). Returns (compiled, s)."""
    import jax.numpy as jnp

    from distillq import signals

    t = time.perf_counter()
    compiled = signals.blocking(lambda: chunk.lower(state, *args, jnp.int32(t0)).compile())
    return compiled, time.perf_counter() - t


def run_chunks(
    *,
    compiled: Callable,           # compiled chunk: (state, *args, t0) -> (state, metrics[seed])
    compile_s: float,
    state: Any,
    args: tuple,
    t0: int,
    total_iterations: int,
    chunk_steps: int,
    num_envs: int,
    seeds: list[int],
    desc: str,
    stop: Callable[[dict], bool] | None = None,
    on_chunk: Callable[[int, int, dict, float], None] | None = None,
    checkpoint: Callable[[Any, int, int], None] | None = None,
    checkpoint_secs: float = 0.0,
    chunk0: int = 0,
    flag: StopFlag | None = None,
    show_progress: bool = True,
    gather: Callable[[Any], Any] | None = None,
    agree: Callable[[tuple[bool, ...]], tuple[bool, ...]] | None = None,
) -> dict:
    """Run chunks from iteration t0 until total_iterations (rounded up to whole chunks).

    `checkpoint(state, t, chunks_done)` is called every `checkpoint_secs` seconds (between
    chunks, on a finite state only). Returns {"state", "t", "chunks", "compile_s", "train_s",
    "stopped_early", "interrupted", "metrics"}; `metrics` holds the last chunk's host metrics.
    Raises DivergedError on NaN/Inf (the state of that chunk is never checkpointed).
    Multi-process runs pass `gather` (local per-seed metrics -> all seeds) and `agree`
    (per-process booleans -> their OR), so every process takes the same decisions.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from distillq.errors import DivergedError

    n_chunks = max(0, math.ceil((total_iterations - t0) / chunk_steps))
    t = t0
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.completed:,.0f}/{task.total:,.0f} env steps/seed"),
                        TextColumn("{task.fields[sps]}"), TextColumn("{task.fields[ret]}"),
                        TimeElapsedColumn(), console=console, transient=False,
                        disable=not show_progress)
    last: dict = {}
    stopped_early = interrupted = False
    t_train = t_saved = time.perf_counter()
    done = chunk0
    with progress:
        task = progress.add_task(desc, total=total_iterations * num_envs,
                                 completed=t0 * num_envs, sps="", ret="")
        for c in range(chunk0, chunk0 + n_chunks):
            t_chunk = time.perf_counter()
            state, metrics = compiled(state, *args, jnp.int32(t))
            metrics = gather(metrics) if gather is not None else jax.device_get(metrics)
            dt = time.perf_counter() - t_chunk
            ran = min(chunk_steps, total_iterations - t)      # a last chunk may be partial
            t += ran
            done = c + 1
            last = {k: np.asarray(v) for k, v in metrics.items()}
            sps = ran * num_envs * len(seeds) / max(dt, 1e-9)
            if on_chunk is not None:
                on_chunk(c, t, last, sps)
            if "eval_retention" in last:   # a multi-task student: mean retention over envs
                ret = f"retention {_fmt_returns(100 * last['eval_retention'])}%"
            else:
                ret = f"return {_fmt_returns(last.get('eval_return', last.get('train_return')))}"
            progress.update(task, completed=min(t, total_iterations) * num_envs,
                            sps=f"{sps:,.0f} steps/s", ret=ret)
            if "finite" in last and not bool(np.all(last["finite"])):
                bad = [s for s, ok in zip(seeds, last["finite"], strict=False) if not ok]
                raise DivergedError(f"loss or params became NaN/Inf by env step "
                                    f"{t * num_envs:,} (seeds {bad})")
            due = (checkpoint is not None and checkpoint_secs > 0
                   and time.perf_counter() - t_saved >= checkpoint_secs)
            signalled, due = agree((bool(flag), due)) if agree is not None else (bool(flag), due)
            if stop is not None and stop(last):
                stopped_early = True
                break
            if signalled:
                interrupted = True
                break
            if due:
                checkpoint(state, t, done)
                t_saved = time.perf_counter()
    train_s = time.perf_counter() - t_train
    return {"state": state, "t": t, "chunks": done, "compile_s": compile_s, "train_s": train_s,
            "stopped_early": stopped_early, "interrupted": interrupted, "metrics": last}


def seed_rows(c: int, t: int, num_envs: int, seeds: list[int], metrics: dict,
              sps: float) -> list[dict]:
    """metrics.jsonl rows: one per seed for chunk c."""
    rows = []
    for i, s in enumerate(seeds):
        row = {"chunk": c, "seed": s, "env_steps": t * num_envs}
        for k, v in metrics.items():
            if k == "finite":
                continue
            x = float(v[i])
            row[k] = x if math.isfinite(x) else None
        row["steps_per_s"] = round(sps, 1)
        rows.append(row)
    return rows
