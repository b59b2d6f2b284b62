"""SIGINT and SIGTERM at any moment: one line on stderr, exit 130, run dirs left clean.

Raising KeyboardInterrupt from a signal handler is not reliable: Python runs handlers
between any two bytecodes, including inside garbage-collection callbacks and __del__
methods, where an exception is printed as "Exception ignored" and dropped (seen with jax's
GC callback: the signal was lost and the run went on to exit 0). So the handler does not
raise: it stops the process itself.

- `install()` runs first thing in the entry point, before typer, jax or gymnax load.
- Outside the training loop, a signal runs the registered cleanups (a run dir in progress
  is marked `interrupted`; see rundir.guard), prints one line and exits 130 at once, without
  the interpreter's teardown (which could race native threads still compiling: seen as a
  SIGSEGV at exit).
- Inside the chunk loop (`deferred`), a signal only sets a flag: the loop finishes the
  running chunk, writes a full checkpoint and exits 130 with the resume command.
- Python runs a handler only when the main thread executes bytecode, so long native calls
  (XLA compiling, a long evaluation, waiting for results) go through `blocking(fn)`, which
  runs them on a helper thread while the main thread waits in short joins.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_cleanups: list[Callable[[int], str]] = []   # each returns a note for the one line
_flags: list[Any] = []                        # innermost `deferred` flag, if any
_stopping = False


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, _frame) -> None:
    if _stopping:
        return
    if _flags:
        _flags[-1].set(signum)
        return
    stop_now(signum)


def install() -> None:
    if _main_thread():
        for s in SIGNALS:
            signal.signal(s, _handler)


def stop_now(signum: int) -> NoReturn:
    """Clean up (innermost first), print one line, exit 130."""
    global _stopping
    _stopping = True
    notes = []
    for cb in reversed(list(_cleanups)):
        try:
            note = cb(signum)
        except Exception as e:  # noqa: BLE001 (a failing cleanup must not hide the stop)
            note = f"cleanup failed: {type(e).__name__}"
        if note:
            notes.append(note)
    name = signal.Signals(signum).name
    try:
        tail = "; " + "; ".join(notes) if notes else ""
        sys.stderr.write(f"distillq: interrupted ({name}){tail}\n")
    except (OSError, ValueError):
        pass
    exit_now(130)


@contextmanager
def cleanup(fn: Callable[[int], str]) -> Iterator[None]:
    """Run fn(signum) if a signal stops the process inside this block."""
    _cleanups.append(fn)
    try:
        yield
    finally:
        if fn in _cleanups:
            _cleanups.remove(fn)


@contextmanager
def deferred(flag: Any) -> Iterator[Any]:
    """Inside: a signal calls flag.set(signum) instead of stopping the process."""
    _flags.append(flag)
    try:
        yield flag
    finally:
        _flags.remove(flag)


def blocking(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """fn(*args, **kw) on a helper thread; the main thread stays responsive to signals."""
    if not _main_thread():
        return fn(*args, **kw)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["out"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 (re-raised in the main thread)
            box["err"] = e

    t = threading.Thread(target=run, daemon=True, name="distillq-blocking")
    t.start()
    while t.is_alive():
        t.join(0.05)
    if "err" in box:
        raise box["err"]
    return box["out"]


def in_process() -> bool:
    """Called from Python (tests) rather than as the distillq process: never os._exit."""
    return sys.stderr is not sys.__stderr__ or sys.stdout is not sys.__stdout__


def exit_now(code: int) -> NoReturn:
    """Flush and leave at once (no interpreter teardown), unless called in-process."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    if in_process():
        sys.exit(code)
    os._exit(code)
