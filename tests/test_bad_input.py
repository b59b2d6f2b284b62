"""Bad input: one line on stderr, exit 2, never a traceback (in-process, plus a fuzz)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillq import cli, commands


def invoke(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = cli.sys.stdin
    cli.sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(args)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        cli.sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def one_line_error(args, stdin="") -> str:
    code, out, err = invoke(args, stdin)
    assert code == 2, (code, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("distillq: error: "), err
    assert "Traceback" not in err and out == ""
    return lines[0]


@pytest.fixture(scope="module")
def runs(teacher_run, tmp_path_factory):
    """The tiny teacher, a student distilled from it, and damaged copies."""
    from conftest import tiny_distill

    t = teacher_run[0]
    d = tmp_path_factory.mktemp("bad")
    commands.distill(tiny_distill(), [str(t)], out=str(d / "s"), show_progress=False)
    damaged = {}
    for kind in ("truncated", "corrupted", "partial", "no_meta", "bad_meta", "running"):
        c = d / kind
        shutil.copytree(t, c)
        data = [p for p in (c / "params").rglob("*") if p.is_file() and "/d/" in str(p)]
        if kind == "truncated":
            for p in data:
                p.write_bytes(p.read_bytes()[:7])
        elif kind == "corrupted":
            for p in data:
                p.write_bytes(bytes(b ^ 0x5A for b in p.read_bytes()))
        elif kind == "partial":
            (c / "params" / "manifest.ocdbt").unlink()
        elif kind == "no_meta":
            (c / "meta.json").unlink()
        elif kind == "bad_meta":
            (c / "meta.json").write_text("{not json")
        elif kind == "running":
            m = json.loads((c / "meta.json").read_text())
            m["status"] = "running"
            (c / "meta.json").write_text(json.dumps(m))
        damaged[kind] = c
    return t, d / "s", damaged, d


@pytest.mark.parametrize("args,needle", [
    (["train-teacher", "--seeds", "0"], "seeds: must be >= 1"),
    (["train-teacher", "--seeds", "-3"], "seeds: must be >= 1"),
    (["train-teacher", "--seeds", "four"], "seeds: expected int"),
    (["train-teacher", "--steps", "0"], "total_steps: must be >= 1"),
    (["train-teacher", "--steps", "1e400"], "total_steps: expected int"),
    (["train-teacher", "--lr", "-1e-3"], "lr: must be > 0"),
    (["train-teacher", "--lr", "fast"], "lr: expected float"),
    (["train-teacher", "--lr", "inf"], "lr: must be a finite number"),
    (["train-teacher", "--hidden", "128,,64"], "network: expected comma-separated integers"),
    (["train-teacher", "--hidden", "rnn:4"], "unknown network type 'rnn'"),
    (["train-teacher", "--hidden", "linear:4"], "linear takes no options"),
    (["train-teacher", "--hidden", "cnn:0"], "network: cnn sizes must be >= 1"),
    (["train-teacher", "--set", "batch_size=100000"], "batch_size (100000) is larger"),
    (["train-teacher", "--set", "gamma=1.5"], "gamma: must be <= 1.0"),
    (["train-teacher", "--set", "learning_rate=1"], "unknown config key 'learning_rate'"),
    (["train-teacher", "--set", "lr"], "--set expects key=value"),
    (["train-teacher", "--config", "/nonexistent.toml"], "config file not found"),
    (["train-teacher", "--out", "/etc/passwd/run"], "not a writable directory"),
    (["train-teacher", "--seeds"], "requires an argument"),
    (["train-teacher", "extra"], "unexpected extra argument"),
    (["train_teacher"], "No such command"),
    (["distill", "--temp", "0"], "temp: must be > 0"),
    (["distill", "--temp", "hot"], "temp: expected comma-separated"),
    (["distill", "--temp", "1,-2"], "temp: must be > 0"),
    (["distill", "--student", "64,x"], "network: expected comma-separated integers"),
    (["distill", "--student", "0"], "network: hidden sizes must be >= 1"),
    (["distill", "--student", "linear", "--loss", "kl", "--loss", "feature"],
     "student layer -1 does not exist in a student with 0 hidden layers"),
    (["distill", "--loss", "huber"], "unknown loss 'huber'"),
    (["distill", "--loss", "feature"], "needs at least one output loss"),
    (["distill", "--loss", "kl=-1"], "weight of kl must be finite and >= 0"),
    (["distill", "--collect", "random"], "collect: must be one of"),
    (["distill", "--kl-mode", "both"], "kl_mode: must be one of"),
    (["distill", "--seeds", "0"], "seeds: must be >= 1"),
    (["distill", "--set", "dataset_steps=999999", "--collect", "dataset"], "dataset_steps"),
    (["evaluate", "--episodes", "0"], "episodes: must be >= 1"),
    (["evaluate", "--episodes", "many"], "episodes: expected int"),
])
def test_bad_arguments(args, needle):
    assert needle in one_line_error(args)


def test_malformed_and_unknown_key_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1\n")
    assert "malformed config file" in one_line_error(["train-teacher", "-c", str(bad)])
    unk = tmp_path / "unk.toml"
    unk.write_text("[dqn]\nepsilon = 0.1\n")
    assert "unknown config key 'epsilon'" in one_line_error(["distill", "-c", str(unk)])
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('seeds = "many"\n')
    assert "seeds: expected int" in one_line_error(["train-teacher", "-c", str(wrong)])


def test_stdin_rows():
    assert "no run given" in one_line_error(["evaluate"], stdin="")
    assert "no run given" in one_line_error(["distill"], stdin="   \n")
    assert "not the JSON output" in one_line_error(["evaluate"], stdin="hello\n")
    assert "not the JSON output" in one_line_error(["distill"], stdin='{"kind": "x"}\n')
    assert "not the JSON output" in one_line_error(["evaluate"], stdin="[1, 2]\n")
    assert "run dir not found" in one_line_error(["evaluate"],
                                                 stdin='{"run_dir": "/nonexistent"}\n')


def test_run_dir_rows(runs, tmp_path):
    teacher, student, damaged, _ = runs
    assert "run dir not found" in one_line_error(["evaluate", str(tmp_path / "gone")])
    assert "a teacher run is expected" in one_line_error(["distill", "-t", str(student)])
    assert "resume it with `distillq distill" in one_line_error(
        ["train-teacher", "--resume", str(student)])
    assert "env mismatch" in one_line_error(["distill", "-t", str(teacher),
                                             "--env", "Acrobot-v1"])
    for kind, needle in (("truncated", "damaged checkpoint"), ("corrupted", "damaged checkpoint"),
                         ("partial", "damaged checkpoint"), ("no_meta", "no meta.json"),
                         ("bad_meta", "corrupted meta.json"), ("running", "not complete")):
        assert needle in one_line_error(["evaluate", str(damaged[kind])]), kind
        assert needle in one_line_error(["distill", "-t", str(damaged[kind])]), kind


def test_unknown_env_lists_valid_ones(tmp_path):
    msg = one_line_error(["train-teacher", "--env", "Cartpole", "--out", str(tmp_path / "x")])
    assert "unknown env 'Cartpole'; valid: CartPole-v1" in msg
    assert not (tmp_path / "x").exists()


def test_existing_run_never_overwritten(runs):
    teacher, _, _, _ = runs
    before = (teacher / "meta.json").read_text()
    assert "already exists" in one_line_error(["train-teacher", "--out", str(teacher)])
    assert (teacher / "meta.json").read_text() == before


# ------------------------------------------------------------------------------- fuzz

OPTS = ["--seeds", "--seed", "--steps", "--lr", "--hidden", "--env", "--num-envs", "--set",
        "--config", "--out", "--force", "-q", "--loss", "--temp", "--student", "--collect",
        "--kl-mode", "--ensemble", "--teacher", "--episodes", "--resume", "-h", "--version"]
VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "2", "1e-3", "1e400", "nan", "inf", "-inf", "abc", "",
                     "64,32", "64,,x", "kl", "kl=1", "mse=0,1", "feature", "huber",
                     "teacher", "dataset", "rusu", "CartPole-v1", "Pong", "lr=1", "seeds=0",
                     "x=y", "hidden=", "/nonexistent", "/etc/passwd/x", "0.01,1,2", "1_000"]),
    st.text(max_size=12),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
ARGS = st.tuples(
    st.sampled_from(["train-teacher", "distill", "evaluate", "report", "bogus", "--help"]),
    st.lists(st.one_of(st.sampled_from(OPTS), VALUES), max_size=8),
).map(lambda t: [t[0], *t[1]])


@pytest.fixture
def stubbed(monkeypatch):
    """Valid arguments must not start training: stub the work behind the CLI."""
    def fake(*_a, **_k):
        return {"run_dir": "stub", "kind": "stub"}
    for name in ("train_teacher", "distill", "evaluate_runs"):
        monkeypatch.setattr(commands, name, fake)
    from distillq import report

    monkeypatch.setattr(report, "make_report", lambda *a, **k: {"table": [], "kind": "stub"})


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(args=ARGS, stdin=st.sampled_from(["", "garbage", '{"run_dir": "/nonexistent"}']))
def test_fuzz_never_a_traceback(stubbed, args, stdin):
    code, out, err = invoke(args, stdin)
    assert code in (0, 2), (args, code, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)
    if code == 2 and not err.lstrip().startswith("Usage"):
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("distillq: error: "), (args, err)


def test_wall_time_excludes_waiting_for_upstream_stdin(monkeypatch):
    """In a pipeline the downstream command starts at once and blocks on stdin: that wait
    is not its own time (checked with a fake clock, not by timing)."""
    clock = iter([100.0, 107.5])
    monkeypatch.setattr(cli.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(cli.sys, "stdin", io.StringIO('{"run_dir": "r"}\n'))
    before = cli._STARTED
    try:
        assert cli._read_stdin() == '{"run_dir": "r"}\n'
        assert cli._STARTED == pytest.approx(before + 7.5)
    finally:
        cli._STARTED = before


def test_a_moved_runs_dir_keeps_students_and_teachers_together(tmp_path, monkeypatch):
    """A real runs/ (default names, made by the commands) moved elsewhere as a whole: the
    student finds its teacher by the relative path recorded at creation (meta.json is not
    edited). With the teacher gone, evaluate warns and reports the student alone."""
    from conftest import tiny_distill, tiny_teacher

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    t = commands.train_teacher(tiny_teacher(), show_progress=False)
    s = commands.distill(tiny_distill(), [t["run_dir"]], show_progress=False)
    assert t["run_dir"].startswith("runs/") and s["run_dir"].startswith("runs/")
    moved = tmp_path / "elsewhere" / "deep"
    moved.mkdir(parents=True)
    shutil.move(str(work / "runs"), str(moved / "runs"))
    student = moved / s["run_dir"]
    teacher = (moved / t["run_dir"]).resolve()
    recorded = json.loads((student / "meta.json").read_text())["teacher"]["runs"][0]
    assert not Path(recorded["run_dir"]).exists()            # the absolute path is stale
    code, out, err = invoke(["evaluate", str(student), "--episodes", "2"])
    assert code == 0, err
    (res,) = json.loads(out)["results"]
    assert res["teacher"] == [str(teacher)]
    assert "retention" in res["evaluation"]["overall"]
    shutil.rmtree(teacher)
    code, out, err = invoke(["evaluate", str(student), "--episodes", "2"])
    assert code == 0 and "teacher run of" in err and "missing" in err
    (res,) = json.loads(out)["results"]
    assert "teacher" not in res and "retention" not in res["evaluation"]["overall"]
