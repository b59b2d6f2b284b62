"""Run directories: the only module that knows the on-disk layout.

    runs/<kind>-<date>-<time>-<id>/
      meta.json      kind, status, env, network spec, seeds, config, metrics, teacher, version
      config.toml    the config snapshot, reusable with --config
      params/        orbax (StandardCheckpointer) pytree, every leaf stacked over seeds [S, ...]
      metrics.jsonl  one line per chunk and seed, appended as training goes
      state/         full training state for --resume (orbax CheckpointManager, latest kept)
      tensorboard/   event files mirroring metrics.jsonl, one dir per seed (tensorboard.py)
      .lock          held (flock) by the process writing the run

meta.json is replaced atomically (write + rename); orbax writes params/ into a temporary
directory and renames it when complete. A run is usable by distill/evaluate only once its
meta.json says status "complete".
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from distillq import __version__
from distillq.errors import ConfigError, RunDirError
from distillq.runs import quiet, signals

META = "meta.json"
CONFIG = "config.toml"
PARAMS = "params"
STATE = "state"
METRICS = "metrics.jsonl"
LOCK = ".lock"
RUNS_ROOT = Path("runs")
# The layout of the full training state (loop.LoopState): a resume restores into the state a
# run's own version builds; states written by another layout are refused in one line.
STATE_FORMAT = 2
# What orbax/tensorstore raise on damaged checkpoints, measured with orbax-checkpoint 0.12.8.
CHECKPOINT_ERRORS = (ValueError, FileNotFoundError, KeyError, json.JSONDecodeError, OSError,
                     TypeError, AttributeError)


def _single_process():
    """Orbax options that keep a checkpoint operation on this process alone. In a
    multi-process run only process 0 touches the disk (with gathered, host-local arrays);
    orbax's default would wait at barriers for every process."""
    import jax
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.options.MultiprocessingOptions()
    i = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=i, active_processes={i})


# --------------------------------------------------------------------------- creation


class RunLock:
    """An exclusive flock on <run>/.lock; a second writer is refused."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK
        self.fh = None

    def acquire(self) -> RunLock:
        self.fh = open(self.path, "w")  # noqa: SIM115
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            self.fh = None
            raise RunDirError(f"run dir {self.path.parent} is in use by another distillq "
                              "process") from None
        self.fh.write(str(os.getpid()))
        self.fh.flush()
        return self

    def release(self) -> None:
        if self.fh is not None:
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def is_locked(run_dir: Path) -> bool:
    p = Path(run_dir) / LOCK
    if not p.exists():
        return False
    with open(p) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def is_run_dir(path: Path) -> bool:
    """A dir distillq made: it has meta.json, or holds nothing but distillq's own lock and
    temporary files (a run stopped between creating its dir and writing meta.json)."""
    path = Path(path)
    if (path / META).exists():
        return True
    names = [p.name for p in path.iterdir()]
    return bool(names) and all(n == LOCK or n.startswith(f".{META}.tmp-") for n in names)


def stamped(kind: str, root: Path) -> Path:
    """A fresh name under root: <kind>-<date>-<time>-<4 hex digits>."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{kind}-{stamp}-{secrets.token_hex(2)}"


def new_run_dir(kind: str, out: str | Path | None = None, force: bool = False,
                root: Path | None = None) -> tuple[Path, RunLock]:
    """Create a fresh run directory and lock it. Never silently overwrites an existing run."""
    root = Path(root) if root is not None else RUNS_ROOT
    if out is None:
        for _ in range(100):
            path = stamped(kind, root)
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise RunDirError(f"cannot create run dir under {root}: {e.strerror}") from None
        else:  # pragma: no cover
            raise RunDirError(f"cannot find a free run dir name under {root}")
    else:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if not force:
                raise RunDirError(f"{path} already exists; choose another --out or pass --force "
                                  "to replace it")
            if not path.is_dir():
                raise RunDirError(f"{path} exists and is not a directory")
            if is_locked(path):
                raise RunDirError(f"run dir {path} is in use by another distillq process")
            if not is_run_dir(path):
                raise RunDirError(f"{path} is not a distillq run dir; refusing to replace it "
                                  "even with --force")
            shutil.rmtree(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run dir {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise RunDirError(f"run dir {path} is not writable")
    return path, RunLock(path).acquire()


def printable(path: str | Path, flag: str = "--out") -> Path:
    """The path, refused in one line unless it is UTF-8 text (a path decoded from invalid
    bytes carries surrogates: the JSON on stdout and every message would fail on it after
    the work was done)."""
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError(f"{flag} is empty; give a path")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{flag} {ascii(text)} is not valid UTF-8; name outputs in UTF-8"
                          ) from None
    return Path(text)


def probe(where: Path) -> None:
    """Fail in one line unless a file can be created at `where` or, where it does not exist
    yet, at its nearest existing ancestor: a real write, removed at once (as root, permission
    bits say yes to /proc and to read-only dirs)."""
    try:
        p = Path(where).absolute()
        while not p.exists() and p.parent != p:
            p = p.parent
    except (OSError, ValueError) as e:      # a name too long, a NUL byte
        raise RunDirError(f"cannot use {_short(where)}: "
                          f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
    if not p.is_dir():
        raise RunDirError(f"cannot write under {p}: not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".distillq-probe-", dir=p)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise RunDirError(f"cannot write under {p}: {e.strerror or type(e).__name__}"
                          ) from None


def check_writable_parent(out: str | Path | None, root: Path | None = None) -> None:
    """Fail before any compute when the run dir cannot be created (an existing dir given as
    --out: new_run_dir decides, exists / --force)."""
    target = printable(out) if out is not None else (Path(root) if root else RUNS_ROOT)
    try:
        existing_dir = out is not None and target.is_dir()
    except (OSError, ValueError):
        existing_dir = False
    if not existing_dir:
        probe(target)


# --------------------------------------------------------------------------- writing


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def remove(p: Path) -> None:
    """Delete a file or a directory tree, if there."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def place(src: Path, dst: Path) -> None:
    """Move one staged file or dir to `dst` (place_all of one move)."""
    place_all([(src, dst)])


def place_all(moves: list[tuple[Path, Path]]) -> None:
    """Move staged files or dirs into place, all or none (a GIF and its summary; a dir):
    each existing target is first set aside beside itself (`.NAME.old-PID`), then the staged
    one renamed in; an error or a signal before the last move removes the new ones already
    in and puts every old one back. The old ones are deleted once all new ones are in."""
    asides: list[tuple[Path, Path | None]] = []
    placed: list[Path] = []

    def back(_signum: int) -> str:
        for dst in placed:
            remove(dst)
        for dst, old in asides:
            if old is not None and old.exists() and not dst.exists():
                old.rename(dst)
        return ""

    with signals.cleanup(back):
        try:
            for src, dst in moves:
                old = None
                if dst.exists():
                    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
                    remove(old)
                    dst.rename(old)
                asides.append((dst, old))
                src.rename(dst)
                placed.append(dst)
        except BaseException:
            back(0)
            raise
    olds = [old for _, old in asides if old is not None]

    def drop(_signum: int) -> str:
        for old in olds:
            remove(old)
        return ""

    with signals.cleanup(drop):
        drop(0)


def save_params(run_dir: Path, params: Any) -> None:
    """Save stacked params with orbax; blocks until the checkpoint is committed on disk."""
    import orbax.checkpoint as ocp

    quiet.orbax()
    target = Path(run_dir).resolve() / PARAMS
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=_single_process())
    try:
        ckptr.save(target, params, force=True)
        ckptr.wait_until_finished()
    finally:
        ckptr.close()


def save_state(run_dir: Path, state: Any, host: dict) -> None:
    """Full training state (every jax array of the vmapped state pytree) + host counters.

    Written synchronously through an orbax CheckpointManager (tmp dir + atomic rename);
    only the latest full state is kept.
    """
    import orbax.checkpoint as ocp

    quiet.orbax()
    opts = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False,
                                        multiprocessing_options=_single_process(),
                                        create=False)
    path = (Path(run_dir) / STATE).resolve()
    path.mkdir(parents=True, exist_ok=True)
    with ocp.CheckpointManager(path, options=opts) as mngr:
        mngr.save(int(host["t"]), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                          host=ocp.args.JsonSave(host)),
                  force=True)
        mngr.wait_until_finished()


def restore_state(run_dir: Path, target: Any) -> tuple[Any, dict]:
    """Restore the latest full state into the structure of `target` (a freshly built state)."""
    import orbax.checkpoint as ocp

    quiet.orbax()
    path = (Path(run_dir) / STATE).resolve()
    if not path.is_dir():
        raise RunDirError(f"{run_dir} has no full-state checkpoint to resume from")
    try:
        opts = ocp.CheckpointManagerOptions(read_only=True,
                                            multiprocessing_options=_single_process())
        with ocp.CheckpointManager(path, options=opts) as mngr:
            step = mngr.latest_step()
            if step is None:
                raise RunDirError(f"{run_dir} has no full-state checkpoint to resume from")
            r = mngr.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), host=ocp.args.JsonRestore()))
        return r.state, dict(r.host)
    except RunDirError:
        raise
    except CHECKPOINT_ERRORS as e:
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        raise RunDirError(f"damaged full-state checkpoint in {run_dir}/{STATE}: "
                          f"{type(e).__name__}{': ' + msg if msg else ''}") from None


def state_step(run_dir: Path) -> int | None:
    """Iteration count of the latest committed full-state checkpoint, if any."""
    p = Path(run_dir) / STATE
    steps = [int(c.name) for c in p.iterdir() if c.name.isdigit()] if p.is_dir() else []
    return max(steps) if steps else None


def has_state(run_dir: Path) -> bool:
    return state_step(run_dir) is not None


def remove_state(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / STATE, ignore_errors=True)


def truncate_metrics(run_dir: Path, chunks: int) -> None:
    """Keep only metrics rows of chunks < `chunks` (rows written after the checkpoint)."""
    p = Path(run_dir) / METRICS
    if not p.exists():
        return
    keep = []
    for line in p.read_text().splitlines():
        try:
            if json.loads(line)["chunk"] < chunks:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    write_text_atomic(p, "".join(x + "\n" for x in keep))


def open_for_resume(run_dir: str | Path, kind: str) -> tuple[Path, dict, RunLock]:
    """Validate a run dir for --resume and lock it."""
    p = Path(run_dir)
    meta = read_meta(p)
    if meta["kind"] != kind:
        cmd = "train-teacher" if meta["kind"] == "teacher" else "distill"
        raise RunDirError(f"{p} is a {meta['kind']} run; resume it with `distillq {cmd} "
                          f"--resume {p}`")
    if meta["status"] == "complete":
        raise RunDirError(f"{p} is already complete; nothing to resume")
    if meta.get("state_format", 1) != STATE_FORMAT:
        raise RunDirError(f"{p} was interrupted by distillq {meta.get('distillq_version', '?')}, "
                          "whose training state this version cannot restore; resume it with "
                          "that version, or start the run again")
    lock = RunLock(p).acquire()
    if not has_state(p):
        lock.release()
        raise RunDirError(f"{p} has no full-state checkpoint to resume from (it was stopped "
                          "before its first checkpoint)")
    return p, meta, lock


def write_meta(run_dir: Path, meta: dict) -> None:
    write_json_atomic(Path(run_dir) / META, meta)


def write_config(run_dir: Path, toml_text: str) -> None:
    """config.toml: the run's config snapshot, reusable with --config."""
    write_text_atomic(Path(run_dir) / CONFIG, toml_text)


def has_meta(path: Path) -> bool:
    return (Path(path) / META).exists()


def enclosing_run(path: Path) -> Path | None:
    """The run dir that `path` is (or lies inside), if any: outputs never go there."""
    p = Path(path).resolve()
    for d in (p, *p.parents):
        if (d / META).is_file():
            return d
    return None


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's rows (unreadable lines skipped; none when the file is missing)."""
    p = Path(run_dir) / METRICS
    if not p.exists():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def append_metrics(run_dir: Path, rows: list[dict]) -> None:
    with open(Path(run_dir) / METRICS, "a") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=_json_default) + "\n")


PROVENANCE_PACKAGES = ("jax", "jaxlib", "flax", "optax", "gymnax", "orbax-checkpoint", "numpy")


def provenance() -> dict:
    """What a result can be traced to: Python, the versions of the stack's packages, the
    host and the device jax runs on."""
    import platform
    import socket
    from importlib import metadata

    import jax

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    dev = jax.devices()[0]
    return {"python": platform.python_version(), "platform": platform.platform(),
            "host": socket.gethostname(),
            "packages": {n: version(n) for n in PROVENANCE_PACKAGES},
            "device": {"platform": dev.platform, "kind": dev.device_kind,
                       "count": jax.device_count()}}


def base_meta(kind: str, env: str, net_spec: dict, seeds: list[int], cfg: dict) -> dict:
    return {
        "distillq_version": __version__,
        "kind": kind,
        "status": "running",
        "env": env,
        "network": net_spec,
        "seeds": seeds,
        "config": cfg,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "provenance": provenance(),
    }


# --------------------------------------------------------------------------- reading


class Run(NamedTuple):
    path: Path
    meta: dict
    params: Any  # numpy pytree, leaves [S, ...]


def _short(p: Path | str) -> str:
    s = str(p)
    return s if len(s) <= 120 else f"{s[:60]}...{s[-40:]} ({len(s):,} characters)"


def read_meta(path: str | Path) -> dict:
    p = Path(path)
    try:
        exists, is_dir, has_meta = p.exists(), p.is_dir(), (p / META).exists()
    except (OSError, ValueError) as e:      # a name too long, a NUL byte, ...
        raise RunDirError(f"cannot read run dir {_short(p)}: "
                          f"{getattr(e, 'strerror', None) or type(e).__name__}") from None
    if not exists:
        raise RunDirError(f"run dir not found: {_short(p)}")
    if not is_dir:
        raise RunDirError(f"not a run dir (not a directory): {_short(p)}")
    mp = p / META
    if not has_meta:
        raise RunDirError(f"not a distillq run dir (no {META}): {_short(p)}")
    try:
        meta = json.loads(mp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise RunDirError(f"corrupted {META} in {p}: {type(e).__name__}") from None
    required = ("kind", "status", "env", "network", "seeds", "config")
    if not isinstance(meta, dict) or any(k not in meta for k in required):
        raise RunDirError(f"corrupted {META} in {p}: missing fields")
    return meta


def existing_runs(paths: list[str]) -> list[str]:
    """Several paths (e.g. `runs/*`): skip those that are not run dirs, with a warning; one
    path must be a run dir."""
    from distillq.runs.console import warn

    if len(paths) == 1:
        read_meta(paths[0])
        return paths
    kept, skipped = [], []
    for p in paths:
        try:
            read_meta(p)
            kept.append(p)
        except RunDirError as e:
            skipped.append(str(e))
    if not kept:
        raise RunDirError(f"none of the {len(paths)} paths given is a distillq run dir "
                          f"({skipped[0]})")
    for why in skipped:
        warn(f"skipped: {why}")
    return kept


def load_run(path: str | Path, kind: str | None = None) -> Run:
    """Load a complete run (metadata and params as numpy), or raise RunDirError."""
    p = Path(path)
    meta = read_meta(p)
    if kind is not None and meta["kind"] != kind:
        raise RunDirError(f"{p} is a {meta['kind']} run; a {kind} run is expected")
    if meta["status"] != "complete":
        hint = " (resume it with --resume)" if meta["status"] == "interrupted" else ""
        raise RunDirError(f"run {p} is not complete (status: {meta['status']}){hint}")
    check_digest(p, meta)
    params = restore_params(p)
    _check_params(p, params, meta)
    return Run(p, meta, params)


def params_digest(run_dir: Path) -> str:
    """A digest of the saved params (every file under params/, names and bytes): the run's
    identity. Recorded in meta.json when the run completes, and by each student for its
    teachers. Reading it needs no jax."""
    import hashlib

    root = Path(run_dir) / PARAMS
    if not root.is_dir():
        raise RunDirError(f"checkpoint missing in {run_dir}: no {PARAMS}/ directory")
    h = hashlib.sha256()
    try:
        for f in sorted(x for x in root.rglob("*") if x.is_file()):
            h.update(f.relative_to(root).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
    except OSError as e:
        raise RunDirError(f"cannot read the checkpoint in {run_dir}: {e.strerror}") from None
    return h.hexdigest()[:20]


def check_digest(run_dir: Path, meta: dict) -> None:
    """The params on disk are the ones the run saved (runs from before digests: unchecked)."""
    want = meta.get("params_digest")
    if want is not None and params_digest(run_dir) != want:
        raise RunDirError(f"damaged checkpoint in {run_dir}: its params are not the ones "
                          "saved when the run completed (digest differs from meta.json)")


def restore_params(run_dir: Path) -> Any:
    import numpy as np
    import orbax.checkpoint as ocp

    quiet.orbax()
    target = Path(run_dir).resolve() / PARAMS
    if not target.is_dir():
        raise RunDirError(f"checkpoint missing in {run_dir}: no {PARAMS}/ directory")
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=_single_process())
    try:
        meta = ckptr.metadata(target).item_metadata.tree
        abstract = _map_meta(meta, lambda m: np.empty(m.shape, m.dtype))
        return ckptr.restore(target, abstract)
    except CHECKPOINT_ERRORS as e:
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        raise RunDirError(f"damaged checkpoint in {run_dir}/{PARAMS}: {type(e).__name__}"
                          f"{': ' + msg if msg else ''}") from None
    finally:
        ckptr.close()


def _map_meta(tree: Any, fn) -> Any:
    if isinstance(tree, dict):
        return {k: _map_meta(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_meta(v, fn) for v in tree)
    return fn(tree)


def _check_params(p: Path, params: Any, meta: dict) -> None:
    """The params must have exactly the shapes the network spec gives (per seed)."""
    import jax

    from distillq.core import networks

    n_seeds = len(meta["seeds"])
    try:
        expected = networks.abstract_params(meta["network"])
    except Exception:  # noqa: BLE001 (any malformed spec: unknown type, missing or bad fields)
        raise RunDirError(f"corrupted {META} in {p}: bad network spec") from None
    want = {jax.tree_util.keystr(k): (n_seeds, *v.shape)
            for k, v in jax.tree_util.tree_flatten_with_path(expected)[0]}
    got = {jax.tree_util.keystr(k): tuple(getattr(v, "shape", ()))
           for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    if want != got:
        raise RunDirError(f"damaged checkpoint in {p}: params do not match the network spec")


def check_single_env(run: Run, command: str) -> None:
    """Commands that act in one env refuse a multi-task student in one line."""
    if run.meta.get("multitask"):
        raise RunDirError(f"{run.path} is a multi-task student ({run.meta['env']}); {command} "
                          "takes single-env runs")
