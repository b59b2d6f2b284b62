"""Frozen, validated run configs, loaded from TOML files in `configs/` and CLI overrides.

Every field carries its documentation and its bounds in `field(metadata=...)`; the same
metadata drives validation, the README's config reference and `--set key=value` parsing.
Derived values are properties and are never written back into a config.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillq import registry
from distillq.errors import ConfigError


def _config_dir() -> Path:
    """configs/: shipped inside the package by a wheel install (distillq/configs), else the
    source tree's top-level configs/ (the source of truth)."""
    here = Path(__file__).resolve().parent
    packaged = here / "configs"
    return packaged if packaged.is_dir() else here.parent / "configs"


CONFIG_DIR = _config_dir()
ENV_CONFIG_DIR = CONFIG_DIR / "envs"
# Keys renamed since earlier versions, still accepted in config files, --set and the saved
# config of older runs.
ALIASES = {"hidden": "network"}
OBS_NORM_DOC = ("fixed input scaling, part of the network spec: none; bounds (each "
                "observation dimension with finite bounds mapped to [-1, 1]); teacher (a "
                "student only: each dimension shifted and scaled to zero mean, unit std over "
                "the states its teachers visit, measured once before training)")
OBS_NORMS = ("none", "bounds", "teacher")
NETWORK_DOC = ("W,W,... (MLP hidden sizes), linear (no hidden layer), cnn[:C,H,...] "
               "(MinAtar CNN) or strided[:C,...,H] (CNN for rendered frames)")


def _f(default: Any, doc: str, **bounds: Any) -> Any:
    """A config field: default, one-line doc, and bounds (min=, gt=, max=, choices=)."""
    return field(default=default, metadata={"doc": doc, **bounds})


@dataclass(frozen=True)
class Loop:
    """The training loop's keys, shared by every training config (declared once here; a
    config kind changes only their defaults, with `defaults`). Derived sizes are properties,
    never stored."""

    seed: int = _f(0, "first seed; seeds are seed, seed+1, ... (a vmap axis; a student i "
                   "learns from teacher seed i)", min=0)
    network: str = _f("128,64", "the trained network: " + NETWORK_DOC + "; a student's family "
                      "may differ from its teacher's", network=True)
    activation: str = _f("relu", "hidden activation", choices=("relu", "tanh", "silu"))
    obs_norm: str = _f("none", OBS_NORM_DOC, choices=OBS_NORMS)
    num_envs: int = _f(16, "parallel environments per seed", min=1)
    total_steps: int = _f(100_000, "maximum environment steps per seed (a dataset student: "
                          "collection plus fitting iterations)", min=1)
    learning_starts: int = _f(1_024, "environment steps per seed before the first update", min=0)
    buffer_size: int = _f(20_000, "replay capacity in transitions per seed", min=1)
    batch_size: int = _f(128, "minibatch size of one gradient update", min=1)
    updates_per_step: int = _f(1, "gradient updates per vectorised environment step", min=1)
    lr: float = _f(1e-2, "Adam learning rate at the start", gt=0.0)
    lr_end: float = _f(2e-3, "learning rate reached linearly at total_steps", gt=0.0)
    grad_clip: float = _f(10.0, "global gradient-norm clip", gt=0.0)
    chunk_steps: int = _f(256, "vectorised env steps per jitted chunk (host sync period)", min=1)
    eval_episodes: int = _f(32, "greedy episodes per seed evaluated after every chunk; the best "
                            "evaluated params are kept (0 = keep the last params)", min=0)
    final_episodes: int = _f(100, "greedy episodes per seed in the final evaluation", min=1)
    checkpoint_secs: float = _f(30.0, "seconds between full-state checkpoints for --resume "
                                "(0 = only on SIGINT/SIGTERM)", min=0.0)

    @property
    def vector_steps(self) -> int:
        """Vectorised env steps per iteration of the loop (a PQN teacher: a whole rollout)."""
        return 1

    @property
    def steps_per_iteration(self) -> int:
        """Env steps per seed in one iteration (num_envs x vector_steps)."""
        return self.num_envs * self.vector_steps

    @property
    def updates_per_iteration(self) -> int:
        return self.updates_per_step

    @property
    def total_iterations(self) -> int:
        """Iterations per seed (each takes steps_per_iteration env steps)."""
        return max(1, math.ceil(self.total_steps / self.steps_per_iteration))

    @property
    def warmup_iterations(self) -> int:
        return math.ceil(self.learning_starts / self.steps_per_iteration)

    @property
    def chunk_iterations(self) -> int:
        """Iterations per jitted chunk: chunk_steps vectorised env steps, never more than the
        whole budget (the iterations of a last, partial chunk beyond it do nothing)."""
        return min(max(1, self.chunk_steps // self.vector_steps), self.total_iterations)

    @property
    def buffer_rows(self) -> int:
        """Replay capacity in vectorised steps (rows of num_envs transitions)."""
        return max(1, math.ceil(self.buffer_size / self.num_envs))

    @property
    def total_updates(self) -> int:
        return max(1, (self.total_iterations - self.warmup_iterations)
                   * self.updates_per_iteration)

    def env_iterations(self, t: int) -> int:
        """Vectorised env steps taken in the first t iterations."""
        return t


LOOP_KEYS = tuple(f.name for f in dataclasses.fields(Loop))


def defaults(**values: Any):
    """Class decorator (under @dataclass): inherited fields get these defaults; their docs and
    bounds stay the ones declared once in the base class."""
    def wrap(cls: type) -> type:
        base = {f.name: f for c in cls.__mro__[1:] if dataclasses.is_dataclass(c)
                for f in dataclasses.fields(c)}
        annotations = dict(cls.__dict__.get("__annotations__", {}))
        for name, v in values.items():
            annotations[name] = base[name].type
            setattr(cls, name, field(default=v, metadata=base[name].metadata))
        cls.__annotations__ = annotations
        return cls

    return wrap


def ordered_fields(cls_or_cfg: Any) -> list:
    """A config's fields as files show them: its own keys first, then the loop's."""
    fs = dataclasses.fields(cls_or_cfg)
    return [f for f in fs if f.name not in LOOP_KEYS] + [f for f in fs if f.name in LOOP_KEYS]


BUDGETS = ("target", "long")     # train-teacher --budget: a passing teacher, or a strong one


@dataclass(frozen=True)
class TeacherConfig(Loop):
    """Teacher (DQN or PQN) on a gymnax environment."""

    env: str = _f("CartPole-v1", "gymnax environment id")
    seeds: int = _f(4, "number of independent seeds trained in one vmapped call", min=1)
    algo: str = _f("dqn", "teacher algorithm: " + "; ".join(
        f"{a.name} ({a.doc})" for a in registry.ALGOS.values()), choices=tuple(registry.ALGOS))
    gamma: float = _f(0.99, "discount factor", min=0.0, max=1.0)
    n_step: int = _f(4, "n-step returns (1 = plain one-step TD)", min=1)
    double_dqn: bool = _f(True, "Double DQN target (online argmax, target evaluation)")
    target_update: int = _f(20, "gradient updates between target-network updates", min=1)
    tau: float = _f(1.0, "target update rate: 1.0 = hard copy, <1 = Polyak", gt=0.0, max=1.0)
    huber_delta: float = _f(1.0, "Huber loss threshold on the TD error", gt=0.0)
    eps_start: float = _f(1.0, "epsilon-greedy: initial epsilon", min=0.0, max=1.0)
    eps_end: float = _f(0.05, "epsilon-greedy: final epsilon", min=0.0, max=1.0)
    eps_fraction: float = _f(0.2, "fraction of total_steps over which epsilon decays",
                             gt=0.0, max=1.0)
    stop_return: float | None = _f(None, "stop early once every seed's in-training evaluation "
                                   "reaches this mean return (none = never; set per env in "
                                   "configs/envs/)")
    budget: str = _f("target", "target: stop at the env's stop_return (a passing teacher); long: "
                     "the env's [teacher.long] table over its defaults (no early stop unless "
                     "that table sets one: a strong teacher)", choices=BUDGETS)
    pqn_steps: int = _f(32, "pqn: vectorised env steps per rollout (one iteration)", min=1)
    pqn_epochs: int = _f(2, "pqn: passes over each rollout", min=1)
    pqn_minibatches: int = _f(32, "pqn: minibatches per pass (num_envs x pqn_steps must split "
                              "evenly)", min=1)
    pqn_lambda: float = _f(0.65, "pqn: lambda of the lambda-returns (0 = one-step, 1 = Monte "
                           "Carlo)", min=0.0, max=1.0)

    @property
    def vector_steps(self) -> int:
        return self.pqn_steps if self.algo == "pqn" else 1

    @property
    def updates_per_iteration(self) -> int:
        return self.pqn_epochs * self.pqn_minibatches if self.algo == "pqn" else \
            self.updates_per_step

    @property
    def update_rows(self) -> int:
        """Samples the whole budget's gradient updates read, over all seeds: the measure of a
        run's length that chooses its XLA flags (_setup.LONG_RUN_ROWS)."""
        rows = self.num_envs * self.pqn_steps // self.pqn_minibatches if self.algo == "pqn" \
            else self.batch_size
        return self.seeds * self.total_updates * rows

    @property
    def stored_rows(self) -> int:
        """Rows of num_envs transitions a seed keeps: the replay (dqn) or one rollout (pqn)."""
        return self.pqn_steps if self.algo == "pqn" else self.buffer_rows

    def check(self) -> None:
        _check_fields(self)
        if self.obs_norm == "teacher":
            raise ConfigError("obs_norm = 'teacher' scales a student's inputs by its teachers' "
                              "states; a teacher takes none or bounds")
        if registry.env_error(self.env):
            raise ConfigError(f"env: {registry.env_error(self.env)}")
        if self.warmup_iterations >= self.total_iterations:
            raise ConfigError(f"learning_starts ({self.learning_starts}) must be below total_steps "
                              f"({self.total_steps})")
        if self.algo == "pqn":
            rollout = self.num_envs * self.pqn_steps
            if rollout % self.pqn_minibatches:
                raise ConfigError(f"pqn: num_envs x pqn_steps ({rollout}) must split into "
                                  f"pqn_minibatches ({self.pqn_minibatches}) evenly")
            return
        if self.n_step >= self.buffer_rows:
            raise ConfigError(f"n_step ({self.n_step}) must be smaller than buffer_size/num_envs "
                              f"({self.buffer_rows})")
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size ({self.batch_size}) is larger than buffer_size "
                              f"({self.buffer_size})")
        if self.warmup_iterations < self.n_step:
            raise ConfigError(f"learning_starts ({self.learning_starts}) must cover at least "
                              f"n_step ({self.n_step}) vectorised steps of num_envs "
                              f"({self.num_envs})")


def _td(teacher_key: str, default: Any) -> Any:
    """A student's td term key: the teacher's TD key (its doc and bounds), its own default."""
    meta = {f.name: f.metadata for f in dataclasses.fields(TeacherConfig)}[teacher_key]
    return field(default=default, metadata={**meta, "doc": "td term: " + meta["doc"]})


LOSSES = tuple(registry.LOSSES)
COLLECT = ("teacher", "student", "mixed", "dataset")


def parse_loss_term(term: str) -> tuple[str, tuple[float, ...]]:
    """'kl' -> ('kl', (1.0,)); 'feature=0.5' -> ('feature', (0.5,)); 'kl=0,1' -> sweep."""
    name, _, w = term.partition("=")
    name = name.strip()
    if name not in LOSSES:
        raise ConfigError(f"loss: unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    if not w.strip():
        return name, (1.0,)
    weights = []
    for x in w.split(","):
        try:
            v = float(x)
        except ValueError:
            raise ConfigError(f"loss: weight of {name} must be a number, got {x!r}") from None
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"loss: weight of {name} must be finite and >= 0, got {x!r}")
        weights.append(v)
    return name, tuple(weights)


@dataclass(frozen=True)
@defaults(network="64,32", total_steps=40_000, updates_per_step=4, lr=1e-3, lr_end=1e-5)
class DistillConfig(Loop):
    """Student distilled from a teacher run."""

    loss: tuple[str, ...] = _f(("kl",), "loss terms NAME[=WEIGHT[,WEIGHT...]] summed with their "
                               "weights (several weights: a sweep axis); names: "
                               + ", ".join(LOSSES) + "; in --set, join terms with +", sep="+")
    temp: tuple[float, ...] = _f((1.0,), "kl temperature; several values: a sweep axis", gt=0.0)
    kl_mode: str = _f("hinton", "kl convention: hinton (teacher and student / T, times T^2) or "
                      "rusu (only the teacher / tau)", choices=("hinton", "rusu"))
    feature_layers: str = _f("-1:-1", "STUDENT:TEACHER hidden-layer indices for feature and "
                             "rkd losses (negative counts from the last)")
    fsp_layers: str = _f("-2,-1:-2,-1", "fsp loss: A,B:C,D relates the student's hidden layers "
                         "A and B to the teacher's C and D (negative counts from the last)")
    rkd_angle_batch: int = _f(32, "samples of the batch used by rkd_angle (cost grows as n^3)",
                              min=3)
    ensemble: bool = _f(False, "each student learns from the ensemble of all teacher seeds "
                        "(and all --teacher runs) instead of teacher seed i")
    multitask: bool = _f(False, "one student for teachers of different envs (one --teacher "
                         "per env): a shared trunk, one Q-head per env (README: Multi-task "
                         "students)")
    collect: str = _f("teacher", "who acts while states are collected: teacher, student, mixed "
                      "(teacher with probability decaying 1 -> 0), dataset (teacher fills the "
                      "buffer once, then the student fits it)", choices=COLLECT)
    collect_eps: float = _f(0.05, "epsilon of the acting policy's epsilon-greedy exploration",
                            min=0.0, max=1.0)
    mix_fraction: float = _f(0.5, "mixed: fraction of training over which the teacher's acting "
                             "probability decays from 1 to 0", gt=0.0, max=1.0)
    dataset_steps: int = _f(20_000, "dataset: env steps per seed collected before fitting "
                            "(<= buffer_size)", min=1)
    stop_retention: float = _f(0.0, "stop early once every student's in-training evaluation "
                               "reaches this normalised retention, (S - R) / (T - R) with R a "
                               "uniform-random policy's return (0 = never)", min=0.0)
    td_gamma: float = _td("gamma", 0.99)
    td_n_step: int = _td("n_step", 3)
    td_double: bool = _td("double_dqn", True)
    td_target_update: int = _td("target_update", 100)
    td_huber_delta: float = _td("huber_delta", 1.0)
    lambda_schedule: str = _f("fixed", "weight of the non-td terms over training: fixed (1), "
                              "qdagger (max(1 - normalised in-training return of the student "
                              "relative to its teacher's, 0), updated after every chunk), or "
                              "linear (1 -> 0 over lambda_fraction of training)",
                              choices=("fixed", "qdagger", "linear"))
    student_obs: str = _f("", "what the student sees instead of the observation (a "
                          "privileged teacher labels the full one): drop=I,J removes "
                          "dimensions, noise=S adds Gaussian noise; join with ';' ('' = all); "
                          "pixels: the env rendered as a grayscale frame (CartPole, Acrobot, "
                          "MountainCar), a cross-modal student")
    frame_stack: int = _f(1, "the student sees its last K transformed observations "
                          "(pixels: frames, as channels) stacked",
                          min=1)
    lambda_fraction: float = _f(0.5, "linear lambda_schedule: fraction of training over which "
                                "the distillation weight decays to 0", gt=0.0, max=1.0)
    obs_norm_steps: int = _f(16_384, "obs_norm = teacher: env steps per teacher seed of its "
                             "epsilon-greedy (collect_eps) play whose states give the scaling",
                             min=1)
    inits: int = _f(1, "students trained per student seed (a vmap axis, one compiled call); "
                    "the one with the best mean return on select_episodes held-out episodes "
                    "(never the final evaluation's) is kept", min=1)
    select_episodes: int = _f(100, "inits > 1: greedy episodes per student that choose among "
                              "its initialisations (keys disjoint from the final "
                              "evaluation's)", min=1)

    @property
    def has_td(self) -> bool:
        return any(registry.LOSSES[n].kind == "td" for n in self.term_names)

    @property
    def terms(self) -> tuple[tuple[str, tuple[float, ...]], ...]:
        return tuple(parse_loss_term(t) for t in self.loss)

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.terms)

    @property
    def sweep_points(self) -> list[dict]:
        """The grid of (temp, weights) points, temp-major; one point without a sweep."""
        import itertools

        names = self.term_names
        grids = [w for _, w in self.terms]
        return [{"temp": t, "weights": dict(zip(names, ws, strict=True))}
                for t in self.temp for ws in itertools.product(*grids)]

    @property
    def layer_pair(self) -> tuple[int, int]:
        s, t = self.feature_layers.split(":")
        return int(s), int(t)

    @property
    def pixels(self) -> bool:
        """The student sees rendered frames (student_obs = "pixels")."""
        return [x.strip() for x in self.student_obs.split(";") if x.strip()] == ["pixels"]

    @property
    def fsp_pairs(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((student A, B), (teacher C, D)) hidden-layer indices of the fsp loss."""
        s, t = self.fsp_layers.split(":")
        a, b = (int(x) for x in s.split(","))
        c, d = (int(x) for x in t.split(","))
        return (a, b), (c, d)

    @property
    def dataset_iterations(self) -> int:
        return max(1, math.ceil(self.dataset_steps / self.num_envs))

    @property
    def warmup_iterations(self) -> int:
        if self.collect == "dataset":   # collect the whole dataset, then fit it
            return self.dataset_iterations
        return math.ceil(self.learning_starts / self.num_envs)

    def env_iterations(self, t: int) -> int:
        """Vectorised env steps taken in the first t iterations (a dataset stops growing)."""
        return min(t, self.dataset_iterations) if self.collect == "dataset" else t

    def check(self) -> None:
        _check_fields(self)
        terms = self.terms  # validates names and weights
        if len(set(self.term_names)) != len(terms):
            raise ConfigError("loss: each loss may appear once (give several weights as "
                              "NAME=W1,W2 for a sweep)")
        trains_q = registry.losses_of_kind(*registry.TRAINS_Q)
        if not any(n in trains_q for n in self.term_names):
            raise ConfigError(f"loss: needs at least one output loss ({', '.join(trains_q)}): "
                              "feature and relation losses alone do not train the Q-values")
        parts = self.feature_layers.split(":")
        try:
            ls, lt = (int(x) for x in parts)
        except ValueError:
            raise ConfigError(f"feature_layers: expected STUDENT:TEACHER integers, got "
                              f"{self.feature_layers!r}") from None
        if any(n in registry.losses_of_kind("hidden") for n in self.term_names):
            n_layers = registry.hidden_layers(registry.parse_network(self.network))
            if not -n_layers <= ls < n_layers:
                raise ConfigError(f"feature_layers: student layer {ls} does not exist in a "
                                  f"student with {n_layers} hidden layers ({self.network})")
        try:
            (fa, fb), _ = self.fsp_pairs
        except ValueError:
            raise ConfigError(f"fsp_layers: expected A,B:C,D integers (student A,B : teacher "
                              f"C,D), got {self.fsp_layers!r}") from None
        if "fsp" in self.term_names:
            n_layers = registry.hidden_layers(registry.parse_network(self.network))
            for i in (fa, fb):
                if not -n_layers <= i < n_layers:
                    raise ConfigError(f"fsp_layers: student layer {i} does not exist in a "
                                      f"student with {n_layers} hidden layers ({self.network}); "
                                      "fsp relates two layers")
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size ({self.batch_size}) is larger than buffer_size "
                              f"({self.buffer_size})")
        if self.lambda_schedule != "fixed" and not self.has_td:
            raise ConfigError(f"lambda_schedule = {self.lambda_schedule!r} weighs the "
                              "distillation terms against a td term: add --loss td")
        image_net = registry.NETWORKS[registry.parse_network(self.network)["type"]].image
        if self.pixels:
            if self.multitask:
                raise ConfigError("multitask: student_obs / frame_stack are not supported")
        elif self.student_obs or self.frame_stack > 1:
            if image_net:
                raise ConfigError("student_obs / frame_stack: a CNN student sees frames as "
                                  "they are (or student_obs = pixels); use an mlp or linear "
                                  "student")
        if self.multitask:
            bad = [n for n in self.term_names if registry.LOSSES[n].kind != "output"]
            if bad:
                raise ConfigError("multitask takes output losses only ("
                                  f"{', '.join(registry.losses_of_kind('output'))}); got {bad[0]}")
            if self.collect == "dataset":
                raise ConfigError("multitask collects online: collect teacher, student or mixed")
            if self.ensemble:
                raise ConfigError("multitask: each env has one teacher run; ensemble is not "
                                  "supported")
            if self.student_obs or self.frame_stack > 1:
                raise ConfigError("multitask: student_obs / frame_stack are not supported")
            if self.obs_norm == "teacher":
                raise ConfigError("multitask: obs_norm = 'teacher' is not supported (use "
                                  "none or bounds)")
            if self.inits > 1:
                raise ConfigError("multitask: inits > 1 is not supported")
            if registry.parse_network(self.network).get("type") not in ("mlp", "linear"):
                raise ConfigError(f"multitask: the shared trunk is an MLP (e.g. 64,32) or "
                                  f"linear (heads only); got {self.network!r}")
        if self.has_td and self.warmup_iterations < self.td_n_step:
            raise ConfigError(f"td_n_step ({self.td_n_step}) needs at least that many "
                              "collected steps per env before the first update: raise "
                              "learning_starts (or dataset_steps)")
        if self.lambda_schedule == "qdagger" and self.eval_episodes < 1:
            raise ConfigError("lambda_schedule = 'qdagger' follows the in-training evaluation: "
                              "eval_episodes must be >= 1")
        if self.collect == "dataset":
            if self.dataset_steps > self.buffer_size:
                raise ConfigError(f"dataset_steps ({self.dataset_steps}) must fit in buffer_size "
                                  f"({self.buffer_size})")
            if self.dataset_steps < self.batch_size:
                raise ConfigError(f"dataset_steps ({self.dataset_steps}) is smaller than "
                                  f"batch_size ({self.batch_size})")
        elif self.warmup_iterations < 1:
            raise ConfigError("learning_starts must be at least 1")
        if self.warmup_iterations >= self.total_iterations:
            what = "dataset_steps" if self.collect == "dataset" else "learning_starts"
            raise ConfigError(f"{what} must be below total_steps ({self.total_steps})")


CONFIGS: dict[str, type] = {"teacher": TeacherConfig, "distill": DistillConfig}


# ---------------------------------------------------------------------------- validation


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_fields(cfg: Any) -> None:
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _check_value(f.name, value, hints[f.name], f.metadata)


def _check_value(name: str, value: Any, hint: Any, meta: Any) -> None:
    items = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value and hint != tuple[int, ...]:
        raise ConfigError(f"{name}: must not be empty")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{name}: must be a finite number, got {v}")
        if "min" in meta and v < meta["min"]:
            raise ConfigError(f"{name}: must be >= {meta['min']}, got {v}")
        if "gt" in meta and v <= meta["gt"]:
            raise ConfigError(f"{name}: must be > {meta['gt']}, got {v}")
        if "max" in meta and v > meta["max"]:
            raise ConfigError(f"{name}: must be <= {meta['max']}, got {v}")
    if meta.get("network"):
        try:
            registry.parse_network(value)
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{name}: must be one of {', '.join(meta['choices'])}; got {value!r}")


def coerce(name: str, value: Any, hint: Any, sep: str = ",") -> Any:
    """Turn a TOML value or a CLI string into the field's type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            if isinstance(value, str):
                f = float(value.replace("_", ""))
                if not f.is_integer():
                    raise ValueError
                return int(f)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if isinstance(value, (list, tuple)) and name == "network":   # [64, 32] = "64,32"
                return ",".join(str(coerce(name, v, int)) for v in value)
            if not isinstance(value, str):
                raise ValueError
            return value
        if origin is tuple:
            (inner, *_rest) = typing.get_args(hint)
            if isinstance(value, str):
                parts = [p for p in value.replace(" ", "").split(sep)] if value.strip() else []
            elif isinstance(value, (list, tuple)):
                parts = list(value)
            else:
                parts = [value]
            try:
                return tuple(coerce(name, p, inner) for p in parts)
            except ConfigError:
                raise ValueError from None
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            if value is None or (isinstance(value, str) and value.lower() == "none"):
                return None
            return coerce(name, value, args[0])
    except (ValueError, TypeError, OverflowError):
        pass
    else:
        raise ConfigError(f"{name}: unsupported type {hint}")
    tname = getattr(hint, "__name__", str(hint))
    if origin is tuple:
        tname = "comma-separated integers"
    raise ConfigError(f"{name}: expected {tname}, got {value!r}")


def build(cls: type, values: dict[str, Any], *, source: str = "") -> Any:
    """Construct and validate `cls` from a mapping of field -> raw value."""
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    where = f" in {source}" if source else ""
    values = {ALIASES.get(k, k) if ALIASES.get(k) in known else k: v for k, v in values.items()}
    for key in values:
        if key not in known:
            close = [k for k in known if k.startswith(key[:3])]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{where}{hint}")
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}
    cfg = cls(**{k: coerce(k, v, hints[k], meta[k].get("sep", ",")) for k, v in values.items()})
    cfg.check()
    return cfg


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {type(e).__name__}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"malformed config file {path}: {e}") from None
    flat: dict[str, Any] = {}
    for k, v in data.items():  # tables are only a visual grouping: [dqn] lr = ... == lr = ...
        if isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def default_path(kind: str) -> Path | None:
    p = CONFIG_DIR / f"{kind}.toml"
    return p if p.is_file() else None


def env_file(env: str) -> Path:
    return ENV_CONFIG_DIR / f"{env}.toml"


def read_env_file(env: str) -> dict[str, Any]:
    """configs/envs/<env>.toml as {"env": {...}, "teacher": {...}, "distill": {...}}; {} when
    the env has no defaults of its own."""
    p = env_file(env)
    if not p.is_file():
        return {}
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"malformed env config {p}: {e}") from None
    unknown = set(data) - {"env", *CONFIGS}
    if unknown:
        raise ConfigError(f"unknown table [{sorted(unknown)[0]}] in {p}")
    return data


def env_target(env: str) -> float | None:
    """The env's target: the mean greedy return (100 episodes) that counts as solved."""
    t = read_env_file(env).get("env", {}).get("target")
    return None if t is None or t == "none" else float(t)


def algo_path(algo: str) -> Path | None:
    """configs/algos/<algo>.toml: a teacher algorithm's own defaults (over configs/teacher.toml)."""
    p = CONFIG_DIR / "algos" / f"{algo}.toml"
    return p if p.is_file() else None


def load(kind: str, path: str | Path | None = None, overrides: dict[str, Any] | None = None,
         *, env: str | None = None) -> Any:
    """Config of `kind`, each layer over the one before: the defaults (configs/<kind>.toml);
    a teacher's algorithm's defaults (configs/algos/<algo>.toml); the env's own defaults
    (configs/envs/<env>.toml, table [<kind>], then a teacher's [teacher.<algo>]); the user's
    file `path`; then `overrides` (--set and flags). The env is `env` (distill: the
    teacher's), else the one the overrides, the user's file or the defaults name; the
    algorithm likewise, the env's file included."""
    cls = CONFIGS[kind]
    over = {k: v for k, v in (overrides or {}).items() if v is not None}
    base = default_path(kind)
    layers: list[tuple[dict[str, Any], str]] = []
    if base is not None:
        layers.append((read_toml(base), str(base)))
    user = read_toml(Path(path)) if path is not None else None
    if env is None and "env" in {f.name for f in dataclasses.fields(cls)}:
        env = str(over.get("env") or (user or {}).get("env")
                  or (layers[0][0] if layers else {}).get("env") or cls.env)
    table = read_env_file(env).get(kind, {}) if env is not None else {}
    env_values = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if kind == "teacher":
        algo = str(over.get("algo") or (user or {}).get("algo") or env_values.get("algo")
                   or (layers[0][0] if layers else {}).get("algo") or cls.algo)
        ap = algo_path(algo)
        if ap is not None:      # validated as that algorithm's
            layers.append(({**read_toml(ap), "algo": algo}, str(ap)))
        for name, sub in table.items():
            if isinstance(sub, dict) and name not in (*registry.ALGOS, "long"):
                raise ConfigError(f"unknown table [teacher.{name}] in {env_file(env)}; valid: "
                                  f"{', '.join(f'teacher.{a}' for a in (*registry.ALGOS, 'long'))}")
        env_values = {**env_values, **table.get(algo, {})}
        budget = str(over.get("budget") or (user or {}).get("budget")
                     or env_values.get("budget")
                     or (layers[0][0] if layers else {}).get("budget") or cls.budget)
        if budget == "long":    # a strong teacher: no early stop unless [teacher.long] says
            env_values = {**env_values, "stop_return": "none", **table.get("long", {})}
    if env_values:
        layers.append((env_values, str(env_file(env))))
    if user is not None:
        layers.append((user, str(path)))
    values: dict[str, Any] = {}
    for layer, source in layers:
        values.update(layer)
        try:
            build(cls, values, source=source)   # report a file's errors against that file
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if source in msg else f"{msg} (in {source})") from None
    values.update(over)
    # every file layer was checked above: a key unknown now came from --set
    return build(cls, values, source="--set")


def parse_int(name: str, text: str | None, default: int | None = None, *, lo: int = 0,
              hi: int = 2**31 - 1, beyond: str = "") -> int | None:
    """An integer option of a command (not a config key): `default` when not given, else
    coerced and checked against lo..hi, with one-line errors ("name: must be >= lo"; above
    hi: `beyond`, or "must be in lo..hi")."""
    if text is None:
        return default
    v = coerce(name, text, int)
    if v < lo:
        raise ConfigError(f"{name}: must be >= {lo}, got {v}")
    if v > hi:
        raise ConfigError(f"{name}: {beyond.format(v=v)}" if beyond
                          else f"{name}: must be in {lo:,}..{hi:,}, got {v}")
    return v


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`--set key=value` pairs."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def from_dict(kind: str, d: dict[str, Any]) -> Any:
    return build(CONFIGS[kind], d)


def to_toml(cfg: Any) -> str:
    """Render a config as documented TOML (used for configs/*.toml and the README): its own
    keys, then the training loop's keys every config shares."""
    lines = [f"# {type(cfg).__doc__}", ""]
    for f in ordered_fields(cfg):
        if f.name == LOOP_KEYS[0]:
            lines += ["# ---- the training loop (keys every training config shares)", ""]
        v = getattr(cfg, f.name)
        lines.append(f"# {f.metadata['doc']}")
        lines.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if v is None:
        return '"none"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, int):
        return f"{v:_}" if abs(v) >= 10_000 else str(v)
    return repr(v)
