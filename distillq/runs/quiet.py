"""orbax's noise, quietened once per process: its absl/orbax log lines, and the benign
'RuntimeError: Event loop is closed' tracebacks that tensorstore callbacks raise from their
own threads after a failed restore (orbax-checkpoint 0.12.8). Everything else still reaches
the original hooks."""

from __future__ import annotations

import contextlib
import sys


def _is_closed_loop_noise(exc: BaseException | None) -> bool:
    return isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"


def install_noise_filter() -> None:
    """Drop the benign 'Event loop is closed' tracebacks; everything else reaches the
    original hooks."""
    import threading

    if getattr(sys, "_distillq_noise_filter", False):
        return
    sys._distillq_noise_filter = True  # type: ignore[attr-defined]
    old_except, old_unraisable, old_thread = sys.excepthook, sys.unraisablehook, \
        threading.excepthook

    def excepthook(tp, exc, tb):
        if not _is_closed_loop_noise(exc):
            old_except(tp, exc, tb)

    def unraisablehook(u):
        if not _is_closed_loop_noise(u.exc_value):
            old_unraisable(u)

    def thread_hook(args):
        if not _is_closed_loop_noise(args.exc_value):
            old_thread(args)

    sys.excepthook, sys.unraisablehook, threading.excepthook = excepthook, unraisablehook, \
        thread_hook


def orbax() -> None:
    import logging

    install_noise_filter()

    for name in ("absl", "orbax", "jax._src.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(Exception):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
