"""Output paths of the commands that write outside run dirs (export, render, report).

Every path is checked before any work (exit 2, one line): UTF-8, not inside a run dir, not a
symbolic link, not an existing file or dir unless --force, and then only one the same
command wrote (never something else), and a parent where a file can actually be created
(store.probe: a real write, since as root os.access says yes to read-only mounts and /proc;
train-teacher and distill probe their run dir's parent the same way).

Everything is written into a staging dir beside the target (`.NAME.tmp-*`) and moved into
place only when complete (store.place_all: all files of an output or none): an error, a
full disk, Ctrl-C or SIGTERM leave the old output as it was and no temporary file behind
(the staging dir is removed on every exit path, signals included, through signals.cleanup).
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from distillq.errors import RunDirError, WriteError
from distillq.runs import signals, store


class Target(NamedTuple):
    """One output path of a command and how to recognise a previous output of the same
    command there (the only thing --force may replace)."""

    path: Path
    what: str                      # "export dir", "GIF", "render summary", "report dir"
    is_dir: bool
    ours: Callable[[Path], bool]   # an existing path at `path` is this command's output


def check(targets: list[Target], force: bool) -> None:
    """Refuse, before any work, outputs that cannot or must not be written."""
    for t in targets:
        path = store.printable(t.path)
        inside = store.enclosing_run(path.absolute().parent if not t.is_dir else path)
        if inside is not None:
            raise RunDirError(f"{path} is inside the run dir {inside}; write it elsewhere "
                              "(runs are never modified)")
        if path.is_symlink():
            raise RunDirError(f"{path} is a symbolic link; refusing to write through it "
                              "(give the path it points to, or another --out)")
        if path.exists():
            empty_dir = t.is_dir and path.is_dir() and not any(path.iterdir())
            if not empty_dir:
                if not force:
                    raise RunDirError(f"{path} already exists; choose another --out or pass "
                                      "--force to replace it")
                if path.is_dir() != t.is_dir or not t.ours(path):
                    raise RunDirError(f"{path} is not a distillq {t.what}; refusing to "
                                      "replace it even with --force")
        store.probe(path.parent)


_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES,
         errno.EPERM}


@contextmanager
def staging(beside: Path) -> Iterator[Path]:
    """A temporary dir beside `beside` (same filesystem: moves are renames), removed on
    every exit, signals included. Outputs are made inside it with the process's umask (the
    staging dir's own 0700 never becomes an output's mode). A write failing for want of
    space or permission becomes a one-line WriteError (exit 1) saying nothing was
    replaced."""
    parent = beside.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{beside.name}.tmp-", dir=parent))
    except OSError as e:
        raise WriteError(f"cannot write under {parent}: {e.strerror}") from None

    def gone(_signum: int) -> str:
        store.remove(tmp)
        return ""

    with signals.cleanup(gone):
        try:
            yield tmp
        except OSError as e:
            if e.errno in _DISK:
                raise WriteError(f"cannot write {beside}: {e.strerror}; nothing was written "
                                 "or replaced") from None
            raise
        finally:
            store.remove(tmp)
