"""A training run's life on disk, around the jitted chunks: create or reopen the run dir,
write the config, resume the full state, run the chunks with metrics, periodic checkpoints
and signals, record how the run ended, and save the final params.

checkpoint.py knows the on-disk layout; this module knows the lifecycle (running ->
complete | interrupted | diverged | failed) that train-teacher and distill share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from distillq import checkpoint, config
from distillq.errors import ConfigError, DivergedError, Interrupted


class _NoLock:
    def release(self) -> None:
        pass


class RunFiles:
    """A run directory as seen by one process: process 0 writes, other processes only take
    part in the collectives (gathers) that feed process 0. `dir` is None on workers."""

    def __init__(self, run_dir: Path | None, meta: dict, lock=None):
        self.dir = run_dir
        self.name = None if run_dir is None else str(run_dir)   # workers learn it from rank 0
        self.meta = meta
        self.lock = lock or _NoLock()

    @property
    def main(self) -> bool:
        return self.dir is not None

    def write_meta(self) -> None:
        if self.main:
            checkpoint.write_json_atomic(self.dir / checkpoint.META, self.meta)

    def finish(self, status: str, **extra) -> None:
        self.meta.update(status=status, **extra)
        self.write_meta()
        self.lock.release()

    def save_state(self, state, host: dict) -> None:
        from distillq import parallel

        if parallel.process_count() > 1:
            state = parallel.gather(state)   # a collective: every process calls it
        if self.main:
            checkpoint.save_state(self.dir, state, host)

    def append_metrics(self, rows: list[dict]) -> None:
        if self.main:
            checkpoint.append_metrics(self.dir, rows)


def command_of(kind: str) -> str:
    return "train-teacher" if kind == "teacher" else "distill"


def resume_cmd(kind: str, run_dir: Path | str | None) -> str:
    return f"distillq {command_of(kind)} --resume {run_dir}"


def create(kind: str, out: str | None, force: bool, meta: dict) -> RunFiles:
    """A fresh run dir: process 0 creates and locks it; every process learns its name."""
    from distillq import parallel

    if parallel.is_main():
        run_dir, lock = checkpoint.new_run_dir(kind, out, force)
        files = RunFiles(run_dir, meta, lock)
        files.write_meta()      # at once: a dir distillq made always says what it is
        parallel.broadcast_text(str(run_dir))
        return files
    files = RunFiles(None, meta)
    files.name = parallel.broadcast_text("")
    return files


def reopen(kind: str, run_dir: str, prepare: Callable[[dict, Any], Any]):
    """Lock an interrupted run for --resume and rebuild its saved config. `prepare(meta, cfg)`
    builds what the command needs (trainer, teachers); the lock is released if it fails.
    Returns (files, cfg, prepared)."""
    from distillq import parallel

    if parallel.process_count() > 1:
        raise ConfigError("--resume runs on a single process")
    path, meta, lock = checkpoint.open_for_resume(run_dir, kind)
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
    from distillq import signals

    def on_signal(_signum: int) -> str:
        files.finish("interrupted")
        if not files.main:
            return ""
        if checkpoint.has_state(files.dir):
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
    """Fresh run: write config.toml. Resume: restore the full state into `state`'s structure
    and drop metrics rows written after it."""
    from distillq import parallel

    start = Start(0, 0, 0.0)
    if resuming:
        state, host = checkpoint.restore_state(files.dir, state)
        start = Start(int(host["t"]), int(host["chunk"]), float(host["train_s"]))
        checkpoint.truncate_metrics(files.dir, start.chunk0)
        files.meta["status"] = "running"
    elif files.main:
        checkpoint.write_text_atomic(files.dir / "config.toml", config.to_toml(cfg))
    files.meta["devices"] = parallel.devices_used(n_local)
    files.meta["processes"] = parallel.process_count()
    files.write_meta()
    return state, start


def fit(*, kind: str, cfg, files: RunFiles, state, chunk, args: tuple, seeds: list[int],
        stop: Callable[[dict], bool], start: Start, show_progress: bool) -> dict:
    """Run the jitted chunks with metrics, periodic full-state checkpoints and signals.

    On SIGINT/SIGTERM: finish the chunk, write the full state, mark the run interrupted and
    raise Interrupted (exit 130). On NaN/Inf: raise DivergedError naming the last good
    full-state checkpoint. `seeds` are all seeds (every process); `state` holds this
    process's share. Returns runner.run_chunks' result, plus "chunks_run" (this process).
    """
    from distillq import parallel, runner

    t_start = time.perf_counter()
    multi = parallel.process_count() > 1

    def save(st, t: int, chunks: int) -> None:
        files.save_state(st, {"t": int(t), "chunk": int(chunks),
                              "train_s": start.prior_train_s + time.perf_counter() - t_start})

    def on_chunk(c: int, t: int, m: dict, sps: float) -> None:
        files.append_metrics(runner.seed_rows(c, t, cfg.num_envs, seeds, m, sps))

    compiled, compile_s = runner.compile_chunk(chunk, state, args, start.t0)
    try:
        with runner.catch_signals() as flag:
            res = runner.run_chunks(
                compiled=compiled, compile_s=compile_s, state=state, args=args, t0=start.t0,
                chunk0=start.chunk0,
                total_iterations=cfg.total_iterations, chunk_steps=cfg.chunk_iterations,
                num_envs=cfg.num_envs, seeds=seeds, desc=kind, stop=stop, on_chunk=on_chunk,
                checkpoint=save, checkpoint_secs=cfg.checkpoint_secs, flag=flag,
                show_progress=show_progress and files.main,
                gather=parallel.gather if multi else None,
                agree=parallel.any_process if multi else None)
            if res["interrupted"]:   # still catching: a repeated signal waits for the save
                save(res["state"], res["t"], res["chunks"])
    except DivergedError as e:
        step = checkpoint.state_step(files.dir) if files.main else None
        msg = (f"{e}; the last good full-state checkpoint (env step "
               f"{step * cfg.num_envs:,}) is kept in {files.dir}/state" if step is not None
               else f"{e}; no full-state checkpoint had been written before it")
        raise DivergedError(msg) from None
    if res["interrupted"]:
        files.meta.update(resume={"env_steps_per_seed": int(res["t"] * cfg.num_envs),
                                  "command": resume_cmd(kind, files.name)})
        raise Interrupted(str(files.name), resume_cmd(kind, files.name))
    res["train_s"] += start.prior_train_s
    res["chunks_run"] = res["chunks"] - start.chunk0
    return res


def stats(cfg, res: dict, eval_s: float, started: float, env_iters: int | None = None) -> dict:
    """The training figures a command reports (and meta.json keeps under "train")."""
    t = min(res["t"], cfg.total_iterations)
    return {
        "env_steps_per_seed": int((t if env_iters is None else env_iters) * cfg.num_envs),
        "updates_per_seed": int(max(0, t - cfg.warmup_iterations) * cfg.updates_per_step),
        "stopped_early": res["stopped_early"],
        "chunks_run": res["chunks_run"],
        "compile_s": round(res["compile_s"], 3),
        "train_s": round(res["train_s"], 3),
        "eval_s": round(eval_s, 3),
        "wall_s": round(time.perf_counter() - started, 3),
    }


def complete(files: RunFiles, params: Any, **fields) -> None:
    """Save the final params (process 0), mark the run complete, drop the full state."""
    if not files.main:
        files.finish("complete")
        return
    checkpoint.save_params(files.dir, params)
    files.meta.pop("resume", None)
    files.finish("complete", params_digest=checkpoint.params_digest(files.dir), **fields)
    checkpoint.remove_state(files.dir)


def worker_summary(kind: str, files: RunFiles, seeds: list[int]) -> dict:
    """What a process other than 0 prints: process 0 writes the run and its summary."""
    import jax

    from distillq import parallel

    return {"kind": f"{kind}-worker", "run_dir": files.name,
            "process_id": jax.process_index(), "num_processes": parallel.process_count(),
            "seeds": seeds}
