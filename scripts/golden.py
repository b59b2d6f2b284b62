"""Golden outputs: the numbers a fixed set of short runs gives, to prove a refactor changed nothing.

    python scripts/golden.py record results/golden/golden.json   # before a change
    python scripts/golden.py check  results/golden/golden.json   # after it: exit 1 on any diff

Each case runs the real CLI in a subprocess with fixed seeds and short budgets, then keeps:
- a SHA-256 of every saved params array (key path, dtype, shape and bytes), per run;
- meta.json's evaluation and training counters (timing fields dropped);
- metrics.jsonl, every chunk and seed (timing dropped): the whole training trajectory;
- the JSON of `evaluate` (speed and wall time dropped), including a robustness grid.
The cases cover what a refactor of the training loop can break: a CartPole teacher, a KL
student, a td+kl QDagger student, a privileged view student, a multi-task student, a MinAtar
CNN teacher, sweeps with feature/relation terms, dataset and student collection, an
ensemble and a chain. Bit-identity is a claim about one machine (XLA:CPU code generation
differs across CPUs): record and check on the same one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DQ = [sys.executable, "-m", "distillq"]
TIMING = {"compile_s", "train_s", "eval_s", "wall_s", "steps_per_s", "speed", "eval_wall_s",
          "created", "devices", "processes", "distillq_version", "run_dir", "shown",
          "relative_run_dir", "teacher", "original_teacher", "lineage", "out"}
# (applied inside each case: "teacher" is also a case name)


# The recipe the cases were recorded with, pinned: an env's distill defaults may change
# (configs/envs/), the code paths these cases check may not. Pinned first: a case's own
# flags and --set values, given after them, win.
PINNED = ["--set", "collect=teacher", "--set", "obs_norm=none", "--set", "temp=1"]


def cases(d: Path) -> list[tuple[str, list[str]]]:
    return [(name, [args[0], *PINNED, *args[1:]] if args[0] == "distill" else args)
            for name, args in _cases(d)]


def _cases(d: Path) -> list[tuple[str, list[str]]]:
    t, a = str(d / "teacher"), str(d / "acrobot")
    return [
        ("teacher", ["train-teacher", "--seeds", "2", "--steps", "20000", "--out", t]),
        ("acrobot", ["train-teacher", "--env", "Acrobot-v1", "--seeds", "2", "--steps",
                     "8000", "--out", a]),
        ("breakout_cnn", ["train-teacher", "--env", "Breakout-MinAtar", "--algo", "dqn",
                          "--seeds", "1",
                          "--steps", "12000", "--set", "learning_starts=2000", "--set",
                          "buffer_size=10000", "--set", "chunk_steps=250", "--out",
                          str(d / "breakout")]),
        ("kl", ["distill", "-t", t, "--loss", "kl", "--temp", "2", "--steps", "8000",
                "--out", str(d / "kl")]),
        ("qdagger", ["distill", "-t", t, "--loss", "td", "--loss", "kl", "--set",
                     "lambda_schedule=qdagger", "--steps", "8000", "--out", str(d / "qdagger")]),
        ("linear_lambda", ["distill", "-t", t, "--loss", "td", "--loss", "mse", "--set",
                           "lambda_schedule=linear", "--collect", "student", "--steps", "4000",
                           "--out", str(d / "linear_lambda")]),
        ("view", ["distill", "-t", t, "--student-obs", "drop=1,3", "--student-obs",
                  "noise=0.01", "--frame-stack", "2", "--set", "obs_norm=bounds", "--steps",
                  "6000", "--out", str(d / "view")]),
        ("multitask", ["distill", "--multitask", "-t", t, "-t", a, "--temp", "1,2", "--steps",
                       "6000", "--collect", "mixed", "--out", str(d / "multitask")]),
        ("sweep_feature", ["distill", "-t", t, "--loss", "kl", "--loss", "feature=0.5",
                           "--temp", "1,2", "--collect", "mixed", "--set", "kl_mode=rusu",
                           "--steps", "4000", "--out", str(d / "sweep_feature")]),
        ("dataset_rkd", ["distill", "-t", t, "--loss", "ce", "--loss", "rkd_distance=0.1",
                         "--loss", "rkd_angle=0.1", "--collect", "dataset", "--set",
                         "dataset_steps=2000", "--steps", "4000", "--out",
                         str(d / "dataset_rkd")]),
        ("ensemble", ["distill", "-t", t, "--ensemble", "--loss", "mse", "--collect",
                      "student", "--seeds", "2", "--steps", "4000", "--set", "stop_retention=2",
                      "--out", str(d / "ensemble")]),
        ("chain", ["distill", "-t", str(d / "kl"), "--student", "linear", "--steps", "4000",
                   "--out", str(d / "chain")]),
        ("eval_kl", ["evaluate", str(d / "kl"), "--episodes", "20"]),
        ("eval_chain", ["evaluate", str(d / "chain"), "--episodes", "20"]),
        ("eval_view", ["evaluate", str(d / "view"), "--episodes", "20"]),
        ("eval_multitask", ["evaluate", str(d / "multitask"), "--episodes", "20"]),
        ("eval_teacher", ["evaluate", t, "--episodes", "20"]),
        ("eval_shifts", ["evaluate", str(d / "kl"), "--episodes", "10", "--env-param",
                         "length=0.5,1", "--obs-noise", "0,0.1"]),
    ]


def scrub(x):
    """Drop timing and machine fields, recursively."""
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x


def params_hash(run_dir: Path) -> str:
    import jax
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from distillq.runs import store

    params = store.restore_params(run_dir)
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.ascontiguousarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:24]


def run_case(name: str, argv: list[str], d: Path) -> dict:
    env = {**os.environ, "DISTILLQ_CACHE_DIR": str(d / "cache")}
    t = time.perf_counter()
    p = subprocess.run([*DQ, *argv, "-q"] if argv[0] != "evaluate" else [*DQ, *argv],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{name}: exit {p.returncode}\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout)
    rec: dict = {"stdout": scrub(out)}
    if "--out" in argv:
        run = Path(argv[argv.index("--out") + 1])
        meta = json.loads((run / "meta.json").read_text())
        rec["params"] = params_hash(run)
        rec["evaluation"] = scrub(meta["evaluation"])
        rec["train"] = scrub(meta["train"])
        rec["metrics"] = [scrub(json.loads(x)) for x in
                          (run / "metrics.jsonl").read_text().splitlines()]
    print(f"{name}: {dt:.1f} s", file=sys.stderr, flush=True)
    return rec


def record_all(d: Path) -> dict:
    return {name: run_case(name, argv, d) for name, argv in cases(d)}


def _isnan(x) -> bool:
    return isinstance(x, float) and x != x  # noqa: PLR0124


def diff(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'new' if k in b else 'golden'}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} -> {len(b)}"]
        return [x for i, (u, v) in enumerate(zip(a, b, strict=True))
                for x in diff(u, v, f"{path}[{i}]")]
    return [] if a == b or (_isnan(a) and _isnan(b)) else [f"{path}: {a!r} -> {b!r}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("record", "check"))
    ap.add_argument("file", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="distillq-golden-") as tmp:
        got = record_all(Path(tmp))
    if args.mode == "record":
        args.file.parent.mkdir(parents=True, exist_ok=True)
        args.file.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(got)} cases in {args.file}")
        return
    want = {k: scrub(v) for k, v in json.loads(args.file.read_text()).items()}
    problems, added = [], []
    for name in got:
        d = diff(want.get(name), got[name], name)
        new = [x for x in d if x.endswith("only in new")]   # fields a later version adds
        added += new
        problems += [x for x in d if x not in new]
        print(f"{name}: {'identical' if len(d) == len(new) else f'{len(d) - len(new)} differences'}"
              + (f" ({len(new)} fields added)" if new else ""))
    if added:
        print("fields added (every recorded field is unchanged):\n  " + "\n  ".join(added))
    if problems:
        print("\n".join(problems[:60]))
        raise SystemExit(1)
    print(f"all {len(got)} cases identical to {args.file}")


if __name__ == "__main__":
    main()
