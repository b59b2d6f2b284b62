"""Output paths of the commands that write outside run dirs (export, render, report).

Every path is checked before any work (exit 2, one line): UTF-8, not inside a run dir, not a
symbolic link, not an existing file or dir unless --force, and then only one the same
command wrote (never something else), and a parent where a file can actually be created
(probed: as root, os.access says yes to read-only mounts and /proc).

Everything is written into a staging dir beside the target (`.NAME.tmp-*`) and moved into
place only when complete: an error, a full disk, Ctrl-C or SIGTERM leave the old output as
it was and no temporary file behind (the staging dir is removed on every exit path,
signals included, through signals.cleanup).
"""

from __future__ import annotations

import errno
import os
import shutil
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


printable = store.printable   # the path, refused in one line unless it is UTF-8 text


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def probe_parent(path: Path) -> None:
    """Fail unless a file can be created where `path` will be (its nearest existing
    ancestor): a real write, removed at once."""
    p = _nearest_existing(path.parent)
    if not p.is_dir():
        raise RunDirError(f"cannot write {path}: {p} is not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".distillq-probe-", dir=p)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise RunDirError(f"cannot write under {p}: {e.strerror or type(e).__name__}"
                          ) from None


def check(targets: list[Target], force: bool) -> None:
    """Refuse, before any work, outputs that cannot or must not be written."""
    for t in targets:
        path = printable(t.path)
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
        probe_parent(path)


_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES,
         errno.EPERM}


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


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
        _remove(tmp)
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
            _remove(tmp)


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
            _remove(dst)
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
                    _remove(old)
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
            _remove(old)
        return ""

    with signals.cleanup(drop):
        drop(0)
