"""Deployment figures (`make deploy`): exports, parity, batch-1 latency, int8 retention, GIFs.

    python scripts/deploy.py --out results/deploy [--minatar-teacher RUN]

1. A default CartPole teacher (4 seeds) and KL students of 64-32, 16, 4 hidden units and a
   linear one (distill defaults).
2. Every run exported to NumPy, C and ONNX with `distillq export --bench` (seed 0): parity on
   10,000 env states, median batch-1 decision time in jitted JAX, NumPy, onnxruntime and C,
   artefact size.
3. Each student exported with `--int8`: its return and retention, int8 beside float, through
   distillq's own evaluation (all seeds, the same episode keys).
4. The 64-32 student's NumPy and ONNX exports played on gymnasium's CartPole-v1 by
   scripts/gymnasium_cartpole.py, beside distillq's evaluation of the same seed.
5. GIFs: the 64-32 student beside its teacher on CartPole, and a MinAtar one when
   --minatar-teacher names a Breakout teacher run (a CNN student is distilled from it).

Writes <out>/deploy.md and deploy.json; run dirs go to <out>/runs (not committed).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

DQ = [sys.executable, "-m", "distillq"]
STUDENTS = {"64-32": "64,32", "16": "16", "4": "4", "linear": "linear"}


def sh(args: list[str]) -> dict:
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def complete(run: Path) -> bool:
    try:
        return json.loads((run / "meta.json").read_text())["status"] == "complete"
    except (OSError, ValueError, KeyError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/deploy")
    ap.add_argument("--minatar-teacher", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    runs, exp = out / "runs", out / "exports"
    runs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    teacher = runs / "teacher"
    if not complete(teacher):
        sh(DQ + ["train-teacher", "--out", str(teacher), "--force", "-q"])
    models = {"teacher 128-64": teacher}
    for name, net in STUDENTS.items():
        run = runs / f"student-{name}"
        if not complete(run):
            sh(DQ + ["distill", "--teacher", str(teacher), "--student", net, "--out", str(run),
                     "--force", "-q"])
        models[f"student {name}"] = run
    rows = []
    for label, run in models.items():
        meta = json.loads((run / "meta.json").read_text())
        row = {"model": label, "params": meta["params_per_seed"],
               "return": meta["evaluation"]["overall"]["mean"],
               "retention": meta["evaluation"]["overall"].get("retention")}
        for fmt in ("numpy", "c", "onnx"):
            res = sh(DQ + ["export", str(run), "--format", fmt, "--out",
                           str(exp / f"{run.name}-{fmt}"), "--bench", "--force"])
            row[f"{fmt}_bytes"] = res["size_bytes"]
            row[f"{fmt}_parity"] = res["parity"]
            row.setdefault("latency_us", {}).update(res["latency_us"])
        if label.startswith("student"):
            q = sh(DQ + ["export", str(run), "--format", "numpy", "--int8", "--out",
                         str(exp / f"{run.name}-int8"), "--force"])
            row["int8"] = q["int8_evaluation"]
            row["int8_bytes"] = q["size_bytes"]
        rows.append(row)
        print(label, row["latency_us"], file=sys.stderr, flush=True)
    gym_rows = []
    seed0 = json.loads((runs / "student-64-32" / "meta.json").read_text())
    distillq_seed0 = seed0["evaluation"]["per_seed"][0]["mean"]
    for fmt in ("numpy", "onnx"):
        p = subprocess.run([sys.executable, "scripts/gymnasium_cartpole.py",
                            str(exp / f"student-64-32-{fmt}")], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(p.stderr[-2000:])
        gym_rows.append({"format": fmt, **json.loads(p.stdout), "distillq_seed0": distillq_seed0})
    gifs = {"cartpole": sh(DQ + ["render", str(runs / "student-64-32"), "--out",
                                 str(out / "cartpole.gif"), "--max-frames", "60", "--force"])}
    if args.minatar_teacher:
        cnn = runs / "student-minatar"
        if not complete(cnn):
            sh(DQ + ["distill", "--teacher", args.minatar_teacher, "--out", str(cnn), "--force",
                     "-q", "--steps", "100000"])
        gifs["minatar"] = sh(DQ + ["render", str(cnn), "--out", str(out / "minatar.gif"),
                                   "--max-frames", "60", "--force"])
    result = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{platform.platform()}, Python {platform.python_version()}",
              "rows": rows, "gymnasium": gym_rows, "gifs": gifs,
              "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "deploy.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "deploy.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    rows = r["rows"]
    teacher = rows[0]["latency_us"]
    lines = [f"Machine: {r['machine']}. `python scripts/deploy.py` ({r['wall_s']} s).", "",
             "| model | params | return | retention | JAX µs | NumPy µs | onnxruntime µs | C µs "
             "| C speed-up vs teacher | C bytes | ONNX bytes | parity (action mismatches / "
             "decided states, max rel. Q error) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lat = row["latency_us"]
        par = row["onnx_parity"]
        worst = max(row[f"{f}_parity"]["max_rel_q_error"] for f in ("numpy", "c", "onnx"))
        mism = sum(row[f"{f}_parity"]["action_mismatches"] for f in ("numpy", "c", "onnx"))
        ret = "-" if row["retention"] is None else f"{100 * row['retention']:.1f}%"
        lines.append(
            f"| {row['model']} | {row['params']:,} | {row['return']:.1f} | {ret} | "
            f"{lat['jax']:.1f} | {lat['numpy']:.1f} | {lat['onnxruntime']:.1f} | "
            f"{lat['c']:.2f} | {teacher['c'] / lat['c']:.1f}x | {row['c_bytes']:,} | "
            f"{row['onnx_bytes']:,} | {mism} / {par['decided_states']:,} each, "
            f"{worst:.1e} |")
    lines += ["", "| student | float return | int8 return | float retention | int8 retention "
              "| int8 retention min | NumPy artefact bytes, int8 |",
              "|---|---|---|---|---|---|---|"]
    for row in rows[1:]:
        f, q = row["int8"]["float"], row["int8"]["int8"]
        lines.append(f"| {row['model']} | {f['mean']:.1f} | {q['mean']:.1f} | "
                     f"{100 * f['retention']:.1f}% | {100 * q['retention']:.1f}% | "
                     f"{100 * q['retention_min']:.1f}% | {row['int8_bytes']:,} |")
    lines += ["", "| export played on gymnasium CartPole-v1 | episodes | mean | min | "
              "distillq's evaluation (gymnax, seed 0) |", "|---|---|---|---|---|"]
    for g in r["gymnasium"]:
        lines.append(f"| student 64-32, {g['format']} | {g['episodes']} | {g['mean']:.1f} | "
                     f"{g['min']:.1f} | {g['distillq_seed0']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
