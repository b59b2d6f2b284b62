"""The CLI end to end through real subprocesses and pipes, on a tiny budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_DISTILL, TINY_TEACHER

from distillq import config

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]


def _env():
    env = dict(os.environ)
    env.pop("DISTILLQ_DEBUG", None)
    return env


def run(args, *, stdin: str | None = None, cwd=None, check_rc: int | None = 0):
    p = subprocess.run(EXE + args, input=stdin if stdin is not None else "", capture_output=True,
                       text=True, cwd=cwd, env=_env(), timeout=600)
    if check_rc is not None:
        assert p.returncode == check_rc, f"rc={p.returncode}\nstderr:\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def cfgs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    t = d / "teacher.toml"
    t.write_text(config.to_toml(config.build(config.TeacherConfig, {**TINY_TEACHER, "seeds": 2})))
    s = d / "distill.toml"
    s.write_text(config.to_toml(config.build(config.DistillConfig, TINY_DISTILL)))
    return t, s


@pytest.fixture(scope="module")
def trained(cfgs, tmp_path_factory):
    """train-teacher then distill, by path, each a subprocess."""
    d = tmp_path_factory.mktemp("cli")
    t = run(["train-teacher", "-c", str(cfgs[0]), "--out", str(d / "t"), "-q"])
    tj = json.loads(t.stdout)
    s = run(["distill", "-c", str(cfgs[1]), "--teacher", str(d / "t"), "--loss", "ce",
             "--out", str(d / "s"), "-q"])
    sj = json.loads(s.stdout)
    return d, tj, sj


def test_stdout_is_exactly_one_json_object(trained):
    _, tj, sj = trained
    assert tj["kind"] == "teacher" and tj["seeds"] == [0, 1] and tj["params"] > 0
    assert len(tj["evaluation"]["per_seed"]) == 2
    assert sj["kind"] == "student" and sj["loss"] == ["ce"] and sj["collect"] == "teacher"
    assert 0 <= sj["evaluation"]["overall"]["fidelity"] <= 1
    for k in ("wall_s", "compile_s", "train_s", "run_dir", "env"):
        assert k in tj and k in sj


def test_evaluate_paths_reproduces_training_evaluation(trained):
    d, tj, sj = trained
    e = run(["evaluate", str(d / "s"), str(d / "t"), "--episodes", "4"])
    ej = json.loads(e.stdout)
    assert [r["kind"] for r in ej["results"]] == ["student", "teacher"]
    stu, tea = ej["results"]
    # same episode keys -> the same numbers as train-teacher's / distill's final evaluation
    assert tea["evaluation"]["overall"]["mean"] == tj["evaluation"]["overall"]["mean"]
    assert stu["evaluation"]["overall"]["mean"] == sj["evaluation"]["overall"]["mean"]
    assert stu["evaluation"]["overall"]["teacher_mean"] == \
        pytest.approx(sj["evaluation"]["overall"]["teacher_mean"])
    assert stu["size_ratio"] == pytest.approx(stu["params"] / stu["teacher_params"])
    assert stu["speed"]["eval_env_steps_per_s"] > 0 and stu["speed"]["forward_obs_per_s"] > 0


def test_tables_are_whole_when_stderr_is_not_a_terminal(trained):
    """In CI or 2>log rich would cut every table to 80 columns ("teache…", "retenti…")."""
    d, _, _ = trained
    env = _env()
    env.pop("COLUMNS", None)
    p = subprocess.run(EXE + ["evaluate", str(d / "s"), "--episodes", "2"], capture_output=True,
                       text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    header = next(line for line in p.stderr.splitlines() if "seed" in line and "mean" in line)
    for name in ("teacher_mean", "random_mean", "retention", "fidelity"):
        assert name in header, header
    assert "…" not in p.stderr


def test_shell_pipeline_verbatim(cfgs, tmp_path):
    """train-teacher | distill --loss kl --temp 2 | evaluate, through a real shell pipe."""
    exe = " ".join(EXE)
    cmd = (f"{exe} train-teacher -c {cfgs[0]} -q | {exe} distill -c {cfgs[1]} --loss kl "
           f"--temp 2 -q | {exe} evaluate --episodes 4")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       cwd=tmp_path, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["kind"] == "evaluation" and out["episodes"] == 4
    student, teacher = out["results"]                       # "evaluates both"
    assert student["kind"] == "student" and teacher["kind"] == "teacher"
    assert student["evaluation"]["overall"]["episodes"] == 8
    assert student["teacher"] == [teacher["run_dir"]]
    runs = sorted(Path(tmp_path, "runs").iterdir())
    assert len(runs) == 2
    # each table once (teacher's, student's): evaluate reproduces the numbers printed
    # upstream, so it says so instead of printing them again
    assert p.stderr.count("┃ seed ┃") == 2, p.stderr[-3000:]
    assert " ".join(p.stderr.split()).count("the same numbers as its table above") == 2


def test_help_does_not_import_jax():
    code = ("import sys\nfrom distillq import cli\ntry:\n    cli.main(['train-teacher','--help'])\n"
            "except SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('jax','gymnax','flax','orbax') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert "HEAVY []" in p.stdout
    assert "--seeds" in p.stdout


def _bad(args, stdin="", cwd=None):
    p = run(args, stdin=stdin, cwd=cwd, check_rc=None)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("distillq: error: "), p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
    return lines[0]


def test_bad_input_one_line_exit_2(trained, tmp_path, cfgs):
    d, _, _ = trained
    assert "run dir not found" in _bad(["evaluate", str(tmp_path / "missing")])
    assert "has no sweep points" in _bad(["distill", "--teacher", str(d / "s"),
                                          "--teacher-point", "1"])
    assert "not the JSON output" in _bad(["evaluate"], stdin="garbage\n")
    assert "no run given" in _bad(["evaluate"], stdin="")
    assert "seeds: must be >= 1" in _bad(["train-teacher", "--seeds", "0"])
    assert "expected int" in _bad(["train-teacher", "--steps", "lots"])
    assert "temp: must be > 0" in _bad(["distill", "--temp", "-1", "--teacher", str(d / "t")])
    assert "episodes: must be >= 1" in _bad(["evaluate", "--episodes", "0", str(d / "t")])
    assert "unknown env" in _bad(["train-teacher", "--env", "CartPole-v0", "-c", str(cfgs[0]),
                                  "--out", str(tmp_path / "x")])
    assert "already exists" in _bad(["train-teacher", "--out", str(d / "t")])
    assert "No such option" in _bad(["train-teacher", "--bogus"])
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [\n")
    assert "malformed config file" in _bad(["train-teacher", "-c", str(bad)])
    # unwritable for everyone, root included (sysfs refuses mkdir): the check before any
    # work catches it for a user, the run-dir creation for root; one line either way
    msg = _bad(["train-teacher", "-c", str(cfgs[0]), "--out", "/sys/distillq-run"])
    assert "cannot write under /sys" in msg or "cannot create run dir /sys/distillq-run" in msg
    assert not Path("/sys/distillq-run").exists()
    assert not (tmp_path / "x").exists()


def test_damaged_checkpoint_via_cli_is_one_line(trained, tmp_path):
    import shutil

    d, _, _ = trained
    c = tmp_path / "damaged"
    shutil.copytree(d / "t", c)
    for p in (c / "params").rglob("*"):
        if p.is_file() and "/d/" in str(p):
            p.write_bytes(b"")
    assert "damaged checkpoint" in _bad(["evaluate", str(c)])


def test_divergence_stops_keeps_last_good_checkpoint_and_says_where(cfgs, tmp_path):
    run_dir = tmp_path / "nan"
    p = run(["train-teacher", "-c", str(cfgs[0]), "--set", "lr=1e-3", "--set", "lr_end=1e30",
             "--set", "learning_starts=512", "--set", "checkpoint_secs=1e-6",
             "--out", str(run_dir), "-q"], check_rc=None)
    assert p.returncode == 1 and p.stdout == ""
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "NaN/Inf by env step" in lines[0], p.stderr
    assert "last good full-state checkpoint (env step" in lines[0]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "diverged" and "NaN/Inf" in meta["error"]
    from distillq.runs import store

    assert store.has_state(run_dir) and not (run_dir / "params").exists()


def test_report_from_evaluate_pipe_writes_plots_and_table(trained, tmp_path):
    d, _, _ = trained
    ev = run(["evaluate", str(d / "s"), "--episodes", "2"])
    out = tmp_path / "rep"
    p = run(["report", "--out", str(out)], stdin=ev.stdout)
    res = json.loads(p.stdout)
    assert res["kind"] == "report" and len(res["runs"]) == 2      # the student's teacher added
    for name in ("learning_curves.png", "comparison.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (out / "report.md").read_text()
    assert md.count("\n") == 4 and "| teacher |" in md and "| student |" in md
    assert "retention" in md


def test_a_chain_through_pipes(trained, cfgs, tmp_path):
    """teacher -> student (the fixture) -> a student of that student, read from stdin; its
    evaluation pipes on with retention against both the assistant and the original."""
    d, tj, sj = trained
    c = run(["distill", "-c", str(cfgs[1]), "--student", "4", "--out", str(tmp_path / "c"),
             "-q"], stdin=json.dumps(sj) + "\n")
    cj = json.loads(c.stdout)
    assert [x["kind"] for x in cj["lineage"]] == ["student", "teacher"]
    assert cj["teacher"] == sj["run_dir"] and cj["teacher_params"] == sj["params"]
    ev = json.loads(run(["evaluate", "--episodes", "3"], stdin=c.stdout).stdout)
    res = ev["results"][0]
    assert res["original_teacher"] == str(Path(tj["run_dir"]).resolve())
    assert res["original_teacher_params"] == tj["params"]
    assert "retention_original" in res["evaluation"]["overall"]   # None: a tiny teacher
    assert [r["kind"] for r in ev["results"]] == ["student", "student"]  # and its assistant


def test_closed_stdout_is_one_line_not_a_crash(trained):
    """`distillq evaluate RUN >&-`: no AttributeError, one line, exit 2, before any work."""
    d, _, _ = trained
    p = subprocess.run(["bash", "-c", 'exec "$@" >&-', "bash", *EXE, "evaluate", str(d / "t")],
                       stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
                       timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "stdout is closed" in lines[0], p.stderr


def test_report_draws_a_running_run_without_jax(trained, tmp_path):
    """Live monitoring: a run still training (no params yet) is reported from its
    metrics.jsonl, with its status; report never imports jax."""
    import shutil

    d, _, _ = trained
    live = tmp_path / "live"
    shutil.copytree(d / "t", live)
    shutil.rmtree(live / "params")
    meta = json.loads((live / "meta.json").read_text())
    meta["status"] = "running"
    for k in ("evaluation", "train", "params_digest"):
        meta.pop(k, None)
    (live / "meta.json").write_text(json.dumps(meta))
    code = ("import sys, json\nfrom distillq import cli\ntry:\n"
            f"    cli.main(['report', {str(live)!r}, {str(d / 's')!r}, '--out', "
            f"{str(tmp_path / 'rep')!r}])\nexcept SystemExit as e:\n    assert not e.code, e\n"
            "print('HEAVY', sorted(m for m in ('jax', 'flax', 'orbax.checkpoint') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "HEAVY []" in p.stdout + p.stderr      # fd 1 is kept for the JSON: print -> stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| live | running | teacher |" in md and "| complete | student |" in md
    png = (tmp_path / "rep" / "learning_curves.png").read_bytes()
    assert png[:4] == b"\x89PNG"
