"""Short jitted DQN runs: shapes, schedules, determinism, seeds differ, no NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_teacher

from distillq.core import dqn


def test_epsilon_linear_schedule():
    cfg = tiny_teacher(eps_start=1.0, eps_end=0.1, eps_fraction=0.5, total_steps=400, num_envs=4,
                       learning_starts=16)
    # total_iterations = 100 -> decays over 50 iterations
    assert float(dqn.epsilon(cfg, jnp.float32(0))) == pytest.approx(1.0)
    assert float(dqn.epsilon(cfg, jnp.float32(25))) == pytest.approx(0.55)
    assert float(dqn.epsilon(cfg, jnp.float32(50))) == pytest.approx(0.1)
    assert float(dqn.epsilon(cfg, jnp.float32(99))) == pytest.approx(0.1)


def _run(cfg, env, seeds, chunks=2):
    tr = dqn.make_trainer(cfg, env)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    state = jax.jit(jax.vmap(tr.init))(keys)
    chunk = jax.jit(jax.vmap(tr.chunk, in_axes=(0, None)))
    ms = []
    for c in range(chunks):
        state, m = chunk(state, jnp.int32(c * cfg.chunk_steps))
        ms.append(jax.device_get(m))
    return tr, state, ms


@pytest.fixture(scope="module")
def runs(cartpole):
    cfg = tiny_teacher()
    a = _run(cfg, cartpole, [0, 1])
    b = _run(cfg, cartpole, [0, 1])
    return cfg, a, b


def test_shapes_and_finite(runs, cartpole):
    cfg, (tr, state, ms), _ = runs
    k = state.params["params"]["hidden_0"]["kernel"]
    assert k.shape == (2, cartpole.obs_dim, 32)
    assert state.params["params"]["q"]["kernel"].shape == (2, 16, cartpole.num_actions)
    assert state.buffer.shape == (2, cfg.buffer_rows, cfg.num_envs, 2 * cartpole.obs_dim + 4)
    for m in ms:
        assert m["loss"].shape == (2,) and np.all(m["finite"])
        assert np.all(np.isfinite(m["loss"])) and np.all(np.isfinite(m["eval_return"]))
    assert np.all(ms[-1]["loss"] > 0)                 # updates happened
    assert np.all(ms[-1]["best_return"] >= ms[-1]["eval_return"])


def test_same_seed_identical_params(runs):
    _, (_, sa, _), (_, sb, _) = runs
    for x, y in zip(jax.tree.leaves(sa.params), jax.tree.leaves(sb.params), strict=False):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_different_seeds_different_params(runs):
    _, (_, s, _), _ = runs
    k = np.asarray(s.params["params"]["hidden_0"]["kernel"])
    assert not np.allclose(k[0], k[1])


def test_target_network_hard_update(cartpole):
    # target_update=1 with tau=1: the target equals the online params after every update
    cfg = tiny_teacher(target_update=1, chunk_steps=32)
    _, state, _ = _run(cfg, cartpole, [3], chunks=1)
    pairs = zip(jax.tree.leaves(state.params), jax.tree.leaves(state.target_params), strict=True)
    for x, y in pairs:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_final_eval_shapes(runs):
    cfg, (tr, state, _), _ = runs
    from distillq.core import rollout

    keys = jnp.stack([rollout.eval_key(s) for s in (0, 1)])
    out = jax.jit(jax.vmap(tr.final_eval))(state.params, keys)
    assert out["returns"].shape == (2, cfg.final_episodes)
    assert np.all(np.asarray(out["returns"]) >= 1)
    np.testing.assert_array_equal(np.asarray(out["returns"]), np.asarray(out["lengths"]))
