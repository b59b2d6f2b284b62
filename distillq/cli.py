"""distillq's command line: parse arguments, load the config, call one function, print JSON.

Nothing here imports jax, flax or gymnax at module level: `distillq --help` and usage
errors stay fast. stdout carries exactly one JSON object per command; humans' output goes
to stderr. Exit codes: 0 success, 2 bad usage or input, 1 unexpected, 130 interrupted.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import os  # noqa: E402
import sys  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from distillq import __version__, pipes, registry  # noqa: E402
from distillq.errors import ConfigError, DistillqError, Interrupted  # noqa: E402


def _strings_pass_through() -> None:
    """typer 0.29 builds a pydantic TypeAdapter for every parameter of a command when it
    parses it (~0.27 s of a 0.5 s usage error, measured). distillq's options are strings,
    lists of strings and flags that it coerces itself (config.coerce: one-line errors), so
    those pass through unchanged; any other annotation keeps typer's own coercion."""
    try:
        from typer import _coercion, core
    except ImportError:            # another typer: its own behaviour
        return
    plain = {str, str | None, list[str] | None, list[str], bool, bool | None}
    orig = core.build_runtime_param

    class _PassThrough(_coercion.PassThroughRuntimeParam):
        def _coerce_value(self, value, param, ctx):
            return value

    def build(descriptor):
        if descriptor.annotation in plain and descriptor.file_annotation is None:
            return _PassThrough(annotation=descriptor.annotation,
                                parameter_info=descriptor.parameter_info)
        return orig(descriptor)

    core.build_runtime_param = build


_strings_pass_through()

app = typer.Typer(
    name="distillq",
    help="Knowledge distillation for deep RL: train a DQN teacher, distil it into a smaller "
    "student, evaluate both. JSON on stdout, progress on stderr; commands chain with |.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

def _d(kind: str, key: str) -> str:
    """' [default: X]' for a flag that sets config key `key` (X from configs/<kind>.toml's
    built-in defaults; an env's own file may change it, see `distillq <command> --help`)."""
    import dataclasses

    from distillq import config

    field = {f.name: f for f in dataclasses.fields(config.CONFIGS[kind])}[key]
    v = field.default
    v = ",".join(map(str, v)) if isinstance(v, tuple) else v
    return f" [default: {v}]"


_LOSS_HELP = "; ".join(f"{kind}: {', '.join(registry.losses_of_kind(kind))}"
                       for kind in registry.LOSS_KINDS if registry.losses_of_kind(kind))
Int = Annotated[str | None, typer.Option(metavar="N", show_default=False)]
Float = Annotated[str | None, typer.Option(metavar="X", show_default=False)]
ConfigOpt = Annotated[str | None, typer.Option(
    "--config", "-c", metavar="FILE", help="TOML config (default: configs/<command>.toml)")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="override any config key (repeatable)")]
OutOpt = Annotated[str | None, typer.Option(
    "--out", "-o", metavar="DIR", help="run directory (default: runs/<kind>-<date>-<id>)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="replace an existing --out run dir")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
CoordOpt = Annotated[str | None, typer.Option(
    "--coordinator", metavar="HOST:PORT", help="multi-host: address of process 0's "
    "coordinator (jax.distributed)", rich_help_panel="Multi-host")]
NProcOpt = Annotated[str | None, typer.Option(
    "--num-processes", metavar="N", help="multi-host: number of processes",
    rich_help_panel="Multi-host")]
PidOpt = Annotated[str | None, typer.Option(
    "--process-id", metavar="I", help="multi-host: this process's id, 0..N-1",
    rich_help_panel="Multi-host")]


def _distributed(coordinator: str | None, num_processes: str | None,
                 process_id: str | None) -> None:
    from distillq import config
    from distillq.runs import parallel

    pipes.protect_stdout()   # before gloo can print on fd 1
    n = None if num_processes is None else config.coerce("num_processes", num_processes, int)
    i = None if process_id is None else config.coerce("process_id", process_id, int)
    parallel.init(coordinator, n, i)


def _resume(command: str, run_dir: str, quiet: bool) -> None:
    """Continue an interrupted run of `command` (its saved config, nothing else)."""
    from distillq.runs import store

    meta = store.read_meta(run_dir)  # fail fast, before importing jax
    import importlib

    if meta.get("kind") == "teacher":      # the flags its first part ran with (bit-identical)
        from distillq import _setup, config

        try:
            c = config.from_dict("teacher", meta["config"])
            _setup.configure(c.update_rows, c.seeds, c.network)
        except (ConfigError, KeyError, TypeError):
            pass        # a damaged config: the command's own reopen reports it

    pipes.protect_stdout()
    cmd = importlib.import_module(f"distillq.commands.{command}")
    pipes.emit(cmd.run(None, resume=run_dir, show_progress=not quiet, started=_started()))


ResumeOpt = Annotated[str | None, typer.Option(
    "--resume", metavar="RUN", help="continue an interrupted run dir (bit-identical to an "
    "uninterrupted run; takes no other options)")]


def _only_resume(resume: str | None, **given) -> None:
    used = [k for k, v in given.items() if v not in (None, False, [], ())]
    if resume is not None and used:
        raise DistillqError(f"--resume continues a run with its saved config; it takes no "
                            f"other options (got --{used[0].replace('_', '-')})")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distillq {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """distillq: knowledge distillation for deep RL."""


def _overrides(sets: list[str] | None, **flags: str | None) -> dict:
    from distillq import config

    over = config.parse_sets(sets)
    over.update({k: v for k, v in flags.items() if v is not None})
    return over


def _started() -> float:
    """When this command started, not counting the time spent waiting for stdin (the
    upstream command runs meanwhile in a pipeline)."""
    return _STARTED + pipes.waited_s


@app.command("train-teacher")
def train_teacher(
    config_path: ConfigOpt = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="N", help="number of seeds (vmapped)" + _d("teacher", "seeds"),
        show_default=False)] = None,
    seed: Annotated[str | None, typer.Option(
        metavar="N", help="first seed" + _d("teacher", "seed"))] = None,
    env: Annotated[str | None, typer.Option(
        metavar="ID", help="gymnax env id; its own defaults come from configs/envs/<ID>.toml"
        + _d("teacher", "env"))] = None,
    steps: Annotated[str | None, typer.Option(
        metavar="N", help="max env steps per seed (total_steps)"
        + _d("teacher", "total_steps"))] = None,
    algo: Annotated[str | None, typer.Option(
        metavar="dqn|pqn", help="teacher algorithm: dqn (replay, target network) or pqn "
        "(parallel Q-learning: rollouts, lambda-returns, no replay)"
        + _d("teacher", "algo"))] = None,
    budget: Annotated[str | None, typer.Option(
        metavar="target|long", help="target: stop at the env's target (stop_return); long: "
        "a strong teacher (the env's [teacher.long] defaults, no early stop)"
        + _d("teacher", "budget"))] = None,
    hidden: Annotated[str | None, typer.Option(
        "--hidden", "--network", metavar="NET",
        help="teacher network: 128,64 (MLP sizes), linear, cnn or cnn:C,H; +ln adds "
        "LayerNorm (64,64+ln)" + _d("teacher", "network"))] = None,
    num_envs: Annotated[str | None, typer.Option(
        metavar="N", help="envs per seed" + _d("teacher", "num_envs"))] = None,
    lr: Annotated[str | None, typer.Option(
        metavar="X", help="learning rate" + _d("teacher", "lr"))] = None,
    sets: SetOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    resume: ResumeOpt = None,
    coordinator: CoordOpt = None,
    num_processes: NProcOpt = None,
    process_id: PidOpt = None,
) -> None:
    """Train a teacher (DQN or PQN) on a gymnax env, all seeds in one jitted call. Defaults
    come from configs/teacher.toml, then the env's configs/envs/<env>.toml, then --config,
    then flags."""
    from distillq import config
    from distillq.runs import store

    _only_resume(resume, config=config_path, seeds=seeds, seed=seed, env=env, steps=steps,
                 algo=algo, budget=budget, hidden=hidden, num_envs=num_envs, lr=lr, set=sets,
                 out=out, force=force)
    if resume is not None:
        return _resume("train", resume, quiet)
    over = _overrides(sets, seeds=seeds, seed=seed, env=env, total_steps=steps, algo=algo,
                      budget=budget, network=hidden, num_envs=num_envs, lr=lr)
    cfg = config.load("teacher", config_path, over)
    store.check_writable_parent(out)
    from distillq import _setup

    _setup.configure(cfg.update_rows, cfg.seeds, cfg.network)    # XLA flags, before jax starts
    _distributed(coordinator, num_processes, process_id)
    from distillq.commands import train

    pipes.protect_stdout()
    pipes.emit(train.run(cfg, out=out, force=force, show_progress=not quiet,
                         started=_started()))


@app.command("distill")
def distill(
    teacher: Annotated[list[str] | None, typer.Option(
        "--teacher", "-t", metavar="RUN",
        help="teacher run dir (a teacher, or a student: chains and born-again students); "
        "repeat with --ensemble for several (default: read from stdin)")] = None,
    teacher_point: Annotated[str | None, typer.Option(
        metavar="P", help="a student teacher that swept several points: which point teaches "
        "(its seeds repeat across points)")] = None,
    loss: Annotated[list[str] | None, typer.Option(
        metavar="NAME[=W]",
        help=f"loss term ({_LOSS_HELP}) with an optional weight (W1,W2,... sweeps it); repeat "
        "to sum terms: --loss kl=1 --loss feature=0.5" + _d("distill", "loss"))
    ] = None,
    temp: Annotated[str | None, typer.Option(
        metavar="T[,T...]", help="kl temperature; a list sweeps it: --temp 0.01,0.1,1"
        + _d("distill", "temp"))] = None,
    kl_mode: Annotated[str | None, typer.Option(
        metavar="hinton|rusu", help="kl convention: hinton (both / T, times T^2) or rusu "
        "(teacher / tau only)" + _d("distill", "kl_mode"))] = None,
    collect: Annotated[str | None, typer.Option(
        metavar="MODE", help="who acts: teacher, student, mixed, dataset"
        + _d("distill", "collect"))] = None,
    env: Annotated[str | None, typer.Option(
        metavar="ID", help="expected env: refuse teachers trained on another one")] = None,
    ensemble: Annotated[bool | None, typer.Option(
        "--ensemble/--no-ensemble",
        help="each student learns from the ensemble of all teacher seeds and runs"
        + _d("distill", "ensemble"), show_default=False)] = None,
    multitask: Annotated[bool | None, typer.Option(
        "--multitask/--no-multitask",
        help="one student for teachers of different envs (one --teacher per env): a shared "
        "trunk, one Q-head per env" + _d("distill", "multitask"), show_default=False)] = None,
    student: Annotated[str | None, typer.Option(
        metavar="NET", help="student network: 64,32 or 16 (MLP sizes), linear, cnn or "
        "cnn:C,H, strided or strided:C,...,H (for --student-obs pixels); its family may "
        "differ from the teacher's" + _d("distill", "network"))] = None,
    student_obs: Annotated[list[str] | None, typer.Option(
        "--student-obs", metavar="drop=I,J|noise=S|pixels", help="privileged teacher: the "
        "student sees the observation with dimensions dropped and/or noise added "
        "(repeatable), or pixels: the env rendered as grayscale frames (cross-modal)",
        show_default=False)] = None,
    frame_stack: Annotated[str | None, typer.Option(
        "--frame-stack", metavar="K", help="the student sees its last K (transformed) "
        "observations stacked (pixels: K frames as channels)"
        + _d("distill", "frame_stack"))] = None,
    obs_norm: Annotated[str | None, typer.Option(
        "--obs-norm", metavar="none|bounds|teacher", help="the student's fixed input scaling: "
        "none, bounds (finite observation bounds to [-1, 1]) or teacher (zero mean, unit std "
        "over its teachers' visited states)" + _d("distill", "obs_norm"))] = None,
    inits: Annotated[str | None, typer.Option(
        metavar="K", help="train K initialisations per student in the same call and keep the "
        "best on held-out episodes (not the final evaluation's)" + _d("distill", "inits"))
    ] = None,
    seeds: Annotated[str | None, typer.Option(
        metavar="N", help="students per sweep point [default: one per teacher seed]")] = None,
    seed: Annotated[str | None, typer.Option(
        metavar="N", help="first student seed" + _d("distill", "seed"))] = None,
    steps: Annotated[str | None, typer.Option(
        metavar="N", help="max env steps per seed (total_steps)"
        + _d("distill", "total_steps"))] = None,
    lr: Annotated[str | None, typer.Option(
        metavar="X", help="learning rate" + _d("distill", "lr"))] = None,
    config_path: ConfigOpt = None,
    sets: SetOpt = None,
    out: OutOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    resume: ResumeOpt = None,
    coordinator: CoordOpt = None,
    num_processes: NProcOpt = None,
    process_id: PidOpt = None,
) -> None:
    """Distil teacher run(s) into a smaller student; sweeps in one call. Defaults come from
    configs/distill.toml, then the teacher env's configs/envs/<env>.toml, then --config, then
    flags."""
    from distillq import config
    from distillq.runs import store

    _only_resume(resume, teacher=teacher, teacher_point=teacher_point, loss=loss, temp=temp,
                 kl_mode=kl_mode, env=env, student_obs=student_obs, frame_stack=frame_stack,
                 obs_norm=obs_norm, inits=inits, collect=collect, ensemble=ensemble,
                 multitask=multitask, student=student,
                 seeds=seeds, seed=seed, steps=steps, lr=lr, config=config_path, set=sets,
                 out=out, force=force)
    if resume is not None:
        return _resume("distill", resume, quiet)

    over = _overrides(sets, temp=temp, kl_mode=kl_mode, collect=collect,
                      network=student, seed=seed, total_steps=steps, lr=lr,
                      frame_stack=frame_stack, obs_norm=obs_norm, inits=inits,
                      student_obs=";".join(student_obs) if student_obs else None)
    if loss:
        over["loss"] = tuple(loss)
    if ensemble is not None:
        over["ensemble"] = ensemble
    if multitask is not None:
        over["multitask"] = multitask
    n_seeds = config.parse_int("seeds", seeds, lo=1)
    point = config.parse_int("teacher-point", teacher_point)
    store.check_writable_parent(out)
    upstream = None
    if not teacher:   # a bad option fails now, not after the upstream command has finished
        config.load("distill", config_path, over)
        upstream = pipes.upstream("teacher run")
    teacher_dirs = list(teacher) if teacher else [upstream["run_dir"]]
    metas = [store.read_meta(t) for t in teacher_dirs]   # fail fast, before importing jax
    for t, meta in zip(teacher_dirs, metas, strict=True):
        if env is not None and meta["env"] != env:
            raise DistillqError(f"env mismatch: teacher {t} was trained on {meta['env']}, "
                                f"not {env}")
    # over the teachers' env's defaults (teachers of several envs: the common defaults)
    teacher_envs = {m["env"] for m in metas}
    # a multi-task student takes the common defaults (no env's own), even from teachers of
    # one env (refused below with its own reason)
    cfg = config.load("distill", config_path, over,
                      env=teacher_envs.pop() if len(teacher_envs) == 1 and not multitask
                      else None)
    _distributed(coordinator, num_processes, process_id)
    from distillq.commands import distill as command

    pipes.protect_stdout()
    pipes.emit(command.run(cfg, teacher_dirs, seeds=n_seeds, out=out, force=force,
                           show_progress=not quiet, started=_started(),
                           shown=pipes.shown(upstream), teacher_point=point))


@app.command("evaluate")
def evaluate(
    runs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="run dirs (default: the run named by the JSON on stdin, with "
        "its teachers); paths that are not run dirs are skipped with a warning",
        show_default=False)] = None,
    episodes: Annotated[str | None, typer.Option(
        metavar="N", help="greedy episodes per seed [default: 100]")] = None,
    no_teacher: Annotated[bool, typer.Option(
        "--no-teacher", help="evaluate students alone (no retention or fidelity)")] = False,
    env_param: Annotated[list[str] | None, typer.Option(
        "--env-param", metavar="NAME=V[,V...]", help="robustness: also evaluate with this env "
        "parameter shifted to each value (repeat for a grid): --env-param length=0.25,0.5,1",
        show_default=False)] = None,
    obs_noise: Annotated[str | None, typer.Option(
        "--obs-noise", metavar="S[,S...]", help="robustness: std of Gaussian noise added to "
        "every observation the networks see, each level a grid point [default: 0]",
        show_default=False)] = None,
) -> None:
    """Evaluate teacher/student runs: returns, retention, fidelity, size and speed; with
    --env-param/--obs-noise, also under each shift (a vmap axis)."""
    from distillq import config
    from distillq.core import robustness
    from distillq.runs import store

    shifts = None
    if env_param or obs_noise is not None:
        shifts = robustness.grid(robustness.parse_env_params(env_param or []),
                                 robustness.parse_noise(obs_noise))

    n = config.parse_int("episodes", episodes, 100, lo=1,
                         beyond="{v:,} is beyond the 2^31 - 1 episodes one evaluation numbers")
    upstream = None if runs else pipes.upstream("run")
    paths = store.existing_runs(list(runs) if runs else [upstream["run_dir"]])  # before jax
    from distillq.commands import evaluate as command

    pipes.protect_stdout()
    t0 = time.perf_counter()
    out = command.run(paths, episodes=n, with_teacher=not no_teacher,
                      add_teachers=upstream is not None and not no_teacher,
                      shown=pipes.shown(upstream), shifts=shifts)
    out["wall_s"] = round(time.perf_counter() - _started(), 3)
    out["eval_wall_s"] = round(time.perf_counter() - t0, 3)
    if len(paths) == 1:  # a single run asked for: its summary also sits at the top level
        out["run_dir"] = out["results"][0]["run_dir"]
    pipes.emit(out)


@app.command("export")
def export(
    run: Annotated[str | None, typer.Argument(
        metavar="[RUN]", help="run dir (default: the run named by the JSON on stdin)",
        show_default=False)] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", "-f", metavar="numpy|c|onnx", help="artefact: numpy (policy.npz + a "
        "numpy-only policy.py), c (policy.h/policy.c, no allocation) or onnx (policy.onnx) "
        "[default: onnx for --out NAME.onnx, else numpy]", show_default=False)] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", metavar="DIR|FILE.onnx", help="output dir, or the .onnx file of an "
        "ONNX export [default: exports/<run>-<format>]", show_default=False)] = None,
    seed_index: Annotated[str | None, typer.Option(
        "--seed-index", metavar="I", help="which seed of the run [default: 0]")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8", help="int8 weights with per-output-channel scales (post-training)")] = False,
    states: Annotated[str | None, typer.Option(
        metavar="N", help="env states of the parity check [default: 10000]")] = None,
    bench: Annotated[bool, typer.Option(
        "--bench", help="also time batch-1 decisions: jitted JAX, NumPy, and the artefact's "
        "runtime (onnxruntime, compiled C)")] = False,
    force: ForceOpt = False,
) -> None:
    """Export a run's network (teacher or student) and check it against distillq's own
    forward pass on env states: same greedy action, Q-values to 1e-4."""
    from pathlib import Path

    from distillq import config
    from distillq.runs import store

    path = run if run is not None else pipes.upstream("run")["run_dir"]
    meta = store.read_meta(path)           # fail fast, before importing jax
    i = config.parse_int("seed_index", seed_index, 0)
    n = config.parse_int("states", states, 10_000, lo=1, hi=10_000_000)
    from distillq.commands.export import format_of

    fmt = format_of(fmt, out)
    named = f"{Path(path).resolve().name}-{fmt}{'-int8' if int8 else ''}"
    out_dir = out if out is not None else str(Path("exports") / named)
    if meta["status"] != "complete":
        raise DistillqError(f"run {path} is not complete (status: {meta['status']})")
    from distillq import _setup

    _setup.configure()
    from distillq.commands import export as command

    pipes.protect_stdout()
    pipes.emit(command.run(path, fmt, out_dir, seed_index=i, int8=int8, force=force,
                           states=n, bench=bench))


@app.command("render")
def render(
    run: Annotated[str | None, typer.Argument(
        metavar="[RUN]", help="run dir (default: the run named by the JSON on stdin)",
        show_default=False)] = None,
    out: Annotated[str, typer.Option(
        "--out", "-o", metavar="FILE.gif", help="the GIF to write")] = "rollout.gif",
    seed_index: Annotated[str | None, typer.Option(
        "--seed-index", metavar="I", help="which seed of the run [default: 0]")] = None,
    episode: Annotated[str | None, typer.Option(
        metavar="E", help="which episode: episode E of `evaluate --episodes N`, played by "
        "evaluate's own call [default: 0]")] = None,
    episodes: Annotated[str | None, typer.Option(
        metavar="N", help="the evaluation E belongs to: `evaluate --episodes N` (its batch "
        "of min(N, 512) episodes) [default: 100]")] = None,
    no_teacher: Annotated[bool, typer.Option(
        "--no-teacher", help="a student alone, as `evaluate --no-teacher` plays it (default: "
        "side by side with its teacher's own episode from the same initial state)")] = False,
    max_frames: Annotated[str | None, typer.Option(
        metavar="N", help="at most N frames (every k-th env step, the same steps in both "
        "panes) [default: 120]")] = None,
    force: ForceOpt = False,
) -> None:
    """Draw one greedy evaluation episode (evaluate's own) as a GIF: a student beside its
    teacher, captioned with the env step and the return so far."""
    from distillq import config
    from distillq.runs import store

    path = run if run is not None else pipes.upstream("run")["run_dir"]
    store.read_meta(path)
    i = config.parse_int("seed_index", seed_index, 0)
    e = config.parse_int("episode", episode, 0)
    n_ep = config.parse_int("episodes", episodes, 100, lo=1,
                            beyond="{v:,} is beyond the 2^31 - 1 episodes one evaluation "
                            "numbers")
    n = config.parse_int("max_frames", max_frames, 120)
    if not 0 <= e < n_ep:
        raise ConfigError(f"--episode must be in 0..{n_ep - 1} (episode E of `evaluate "
                          f"--episodes {n_ep}`); got {e}")
    if not 2 <= n <= 10_000:
        raise ConfigError(f"--max-frames must be in 2..10000, got {n}")
    from distillq import _setup

    _setup.configure()
    from distillq.commands import render as command

    pipes.protect_stdout()
    pipes.emit(command.run(path, out, seed_index=i, episode_index=e, episodes=n_ep,
                           with_teacher=not no_teacher, max_frames=n, force=force))


@app.command("report")
def report(
    runs: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN]...", help="run dirs (default: those named by the JSON on stdin); a "
        "student's teacher is added automatically", show_default=False)] = None,
    out: Annotated[str | None, typer.Option(
        "--out", "-o", metavar="DIR", help="output dir (default: reports/report-<date>-<id>)")
    ] = None,
    gifs: Annotated[str | None, typer.Option(
        "--gifs", metavar="DIR", help="link the GIFs `distillq render` wrote there for these "
        "runs")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="replace an existing --out report")] = False,
) -> None:
    """Write learning-curve and comparison plots (PNG) and a markdown table for runs."""
    from pathlib import Path

    from distillq.commands import report as command
    from distillq.runs import store

    out_dir = None if out is None else store.printable(out)   # checked first thing by run
    if gifs is not None and not Path(gifs).is_dir():
        raise ConfigError(f"--gifs {gifs}: not a directory (where `distillq render` wrote "
                          "the GIFs to link)")
    paths = store.existing_runs(list(runs) if runs else pipes.upstream_run_dirs())
    pipes.protect_stdout()
    pipes.emit(command.run(paths, out_dir, Path(gifs) if gifs else None, force=force))


def _fail(msg: str, code: int) -> None:
    sys.stderr.write(f"distillq: error: {msg}\n")
    _silence_stderr_after_message()
    sys.exit(code)


def _silence_stderr_after_message() -> None:
    """After the one-line error, send fd 2 to /dev/null: orbax/tensorstore threads print
    'RuntimeError: Event loop is closed' tracebacks at interpreter shutdown after a failed
    restore (orbax-checkpoint 0.12.8); they are not fatal and must not follow our one line."""
    try:
        sys.stderr.flush()
        if sys.stderr is not sys.__stderr__:   # in-process callers (tests) keep their stderr
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """Entry point: turns every failure into one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    if sys.stdout is None:       # started with stdout closed (`distillq ... >&-`)
        sys.stderr.write("distillq: error: stdout is closed: distillq writes its result as "
                         "JSON there (redirect it to a file or /dev/null)\n")
        sys.exit(2)
    try:
        app(args=args, prog_name="distillq", standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        _fail("interrupted", 130)
    except Interrupted as e:
        from distillq.runs import signals

        sys.stderr.write(f"distillq: interrupted; resume with: {e.resume_cmd}\n")
        _silence_stderr_after_message()
        signals.exit_now(130)
    except DistillqError as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__, e.exit_code)
    except typer.TyperException as e:  # click usage errors (unknown option, missing value)
        fmt = getattr(e, "format_message", None)
        msg = fmt() if fmt else str(e)
        code = getattr(e, "exit_code", 2)
        if type(e).__name__ == "NoArgsIsHelpError":
            sys.stderr.write(msg + "\n")
            sys.exit(2)
        _fail(" ".join(msg.split()), code if code else 2)
    except KeyboardInterrupt as e:   # in-process callers; the process's handler exits itself
        from distillq.runs import signals

        name = f" ({e.args[0]})" if e.args and str(e.args[0]).startswith("SIG") else ""
        note = getattr(e, "note", "")
        sys.stderr.write(f"distillq: interrupted{name}{'; ' + note if note else ''}\n")
        _silence_stderr_after_message()
        signals.exit_now(130)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    except Exception as e:  # noqa: BLE001
        if os.environ.get("DISTILLQ_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
              "(set DISTILLQ_DEBUG=1 for a traceback)", 1)


if __name__ == "__main__":
    main()
