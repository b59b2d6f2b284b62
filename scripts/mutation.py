"""Mutation testing of distillq's jitted core (distillq/core/) with cosmic-ray (`make mutation`).

Each module is mutated in a copy of the repository (cosmic-ray edits files in place), one
mutant at a time, and the tests that exercise it run against the mutant (fastest first, -x):
a mutant is *killed* when a test fails, and *survives* when every test still passes. The
operators are cosmic-ray's core set, thinned where a replacement only changes the error a
mutant crashes with: binary operators keep one semantic swap per site (+ <-> -, * <-> /,
** -> *, % -> //, | -> &), comparisons drop `is`/`is not`, unary minus keeps + and deletion.

    python scripts/mutation.py --out results/mutation [--modules losses,dqn] [--workers 2]
        [--resume] [--sample N] [--recheck]

Writes <out>/<module>.jsonl (cosmic-ray's dump) and <out>/survivors.md (every surviving
mutant's diff, for the closing note's review).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DQN = "tests/core/test_dqn_algorithm.py"
STUDENT = "tests/core/test_student.py"
MODULES = {   # core module -> pytest arguments selecting the tests that exercise it
    "loop": ["tests/core/test_loop.py", DQN, STUDENT, "-k", "test_loop or keeps or budget or "
             "no_update or without_evaluation or target_period or epsilon_controls"],
    "td": ["tests/core/test_td.py", DQN, "-k", "test_td or td_update or target or probe"],
    "losses": ["tests/core/test_losses.py", STUDENT, "tests/core/test_qdagger.py", "-k",
               "test_losses or objective or hidden_terms or td_term or lambda"],
    "student": [STUDENT, "tests/core/test_qdagger.py", "tests/core/test_multitask.py", "-k",
                "not cli and not resume and not sigterm"],
    "replay": ["tests/core/test_replay.py", DQN, STUDENT, "-k", "test_replay or probe or "
               "td_update or reach_the_buffer or dataset"],
    "rollout": ["tests/core/test_rollout.py", "tests/runs/test_evaluation.py", DQN, STUDENT,
                "-k", "test_rollout or chunked or keeps or baselines or final_eval"],
    "dqn": [DQN],
    "distill": [STUDENT, "tests/core/test_qdagger.py", "tests/core/test_views.py", "-k",
                "not evaluate_render and not parity"],
    "multitask": ["tests/core/test_multitask.py", "-k", "not cli and not resume"],
}
KEEP_BINARY = "Add_Sub|Sub_Add|Mul_Div|Div_Mul|Pow_Mul|Mod_FloorDiv|BitOr_BitAnd|BitAnd_BitOr"
EXCLUDE = [
    f"core/ReplaceBinaryOperator_(?!({KEEP_BINARY})$).*",
    "core/ReplaceComparisonOperator_.*_(Is|IsNot)$",
    "core/ReplaceUnaryOperator_USub_(Invert|Not)$",
]


def config_text(module: str, tests: list[str], workers: list[str], timeout: float) -> str:
    cmd = f"{sys.executable} -m pytest -x -q -p no:cacheprovider " + " ".join(
        f"'{t}'" if " " in t else t for t in tests)
    dist = ('name = "local"' if not workers else
            'name = "http"\n\n[cosmic-ray.distributor.http]\nworker-urls = '
            + json.dumps(workers))
    return f"""[cosmic-ray]
module-path = "distillq/core/{module}.py"
timeout = {timeout}
excluded-modules = []
test-command = "{cmd}"

[cosmic-ray.distributor]
{dist}

[cosmic-ray.filters.operators-filter]
exclude-operators = {json.dumps(EXCLUDE)}
"""


def copy_repo(dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)


def run(cmd: list[str], cwd: Path, env: dict) -> None:
    p = subprocess.run(cmd, cwd=cwd, env=env)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/mutation")
    ap.add_argument("--modules", default=",".join(MODULES))
    ap.add_argument("--workers", type=int, default=2, help="parallel cosmic-ray workers")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    ap.add_argument("--resume", action="store_true",
                    help="continue a module's existing session (its pending mutants) instead "
                    "of starting over")
    ap.add_argument("--sample", type=int, default=0, metavar="N",
                    help="test a uniform random sample of N mutants per module (seeded), "
                    "the others marked skipped (0 = all)")
    ap.add_argument("--verify", action="store_true",
                    help="no new mutants: re-apply each recorded survivor's diff, by text, to "
                    "today's module and run its selection (after tests were added for them)")
    ap.add_argument("--recheck", choices=("broad", "targeted"),
                    help="re-run each survivor against every fast test (broad: minutes each) "
                    "or against the module's current selection (targeted: after widening it)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    work = out / "work"
    out.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "DISTILLQ_CACHE_DIR": str(work / "jax-cache")}
    if args.verify:
        copy = work / "verify"
        copy_repo(copy)
        for module in args.modules.split(","):
            res = verify_survivors(out, module, copy, {**env, "PYTHONPATH": str(copy)},
                                   args.timeout)
            (out / f"{module}.verify.json").write_text(json.dumps(res, indent=1))
            print(f"{module}: re-applied survivors killed: "
                  f"{sum(r['outcome'] == 'killed' for r in res)} of {len(res)}",
                  file=sys.stderr, flush=True)
        write_survivors(out, args.modules.split(","))
        return 0
    copies = [work / f"copy{i}" for i in range(max(1, args.workers))]
    for c in copies:
        copy_repo(c)
    ports = [9870 + i for i in range(len(copies))] if args.workers > 1 else []
    workers = []
    try:
        for port, c in zip(ports, copies, strict=False):
            workers.append(subprocess.Popen(
                [str(bindir / "cosmic-ray"), "http-worker", "--port", str(port)], cwd=c,
                env={**env, "PYTHONPATH": str(c)}, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        time.sleep(3)
        urls = [f"http://localhost:{p}" for p in ports]
        for module in args.modules.split(","):
            t0 = time.perf_counter()
            cfg, db = work / f"{module}.toml", work / f"{module}.sqlite"
            cfg.write_text(config_text(module, MODULES[module], urls, args.timeout))
            cenv = {**env, "PYTHONPATH": str(copies[0])}
            if not (args.resume and db.exists()):
                db.unlink(missing_ok=True)
                run([str(bindir / "cosmic-ray"), "init", str(cfg), str(db)], copies[0], cenv)
                run([str(bindir / "cr-filter-operators"), str(db), str(cfg)], copies[0], cenv)
            if args.sample:
                sample(db, args.sample)
            run([str(bindir / "cosmic-ray"), "exec", str(cfg), str(db)], copies[0], cenv)
            dump = subprocess.run([str(bindir / "cosmic-ray"), "dump", str(db)], cwd=copies[0],
                                  capture_output=True, text=True, check=True).stdout
            (out / f"{module}.jsonl").write_text(dump)
            rechecked = (recheck_survivors(
                dump, copies[0], bindir, cenv, args.timeout,
                BROAD if args.recheck == "broad" else MODULES[module]) if args.recheck else [])
            (out / f"{module}.recheck.json").write_text(json.dumps(rechecked, indent=1))
            print(f"{module}: {summarise(dump)}; rechecked survivors killed: "
                  f"{sum(r['outcome'] == 'killed' for r in rechecked)} of {len(rechecked)}, "
                  f"in {(time.perf_counter() - t0) / 60:.1f} min", file=sys.stderr, flush=True)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
    write_survivors(out, args.modules.split(","))
    return 0


def sample(db: Path, n: int, seed: int = 0) -> None:
    """Keep a seeded uniform sample of n pending mutants; mark the rest skipped."""
    import random

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(db), WorkDB.Mode.open) as wdb:
        pending = sorted(j.job_id for j in wdb.pending_work_items)
        keep = set(random.Random(seed).sample(pending, min(n, len(pending))))
        for job_id in pending:
            if job_id not in keep:
                wdb.set_result(job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                  output="not in the sample"))


BROAD = ["-m", "not slow"]   # every in-process test (the subprocess tests add no algorithm check)


def recheck_survivors(dump: str, copy: Path, bindir: Path, env: dict,
                      timeout: float, tests: list[str]) -> list[dict]:
    """Phase 2: each survivor of the targeted tests, applied again and run against every
    fast test, so that a survivor is one the whole suite misses."""
    results = []
    for job, res in outcomes(dump):
        if (res or {}).get("test_outcome") != "survived":
            continue
        mu = job["mutations"][0]
        path = mu["module_path"]
        subprocess.run([str(bindir / "cosmic-ray"), "apply", path, mu["operator_name"],
                        str(mu["occurrence"])], cwd=copy, env=env, check=True,
                       capture_output=True)
        try:
            p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q",
                                "-p", "no:cacheprovider", *tests], cwd=copy,
                               env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
                               capture_output=True, text=True, timeout=timeout * 3)
            outcome = "survived" if p.returncode == 0 else "killed"
            failed = [ln for ln in p.stdout.splitlines() if ln.startswith("FAILED")][:1]
        except subprocess.TimeoutExpired:
            outcome, failed = "killed", ["timeout"]
        finally:
            shutil.copy2(ROOT / path, copy / path)
        results.append({"operator": mu["operator_name"], "occurrence": mu["occurrence"],
                        "line": mu["start_pos"][0], "outcome": outcome, "by": failed,
                        "diff": res.get("diff")})
    return results


def _diff_lines(diff: str) -> tuple[str, str]:
    minus = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return "\n".join(minus), "\n".join(plus)


def verify_survivors(out: Path, module: str, copy: Path, env: dict,
                     timeout: float) -> list[dict]:
    """Each survivor of <module>.jsonl re-applied by text (its removed line, found once in
    today's file, replaced by its added line) and run against today's selection."""
    path = copy / f"distillq/core/{module}.py"
    original = path.read_text()
    results = []
    for job, res in outcomes((out / f"{module}.jsonl").read_text()):
        if outcome(res) != "survived":
            continue
        old, new = _diff_lines(res.get("diff") or "")
        mu = job["mutations"][0]
        row = {"operator": mu["operator_name"], "line": mu["start_pos"][0],
               "diff": res.get("diff")}
        if not old or original.count(old) != 1:
            results.append({**row, "outcome": "not re-applicable (the line changed)"})
            continue
        path.write_text(original.replace(old, new))
        try:
            p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                                "no:cacheprovider", *MODULES[module]], cwd=copy,
                               env={**env, "PYTHONDONTWRITEBYTECODE": "1"},
                               capture_output=True, text=True, timeout=timeout)
            failed = [ln for ln in p.stdout.splitlines() if ln.startswith("FAILED")][:1]
            results.append({**row, "outcome": "survived" if p.returncode == 0 else "killed",
                            "by": failed})
        except subprocess.TimeoutExpired:
            results.append({**row, "outcome": "killed", "by": ["timeout"]})
        finally:
            path.write_text(original)
    return results


def outcomes(dump: str) -> list[tuple[dict, dict | None]]:
    return [tuple(json.loads(line)) for line in dump.splitlines() if line.strip()]


def outcome(res: dict | None) -> str:
    """killed / survived / skipped / pending; a mutant that does not even parse (e.g. `**`
    unpacking turned into `*`) is `incompetent`, not killed."""
    if res is None:
        return "pending"
    o = res.get("test_outcome") or "skipped"
    if o == "killed" and "SyntaxError" in (res.get("output") or ""):
        return "incompetent"
    return o


def summarise(dump: str) -> str:
    from collections import Counter

    c = Counter(outcome(r) for _, r in outcomes(dump))
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))


def write_survivors(out: Path, modules: list[str]) -> None:
    lines = ["# Surviving mutants", ""]
    for module in modules:
        p = out / f"{module}.jsonl"
        if not p.exists():
            continue
        dump = p.read_text()
        rc, vf = out / f"{module}.recheck.json", out / f"{module}.verify.json"
        rechecked = json.loads(rc.read_text()) if rc.exists() else []
        if vf.exists():
            rechecked = json.loads(vf.read_text())
        if not rechecked:           # no recheck: every survivor of the targeted tests
            rechecked = [{"operator": job["mutations"][0]["operator_name"],
                          "line": job["mutations"][0]["start_pos"][0], "outcome": "survived",
                          "diff": res.get("diff")} for job, res in outcomes(dump)
                         if (res or {}).get("test_outcome") == "survived"]
        left = [r for r in rechecked if r["outcome"] not in ("killed", "gone")]
        lines.append(f"## {module}: {summarise(dump)}; {len(left)} survivors")
        lines.append("")
        for r in left:
            lines.append(f"- `{r['operator']}` line {r['line']}")
            lines.append("```diff")
            lines.extend(ln for ln in (r["diff"] or "").splitlines()
                         if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---")))
            lines.append("```")
        lines.append("")
    (out / "survivors.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
