"""The life of a training run, written once for every command that trains (`run(plan)`):

    create the run dir (meta.json at once), or reopen an interrupted one for --resume
    guard                 meta.json records how the run ended, whatever happens:
                          running -> complete | interrupted | diverged | failed
    init                  every member's state, jit(vmap(system.init)) over its seed's key
    begin                 config.toml written; on --resume the full state restored (and
                          the TensorBoard files rebuilt from the metrics.jsonl rows kept)
    chunks                the compiled chunk (loop.make_chunk) until the budget: progress,
                          metrics.jsonl (and its TensorBoard event files), periodic
                          full-state checkpoints, SIGINT/SIGTERM (finish the chunk,
                          checkpoint, exit 130), the NaN check and the early stop (every
                          member's best score at its threshold)
    final evaluation      system.final on the kept params, on the seeds' evaluation keys
    complete              params saved, meta.json complete with the evaluation and figures
                          (the final evaluation in the TensorBoard files too)

A command only states its `Plan`: the System, who the members are, what they learn from
(ctx), what meta.json starts with, how the final outputs are summarised.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from distillq import config
from distillq.errors import ConfigError, DivergedError, Interrupted
from distillq.runs import calls, parallel, signals, store, tensorboard
from distillq.runs.console import console, fmt_values, progress


class _NoLock:
    def release(self) -> None:
        pass


class RunFiles:
    """A run directory as seen by one process: process 0 writes, other processes only take
    part in the collectives (gathers) that feed process 0. `dir` is None on workers.
    Process 0 mirrors metrics.jsonl in TensorBoard event files (`board`)."""

    def __init__(self, run_dir: Path | None, meta: dict, lock=None):
        self.dir = run_dir
        self.name = None if run_dir is None else str(run_dir)   # workers learn it from rank 0
        self.meta = meta
        self.lock = lock or _NoLock()
        self.board = None if run_dir is None else tensorboard.Board(run_dir)

    @property
    def main(self) -> bool:
        return self.dir is not None

    def write_meta(self) -> None:
        if self.main:
            store.write_meta(self.dir, self.meta)

    def finish(self, status: str, **extra) -> None:
        self.meta.update(status=status, **extra)
        self.write_meta()
        if self.main:
            self.board.finish(self.meta)
        self.lock.release()

    def save_state(self, state, host: dict) -> None:
        if parallel.process_count() > 1:
            state = parallel.gather(state)   # a collective: every process calls it
        if self.main:
            store.save_state(self.dir, state, host)

    def append_metrics(self, rows: list[dict]) -> None:
        if self.main:
            store.append_metrics(self.dir, rows)
            self.board.append(self.meta, rows)


class Plan(NamedTuple):
    """What a training command asks of the lifecycle."""

    kind: str                       # "teacher" | "student": the run dir's kind
    cfg: Any                        # the frozen config (TeacherConfig | DistillConfig)
    system: Any                     # loop.System
    seeds: list[int]                # every member of the vmapped axis, all processes
    ctx: Any                        # per-member inputs, leading axis = members (None: none)
    meta: Callable[[Path | None], dict]    # a new run's meta.json, given its dir
    summarise: Callable[[dict, Any], dict]  # (meta, final outputs, all members) -> evaluation
    n_params: int                   # parameters per member's network
    stop_at: Callable[[Any, list[int]], Any] | None = None
    # (local ctx, local seeds) -> per-member thresholds: stop once every member's best score
    # reaches its own; None: never stop early
    inits: int = 1                  # initialisations per seed (members: inits x seeds); the
    # one whose system.select episodes score best is kept (choose())


class Result(NamedTuple):
    """A finished run, as the command that planned it reports it."""

    files: RunFiles
    seeds: list[int]                # this process's members
    evaluation: dict
    stats: dict                     # the figures meta.json keeps under "train"

    def summary(self, kind: str, **fields) -> dict:
        """The command's JSON: process 0's summary, or a worker's short note."""
        if not self.files.main:
            import jax

            return {"kind": f"{kind}-worker", "run_dir": self.files.name,
                    "process_id": jax.process_index(),
                    "num_processes": parallel.process_count(), "seeds": self.seeds}
        return {"run_dir": str(self.files.dir), "kind": kind, **fields,
                "evaluation": self.evaluation, **self.stats}


def command_of(kind: str) -> str:
    return "train-teacher" if kind == "teacher" else "distill"


def resume_cmd(kind: str, run_dir: Path | str | None) -> str:
    return f"distillq {command_of(kind)} --resume {run_dir}"


# --------------------------------------------------------------------------- opening


def create(kind: str, out: str | None, force: bool, meta: Callable[[Path | None], dict]
           ) -> RunFiles:
    """A fresh run dir: process 0 creates and locks it and writes meta.json at once (a dir
    distillq made always says what it is); every process learns its name."""
    if parallel.is_main():
        run_dir, lock = store.new_run_dir(kind, out, force)
        files = RunFiles(run_dir, meta(run_dir), lock)
        try:
            files.write_meta()
        except BaseException:
            lock.release()
            raise
        parallel.broadcast_text(str(run_dir))
        return files
    files = RunFiles(None, meta(None))
    files.name = parallel.broadcast_text("")
    return files


def reopen(kind: str, run_dir: str, prepare: Callable[[dict, Any], Any]):
    """Lock an interrupted run for --resume and rebuild its saved config. `prepare(meta, cfg)`
    builds what the command needs (teachers); the lock is released if it fails.
    Returns (files, cfg, prepared)."""
    if parallel.process_count() > 1:
        raise ConfigError("--resume runs on a single process")
    path, meta, lock = store.open_for_resume(run_dir, kind)
    try:
        cfg = config.from_dict("teacher" if kind == "teacher" else "distill", meta["config"])
        prepared = prepare(meta, cfg)
    except BaseException:
        lock.release()
        raise
    return RunFiles(path, meta, lock), cfg, prepared


@contextmanager
def guard(files: RunFiles, kind: str) -> Iterator[None]:
    """Record how a run ended in meta.json, whatever happens. A signal outside the chunk
    loop (set-up, compilation, evaluation) marks the run interrupted too: resumable when it
    holds a full-state checkpoint, otherwise replaceable with --force."""
    def on_signal(_signum: int) -> str:
        files.finish("interrupted")
        if not files.main:
            return ""
        if store.has_state(files.dir):
            return f"resume with: {resume_cmd(kind, files.dir)}"
        return (f"{files.dir} is marked interrupted with nothing to resume: remove it, or "
                "reuse it with --force")

    with signals.cleanup(on_signal):
        try:
            yield
        except Interrupted:
            files.finish("interrupted")
            raise
        except DivergedError as e:
            files.finish("diverged", error=str(e))
            raise
        except KeyboardInterrupt:
            files.finish("interrupted")
            raise
        except BaseException as e:
            files.finish("failed", error=f"{type(e).__name__}: {e}")
            raise


class Start(NamedTuple):
    t0: int             # iterations already done
    chunk0: int         # chunks already done
    prior_train_s: float


def begin(files: RunFiles, cfg, state, resuming: bool, n_local: int) -> tuple[Any, Start]:
    """Fresh run: write config.toml. Resume: restore the full state into `state`'s structure,
    drop metrics rows written after it and rebuild the TensorBoard files from the rest."""
    start = Start(0, 0, 0.0)
    if resuming:
        state, host = store.restore_state(files.dir, state)
        start = Start(int(host["t"]), int(host["chunk"]), float(host["train_s"]))
        store.truncate_metrics(files.dir, start.chunk0)
        files.meta["status"] = "running"
        files.board.rebuild(files.meta)
    elif files.main:
        store.write_config(files.dir, config.to_toml(cfg))
    files.meta["state_format"] = store.STATE_FORMAT
    files.meta["devices"] = parallel.devices_used(n_local)
    files.meta["processes"] = parallel.process_count()
    files.write_meta()
    return state, start


# --------------------------------------------------------------------------- the chunks


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


class Fitted(NamedTuple):
    state: Any
    t: int                  # iterations done
    chunks: int             # chunks done (all sessions)
    chunks_run: int         # chunks run by this session
    compile_s: float
    train_s: float          # all sessions
    stopped_early: bool


def seed_rows(c: int, t: int, steps_per_iteration: int, seeds: list[int], figures: dict,
              sps: float, inits: list[int] | None = None) -> list[dict]:
    """metrics.jsonl rows: one per member for chunk c (non-finite figures as null); with
    several initialisations per seed, each row names its member's `init`."""
    rows = []
    for i, s in enumerate(seeds):
        row = {"chunk": c, "seed": s, "env_steps": t * steps_per_iteration}
        if inits is not None:
            row["init"] = inits[i]
        for k, v in figures.items():
            x = float(v[i])
            row[k] = x if math.isfinite(x) else None
        row["steps_per_s"] = round(sps, 1)
        rows.append(row)
    return rows


def fit(plan: Plan, files: RunFiles, state, ctx, start: Start, thresholds,
        show_progress: bool) -> Fitted:
    """Compile the chunk, then run chunks from start.t0 until the budget (whole chunks).

    Every `checkpoint_secs` (between chunks, finite states only) the full state is saved.
    On SIGINT/SIGTERM: finish the chunk, save, raise Interrupted (exit 130). On NaN/Inf:
    raise DivergedError naming the last good checkpoint. Multi-process runs gather each
    chunk's metrics and OR the signal/checkpoint decisions, so every process decides alike.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from distillq.core import loop

    cfg, sch = plan.cfg, plan.system.schedule
    per = cfg.steps_per_iteration
    members = plan.seeds * plan.inits     # every process's: the chunk metrics are gathered
    init_of = ([j for j in range(plan.inits) for _ in plan.seeds] if plan.inits > 1
               else None)
    multi = parallel.process_count() > 1
    t_start = time.perf_counter()

    def save(st, t: int, chunks: int) -> None:
        files.save_state(st, {"t": int(t), "chunk": int(chunks),
                              "train_s": start.prior_train_s + time.perf_counter() - t_start})

    chunk = calls.jit_vmap(loop.make_chunk(plan.system), in_axes=(0, 0, None), donate=(0,))
    t = time.perf_counter()
    compiled = signals.blocking(lambda: chunk.lower(state, ctx, jnp.int32(start.t0)).compile())
    compile_s = time.perf_counter() - t
    total, steps = sch.total_iterations, sch.chunk_iterations
    n_chunks = max(0, math.ceil((total - start.t0) / steps))
    t, done = start.t0, start.chunk0
    stopped_early = interrupted = False
    name = plan.system.score_name
    bar = progress("env steps/seed", fields=True, disable=not (show_progress and files.main))
    t_train = t_saved = time.perf_counter()
    try:
        with signals.deferred(StopFlag()) as flag, bar:
            task = bar.add_task(plan.kind, total=total * per,
                                completed=start.t0 * per, sps="", ret="")
            for c in range(start.chunk0, start.chunk0 + n_chunks):
                t_chunk = time.perf_counter()
                state, m = compiled(state, ctx, jnp.int32(t))
                m = parallel.gather(m) if multi else jax.device_get(m)
                dt = time.perf_counter() - t_chunk
                ran = min(steps, total - t)      # a last chunk may be partial
                t += ran
                done = c + 1
                sps = ran * per * len(members) / max(dt, 1e-9)
                files.append_metrics(seed_rows(c, t, per, members, m.figures, sps, init_of))
                shown = (f"retention {fmt_values(100 * np.asarray(m.score))}%"
                         if name == "retention" else f"return {fmt_values(m.score)}")
                bar.update(task, completed=min(t, total) * per,
                           sps=f"{sps:,.0f} steps/s", ret=shown)
                if not bool(np.all(m.finite)):
                    bad = sorted({s for s, ok in zip(members, m.finite, strict=False)
                                  if not ok})
                    raise DivergedError(f"loss or params became NaN/Inf by env step "
                                        f"{t * per:,} (seeds {bad})")
                due = cfg.checkpoint_secs > 0 and time.perf_counter() - t_saved >= \
                    cfg.checkpoint_secs
                signalled, due = (parallel.any_process((bool(flag), due)) if multi
                                  else (bool(flag), due))
                if thresholds is not None and bool(np.all(m.best_score >= thresholds)):
                    stopped_early = True
                    break
                if signalled:
                    interrupted = True
                    break
                if due:
                    save(state, t, done)
                    t_saved = time.perf_counter()
            if interrupted:   # still deferring: a repeated signal waits for the save
                save(state, t, done)
    except DivergedError as e:
        step = store.state_step(files.dir) if files.main else None
        msg = (f"{e}; the last good full-state checkpoint (env step "
               f"{step * per:,}) is kept in {files.dir}/{store.STATE}"
               if step is not None else f"{e}; no full-state checkpoint had been written "
               "before it")
        raise DivergedError(msg) from None
    if interrupted:
        files.meta.update(resume={"env_steps_per_seed": int(t * per),
                                  "command": resume_cmd(plan.kind, files.name)})
        raise Interrupted(str(files.name), resume_cmd(plan.kind, files.name))
    train_s = time.perf_counter() - t_train + start.prior_train_s
    return Fitted(state, t, done, done - start.chunk0, compile_s, train_s, stopped_early)


def stats(cfg, fitted: Fitted, eval_s: float, started: float) -> dict:
    """The training figures a command reports (and meta.json keeps under "train")."""
    t = min(fitted.t, cfg.total_iterations)
    return {
        "env_steps_per_seed": int(cfg.env_iterations(t) * cfg.steps_per_iteration),
        "updates_per_seed": int(max(0, t - cfg.warmup_iterations) * cfg.updates_per_iteration),
        "stopped_early": fitted.stopped_early,
        "chunks_run": fitted.chunks_run,
        "compile_s": round(fitted.compile_s, 3),
        "train_s": round(fitted.train_s, 3),
        "eval_s": round(eval_s, 3),
        "wall_s": round(time.perf_counter() - started, 3),
    }


def complete(files: RunFiles, params: Any, **fields) -> None:
    """Save the final params (process 0), mark the run complete, drop the full state."""
    if not files.main:
        files.finish("complete")
        return
    store.save_params(files.dir, params)
    files.meta.pop("resume", None)
    files.finish("complete", params_digest=store.params_digest(files.dir), **fields)
    store.remove_state(files.dir)


# --------------------------------------------------------------------------- the whole life


def _take(tree: Any, idx) -> Any:
    import jax

    return jax.tree.map(lambda x: x[idx], tree)


def choose(plan: Plan, params: Any, ctx: Any, local: list[int], meta: dict):
    """Of every seed's `plan.inits` initialisations (members k * n + i), keep the one whose
    mean return on system.select's held-out episodes (calls.select_keys: never the final
    evaluation's) is highest (ties: the lower init). Every member gets the final evaluation on
    its seed's usual keys; the kept ones make the run's evaluation, all of them meta.json's
    "inits" (the selection rule, each member's selection and final figures).
    Returns (kept params, kept final outputs, seconds, the "inits" record)."""
    import numpy as np

    k, n = plan.inits, len(local)
    sel, sel_s = calls.timed(calls.jit_vmap(plan.system.select), params, ctx,
                             calls.select_keys(local * k))
    sel = np.asarray(sel, np.float64)
    means = sel.mean(-1).reshape(k, n)
    chosen = np.argmax(means, axis=0)          # first maximum: the lower init on ties
    final, eval_s = calls.timed(calls.jit_vmap(plan.system.final), params, ctx,
                                calls.eval_keys(local * k))
    idx = chosen * n + np.arange(n)
    per_init = [plan.summarise(meta, _take(final, slice(j * n, (j + 1) * n)))
                for j in range(k)]
    record = {
        "inits": k,
        "rule": "per seed, the initialisation with the highest mean return over "
                "select_episodes greedy episodes on the selection keys (rollout.select_key), "
                "disjoint from the final evaluation's; ties: the lower initialisation",
        "select_episodes": int(sel.shape[-1]),
        "chosen": [int(c) for c in chosen],
        "per_seed": [{"seed": s, "chosen": int(chosen[i]),
                      "selection_mean": [float(means[j, i]) for j in range(k)],
                      "selection_returns": sel[int(chosen[i]) * n + i].tolist(),
                      "final_mean": [per_init[j]["per_seed"][i]["mean"] for j in range(k)],
                      "final_retention": [per_init[j]["per_seed"][i].get("retention")
                                          for j in range(k)]}
                     for i, s in enumerate(local)],
        "select_s": round(sel_s, 3),
    }
    return _take(params, idx), _take(final, idx), eval_s, record


def run(plan: Plan, *, out: str | None = None, force: bool = False,
        reopened: RunFiles | None = None, show_progress: bool = True,
        started: float | None = None) -> Result:
    """Train `plan` in a new run dir (out, force) or continue `reopened` (reopen's files).
    With plan.inits > 1 every seed trains that many members in the same compiled call, and
    one per seed is kept (choose)."""
    import jax
    import jax.numpy as jnp

    started = time.perf_counter() if started is None else started
    if plan.inits > 1 and parallel.process_count() > 1:
        raise ConfigError("inits > 1 runs on a single process")
    if plan.inits > 1 and plan.system.select is None:
        raise ConfigError(f"inits: a {plan.kind} run has no selection rule")
    sl = parallel.local_slice(len(plan.seeds))
    local = plan.seeds[sl]
    k = plan.inits
    members = local * k                      # member j * n + i: seed i, initialisation j
    ctx = None if plan.ctx is None else jax.tree.map(
        lambda x: jnp.concatenate([x[sl]] * k), plan.ctx)
    files = reopened if reopened is not None else create(plan.kind, out, force, plan.meta)
    with guard(files, plan.kind):
        ctx = parallel.shard(ctx)
        init = calls.jit_vmap(plan.system.init)
        keys = jnp.concatenate([calls.init_keys(local, j) for j in range(k)])
        state = parallel.shard(calls.ready(init, keys, ctx))
        state, start = begin(files, plan.cfg, state, reopened is not None, len(members))
        thresholds = None if plan.stop_at is None else plan.stop_at(ctx, members)
        fitted = fit(plan, files, state, ctx, start, thresholds, show_progress)
        params = fitted.state.best_params
        if k > 1:
            params, final, eval_s, record = choose(plan, parallel.gather(params), ctx, local,
                                                   files.meta)
            files.meta["inits"] = record
        else:
            final, eval_s = calls.timed(calls.jit_vmap(plan.system.final), params, ctx,
                                        calls.eval_keys(local))
        figures = stats(plan.cfg, fitted, eval_s, started)
        evaluation = plan.summarise(files.meta, final)
        complete(files, parallel.gather(params), evaluation=evaluation, train=figures,
                 params_per_seed=plan.n_params)
    return Result(files, local, evaluation, figures)
