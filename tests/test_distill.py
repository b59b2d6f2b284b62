"""Short jitted distillation runs for each loss; final evaluation against the teacher."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_distill

from distillq import checkpoint, distill, evaluate


@pytest.fixture(scope="module")
def teacher(teacher_run):
    run = checkpoint.load_run(teacher_run[0], kind="teacher")
    return run


@pytest.mark.parametrize("loss", ["mse", "kl", "ce"])
def test_each_loss_trains_and_reduces_loss(loss, teacher, cartpole):
    cfg = tiny_distill(loss=loss, temp=2.0, total_steps=1024)
    d = distill.make_distiller(cfg, cartpole, teacher.meta["network"])
    keys = jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)])
    tparams = jax.tree.map(jnp.asarray, teacher.params)
    state = jax.jit(jax.vmap(d.init))(keys, tparams)
    chunk = jax.jit(jax.vmap(d.chunk, in_axes=(0, 0, None)))
    losses = []
    for c in range(cfg.total_iterations // cfg.chunk_steps):
        state, m = chunk(state, tparams, jnp.int32(c * cfg.chunk_steps))
        assert np.all(m["finite"])
        losses.append(np.asarray(m["loss"]))
    assert np.all(losses[-1] < losses[1]), losses     # chunk 0 is mostly warm-up
    out = jax.jit(jax.vmap(d.final_eval))(state.params, tparams,
                                          jnp.stack([evaluate.eval_key(s) for s in (0, 1)]))
    assert out["returns"].shape == (2, cfg.final_episodes)
    assert np.all(np.asarray(out["agree"]) <= np.asarray(out["lengths"]))


def test_distill_loss_mapping():
    s = jnp.array([[0.0, 1.0]])
    t = jnp.array([[1.0, 0.0]])
    assert float(distill.loss_fn("kl", 2.0)(s, t)) > 0
    with pytest.raises(ValueError):
        distill.loss_fn("huber", 1.0)
