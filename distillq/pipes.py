"""The pipe protocol: one JSON object on stdout per command, upstream JSON read from stdin.

Humans' output (progress, tables, warnings) goes to stderr (runs/console.py).
"""

from __future__ import annotations

import sys
import time

from distillq.errors import DistillqError, RunDirError

STDIN_LIMIT = 16 * 2**20   # characters of upstream JSON read from stdin, at most
_json_out = None
waited_s = 0.0             # time spent waiting for stdin (the upstream command running)


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


def read_stdin() -> str:
    """Upstream JSON from stdin, bounded (`< /dev/zero` must not fill memory). The time spent
    waiting for it is added to `waited_s`: a pipeline's command does not count it."""
    global waited_s
    t = time.perf_counter()
    try:
        text = sys.stdin.read(STDIN_LIMIT + 1)
    except (UnicodeDecodeError, OSError) as e:
        raise DistillqError(f"cannot read stdin: {type(e).__name__}") from None
    waited_s += time.perf_counter() - t
    if len(text) > STDIN_LIMIT:
        raise DistillqError(f"stdin holds more than {STDIN_LIMIT // 2**20} MB: not the JSON "
                            "output of a distillq command")
    return text


def _piped(what: str) -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise DistillqError(f"no {what} given: pass it as an argument, or pipe the JSON output "
                            "of the previous distillq command into this one")
    return read_stdin()


def upstream(what: str) -> dict:
    """The upstream command's JSON (its run_dir, and `shown`: the runs whose tables the
    pipeline has printed so far)."""
    return read_upstream(_piped(what))


def upstream_run_dirs() -> list[str]:
    """Run dirs from upstream JSON: evaluate's results, or a single run_dir."""
    return upstream_runs(_piped("run"))


def shown(upstream_obj: dict | None) -> list[str]:
    """The runs whose tables the pipeline has printed so far."""
    out = (upstream_obj or {}).get("shown")
    return [x for x in out if isinstance(x, str)] if isinstance(out, list) else []


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
