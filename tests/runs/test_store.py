"""Run dirs: layout, round trip, refusal to overwrite, locking, damaged checkpoints."""

import json
import shutil

import numpy as np
import pytest

from distillq.core import networks
from distillq.errors import RunDirError
from distillq.runs import store


def test_teacher_run_layout_and_roundtrip(teacher_run):
    path, summary = teacher_run
    for name in ("meta.json", "config.toml", "metrics.jsonl", "params"):
        assert (path / name).exists(), name
    meta = json.loads((path / "meta.json").read_text())
    assert meta["kind"] == "teacher" and meta["status"] == "complete"
    assert meta["seeds"] == [0, 1] and meta["env"] == "CartPole-v1"
    run = store.load_run(path, kind="teacher")
    k = run.params["params"]["hidden_0"]["kernel"]
    assert isinstance(k, np.ndarray) and k.shape == (2, 4, 32)
    assert networks.param_count(meta["network"]) == summary["params"]
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in rows} == {0, 1} and rows[-1]["env_steps"] > 0


def test_meta_records_the_stack_a_result_came_from(teacher_run):
    """Provenance: Python, the stack's package versions (as installed), host and device."""
    import platform
    from importlib import metadata

    import jax

    prov = json.loads((teacher_run[0] / "meta.json").read_text())["provenance"]
    assert prov["python"] == platform.python_version() and prov["host"]
    for name in ("jax", "jaxlib", "flax", "optax", "gymnax", "orbax-checkpoint", "numpy"):
        assert prov["packages"][name] == metadata.version(name), name
    assert prov["device"] == {"platform": jax.devices()[0].platform,
                              "kind": jax.devices()[0].device_kind,
                              "count": jax.device_count()}


def test_params_load_with_plain_orbax_and_flax(teacher_run):
    """README promise: outside distillq, orbax + flax suffice to run the network (the
    README's snippet itself, run against a real teacher)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    path, _ = teacher_run
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("Loading params outside distillq", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S).group(1)
    code = code.replace('Path("runs/teacher-...")', f"Path({str(path)!r})")
    code += "\nassert q.shape == (2,), q.shape\nprint('Q', q.tolist())\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": "", "PATH": ""}, cwd=path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "distillq" not in code and p.stdout.startswith("Q ")


def test_existing_run_is_never_overwritten(teacher_run, tmp_path):
    path, _ = teacher_run
    with pytest.raises(RunDirError, match="already exists"):
        store.new_run_dir("teacher", path)
    other = tmp_path / "notarun"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(RunDirError, match="not a distillq run dir"):
        store.new_run_dir("teacher", other, force=True)
    assert (other / "precious.txt").exists()


def test_fresh_names_never_collide(tmp_path):
    dirs = set()
    for _ in range(5):
        d, lock = store.new_run_dir("teacher", root=tmp_path)
        lock.release()
        dirs.add(d)
    assert len(dirs) == 5


def test_second_writer_is_refused(tmp_path):
    d, lock = store.new_run_dir("teacher", tmp_path / "r")
    try:
        with pytest.raises(RunDirError, match="in use"):
            store.RunLock(d).acquire()
        assert store.is_locked(d)
    finally:
        lock.release()
    assert not store.is_locked(d)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_wrong_kind_missing_and_incomplete(teacher_run, tmp_path):
    path, _ = teacher_run
    with pytest.raises(RunDirError, match="a student run is expected"):
        store.load_run(path, kind="student")
    with pytest.raises(RunDirError, match="run dir not found"):
        store.load_run(tmp_path / "nope")
    with pytest.raises(RunDirError, match="no meta.json"):
        store.load_run(tmp_path)
    c = _copy(path, tmp_path / "running")
    meta = json.loads((c / "meta.json").read_text())
    meta["status"] = "running"
    (c / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError, match="not complete"):
        store.load_run(c)


@pytest.mark.parametrize("damage", ["truncate_data", "flip_data", "no_metadata", "no_params",
                                    "truncate_manifest", "bad_meta_json", "meta_fields"])
def test_damaged_checkpoint_is_a_run_dir_error(teacher_run, tmp_path, damage):
    c = _copy(teacher_run[0], tmp_path / damage)
    params = c / "params"
    data = sorted(p for p in params.rglob("*") if p.is_file() and "/d/" in str(p))
    if damage == "truncate_data":
        for p in data:
            p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    elif damage == "flip_data":
        for p in data:
            b = bytearray(p.read_bytes())
            for i in range(0, len(b), 7):
                b[i] ^= 0xFF
            p.write_bytes(bytes(b))
    elif damage == "no_metadata":
        (params / "_METADATA").unlink()
    elif damage == "no_params":
        shutil.rmtree(params)
    elif damage == "truncate_manifest":
        m = params / "manifest.ocdbt"
        m.write_bytes(m.read_bytes()[:10])
    elif damage == "bad_meta_json":
        (c / "meta.json").write_text('{"kind": "teach')
    elif damage == "meta_fields":
        (c / "meta.json").write_text('{"kind": "teacher"}')
    with pytest.raises(RunDirError):
        store.load_run(c)
