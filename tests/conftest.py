"""Fixtures shared by every test directory (helpers.py holds the shared functions):
one compilation cache, CartPole, one tiny teacher run, and the order test files run in."""

from __future__ import annotations

import os

# Tests share one compilation cache in a temp dir (hermetic, still faster on re-compiles).
os.environ.setdefault("DISTILLQ_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                         f"distillq-test-cache-{os.getuid()}"))

from distillq import _setup  # noqa: E402

_setup.configure()

import pytest  # noqa: E402
from helpers import tiny_teacher  # noqa: E402


@pytest.fixture(scope="session")
def cartpole():
    from distillq.core import envs

    return envs.make("CartPole-v1")


@pytest.fixture(scope="session")
def teacher_run(tmp_path_factory):
    """A complete (tiny, unsolved) teacher run dir with 2 seeds."""
    from distillq.commands import train

    out = tmp_path_factory.mktemp("runs") / "teacher"
    summary = train.run(tiny_teacher(), out=str(out), show_progress=False)
    return out, summary


# The longest test files first: `make test` hands whole files to two workers in collection
# order, so a long file collected last would run alone at the end while the other worker
# idles.
LONGEST_FIRST = ("test_resume.py", "test_families.py", "test_parallel.py", "test_multitask.py",
                 "test_export.py", "test_cli.py", "test_signals.py", "test_bad_input.py",
                 "test_student.py", "test_dqn_algorithm.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)   # stable: the order within a file is kept
