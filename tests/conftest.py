"""Shared fixtures: tiny configs and one tiny teacher run reused across tests."""

from __future__ import annotations

import contextlib
import io
import os

# Tests share one compilation cache in a temp dir (hermetic, still faster on re-compiles).
os.environ.setdefault("DISTILLQ_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                         f"distillq-test-cache-{os.getuid()}"))

from distillq import _setup  # noqa: E402

_setup.configure()

import pytest  # noqa: E402

from distillq import config  # noqa: E402

TINY_TEACHER = dict(num_envs=4, total_steps=1024, learning_starts=64, buffer_size=512,
                    batch_size=32, chunk_steps=64, eval_episodes=2, final_episodes=4,
                    network="32,16", n_step=3, target_update=20)
TINY_DISTILL = dict(num_envs=4, total_steps=512, learning_starts=32, buffer_size=256,
                    batch_size=32, chunk_steps=32, eval_episodes=2, final_episodes=4,
                    network="16")


def invoke(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    from distillq import cli

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


def tiny_teacher(**kw) -> config.TeacherConfig:
    return config.build(config.TeacherConfig, {**TINY_TEACHER, "seeds": 2, **kw})


def tiny_distill(**kw) -> config.DistillConfig:
    return config.build(config.DistillConfig, {**TINY_DISTILL, **kw})


@pytest.fixture(scope="session")
def cartpole():
    from distillq.core import envs

    return envs.make("CartPole-v1")


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory):
    """A complete (tiny, unsolved) teacher run dir with 2 seeds."""
    from distillq import commands

    out = tmp_path_factory.mktemp("runs") / "teacher"
    summary = commands.train_teacher(tiny_teacher(), out=str(out), show_progress=False)
    return out, summary


# The longest test files first: `make test` hands whole files to two workers in collection
# order, so a long file collected last (alphabetically, test_resume.py) would run alone at
# the end while the other worker idles.
LONGEST_FIRST = ("test_resume.py", "test_families.py", "test_parallel.py", "test_multitask.py",
                 "test_export.py", "test_cli.py", "test_signals.py", "test_bad_input.py",
                 "test_algorithms.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)   # stable: the order within a file is kept
