"""TensorBoard event files for a run dir: `tensorboard --logdir runs/` shows every run's
learning curves, and its config as hparams.

    <run>/tensorboard/<member>/events.out.tfevents.<time ns>.distillq

One directory per member of the run's vmapped axis: `seed-<s>`, with `-point-<p>` for a
student sweep over several points and `-init-<j>` with --inits K. Each directory is a
TensorBoard run holding the same tags, and TensorBoard draws one chart per tag with a line
per run: a run's seeds (and every run under --logdir) overlay on the same axes and can be
toggled in the run selector. One writer with per-seed tags would draw one chart per seed
instead, with nothing to compare on one chart.

Scalars: every numeric field of a metrics.jsonl row (eval_return, loss, best_return, ...;
not chunk, seed, init) under its own name, at step = the row's env_steps (per seed); a
non-finite figure (null in metrics.jsonl) is left out. When the run completes, the final
evaluation: `final/mean_return` (the member's mean return over the final episodes),
`final/run_mean_return` (the whole run's), for students `final/retention` and
`final/fidelity` too (a multi-task student: `final/<env>/...` per env), at the member's last
step. With --inits K these go to each seed's kept initialisation.

HParams: every member directory is a session whose hparams are the run's config, flattened
(nested keys dotted, lists joined with commas), plus run (the run dir's name), kind, env,
member, a student's teacher (its run dirs' names) and a sweep point's own values
(`point.temp`, `point.weights.kl`); its end status (success or failure) is written when the
run ends. No experiment summary is written: TensorBoard then builds the HParams table from
all the sessions under --logdir (the union of their hparams, every scalar tag as a metric
column), whereas one experiment summary would hide the hparams of runs whose config keys
differ (teachers next to students).

metrics.jsonl is the source of truth. The files mirror its rows as they are appended (one
event per member and chunk, written and flushed on the calling thread; measured: 0.7 ms a
chunk for a 16-seed teacher, 25-40 us per member, plus 40-70 ms on the first chunk for the
import and the files), and on --resume, once the rows written after the checkpoint are
dropped, `rebuild` regenerates the whole directory from metrics.jsonl in a temporary
directory that then replaces it (0.17 s for 4,704 rows; the resumed session appends to new
event files, which sort after the rebuilt ones). Events are framed here (TFRecord,
tensorboardX's masked crc32c) from tensorboardX's protobufs rather than through its
SummaryWriter, which queues them to a background writer whose flush() does not wait for the
queue: a run that stops between chunks (a signal leaves through os._exit) would lose what it
had shown. tensorboardX is imported only when a run writes its first files. A failure to
write warns once on stderr and turns the files off for the rest of the session; the run goes
on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distillq.runs import store
from distillq.runs.console import warn

TENSORBOARD = "tensorboard"
KEYS = ("chunk", "seed", "env_steps", "init")   # a row's identity, not its figures
STATUS = {"complete": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE",
          "failed": "STATUS_FAILURE"}           # how a session ends (interrupted: not yet)
HPARAMS = "hparams"                             # TensorBoard's hparams plugin
START_TAG = "_hparams_/session_start_info"
END_TAG = "_hparams_/session_end_info"


# --------------------------------------------------------------------------- what is written


def member_name(seed: int, point: int | None = None, init: int | None = None) -> str:
    """A member's directory: seed-0, seed-0-point-1, seed-0-init-2."""
    return (f"seed-{seed}" + (f"-point-{point}" if point is not None else "")
            + (f"-init-{init}" if init is not None else ""))


def _point(meta: dict, i: int) -> int | None:
    """Student i's sweep point where the run sweeps several (None otherwise)."""
    points = meta.get("point_index") or []
    return points[i] if len(set(points)) > 1 else None


def indices(meta: dict) -> dict[str, int]:
    """Every member directory's student index i (meta.json's seeds[i], point_index[i])."""
    inits = (meta.get("config") or {}).get("inits") or 1
    return {member_name(s, _point(meta, i), j): i for i, s in enumerate(meta["seeds"])
            for j in ([None] if inits <= 1 else range(inits))}


def row_names(meta: dict, rows: list[dict]) -> list[str]:
    """Each row's member. A chunk's rows come in member order (member j * n + i: seed i,
    initialisation j), which tells apart a sweep's students that share a seed."""
    n = len(meta["seeds"])
    names, chunk, pos = [], None, 0
    for row in rows:
        pos = pos + 1 if row.get("chunk") == chunk else 0
        chunk = row.get("chunk")
        names.append(member_name(row["seed"], _point(meta, pos % n), row.get("init")))
    return names


def scalars(row: dict) -> dict[str, float]:
    """A row's figures: every finite number but its identity (chunk, seed, env_steps, init)."""
    return {k: float(v) for k, v in row.items()
            if k not in KEYS and isinstance(v, int | float) and not isinstance(v, bool)
            and math.isfinite(v)}


def _number(v: Any) -> float | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def finals(meta: dict) -> dict[str, dict[str, float]]:
    """The final evaluation per kept member (its directory: with --inits K, each seed's
    kept initialisation): mean return, the run's mean return, a student's retention and
    fidelity; a multi-task student's per env under final/<env>/."""
    ev = meta.get("evaluation") or {}
    blocks = ([(f"{b['env']}/", b["evaluation"]) for b in ev["per_env"]]
              if "per_env" in ev else [("", ev)])
    chosen = (meta.get("inits") or {}).get("chosen")
    out: dict[str, dict[str, float]] = {}
    for i, s in enumerate(meta["seeds"]):
        vals = {}
        for prefix, b in blocks:
            per = b["per_seed"][i]
            for key, tag in (("mean", "mean_return"), ("retention", "retention"),
                             ("fidelity", "fidelity")):
                if (v := _number(per.get(key))) is not None:
                    vals[f"final/{prefix}{tag}"] = v
            if (v := _number(b.get("overall", {}).get("mean"))) is not None:
                vals[f"final/{prefix}run_mean_return"] = v
        out[member_name(s, _point(meta, i), None if chosen is None else chosen[i])] = vals
    return out


def _flat(prefix: str, v: Any, out: dict) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _flat(f"{prefix}{k}.", x, out)
    elif v is None:
        return
    elif isinstance(v, bool | str):
        out[prefix[:-1]] = v
    elif isinstance(v, int | float):
        out[prefix[:-1]] = float(v) if math.isfinite(v) else str(v)
    elif isinstance(v, list | tuple) and all(isinstance(x, bool | int | float | str)
                                             for x in v):
        out[prefix[:-1]] = ",".join(str(x) for x in v)
    else:
        out[prefix[:-1]] = json.dumps(v, sort_keys=True, default=str)


def hparams(run_dir: Path, meta: dict, member: str, i: int) -> dict[str, Any]:
    """A member's hparams (i: its student index, for a sweep point's values)."""
    hp: dict[str, Any] = {}
    _flat("", meta.get("config") or {}, hp)
    if _point(meta, i) is not None:
        _flat("point.", meta["points"][meta["point_index"][i]], hp)
    runs = (meta.get("teacher") or {}).get("runs")
    if runs:
        hp["teacher"] = ",".join(Path(r["run_dir"]).name for r in runs)
    hp.update(run=Path(run_dir).resolve().name, kind=meta["kind"], env=meta["env"],
              member=member)
    return hp


def _start_secs(meta: dict) -> float:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(meta["created"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


# --------------------------------------------------------------------------- event files


class _Events:
    """One event file, written synchronously: TFRecord framing (length, masked crc32c of
    the length, data, masked crc32c of the data) of tensorboardX's Event protobufs."""

    def __init__(self, directory: Path):
        from tensorboardX.proto import event_pb2, summary_pb2
        from tensorboardX.record_writer import masked_crc32c

        self.pb, self.summary_pb, self.crc = event_pb2, summary_pb2, masked_crc32c
        directory.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time_ns():020d}.distillq"  # sorts by creation
        self.fh = open(directory / name, "xb")  # noqa: SIM115 (closed by close())
        try:
            self.event(file_version="brain.Event:2")
        except BaseException:
            self.fh.close()
            raise

    def event(self, **fields) -> None:
        data = self.pb.Event(wall_time=time.time(), **fields).SerializeToString()
        header = struct.pack("<Q", len(data))
        self.fh.write(header + struct.pack("<I", self.crc(header)) + data
                      + struct.pack("<I", self.crc(data)))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if values:
            s = self.summary_pb
            self.event(step=int(step), summary=s.Summary(value=[
                s.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]))

    def _plugin(self, tag: str, **data) -> None:
        from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

        s = self.summary_pb
        content = HParamsPluginData(version=0, **data).SerializeToString()
        meta = s.SummaryMetadata(plugin_data=s.SummaryMetadata.PluginData(
            plugin_name=HPARAMS, content=content))
        self.event(summary=s.Summary(value=[s.Summary.Value(tag=tag, metadata=meta)]))

    def session_start(self, hp: dict[str, Any], start_secs: float) -> None:
        from tensorboardX.proto.plugin_hparams_pb2 import SessionStartInfo

        info = SessionStartInfo(start_time_secs=start_secs)
        for k, v in hp.items():
            if isinstance(v, bool):
                info.hparams[k].bool_value = v
            elif isinstance(v, float):
                info.hparams[k].number_value = v
            else:
                info.hparams[k].string_value = str(v)
        self._plugin(START_TAG, session_start_info=info)

    def session_end(self, status: str) -> None:
        from tensorboardX.proto.api_pb2 import Status
        from tensorboardX.proto.plugin_hparams_pb2 import SessionEndInfo

        self._plugin(END_TAG, session_end_info=SessionEndInfo(
            status=Status.Value(status), end_time_secs=time.time()))

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _end(files: dict[str, _Events], meta: dict, last: dict[str, int]) -> None:
    """A finished run: the final evaluation (complete) and the sessions' end status."""
    status = STATUS.get(meta.get("status"))
    if status is None:
        return
    final = finals(meta) if meta["status"] == "complete" else {}
    for name, w in files.items():
        if name in final and name in last:
            w.scalars(last[name], final[name])
        w.session_end(status)


def rebuild(run_dir: Path, meta: dict) -> dict[str, int]:
    """Regenerate <run>/tensorboard/ from metrics.jsonl and meta.json (the final evaluation
    if the run is complete) in a temporary directory that then replaces it. Also fills in
    the files of a run made before them. Returns each member's last step."""
    run_dir = Path(run_dir)
    rows = store.read_metrics(run_dir)
    names = row_names(meta, rows)
    index = indices(meta)
    tmp = run_dir / f".{TENSORBOARD}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    files: dict[str, _Events] = {}
    last: dict[str, int] = {}
    try:
        for name, row in zip(names, rows, strict=True):
            w = files.get(name)
            if w is None:
                w = files[name] = _Events(tmp / name)
                w.session_start(hparams(run_dir, meta, name, index[name]), _start_secs(meta))
            w.scalars(row["env_steps"], scalars(row))
            last[name] = int(row["env_steps"])
        _end(files, meta, last)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for w in files.values():
            w.close()
    tmp.mkdir(exist_ok=True)           # a run with no rows yet: an empty directory
    store.place(tmp, run_dir / TENSORBOARD)
    return last


# --------------------------------------------------------------------------- a live run


class Board:
    """A run's TensorBoard files while it trains (process 0): `append` each chunk's rows,
    `rebuild` after --resume drops rows, `finish` when the run ends. Never raises: a failure
    warns once and turns the files off for this session."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.files: dict[str, _Events] = {}
        self.last: dict[str, int] = {}
        self.off = False

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except Exception as e:  # noqa: BLE001 (the run must go on whatever the files do)
            self.off = True
            self.close()
            warn(f"TensorBoard files in {self.dir / TENSORBOARD} are not written from here "
                 f"on ({type(e).__name__}: {e}); the run goes on")

    def _file(self, meta: dict, name: str, i: int) -> _Events:
        w = self.files.get(name)
        if w is None:
            d = self.dir / TENSORBOARD / name
            new = not d.exists()        # a rebuilt member already has its session
            w = self.files[name] = _Events(d)
            if new:
                w.session_start(hparams(self.dir, meta, name, i), _start_secs(meta))
        return w

    def append(self, meta: dict, rows: list[dict]) -> None:
        """One chunk's metrics rows (in member order), as metrics.jsonl got them."""
        if self.off or not rows:
            return
        with self._guard():
            index = indices(meta)
            for name, row in zip(row_names(meta, rows), rows, strict=True):
                self._file(meta, name, index[name]).scalars(row["env_steps"], scalars(row))
                self.last[name] = int(row["env_steps"])
            for w in self.files.values():
                w.flush()

    def rebuild(self, meta: dict) -> None:
        """Regenerate the files from metrics.jsonl (on --resume, after truncate_metrics)."""
        self.close()
        if not self.off:
            with self._guard():
                self.last = rebuild(self.dir, meta)

    def finish(self, meta: dict) -> None:
        """The run ended (meta.json's status): the final evaluation if it is complete, the
        sessions' end status; the files are closed."""
        if not self.off and meta.get("status") in STATUS:
            with self._guard():
                names = set(self.last) | set(finals(meta) if meta["status"] == "complete"
                                               else {})
                index = indices(meta)
                for name in sorted(names):
                    self._file(meta, name, index[name])
                _end(self.files, meta, self.last)
        self.close()

    def close(self) -> None:
        files, self.files = self.files, {}
        for w in files.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001 (closing what failed already)
                pass

