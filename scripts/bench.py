"""`make bench`: distillq's speed, measured side by side with a peer in one run.

    python scripts/bench.py [--runs 3] [--peer-runs 1] [--skip-peer] [--out results/bench]

Writes bench.json and bench.md into --out and prints the table. Whole-process figures are
wall-clock times of fresh processes (imports, compilation, training, final evaluation and
checkpointing included), medians over --runs; peak RSS comes from wait4(). "cold" runs use an
empty compilation cache, "warm" runs reuse jax's persistent cache. Ratios are taken between
figures measured in the same invocation; the machine is noisy, so rerun before trusting a
difference of less than ~15%.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_update import timed  # noqa: E402  (median wall time of a jitted call)

DISTILLQ = [sys.executable, "-m", "distillq"]
# time to >= 99% retention: stop once every student's in-training evaluation reaches 99% of
# its teacher's return, checked every 32 vector steps on 16 episodes (the default checks every
# 256 and trains the whole budget, for fidelity)
DISTILL_FAST = ["--set", "stop_retention=0.99", "--set", "chunk_steps=32", "--set",
                "eval_episodes=16"]
TARGETS = {"teacher_1": 10.0, "teacher_8": 45.0, "distill_frac": 0.10, "eval_frac": 0.50,
           "help_s": 0.3, "rss_8_gb": 0.5}


def run_proc(cmd: list[str], env: dict | None = None, stdin: str = "") -> dict:
    """Run a fresh process; wall time from spawn to exit, and its peak RSS."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    out, err = p.communicate(stdin)
    return {"wall": time.perf_counter() - t, "rc": p.returncode, "out": out, "err": err}


def run_measured(cmd: list[str], env: dict | None = None, stdin: str = "") -> dict:
    """Like run_proc, with this child's own peak RSS (os.wait4)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    p.stdin.write(stdin)
    p.stdin.close()
    out_chunks, err_chunks = [], []
    import threading

    def pump(src, dst):
        for line in src:
            dst.append(line)

    th = [threading.Thread(target=pump, args=(p.stdout, out_chunks)),
          threading.Thread(target=pump, args=(p.stderr, err_chunks))]
    for x in th:
        x.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    for x in th:
        x.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "rc": p.returncode, "out": "".join(out_chunks),
            "err": "".join(err_chunks), "rss_mb": usage.ru_maxrss / 1024}


def env_with(**kw) -> dict:
    e = dict(os.environ)
    e.update({k: str(v) for k, v in kw.items()})
    return e


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ teacher


def bench_teacher(seeds: int, runs: int, work: Path, cache: Path) -> dict:
    rows = []
    for i in range(runs + 1):
        cold = i == 0
        cache_dir = work / f"cold-cache-{seeds}" if cold else cache
        out_dir = work / f"teacher-{seeds}-{i}"
        r = run_measured(DISTILLQ + ["train-teacher", "--seeds", str(seeds), "--out",
                                     str(out_dir), "-q"], env=env_with(DISTILLQ_CACHE_DIR=cache_dir))
        if r["rc"] != 0:
            raise SystemExit(f"train-teacher failed: {r['err'][-2000:]}")
        j = json.loads(r["out"])
        solved = all(p["mean"] >= 475 for p in j["evaluation"]["per_seed"])
        rows.append({"cold": cold, "wall_s": r["wall"], "rss_mb": r["rss_mb"],
                     "compile_s": j["compile_s"], "train_s": j["train_s"],
                     "eval_s": j["eval_s"], "env_steps_per_seed": j["env_steps_per_seed"],
                     "updates_per_seed": j["updates_per_seed"], "solved": solved,
                     "min_return": min(p["mean"] for p in j["evaluation"]["per_seed"]),
                     "run_dir": str(out_dir)})
        log(f"  distillq teacher {seeds} seed(s) {'cold' if cold else 'warm'}: "
            f"{r['wall']:.1f}s solved={solved}")
    warm = [r for r in rows if not r["cold"]]
    return {
        "seeds": seeds, "runs": rows,
        "wall_s_cold": rows[0]["wall_s"],
        "wall_s": med([r["wall_s"] for r in warm]),
        "compile_s_cold": rows[0]["compile_s"],
        "compile_s": med([r["compile_s"] for r in warm]),
        "train_s": med([r["train_s"] for r in warm]),
        "updates_per_seed": med([r["updates_per_seed"] for r in warm]),
        "env_steps_per_s": med([r["env_steps_per_seed"] * seeds / r["train_s"] for r in warm]),
        "rss_mb": max(r["rss_mb"] for r in rows),
        "solved_runs": f"{sum(r['solved'] for r in rows)}/{len(rows)}",
        "teacher_dir": warm[-1]["run_dir"],
    }


def bench_peer(seeds: int, runs: int) -> dict | None:
    rows = []
    for _ in range(runs):
        r = run_measured([sys.executable, str(ROOT / "scripts" / "bench_rejax.py"), "--seeds",
                          str(seeds)])
        if r["rc"] != 0:
            log(f"  peer failed: {r['err'][-500:]}")
            return None
        j = json.loads(r["out"].strip().splitlines()[-1])
        rows.append({**j, "wall_s": r["wall"], "rss_mb": r["rss_mb"]})
        log(f"  rejax {seeds} seed(s): {r['wall']:.1f}s solved {j['solved']}/{seeds}")
    return {"seeds": seeds, "runs": rows, "wall_s": med([r["wall_s"] for r in rows]),
            "compile_s": med([r["compile_s"] for r in rows]),
            "train_s": med([r["train_s"] for r in rows]),
            "updates_per_seed": rows[0]["updates_per_seed"],
            "env_steps_per_s": med([r["env_steps_per_seed"] * seeds / r["train_s"]
                                    for r in rows]),
            "rss_mb": max(r["rss_mb"] for r in rows),
            "solved": f"{rows[-1]['solved']}/{seeds}"}


# ------------------------------------------------------------------------------ distill


def bench_distill(teacher_dir: str, seeds: int, runs: int, work: Path, cache: Path) -> dict:
    rows = []
    for i in range(runs):
        out_dir = work / f"student-{seeds}-{i}"
        r = run_measured(DISTILLQ + ["distill", "--teacher", teacher_dir] + DISTILL_FAST
                         + ["--out", str(out_dir), "-q"],
                         env=env_with(DISTILLQ_CACHE_DIR=cache))
        if r["rc"] != 0:
            raise SystemExit(f"distill failed: {r['err'][-2000:]}")
        j = json.loads(r["out"])
        ret_min = j["evaluation"]["overall"]["retention_min"]
        rows.append({"wall_s": r["wall"], "train_s": j["train_s"], "compile_s": j["compile_s"],
                     "retention_min": ret_min, "env_steps_per_seed": j["env_steps_per_seed"],
                     "rss_mb": r["rss_mb"]})
        log(f"  distill {seeds} seed(s): {r['wall']:.1f}s retention_min {ret_min:.3f}")
    return {"seeds": seeds, "runs": rows, "wall_s": med([r["wall_s"] for r in rows]),
            "train_s": med([r["train_s"] for r in rows]),
            "compile_s": med([r["compile_s"] for r in rows]),
            "retention_min": min(r["retention_min"] for r in rows),
            "env_steps_per_seed": med([r["env_steps_per_seed"] for r in rows])}


# ------------------------------------------------------------------------- in-process parts


def bench_eval_throughput(teacher_dir: str, episodes: int = 1000, reps: int = 3) -> dict:
    """Greedy evaluation env-steps/s vs the env-only ceiling (random actions, same scan)."""
    import jax
    import jax.numpy as jnp

    from distillq.core import envs, networks, rollout
    from distillq.runs import store

    run = store.load_run(teacher_dir)
    env = envs.make(run.meta["env"])
    net = networks.build(run.meta["network"])
    params = jax.tree.map(lambda x: jnp.asarray(x[0]), run.params)
    greedy = jax.jit(rollout.make_rollout(env, net.apply, episodes))

    def random_rollout(key):
        k_reset, k_steps = jax.random.split(key)
        obs, state = envs.reset(env, jax.random.split(k_reset, episodes))

        def body(carry, i):
            state, n = carry
            k = jax.random.fold_in(k_steps, i)
            a = jax.random.randint(k, (episodes,), 0, env.num_actions)
            st = envs.step(env, jax.random.split(k, episodes), state, a)
            return (st.state, n + st.reward.sum()), None

        (_, n), _ = jax.lax.scan(body, (state, jnp.float32(0)), jnp.arange(env.max_steps))
        return n

    ceiling = jax.jit(random_rollout)
    key = jax.random.PRNGKey(0)
    steps = episodes * env.max_steps            # both run the same scan shape
    times = {}
    for name, fn, args in (("greedy", greedy, (params, key)), ("env_only", ceiling, (key,))):
        times[name] = timed(fn, *args, reps=reps)
    out = jax.device_get(greedy(params, key))
    return {"episodes": episodes, "greedy_steps_per_s": steps / times["greedy"],
            "env_only_steps_per_s": steps / times["env_only"],
            "ratio": times["env_only"] / times["greedy"],
            "greedy_mean_return": float(out["returns"].mean())}


def bench_loop_efficiency(seeds: int) -> dict:
    """Pure gradient updates alone vs the whole jitted training loop, same update count."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from distillq import _setup, config
    from distillq.core import dqn, envs, loop

    _setup.configure()
    cfg = config.load("teacher", None, {"seeds": seeds})
    tr = dqn.make(cfg, envs.make(cfg.env))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
    state = jax.jit(jax.vmap(tr.system.init))(keys)
    chunk = jax.jit(jax.vmap(loop.make_chunk(tr.system), in_axes=(0, 0, None)),
                    donate_argnums=0)
    chunk.lower(state, None, jnp.int32(0)).compile()
    t, t0 = 0, time.perf_counter()
    while t < cfg.total_iterations:      # the training loop alone (no run dir, no metrics)
        state, m = chunk(state, None, jnp.int32(t))
        t += min(cfg.chunk_iterations, cfg.total_iterations - t)
        if bool(np.all(np.asarray(m.best_score) >= cfg.stop_return)):   # CartPole: 500
            break
    jax.block_until_ready(state)
    res = {"t": t, "state": state, "train_s": time.perf_counter() - t0}
    t = res["t"]
    n_updates = (t - cfg.warmup_iterations) * cfg.updates_per_step
    upd = jax.jit(jax.vmap(tr.updates_only(n_updates), in_axes=(0, None)))
    args = (res["state"], jnp.int32(t))
    upd.lower(*args).compile()
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(upd(*args))
        ts.append(time.perf_counter() - t0)
    pure = statistics.median(ts)
    return {"seeds": seeds, "updates_per_seed": int(n_updates), "train_s": res["train_s"],
            "updates_only_s": pure, "efficiency": pure / res["train_s"],
            "updates_per_s_alone": n_updates * seeds / pure}


# ------------------------------------------------------------------------------ MinAtar


def bench_minatar_teacher(env: str, seeds: int, work: Path, cache: Path,
                          at_target: bool = False) -> dict:
    """distillq's default teacher for `env` (nothing but --env and --seeds), whole process:
    it stops once every seed's in-training evaluation passes the env's stop_return, then
    evaluates 100 greedy episodes per seed (the figure that must reach the target).
    at_target: stop at the target itself (`--set stop_return=<target>`), the peer's
    criterion (the first evaluation at the target in every seed)."""
    from distillq import config

    target = config.env_target(env)
    out_dir = work / f"minatar-{env}-{seeds}{'-at' if at_target else ''}"
    extra = ["--set", f"stop_return={target}"] if at_target else []
    r = run_measured(DISTILLQ + ["train-teacher", "--env", env, "--seeds", str(seeds), "--out",
                                 str(out_dir), "-q", *extra],
                     env=env_with(DISTILLQ_CACHE_DIR=cache))
    if r["rc"] != 0:
        raise SystemExit(f"train-teacher --env {env} failed: {r['err'][-2000:]}")
    j = json.loads(r["out"])
    final = [p["mean"] for p in j["evaluation"]["per_seed"]]
    log(f"  distillq {env} {seeds} seed(s): {r['wall']:.1f}s final {final}")
    return {"env": env, "seeds": seeds, "target": target, "wall_s": r["wall"],
            "rss_mb": r["rss_mb"], "compile_s": j["compile_s"], "train_s": j["train_s"],
            "env_steps_per_seed": j["env_steps_per_seed"],
            "updates_per_seed": j["updates_per_seed"],
            "env_steps_per_s": j["env_steps_per_seed"] * seeds / j["train_s"],
            "updates_per_s": j["updates_per_seed"] * seeds / j["train_s"],
            "final_per_seed": final, "solved": sum(x >= target for x in final)}


def bench_minatar_peer(env: str, seeds: int, steps: int) -> dict | None:
    """rejax 0.1.3's PQN with purejaxql's MinAtar settings (scripts/bench_rejax_pqn.py)."""
    from distillq import config

    if importlib.util.find_spec("rejax") is None:
        log("  rejax is not installed (pip install -e '.[bench]'): MinAtar peer skipped")
        return None
    r = run_measured([sys.executable, str(ROOT / "scripts" / "bench_rejax_pqn.py"), "--env",
                      env, "--seeds", str(seeds), "--steps", str(steps), "--target",
                      str(config.env_target(env))], env=env_with(XLA_FLAGS=""))
    if r["rc"] != 0:
        log(f"  rejax PQN failed: {r['err'][-1000:]}")
        return None
    j = json.loads(r["out"].strip().splitlines()[-1])
    j.update(wall_s=r["wall"], rss_mb=r["rss_mb"])
    first = j["first_every_seed_at_target"]
    when = f"at {first['process_s']:.1f} s" if first else "never"
    log(f"  rejax PQN {env} {seeds} seed(s): {r['wall']:.1f}s; every seed at the target "
        f"{when}; final {j['final_per_seed']}")
    return j


def bench_update(env: str) -> dict | None:
    r = run_proc([sys.executable, str(ROOT / "scripts" / "bench_update.py"), "--env", env])
    if r["rc"] != 0:
        log(f"  update figures failed: {r['err'][-1000:]}")
        return None
    return json.loads(r["out"].strip().splitlines()[-1])


def minatar_table(r: dict) -> str:
    lines = ["| MinAtar, seeds | distillq default teacher: whole process s to the target in "
             "every seed (final greedy returns, 100 eps/seed) | peer rejax 0.1.3 PQN "
             "(purejaxql's MinAtar settings): process s when every seed's evaluation first "
             "reached the target (final at its budget) | ratio |", "|---|---|---|---|"]
    for key, o in r["minatar"].items():
        p = (r.get("minatar_peer") or {}).get(key)
        ours = (f"{o['wall_s']:.0f} s{'' if o['solved'] == o['seeds'] else ' **not every seed**'}"
                f" ({', '.join(f'{x:.1f}' for x in o['final_per_seed'])})")
        if p is None:
            peer, ratio = "-", "-"
        else:
            first = p["first_every_seed_at_target"]
            peer = (f"{first['process_s']:.0f} s" if first else
                    f"not within {p['env_steps_per_seed'] / 1e6:.1f}M steps ({p['wall_s']:.0f} s)")
            peer += f" ({', '.join(f'{x:.1f}' for x in p['final_per_seed'])} at " \
                    f"{p['env_steps_per_seed'] / 1e6:.1f}M)"
            ratio = (f"{first['process_s'] / o['wall_s']:.1f}x faster" if first else
                     "the peer never reached it")
        lines.append(f"| {o['env']} >= {o['target']:g}, {o['seeds']} | {ours} | {peer} | {ratio} |")
        a = (r.get("minatar_at") or {}).get(key)
        if a is not None:
            fa = ((f"{first['process_s'] / a['wall_s']:.1f}x faster" if first else
                   "the peer never reached it") if p else "-")
            lines.append(f"| ... the peer's criterion: stop at the first evaluation >= "
                         f"{o['target']:g} in every seed (`--set stop_return={o['target']:g}`)"
                         f" | {a['wall_s']:.0f} s ({', '.join(f'{x:.1f}' for x in a['final_per_seed'])})"
                         f" | | {fa} |")
        lines.append(f"| ... training env steps/s; updates/s (all seeds) | "
                     f"{o['env_steps_per_s']:,.0f}; {o['updates_per_s']:,.0f} | " + (
                         f"{p['env_steps_per_s']:,.0f}; {p['updates_per_s']:,.0f} | |" if p
                         else "- | |"))
    for env, u in (r.get("update") or {}).items():
        if u:
            lines.append(
                f"| {env} update ({u['network']}, XLA flags: {u['xla_flags']}): MFLOP; "
                f"GFLOP/s vs this machine's float32 matmul peak | {u['flops_per_update'] / 1e6:.1f}; "
                f"{u['update_gflops']:.0f} of {u['matmul_peak_gflops']:.0f} | | "
                f"{100 * u['update_gflops'] / u['matmul_peak_gflops']:.0f}% of peak |")
            lines.append(f"| ... loop efficiency: updates alone s / whole loop s ({u['iterations']}"
                         f" iterations of {u['env_steps_per_iteration']} env steps) | "
                         f"{u['updates_only_s']:.2f} / {u['loop_s']:.2f} | | "
                         f"{100 * u['efficiency']:.0f}% |")
    return "\n".join(lines) + "\n"


def bench_cli(teacher_dir: str, cache: Path) -> dict:
    env = env_with(DISTILLQ_CACHE_DIR=cache)
    helps = [run_proc(DISTILLQ + ["--help"], env=env)["wall"] for _ in range(5)]
    usage = [run_proc(DISTILLQ + ["train-teacher", "--seeds", "0"], env=env)["wall"]
             for _ in range(3)]
    evals = []
    for _ in range(3):
        r = run_proc(DISTILLQ + ["evaluate", teacher_dir], env=env)
        assert r["rc"] == 0, r["err"][-1000:]
        evals.append(r["wall"])
    floor = [run_proc([sys.executable, "-c", "import jax, gymnax"])["wall"] for _ in range(3)]
    jax_only = [run_proc([sys.executable, "-c", "import jax"])["wall"] for _ in range(3)]
    return {"help_s": med(helps), "usage_error_s": med(usage), "evaluate_s": med(evals),
            "import_jax_gymnax_s": med(floor), "import_jax_s": med(jax_only)}


# ------------------------------------------------------------------------------ report


def machine() -> dict:
    import jax

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": _cpu_name(), "cores": os.cpu_count(), "jax": jax.__version__,
            "backend": jax.default_backend(), "date": time.strftime("%Y-%m-%d")}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(r: dict) -> str:
    def f(x, nd=1):
        return "-" if x is None else f"{x:.{nd}f}"

    def met(ok):
        return "met" if ok else "**not met**"

    lines = ["| measure | distillq | peer (rejax 0.1.3 DQN) | ratio / target |",
             "|---|---|---|---|"]
    for n in (1, 8):
        o, p = r["teacher"][str(n)], (r.get("peer") or {}).get(str(n))
        tgt = TARGETS[f"teacher_{n}"]
        ratio = f"{p['wall_s'] / o['wall_s']:.1f}x faster" if p else "-"
        lines.append(f"| solved teacher, {n} seed{'s' if n > 1 else ''}: whole process s (warm "
                     f"cache; cold) | {f(o['wall_s'])} ({f(o['wall_s_cold'])}) | "
                     f"{f(p['wall_s']) if p else '-'} | {ratio}; target <= {tgt:.0f} s: "
                     f"{met(o['wall_s_cold'] <= tgt)} |")
        lines.append(f"| ... solved runs (every seed >= 475 / 100 eps) | {o['solved_runs']} | "
                     f"{p['solved'] if p else '-'} seeds | |")
        lines.append(f"| ... compile s (warm; cold) | {f(o['compile_s'])} ({f(o['compile_s_cold'])})"
                     f" | {f(p['compile_s']) if p else '-'} | |")
        lines.append(f"| ... training s | {f(o['train_s'])} | {f(p['train_s']) if p else '-'} | |")
        lines.append(f"| ... gradient updates per seed | {o['updates_per_seed']:.0f} | "
                     f"{p['updates_per_seed'] if p else '-'} | |")
        lines.append(f"| ... env steps/s (all seeds, training) | {o['env_steps_per_s']:,.0f} | "
                     f"{p['env_steps_per_s']:,.0f} | |" if p else
                     f"| ... env steps/s (all seeds, training) | {o['env_steps_per_s']:,.0f} | - | |")
        rss_t = f"target <= 0.5 GB: {met(o['rss_mb'] / 1024 <= 0.5)}" if n == 8 else ""
        lines.append(f"| ... peak RSS MB | {o['rss_mb']:.0f} | {f(p['rss_mb'], 0) if p else '-'} "
                     f"| {rss_t} |")
    for n in (1, 8):
        d, o = r["distill"][str(n)], r["teacher"][str(n)]
        frac_w, frac_t = d["wall_s"] / o["wall_s"], d["train_s"] / o["train_s"]
        lines.append(f"| distillation to >= 99% retention (min over seeds {d['retention_min']:.3f}), "
                     f"{n} seed{'s' if n > 1 else ''}: whole process s (training s) | "
                     f"{f(d['wall_s'])} ({f(d['train_s'], 2)}) | | target <= 10% of the teacher: "
                     f"training {100 * frac_t:.0f}% {met(frac_t <= TARGETS['distill_frac'])}; "
                     f"whole process {100 * frac_w:.0f}% {met(frac_w <= TARGETS['distill_frac'])} |")
    e = r["eval"]
    lines.append(f"| greedy evaluation env steps/s, {e['episodes']} parallel episodes | "
                 f"{e['greedy_steps_per_s']:,.0f} | env-only ceiling {e['env_only_steps_per_s']:,.0f} "
                 f"| {100 * e['ratio']:.0f}% of ceiling; target >= 50%: "
                 f"{met(e['ratio'] >= TARGETS['eval_frac'])} |")
    for n in (1, 8):
        le = r["loop"][str(n)]
        lines.append(f"| loop efficiency, {n} seed{'s' if n > 1 else ''}: updates alone s / whole "
                     f"training s | {f(le['updates_only_s'], 2)} / {f(le['train_s'], 2)} | | "
                     f"{100 * le['efficiency']:.0f}% |")
    c = r["cli"]
    lines.append(f"| `distillq --help` s | {f(c['help_s'], 2)} | floor `import jax, gymnax` "
                 f"{f(c['import_jax_gymnax_s'], 2)} | target <= 0.3 s: "
                 f"{met(c['help_s'] <= TARGETS['help_s'])} |")
    lines.append(f"| usage error (`--seeds 0`) s | {f(c['usage_error_s'], 2)} | | |")
    lines.append(f"| `distillq evaluate RUN` end to end s | {f(c['evaluate_s'], 2)} | floor "
                 f"`import jax, gymnax` {f(c['import_jax_gymnax_s'], 2)}; `import jax` "
                 f"{f(c['import_jax_s'], 2)} | |")
    m = r["machine"]
    head = (f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}, "
            f"jax {m['jax']} ({m['backend']}); {m['date']}. Medians of {r['runs']} warm runs "
            f"(distillq) and {r['peer_runs']} run(s) (peer); cold = empty compilation cache.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peer-runs", type=int, default=1)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--minatar", default="Breakout-MinAtar",
                    help="MinAtar envs of the MinAtar rows, comma-separated ('' skips them)")
    ap.add_argument("--minatar-seeds", default="1,4")
    ap.add_argument("--peer-steps", type=int, default=5_000_000,
                    help="the MinAtar peer's budget per seed (it cannot stop early)")
    ap.add_argument("--only-minatar", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="distillq-bench-"))
    cache = work / "cache"
    res: dict = {"runs": args.runs, "peer_runs": 0 if args.skip_peer else args.peer_runs,
                 "targets": TARGETS}
    try:
        res["machine"] = machine()
        res["minatar"], res["minatar_at"], res["minatar_peer"], res["update"] = {}, {}, {}, {}
        for env in [e for e in args.minatar.split(",") if e]:
            for n in (int(x) for x in args.minatar_seeds.split(",")):
                log(f"MinAtar {env}, {n} seed(s)")
                res["minatar"][f"{env}/{n}"] = bench_minatar_teacher(env, n, work, cache)
                res["minatar_at"][f"{env}/{n}"] = bench_minatar_teacher(env, n, work, cache,
                                                                         at_target=True)
                if not args.skip_peer:
                    p = bench_minatar_peer(env, n, args.peer_steps)
                    if p is not None:
                        res["minatar_peer"][f"{env}/{n}"] = p
            log(f"MinAtar {env}: the update's GFLOP/s and the loop's efficiency")
            res["update"][env] = bench_update(env)
        if args.only_minatar:
            md = minatar_table(res)
            (out / "bench-minatar.json").write_text(json.dumps(res, indent=2, default=str))
            (out / "bench-minatar.md").write_text(md)
            print(md)
            return 0
        res["teacher"], res["distill"], res["loop"] = {}, {}, {}
        for n in (1, 8):
            log(f"teacher, {n} seed(s)")
            res["teacher"][str(n)] = bench_teacher(n, args.runs, work, cache)
            log(f"distill, {n} seed(s)")
            res["distill"][str(n)] = bench_distill(res["teacher"][str(n)]["teacher_dir"], n,
                                                   args.runs, work, cache)
        log("evaluation throughput")
        res["eval"] = bench_eval_throughput(res["teacher"]["8"]["teacher_dir"])
        for n in (1, 8):
            log(f"loop efficiency, {n} seed(s)")
            res["loop"][str(n)] = bench_loop_efficiency(n)
        log("CLI latency")
        res["cli"] = bench_cli(res["teacher"]["1"]["teacher_dir"], cache)
        if not args.skip_peer:
            res["peer"] = {}
            for n in (1, 8):
                log(f"peer rejax, {n} seed(s)")
                p = bench_peer(n, args.peer_runs)
                if p is not None:
                    res["peer"][str(n)] = p
        md = table(res) + ("\n" + minatar_table(res) if res["minatar"] else "")
        (out / "bench.json").write_text(json.dumps(res, indent=2, default=str))
        (out / "bench.md").write_text(md)
        print(md)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
