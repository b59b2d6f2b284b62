"""Each way of extending distillq that the README shows, done here as a user would: a new loss,
a new network type and a new env, each registered in one entry and run through the real code
(config validation, the objective, the network builder, a jitted chunk). A new algorithm is
a System: tests/core/test_loop.py plugs a toy one into the skeleton."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import chunk, teaching, tiny_distill, tiny_teacher

from distillq import config, registry
from distillq.core import distill, dqn, envs, losses, networks
from distillq.errors import ConfigError
from distillq.runs import store

# ---------------------------------------------------------------- a loss


def term_huber(_options: losses.TermOptions):
    """README's example: Huber loss between the student's and the teachers' mean Q-values."""
    import optax

    return lambda x, _p: optax.losses.huber_loss(x.student_q, x.teacher_q.mean(0)).mean()


@pytest.fixture
def huber(monkeypatch):
    entry = registry.LossType("huber", "output", "Huber loss of Q-values",
                              "test_extending:term_huber")
    monkeypatch.setitem(registry.LOSSES, "huber", entry)
    monkeypatch.setattr(config, "LOSSES", tuple(registry.LOSSES))


def test_a_new_loss_is_one_registry_entry(huber, teacher_run, cartpole):
    cfg = tiny_distill(loss=("huber=0.5", "kl"))            # validated, weighted, summed
    assert cfg.term_names == ("huber", "kl")
    run = store.load_run(teacher_run[0])
    d = distill.make(cfg, cartpole, run.meta["network"])
    ctx = teaching(run, cfg)
    st, m = chunk(d.system)(d.system.init(jax.random.PRNGKey(0), ctx), ctx, jnp.int32(0))
    st, m = chunk(d.system)(st, ctx, jnp.int32(cfg.chunk_iterations))
    assert float(m.figures["loss_huber"]) > 0 and bool(m.finite)
    with pytest.raises(ConfigError, match="unknown loss"):
        tiny_distill(loss=("hubber",))


# ---------------------------------------------------------------- a network type


class Residual(nn.Module):
    """A network type of the test's own: Dense(W) + a skip from a projection, then q."""

    width: int
    num_actions: int
    activation: str = "relu"

    @classmethod
    def from_spec(cls, spec: dict) -> Residual:
        return cls(int(spec["width"]), int(spec["num_actions"]), spec["activation"])

    @nn.compact
    def __call__(self, x, return_hidden: bool = False):
        x = x.reshape(*x.shape[:-1], -1)
        h = networks.ACTIVATIONS[self.activation](nn.Dense(self.width, name="hidden_0")(x))
        h = h + nn.Dense(self.width, name="skip")(x)
        q = nn.Dense(self.num_actions, name="q")(h)
        return (q, (h,)) if return_hidden else q


def _parse_residual(opts: str | None) -> dict:
    if not opts or not opts.isdigit() or int(opts) < 1:
        raise ValueError("residual needs a width, e.g. residual:16")
    return {"width": int(opts)}


@pytest.fixture
def residual(monkeypatch):
    entry = registry.NetworkType("residual", "residual:W", "a skip connection around one "
                                 "hidden layer", _parse_residual, "test_extending:Residual",
                                 lambda s: 1)
    monkeypatch.setitem(registry.NETWORKS, "residual", entry)


def test_a_new_network_type_is_one_registry_entry(residual, teacher_run, cartpole):
    spec = networks.spec("residual:8", "relu", cartpole.obs_shape, cartpole.num_actions)
    # hidden 4x8 + 8, skip 4x8 + 8, q 8x2 + 2: counted from the params themselves
    assert networks.param_count(spec) == 2 * (4 * 8 + 8) + 8 * 2 + 2
    with pytest.raises(ConfigError, match="residual needs a width"):
        tiny_teacher(network="residual:x")
    t = dqn.make(tiny_teacher(network="residual:8", seeds=1), cartpole)    # a teacher
    st, m = chunk(t.system)(t.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    assert bool(m.finite)
    run = store.load_run(teacher_run[0])                                  # and a student
    cfg = tiny_distill(network="residual:4", loss=("kl", "feature=0.1"))
    d = distill.make(cfg, cartpole, run.meta["network"])
    ctx = teaching(run, cfg)
    st, m = chunk(d.system)(d.system.init(jax.random.PRNGKey(0), ctx), ctx, jnp.int32(0))
    assert st.learner.params["terms"]["feature"]["w"].shape == (1, 4, 16)  # its hidden: 4


# ---------------------------------------------------------------- an env


@pytest.fixture
def catch(monkeypatch):
    monkeypatch.setitem(registry.ENVS, "Catch-fast",
                        registry.EnvType("Catch-fast", "bsuite.catch", "Catch", "classic"))


def test_a_new_env_is_one_registry_entry(catch):
    env = envs.make("Catch-fast")             # its module alone is imported (fast)
    assert env.obs_shape == (10, 5) and env.num_actions == 3
    assert registry.env_error("Catch-fast") is None
    cfg = tiny_teacher(env="Catch-fast", seeds=1, network="16")
    t = dqn.make(cfg, env)
    st, m = chunk(t.system)(t.system.init(jax.random.PRNGKey(0)), None, jnp.int32(0))
    assert bool(m.finite) and np.isfinite(float(m.score))
