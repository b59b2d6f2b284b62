"""Bad input: one line on stderr, exit 2, never a traceback (in-process, plus a fuzz)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import invoke, one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillq import cli, pipes
from distillq.commands import distill as distill_cmd
from distillq.commands import train as train_cmd
from distillq.errors import RunDirError
from distillq.runs import teachers


@pytest.fixture(scope="module")
def runs(teacher_run, tmp_path_factory):
    """The tiny teacher, a student distilled from it, and damaged copies."""
    from helpers import tiny_distill

    t = teacher_run[0]
    d = tmp_path_factory.mktemp("bad")
    distill_cmd.run(tiny_distill(), [str(t)], out=str(d / "s"), show_progress=False)
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
    (["train-teacher", "--out", "/etc/passwd/run"], "/etc/passwd: not a directory"),
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
    (["evaluate", "--env-param", "length"], "expected NAME=V[,V...]"),
    (["evaluate", "--env-param", "length=0.5,big"], "expected comma-separated numbers"),
    (["evaluate", "--env-param", "length=inf"], "values must be finite"),
    (["evaluate", "--env-param", "a=1", "--env-param", "a=2"], "a given twice"),
    (["evaluate", "--obs-noise", "-0.1"], "a noise std must be >= 0"),
    (["evaluate", "--env-param", "a=" + ",".join(["1"] * 33), "--env-param",
      "b=" + ",".join(["1"] * 32)], "the shift grid has 1,056 points"),
])
def test_bad_arguments(args, needle):
    assert needle in one_line_error(args)


@pytest.mark.parametrize("args,needle", [
    (["train-teacher", "--steps", "1e12"], "beyond the 2^31 - 1 the jitted loop can count"),
    (["train-teacher", "--seed", "18446744073709551616"], "go beyond 2^31 - 1"),
    (["train-teacher", "--seed", "2147483647", "--seeds", "2"], "go beyond 2^31 - 1"),
    (["train-teacher", "--set", "buffer_size=1e9"], "needs about"),
    (["train-teacher", "--set", "buffer_size=1e10"], "buffer_entries = 10,000,000,000 is beyond"),
    (["train-teacher", "--set", "num_envs=1e10", "--set", "buffer_size=1e11", "--set",
      "learning_starts=1e11", "--steps", "1e12"], "beyond the 2^31 - 1"),
    (["train-teacher", "--hidden", "100000,100000"], "needs about"),
    (["train-teacher", "--seeds", "100000"], "needs about"),
    (["evaluate", "--episodes", "1e12"], "beyond the 2^31 - 1 episodes"),
    (["train-teacher", "--coordinator", "nohostport", "--num-processes", "2",
      "--process-id", "0"], "--coordinator must be HOST:PORT"),
    (["train-teacher", "--coordinator", "host:99999", "--num-processes", "2",
      "--process-id", "0"], "--coordinator must be HOST:PORT"),
    (["train-teacher", "--out", "/tmp/" + "x" * 100_000], "cannot use /tmp/xxx"),
])
def test_sizes_checked_before_any_work(args, needle, tmp_path, monkeypatch):
    """Huge values: one line naming the limit or the memory estimate, exit 2, no run dir."""
    monkeypatch.chdir(tmp_path)
    assert needle in one_line_error(args)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_huge_sweep_is_refused_with_its_memory_estimate(runs):
    teacher = runs[0]
    temps = ",".join(str(1 + i / 10_000) for i in range(10_000))
    msg = one_line_error(["distill", "-t", str(teacher), "--temp", temps])
    assert "distill needs about" in msg and "GB" in msg and "replay buffer" in msg


def test_the_memory_check_counts_a_view_students_frames(runs):
    """2M transitions of CartPole are 96 MB per student; the same rows with a pixel student's
    8 stacked 40x60 frames beside them are 38 GB: refused, the frames counted as bytes."""
    import re

    from distillq.core import views
    from distillq.runs import limits

    assert limits.view_bytes(views.parse("pixels", 8, (4,), "CartPole-v1")) == 40 * 60 * 8
    assert limits.view_bytes(views.parse("drop=1", 3, (4,))) == 4 * 9
    assert limits.view_bytes(None) == 0
    msg = one_line_error(["distill", "-t", str(runs[0]), "--student-obs", "pixels",
                          "--frame-stack", "8", "--student", "strided", "--set",
                          "buffer_size=2_000_000"])
    gb = float(re.search(r"replay buffer ([0-9.]+) GB", msg).group(1))
    assert "distill needs about" in msg and gb > 2 * 35


def test_stdin_is_read_with_a_bound_and_deep_json_is_refused(tmp_path):
    from distillq import pipes

    assert "stdin holds more than 16 MB" in one_line_error(
        ["evaluate"], stdin="\0" * (pipes.STDIN_LIMIT + 1))
    assert "not the JSON output" in one_line_error(["evaluate"], stdin="[" * 100_000 + "\n")
    assert "not the JSON output" in one_line_error(["report"], stdin="[" * 100_000 + "\n")
    long = '{"run_dir": "' + "a" * 100_000 + '"}\n'
    assert "cannot read run dir aaaa" in one_line_error(["evaluate"], stdin=long)
    assert "File name too long" in one_line_error(["evaluate"], stdin=long)


def test_budget_is_honoured_exactly(tmp_path):
    """A chunk longer than the budget, and a last partial chunk, run exactly total_steps."""
    from helpers import tiny_teacher

    one = train_cmd.run(tiny_teacher(chunk_steps=20_000, total_steps=1024, seeds=1),
                                 out=str(tmp_path / "a"), show_progress=False)
    assert one["env_steps_per_seed"] == 1024 and one["chunks_run"] == 1
    part = train_cmd.run(tiny_teacher(chunk_steps=64, total_steps=1000, seeds=1),
                                  out=str(tmp_path / "b"), show_progress=False)
    # 250 iterations of 4 envs: chunks of 64, 64, 64 and a last one of 58
    assert part["env_steps_per_seed"] == 1000 and part["chunks_run"] == 4
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == [256, 512, 768, 1000]
    assert part["updates_per_seed"] == 250 - 16


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
    assert "teacher-point: must be >= 0" in one_line_error(["distill", "-t", str(student),
                                                           "--teacher-point", "-1"])
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
        "--kl-mode", "--ensemble", "--multitask", "--teacher", "--episodes", "--resume", "-h",
        "--version",
    "--coordinator", "--num-processes", "--process-id", "--network"]
VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "2", "1e-3", "1e400", "nan", "inf", "-inf", "abc", "",
                     "64,32", "64,,x", "kl", "kl=1", "mse=0,1", "feature", "huber",
                     "teacher", "dataset", "rusu", "CartPole-v1", "Pong", "lr=1", "seeds=0",
                     "x=y", "hidden=", "/nonexistent", "/etc/passwd/x", "0.01,1,2", "1_000",
                     # values: huge and tiny numbers, long and odd paths
                     "1e12", "1e30", "18446744073709551616", "9" * 40, "-0", "1e-300",
                     "5e-324", "buffer_size=1e12", "num_envs=1e9", "network=100000,100000",
                     "chunk_steps=1e15", "seeds=1e7", "batch_size=1e12", "linear", "cnn",
                     "cnn:0", "mlp:", "rnn:3", "/tmp/" + "x" * 5000, "x/" * 3000, "\x00",
                     "../../..", "~", "-", "--", "./runs", "host:99999", "a:b:c"]),
    st.text(max_size=12),
    st.integers(-10**12, 10**12).map(str),
    st.integers(2**31 - 3, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
ARGS = st.tuples(
    st.sampled_from(["train-teacher", "distill", "evaluate", "report", "bogus", "--help"]),
    st.lists(st.one_of(st.sampled_from(OPTS), VALUES), max_size=8),
).map(lambda t: [t[0], *t[1]])


@pytest.fixture
def stubbed(monkeypatch):
    """Valid arguments must not start training: stub the work behind the CLI, keeping the
    checks a command makes before any work (network spec, integer ranges, memory)."""
    from distillq.commands import evaluate, report
    from distillq.core import dqn, envs
    from distillq.runs import limits

    def fake(*_a, **_k):
        return {"run_dir": "stub", "kind": "stub"}

    def fake_teacher(cfg, **_k):
        limits.preflight_teacher(cfg, dqn.make(cfg, envs.make(cfg.env)))
        return fake()

    monkeypatch.setattr(train_cmd, "run", fake_teacher)
    for module in (distill_cmd, evaluate):
        monkeypatch.setattr(module, "run", fake)
    import jax

    def no_rendezvous(*_a, **_k):
        raise RuntimeError("stub: no coordinator in the fuzz")

    monkeypatch.setattr(jax.distributed, "initialize", no_rendezvous)

    monkeypatch.setattr(report, "run", lambda *a, **k: {"kind": "stub"})


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(args=ARGS, stdin=st.sampled_from(["", "garbage", '{"run_dir": "/nonexistent"}',
                                          "[" * 50_000, '{"run_dir": "' + "r" * 50_000 + '"}',
                                          '{"run_dir": "\\u0000"}', "\x00" * 1000]))
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
    monkeypatch.setattr(pipes.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(pipes.sys, "stdin", io.StringIO('{"run_dir": "r"}\n'))
    monkeypatch.setattr(pipes, "waited_s", 0.0)
    assert pipes.read_stdin() == '{"run_dir": "r"}\n'
    assert pipes.waited_s == pytest.approx(7.5)
    assert cli._started() == pytest.approx(cli._STARTED + 7.5)


def test_a_moved_runs_dir_keeps_students_and_teachers_together(tmp_path, monkeypatch):
    """A real runs/ (default names, made by the commands) moved elsewhere as a whole: the
    student finds its teacher by the relative path recorded at creation (meta.json is not
    edited). With the teacher gone, evaluate warns and reports the student alone."""
    from helpers import tiny_distill, tiny_teacher

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    t = train_cmd.run(tiny_teacher(), show_progress=False)
    s = distill_cmd.run(tiny_distill(), [t["run_dir"]], show_progress=False)
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


def test_a_swapped_teacher_is_refused(runs, tmp_path):
    """A student records its teacher's params digest: a teacher dir replaced by another run
    (here a 8-unit teacher) is refused by evaluate, report and --resume, instead of a
    retention of 904%; --no-teacher still evaluates the student alone."""
    from helpers import tiny_teacher

    teacher, student, _, _ = runs
    t, s = tmp_path / "t", tmp_path / "s"
    shutil.copytree(teacher, t)
    shutil.copytree(student, s)
    meta = json.loads((s / "meta.json").read_text())
    for entry in meta["teacher"]["runs"]:
        entry["relative_run_dir"] = "../t"
    (s / "meta.json").write_text(json.dumps(meta))
    code, out, err = invoke(["evaluate", str(s), "--episodes", "2"])
    assert code == 0, err                                      # the copy itself is fine
    train_cmd.run(tiny_teacher(network="8"), out=str(tmp_path / "other"),
                  show_progress=False)
    shutil.rmtree(t)
    shutil.copytree(tmp_path / "other", t)                     # the swap
    msg = one_line_error(["evaluate", str(s), "--episodes", "2"])
    assert f"teacher {t} is not the run {s} was distilled from" in msg
    assert "is not the run" in one_line_error(["report", str(s), "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
    with pytest.raises(RunDirError, match="is not the run"):
        teachers.of_student(s, meta)
    code, out, err = invoke(["evaluate", str(s), "--episodes", "2", "--no-teacher"])
    assert code == 0, err
    (res,) = json.loads(out)["results"]
    assert "teacher" not in res and "retention" not in res["evaluation"]["overall"]


def test_swapped_params_are_a_damaged_checkpoint_for_report_too(runs, tmp_path):
    """The params of another run under a run's own meta.json: evaluate and report (which
    needs no jax) both refuse them."""
    teacher, student, _, _ = runs
    t = tmp_path / "t"
    shutil.copytree(teacher, t)
    shutil.rmtree(t / "params")
    shutil.copytree(student / "params", t / "params")
    assert "damaged checkpoint" in one_line_error(["evaluate", str(t)])
    assert "damaged checkpoint" in one_line_error(["report", str(t), "--out",
                                                   str(tmp_path / "r")])


def test_report_never_writes_into_a_run_dir(runs):
    teacher = runs[0]
    before = sorted(p.name for p in teacher.iterdir())
    assert "inside the run dir" in one_line_error(["report", str(teacher), "--out",
                                                   str(teacher / "report")])
    assert sorted(p.name for p in teacher.iterdir()) == before


def test_evaluate_skips_paths_that_are_not_runs(runs, tmp_path):
    """`evaluate runs/*` after `make run`: a stray file among runs is skipped, with a warning."""
    teacher = runs[0]
    stray = tmp_path / "last-evaluation.json"
    stray.write_text("{}")
    code, out, err = invoke(["evaluate", str(teacher), str(stray), "--episodes", "2"])
    assert code == 0, err
    assert "warning: skipped: not a run dir (not a directory): " + str(stray) in err
    assert [r["run_dir"] for r in json.loads(out)["results"]] == [str(teacher)]
    assert "none of the 2 paths" in one_line_error(["evaluate", str(stray), str(tmp_path)])


def test_unknown_env_lists_only_envs_distillq_trains(tmp_path):
    msg = one_line_error(["train-teacher", "--env", "Pendulum-v1", "--out", str(tmp_path / "p")])
    assert "not supported (continuous actions)" in msg and "Pendulum-v1; " not in msg
    msg = one_line_error(["train-teacher", "--env", "Nope-v0"])
    assert "Breakout-MinAtar" in msg and "Pendulum" not in msg and "MNIST" not in msg


def test_help_shows_each_option_default():
    code, out, _ = invoke(["distill", "--help"])
    text = " ".join(out.replace("│", " ").split())
    assert code == 0
    for needle in ("--temp", "[default: 1.0]", "[default: kl]", "[default: 64,32]",
                   "[default: teacher]", "[default: hinton]", "[default: 40000]"):
        assert needle in text, needle
    code, out, _ = invoke(["train-teacher", "--help"])
    text = " ".join(out.replace("│", " ").split())
    for needle in ("[default: 4]", "[default: 128,64]", "[default: CartPole-v1]",
                   "configs/envs/"):
        assert needle in text, needle


def test_export_bad_input(runs, tmp_path):
    """Exporting a teacher is allowed; an incomplete, damaged or unknown-type run is one line."""
    teacher, _, damaged, _ = runs
    assert "not complete" in one_line_error(["export", str(damaged["running"]), "--out",
                                             str(tmp_path / "a")])
    assert "damaged checkpoint" in one_line_error(["export", str(damaged["corrupted"]),
                                                   "--out", str(tmp_path / "b")])
    odd = tmp_path / "odd"
    shutil.copytree(teacher, odd)
    meta = json.loads((odd / "meta.json").read_text())
    meta["network"]["type"] = "rnn"
    (odd / "meta.json").write_text(json.dumps(meta))
    assert "bad network spec" in one_line_error(["export", str(odd), "--out",
                                                 str(tmp_path / "c")])
    assert "--format must be one of" in one_line_error(["export", str(teacher), "--format",
                                                        "tflite"])
    assert not any((tmp_path / x).exists() for x in "abc")
    code, out, err = invoke(["export", str(teacher), "--out", str(tmp_path / "t"),
                             "--states", "300"])
    assert code == 0, err
    assert json.loads(out)["parity"]["ok"]


def test_usage_errors_import_neither_jax_nor_pydantic():
    """README promise: a usage error stays fast. typer 0.29 would build a pydantic adapter
    per option (pydantic's import alone: 0.22 s); distillq's string and flag options pass
    through it, and nothing heavy is imported before the one-line error."""
    code = ("import sys\nfrom distillq.cli import main\n"
            "sys.argv = ['distillq', 'train-teacher', '--steps', 'lots']\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    print(e.code, 'pydantic' in sys.modules, 'jax' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.stdout.split() == ["2", "False", "False"], (p.stdout, p.stderr[-500:])
    assert "total_steps: expected int, got 'lots'" in p.stderr
