"""A run's TensorBoard event files, read back without TensorFlow (the TFRecord framing
parsed here, the events decoded with tensorboardX's protobufs): every figure of
metrics.jsonl at its env_steps, per member, the final evaluation and the config as hparams;
rebuilt from metrics.jsonl on --resume; a failure to write them never loses the run."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_distill, tiny_teacher

from distillq.commands import distill as distill_cmd
from distillq.commands import train
from distillq.runs import lifecycle, store, tensorboard

IDENTITY = ("chunk", "seed", "env_steps", "init")


def read_records(path: Path) -> list[bytes]:
    """TFRecord framing: 8-byte length, 4-byte masked crc32c of it, data, its masked crc."""
    from tensorboardX.record_writer import masked_crc32c

    buf, out, i = path.read_bytes(), [], 0
    while i < len(buf):
        (n,) = struct.unpack("<Q", buf[i:i + 8])
        assert struct.unpack("<I", buf[i + 8:i + 12])[0] == masked_crc32c(buf[i:i + 8])
        data = buf[i + 12:i + 12 + n]
        assert struct.unpack("<I", buf[i + 12 + n:i + 16 + n])[0] == masked_crc32c(data)
        out.append(data)
        i += 16 + n
    assert i == len(buf)
    return out


def read_member(d: Path) -> dict:
    """A member directory's events, its files in TensorBoard's (name) order: scalars
    {tag: [(step, value), ...]}, hparams {name: value}, end statuses."""
    from tensorboardX.proto import api_pb2, event_pb2, plugin_hparams_pb2

    scalars, hparams, ends, starts = defaultdict(list), {}, [], 0
    files = sorted(p for p in d.iterdir() if "tfevents" in p.name)
    assert files
    for f in files:
        events = [event_pb2.Event.FromString(r) for r in read_records(f)]
        assert events[0].file_version == "brain.Event:2"
        for ev in events[1:]:
            for v in ev.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_hparams_pb2.HParamsPluginData.FromString(
                        v.metadata.plugin_data.content)
                    assert not data.HasField("experiment")    # TensorBoard computes it
                    if data.HasField("session_start_info"):
                        starts += 1
                        for k, x in data.session_start_info.hparams.items():
                            hparams[k] = getattr(x, x.WhichOneof("kind"))
                    if data.HasField("session_end_info"):
                        ends.append(api_pb2.Status.Name(data.session_end_info.status))
                else:
                    scalars[v.tag].append((ev.step, v.simple_value))
    assert starts == 1
    return {"scalars": dict(scalars), "hparams": hparams, "ends": ends, "files": len(files)}


def read_board(run: Path) -> dict[str, dict]:
    return {d.name: read_member(d) for d in sorted((run / "tensorboard").iterdir())}


def expected_curves(run: Path) -> dict[str, dict[str, list]]:
    """metrics.jsonl as per-member curves, worked out here: a chunk's rows come in member
    order (member j * n + i: seed i, initialisation j; seed i's sweep point from
    meta.json's point_index)."""
    meta = store.read_meta(run)
    n, points = len(meta["seeds"]), meta.get("point_index") or []
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    by_chunk = defaultdict(list)
    for row in store.read_metrics(run):
        by_chunk[row["chunk"]].append(row)
    for rows in by_chunk.values():
        for m, row in enumerate(rows):
            name = f"seed-{row['seed']}"
            if len(set(points)) > 1:
                name += f"-point-{points[m % n]}"
            if "init" in row:
                assert row["init"] == m // n
                name += f"-init-{row['init']}"
            for k, v in row.items():
                if k not in IDENTITY and v is not None:
                    out[name][k].append((row["env_steps"], float(np.float32(v))))
    return {k: dict(v) for k, v in out.items()}


def assert_curves_match(run: Path, board: dict) -> None:
    want = expected_curves(run)
    assert set(board) == set(want)
    for name, curves in want.items():
        got = {t: c for t, c in board[name]["scalars"].items() if not t.startswith("final/")}
        assert got == curves, name


def final_of(board: dict, name: str) -> dict[str, tuple]:
    """A member's final/* scalars: (step, value), each written once."""
    fin = {t: c for t, c in board[name]["scalars"].items() if t.startswith("final/")}
    assert all(len(c) == 1 for c in fin.values()), fin
    return {t: c[0] for t, c in fin.items()}


def f32(x: float) -> float:
    return float(np.float32(x))


def test_a_teacher_runs_curves_final_evaluation_and_hparams(teacher_run):
    run, _ = teacher_run
    meta = store.read_meta(run)
    board = read_board(run)
    assert set(board) == {"seed-0", "seed-1"}
    assert_curves_match(run, board)
    assert {"eval_return", "best_return", "loss", "epsilon", "steps_per_s"} <= \
        set(board["seed-0"]["scalars"])
    ev = meta["evaluation"]
    for i, name in enumerate(("seed-0", "seed-1")):
        last = max(r["env_steps"] for r in store.read_metrics(run) if r["seed"] == i)
        assert final_of(board, name) == {
            "final/mean_return": (last, f32(ev["per_seed"][i]["mean"])),
            "final/run_mean_return": (last, f32(ev["overall"]["mean"]))}
        hp = board[name]["hparams"]
        assert hp["run"] == run.name and hp["kind"] == "teacher" and hp["member"] == name
        assert hp["env"] == "CartPole-v1" and hp["network"] == meta["config"]["network"]
        assert hp["lr"] == meta["config"]["lr"] and hp["seeds"] == 2
        assert hp["double_dqn"] is meta["config"]["double_dqn"]
        assert board[name]["ends"] == ["STATUS_SUCCESS"]


def test_a_student_sweep_with_inits(teacher_run, tmp_path):
    """2 seeds x 2 sweep points x 2 initialisations: 8 members; the final evaluation goes
    to each seed's kept initialisation, each point's value is an hparam."""
    run = tmp_path / "s"
    distill_cmd.run(tiny_distill(network="4", temp=(1.0, 4.0), inits=2, select_episodes=2,
                                 total_steps=256), str(teacher_run[0]), out=str(run),
                    show_progress=False)
    meta = store.read_meta(run)
    board = read_board(run)
    assert set(board) == {f"seed-{s}-point-{p}-init-{j}" for s in (0, 1) for p in (0, 1)
                          for j in (0, 1)}
    assert_curves_match(run, board)
    assert {"agreement", "loss_kl", "eval_return"} <= set(board["seed-0-point-0-init-0"]
                                                           ["scalars"])
    ev, chosen = meta["evaluation"], meta["inits"]["chosen"]
    kept = set()
    for i, (s, p) in enumerate(zip(meta["seeds"], meta["point_index"], strict=True)):
        name = f"seed-{s}-point-{p}-init-{chosen[i]}"
        kept.add(name)
        fin = final_of(board, name)
        assert fin["final/mean_return"][1] == f32(ev["per_seed"][i]["mean"])
        assert fin["final/fidelity"][1] == f32(ev["per_seed"][i]["fidelity"])
        assert fin["final/run_mean_return"][1] == f32(ev["overall"]["mean"])
        assert fin["final/mean_return"][0] == board[name]["scalars"]["eval_return"][-1][0]
        assert board[name]["hparams"]["point.temp"] == meta["points"][p]["temp"]
        assert board[name]["hparams"]["teacher"] == Path(teacher_run[0]).resolve().name
    for name in set(board) - kept:
        assert final_of(board, name) == {}
    assert all(b["hparams"]["kind"] == "student" and b["ends"] == ["STATUS_SUCCESS"]
               for b in board.values())


def test_resume_rebuilds_the_files_from_metrics(tmp_path, monkeypatch):
    """Stopped after chunk 3's rows were written but before its checkpoint: --resume drops
    those rows from metrics.jsonl, and the event files are rebuilt to match (chunk 3 is not
    shown twice)."""
    run = tmp_path / "t"
    cfg = tiny_teacher(total_steps=2048, checkpoint_secs=1e-6, stop_return=None)
    save, calls = lifecycle.RunFiles.save_state, []

    def stop_at_fourth(self, state, host):
        calls.append(host["chunk"])
        if len(calls) == 4:
            raise KeyboardInterrupt
        save(self, state, host)

    monkeypatch.setattr(lifecycle.RunFiles, "save_state", stop_at_fourth)
    with pytest.raises(KeyboardInterrupt):
        train.run(cfg, out=str(run), show_progress=False)
    monkeypatch.setattr(lifecycle.RunFiles, "save_state", save)
    assert store.read_meta(run)["status"] == "interrupted"
    chunk3 = 4 * 256     # env steps per seed after chunk 3 (4 envs x 64 steps a chunk)
    before = read_board(run)
    assert before["seed-0"]["scalars"]["eval_return"][-1][0] == chunk3
    assert before["seed-0"]["ends"] == []

    train.run(None, resume=str(run), show_progress=False)
    board = read_board(run)
    assert_curves_match(run, board)
    steps = [s for s, _ in board["seed-0"]["scalars"]["eval_return"]]
    assert steps.count(chunk3) == 1 and steps == sorted(steps) and steps[-1] == 2048
    assert board["seed-0"]["files"] == 2           # rebuilt, then the resumed session's
    assert board["seed-0"]["ends"] == ["STATUS_SUCCESS"]
    assert set(final_of(board, "seed-1")) == {"final/mean_return", "final/run_mean_return"}


def test_a_failure_to_write_warns_once_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def full(self, **_fields):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tensorboard._Events, "event", full)
    out = train.run(tiny_teacher(), out=str(tmp_path / "t"), show_progress=False)
    err = capsys.readouterr().err
    assert " ".join(err.split()).count("TensorBoard files in") == 1, err
    assert "No space left on device" in err and "the run goes on" in err
    meta = store.read_meta(tmp_path / "t")
    assert meta["status"] == "complete" and out["evaluation"] == meta["evaluation"]
    assert len(store.read_metrics(tmp_path / "t")) == 8


def test_a_run_made_before_the_files_gets_them_from_its_metrics(teacher_run, tmp_path):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(teacher_run[0], run, ignore=shutil.ignore_patterns("tensorboard"))
    tensorboard.rebuild(run, store.read_meta(run))
    board, live = read_board(run), read_board(teacher_run[0])
    for name, b in board.items():
        assert b["scalars"] == live[name]["scalars"] and b["ends"] == live[name]["ends"]
        assert {**b["hparams"], "run": "?"} == {**live[name]["hparams"], "run": "?"}
    assert not [p for p in run.iterdir() if p.name.startswith(".tensorboard")]


def test_importing_the_lifecycle_does_not_import_tensorboardx():
    code = ("import sys\nfrom distillq.runs import lifecycle, tensorboard\n"
            "print('TBX', 'tensorboardX' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert "TBX False" in p.stdout, p.stderr[-2000:]


def test_rows_name_their_members_in_chunk_order():
    meta = {"seeds": [0, 1, 0, 1], "point_index": [0, 0, 1, 1], "config": {"inits": 2}}
    rows = [{"chunk": c, "seed": s, "init": j} for c in (5, 6) for j in (0, 1)
            for s in (0, 1, 0, 1)]
    assert tensorboard.row_names(meta, rows) == 2 * [
        "seed-0-point-0-init-0", "seed-1-point-0-init-0", "seed-0-point-1-init-0",
        "seed-1-point-1-init-0", "seed-0-point-0-init-1", "seed-1-point-0-init-1",
        "seed-0-point-1-init-1", "seed-1-point-1-init-1"]
    assert json.dumps(tensorboard.scalars({"chunk": 1, "seed": 0, "env_steps": 9,
                                           "loss": None, "q": 2, "ok": True})) == '{"q": 2.0}'


def test_the_final_evaluation_goes_to_each_seeds_kept_initialisation():
    """(The tiny students above tie, so every seed keeps initialisation 0 there.)"""
    per = [{"seed": 0, "mean": 1.0, "retention": None, "fidelity": 0.5},
           {"seed": 1, "mean": 2.0, "retention": 0.25, "fidelity": 0.75}]
    meta = {"seeds": [0, 1], "inits": {"chosen": [1, 0]},
            "evaluation": {"overall": {"mean": 1.5}, "per_seed": per}}
    assert tensorboard.finals(meta) == {
        "seed-0-init-1": {"final/mean_return": 1.0, "final/fidelity": 0.5,
                          "final/run_mean_return": 1.5},
        "seed-1-init-0": {"final/mean_return": 2.0, "final/retention": 0.25,
                          "final/fidelity": 0.75, "final/run_mean_return": 1.5}}
    multitask = {"seeds": [0], "evaluation": {"per_env": [
        {"env": "A", "evaluation": {"overall": {"mean": 3.0}, "per_seed": [{"mean": 3.0}]}},
        {"env": "B", "evaluation": {"overall": {"mean": 4.0}, "per_seed": [{"mean": 4.0}]}}]}}
    assert tensorboard.finals(multitask) == {"seed-0": {
        "final/A/mean_return": 3.0, "final/A/run_mean_return": 3.0,
        "final/B/mean_return": 4.0, "final/B/run_mean_return": 4.0}}


def test_each_chunk_is_on_disk_once_appended(tmp_path):
    """Curves show live: a chunk's events are flushed before the next chunk runs."""
    meta = {"kind": "teacher", "env": "E", "seeds": [3], "config": {"lr": 0.5}}
    board = tensorboard.Board(tmp_path)
    for c in range(2):
        board.append(meta, [{"chunk": c, "seed": 3, "env_steps": 10 * (c + 1),
                             "eval_return": c / 4, "loss": None}])
        got = read_member(tmp_path / "tensorboard" / "seed-3")
        assert got["scalars"] == {"eval_return": [(10 * (i + 1), i / 4) for i in range(c + 1)]}
        assert got["hparams"] == {"lr": 0.5, "run": tmp_path.name, "kind": "teacher",
                                  "env": "E", "member": "seed-3"}
    board.finish({**meta, "status": "interrupted"})
    assert read_member(tmp_path / "tensorboard" / "seed-3")["ends"] == []
