"""The pipe protocol: one JSON object on stdout per command, upstream JSON read from stdin.

Humans' output (progress, tables, warnings) goes to stderr through runner.console.
"""

from __future__ import annotations

import sys

from distillq.errors import RunDirError

_json_out = None


def protect_stdout() -> None:
    """Keep stdout for the command's one JSON object: native libraries (gloo prints
    "[Gloo] Rank 0 is connected ..." on fd 1) would corrupt it. fd 1 is pointed at stderr
    and `emit` writes through a saved duplicate of the real stdout. A no-op when stdout is
    not the process's own (in-process callers such as tests)."""
    global _json_out
    if _json_out is not None or sys.stdout is not sys.__stdout__:
        return
    import os

    try:
        sys.stdout.flush()
        _json_out = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
    except (OSError, ValueError):
        _json_out = None


def emit(obj: dict) -> None:
    """The one JSON object a command prints on stdout."""
    import json

    out = _json_out if _json_out is not None else sys.stdout
    out.write(json.dumps(obj) + "\n")
    out.flush()


def read_upstream(stdin_text: str) -> dict:
    """Parse the JSON a previous distillq command printed on stdout."""
    import json

    text = stdin_text.strip()
    if not text:
        raise RunDirError("no run given: pass a run dir, or pipe the JSON output of "
                          "train-teacher / distill into this command")
    obj = None
    for raw in reversed(text.splitlines()):  # the last JSON object wins
        line = raw.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
            break
        except (json.JSONDecodeError, RecursionError):   # garbage, or nested too deep
            continue
    if not isinstance(obj, dict) or not isinstance(obj.get("run_dir"), str):
        raise RunDirError("stdin is not the JSON output of a distillq command (expected an "
                          "object with a run_dir)")
    return obj


def upstream_runs(stdin_text: str) -> list[str]:
    """Run dirs named by upstream JSON: every result of `evaluate`, or one run_dir."""
    import json

    for line in reversed(stdin_text.strip().splitlines()):
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and isinstance(obj.get("results"), list):
            dirs = [r.get("run_dir") for r in obj["results"] if isinstance(r, dict)]
            if dirs and all(isinstance(d, str) for d in dirs):
                return dirs
        break
    return [read_upstream(stdin_text)["run_dir"]]
