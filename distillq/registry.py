"""The registries: network types, loss terms and environments, each in one table.

Config validation, the CLI's help, the distillation objective and the network builder all
read these tables, so a new network type or loss is one entry here plus its implementation
(README, "Extending distillq"). This module is import-light on purpose (no jax, no flax):
the CLI validates arguments against it before any heavy import. Implementations are named
as "module:attribute" and imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def load(ref: str) -> Any:
    """The object named by "package.module:attribute"."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class NetworkType:
    name: str
    grammar: str                         # how --hidden / --student spell it
    doc: str
    parse: Callable[[str | None], dict]  # option text after "name:" -> spec fields (ValueError)
    impl: str                            # flax module class with from_spec(spec)
    layers: Callable[[dict], int]        # spec -> number of hidden activations it exposes
    image: bool = False                  # needs (height, width, channels) observations
    named: bool = True                   # users name it (--hidden/--student); else built
    norm: bool = False                   # takes "+ln": LayerNorm before each activation


def _ints(text: str, what: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p.replace("_", "")) for p in parts]
    except ValueError:
        raise ValueError(f"expected comma-separated integers for {what}, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ValueError(f"{what} must be >= 1, got {text!r}")
    return values


def _parse_mlp(opts: str | None) -> dict:
    if not opts:
        raise ValueError("mlp needs hidden sizes, e.g. 128,64")
    return {"hidden": _ints(opts, "hidden sizes")}


def _parse_linear(opts: str | None) -> dict:
    if opts:
        raise ValueError(f"linear takes no options, got {opts!r}")
    return {}


def _parse_none(_opts: str | None) -> dict:
    raise ValueError("this network type is built by distillq, not named")


def _parse_cnn(opts: str | None) -> dict:
    if not opts:
        return {"channels": 16, "kernel": 3, "dense": [128]}
    c, *dense = _ints(opts, "cnn sizes")
    return {"channels": c, "kernel": 3, "dense": dense or [128]}


def _parse_strided(opts: str | None) -> dict:
    if not opts:
        return {"convs": [8, 16], "kernel": 3, "stride": 2, "dense": [32]}
    *convs, dense = _ints(opts, "strided sizes")
    if not convs:
        raise ValueError("strided needs conv channels and a dense width, e.g. 16,32,64")
    return {"convs": convs, "kernel": 3, "stride": 2, "dense": [dense]}


NETWORKS: dict[str, NetworkType] = {n.name: n for n in (
    NetworkType("mlp", "W,W,...  or  mlp:W,W,...",
                "fully connected: flattened observation -> hidden layers -> Q",
                _parse_mlp, "distillq.core.networks:MLP", lambda s: len(s["hidden"]), norm=True),
    NetworkType("linear", "linear", "no hidden layer: flattened observation -> Q "
                "(|obs|·|A| + |A| parameters)", _parse_linear, "distillq.core.networks:Linear",
                lambda s: 0),
    NetworkType("cnn", "cnn  or  cnn:C,H,...",
                "MinAtar network (Young & Tian 2019): 3x3 conv with C channels (16), ReLU, "
                "flatten, dense layers H,... (128), Q", _parse_cnn, "distillq.core.networks:CNN",
                lambda s: 1 + len(s["dense"]), image=True, norm=True),
    NetworkType("strided", "strided  or  strided:C,...,H",
                "CNN for rendered frames (--student-obs pixels): 3x3 convs with stride 2 and "
                "C channels each (8,16), ReLU, flatten, one dense layer H (32), Q",
                _parse_strided, "distillq.core.networks:StridedCNN",
                lambda s: len(s["convs"]) + len(s["dense"]), image=True),
    NetworkType("multitask", "distill --multitask", "one student for several envs: each env's "
                "flattened, scaled observation zero-padded and followed by a one-hot env id, a "
                "shared MLP trunk (--student sizes), one Q-head per env", _parse_none,
                "distillq.core.networks:MultiTaskMLP", lambda s: len(s["hidden"]), named=False),
)}


NORM_SUFFIX = "+ln"


def parse_network(text: str) -> dict:
    """'128,64' / 'mlp:128,64' / 'linear' / 'cnn' / 'cnn:16,128' -> {"type": ..., options};
    a "+ln" suffix ('64,64+ln', 'cnn+ln') adds LayerNorm before each hidden activation
    ({"layer_norm": true}; PQN's networks).

    Raises ValueError with a one-line reason.
    """
    text = text.strip()
    norm = text.endswith(NORM_SUFFIX)
    if norm:
        text = text[:-len(NORM_SUFFIX)].strip()
    name, sep, opts = text.partition(":")
    named = [n for n, t in NETWORKS.items() if t.named]
    if not sep and name not in named:          # a bare size list is an MLP
        name, opts = "mlp", text
    if name not in named:
        raise ValueError(f"unknown network type {name!r}; valid: {', '.join(named)} "
                         "(or MLP sizes such as 64,32)")
    spec = {"type": name, **NETWORKS[name].parse(opts.strip() or None)}
    if norm:
        if not NETWORKS[name].norm:
            raise ValueError(f"{name} has no hidden layer to normalise ({NORM_SUFFIX})")
        spec["layer_norm"] = True
    return spec


def hidden_layers(spec: dict) -> int:
    """How many hidden activations a network exposes to feature/relation losses."""
    return NETWORKS[spec.get("type", "mlp")].layers(spec)


def network_text(spec: dict) -> str:
    """The short name of a network spec, in the --hidden/--student grammar."""
    kind = spec.get("type", "mlp")
    suffix = NORM_SUFFIX if spec.get("layer_norm") else ""
    if kind == "mlp":
        return ",".join(map(str, spec["hidden"])) + suffix
    if kind == "cnn":
        return "cnn:" + ",".join(map(str, [spec["channels"], *spec["dense"]])) + suffix
    if kind == "strided":
        return "strided:" + ",".join(map(str, [*spec["convs"], *spec["dense"]]))
    if kind == "multitask":
        return "multitask:" + ",".join(map(str, spec["hidden"]))
    return kind


# --------------------------------------------------------------------------- losses

# output: matches the teacher's outputs (Q-values or policy); trains the Q-head.
# hidden: matches hidden features (flattened per sample); needs an output or td term too.
# td:     the student's own temporal-difference error (n-step double DQN with its own target
#         network): QDagger / kickstarting when summed with an output term.
LOSS_KINDS = ("output", "hidden", "td")
TRAINS_Q = ("output", "td")


@dataclass(frozen=True)
class LossType:
    name: str
    kind: str
    doc: str
    impl: str                       # build(losses.TermOptions) -> term(TermInputs, params)
    params: str | None = None       # init(key, dims, k) -> trainable params (dims: the widths
                                    # of the layers it relates, student's then teacher's)


LOSSES: dict[str, LossType] = {t.name: t for t in (
    LossType("mse", "output", "mean squared error of Q-values (ensemble: of the mean Q)",
             "distillq.core.losses:term_mse"),
    LossType("kl", "output", "KL of softened policies, --temp and --kl-mode (ensemble: of "
             "the mean policy)", "distillq.core.losses:term_kl"),
    LossType("ce", "output", "cross-entropy to the teacher's greedy action (ensemble: to the "
             "mean one-hot policy)", "distillq.core.losses:term_ce"),
    LossType("td", "td", "the student's own n-step (double) DQN TD error on the collected "
             "transitions, with its own target network (td_* options); other terms' weights "
             "follow --set lambda_schedule", "distillq.core.losses:term_td"),
    LossType("feature", "hidden", "FitNets: squared error of a learned linear projection of "
             "a student hidden layer to a teacher hidden layer",
             "distillq.core.losses:term_feature",
             params="distillq.core.losses:init_projection"),
    LossType("fsp", "hidden", "relation between layers (FSP, Yim et al. 2017): Gram matrix "
             "of two student layers against two teacher layers (fsp_layers), learned "
             "projections where widths differ", "distillq.core.losses:term_fsp",
             params="distillq.core.losses:init_fsp"),
    LossType("rkd_distance", "hidden", "relational KD: pairwise distances of the batch's "
             "embeddings", "distillq.core.losses:term_rkd_distance"),
    LossType("rkd_angle", "hidden", "relational KD: triplet angles of the batch's embeddings",
             "distillq.core.losses:term_rkd_angle"),
)}


def losses_of_kind(*kinds: str) -> tuple[str, ...]:
    return tuple(n for n, t in LOSSES.items() if t.kind in kinds)


# --------------------------------------------------------------------------- algorithms


@dataclass(frozen=True)
class AlgoType:
    name: str
    doc: str
    impl: str       # make(cfg: TeacherConfig, env) -> an object with .system, .net_spec, .layout


# Teacher algorithms (`train-teacher --algo`); each is one System module of the core.
ALGOS: dict[str, AlgoType] = {a.name: a for a in (
    AlgoType("dqn", "n-step Double DQN: a replay buffer, a target network, epsilon-greedy",
             "distillq.core.dqn:make"),
    AlgoType("pqn", "parallel Q-learning (Gallici et al. 2024): no replay, no target network; "
             "rollouts of many envs, lambda-returns, epochs of minibatches, LayerNorm",
             "distillq.core.pqn:make"),
)}


# --------------------------------------------------------------------------- environments


@dataclass(frozen=True)
class EnvType:
    name: str
    module: str     # gymnax.environments.<module>
    cls: str
    family: str     # classic | minatar


# Discrete-action gymnax envs distillq trains, with the module that defines each: importing
# only that module costs ~0.03 s where `import gymnax` costs ~4 s (envs.py). Their default
# hyperparameters live in configs/envs/<name>.toml when they differ from configs/*.toml.
ENVS: dict[str, EnvType] = {e.name: e for e in (
    EnvType("CartPole-v1", "classic_control.cartpole", "CartPole", "classic"),
    EnvType("Acrobot-v1", "classic_control.acrobot", "Acrobot", "classic"),
    EnvType("MountainCar-v0", "classic_control.mountain_car", "MountainCar", "classic"),
    EnvType("Asterix-MinAtar", "minatar.asterix", "MinAsterix", "minatar"),
    EnvType("Breakout-MinAtar", "minatar.breakout", "MinBreakout", "minatar"),
    EnvType("Freeway-MinAtar", "minatar.freeway", "MinFreeway", "minatar"),
    EnvType("Seaquest-MinAtar", "minatar.seaquest", "MinSeaquest", "minatar"),
    EnvType("SpaceInvaders-MinAtar", "minatar.space_invaders", "MinSpaceInvaders", "minatar"),
)}

# Other discrete-action gymnax envs, built through `gymnax.make` (slower to import); each was
# checked to train (tests/test_envs.py). Their defaults are configs/*.toml's.
OTHER_ENVS = ("Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite",
              "DiscountingChain-bsuite", "SimpleBandit-bsuite", "FourRooms-misc",
              "MetaMaze-misc", "BernoulliBandit-misc", "GaussianBandit-misc", "Pong-misc",
              "FrozenLake-misc")
# gymnax envs distillq cannot train, and why.
UNSUPPORTED_ENVS = {
    "Pendulum-v1": "continuous actions", "MountainCarContinuous-v0": "continuous actions",
    "PointRobot-misc": "continuous actions", "Reacher-misc": "continuous actions",
    "Swimmer-misc": "continuous actions",
    "MNISTBandit-bsuite": "it downloads MNIST when it is built",
}


def trainable_envs() -> tuple[str, ...]:
    return (*ENVS, *OTHER_ENVS)


def env_error(name: str) -> str | None:
    """Why distillq cannot train `name`, or None when it can."""
    if name in UNSUPPORTED_ENVS:
        return (f"env {name!r} is not supported ({UNSUPPORTED_ENVS[name]}); distillq trains: "
                f"{', '.join(trainable_envs())}")
    if name not in trainable_envs():
        return f"unknown env {name!r}; valid: {', '.join(trainable_envs())}"
    return None
