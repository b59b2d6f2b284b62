"""Sticky actions on MinAtar (`--env-param sticky=P`): the wrapper's rules, and an independent
check against the original MinAtar package (PyPI `minatar`, not gymnax)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillq.core import envs, robustness
from distillq.errors import ConfigError

POLICY = Path(__file__).resolve().parent.parent / "data" / "breakout-student-32"


@pytest.fixture(scope="module")
def breakout():
    return envs.make("Breakout-MinAtar")


def _play(env, params, actions, key):
    """Step one episode stream with the given chosen actions; (executed, obs) per step."""
    step = jax.jit(env.env.step)
    obs, state = jax.jit(env.env.reset)(key, params)
    executed, frames = [], []
    for t, a in enumerate(actions):
        obs, state, *_ = step(jax.random.fold_in(key, t), state, jnp.int32(a), params)
        executed.append(int(state.last_action))
        frames.append(np.asarray(obs))
    return executed, frames


def test_sticky_zero_is_the_game_itself(breakout):
    """At the default, sticky = 0, the wrapped game plays exactly gymnax's game."""
    assert breakout.params.sticky == 0.0
    inner, key = breakout.env.inner, jax.random.PRNGKey(3)
    actions = np.random.default_rng(0).integers(0, 3, 60)
    executed, frames = _play(breakout, breakout.params, actions, key)
    obs, state = inner.reset(key, breakout.params.inner)
    for t, a in enumerate(actions):
        obs, state, *_ = inner.step(jax.random.fold_in(key, t), state, jnp.int32(a),
                                    breakout.params.inner)
        np.testing.assert_array_equal(np.asarray(obs), frames[t])
    assert executed == list(actions)


def test_sticky_one_always_repeats_the_first_action(breakout):
    """sticky = 1: the env never takes a new action; the previous action starts at 0."""
    executed, _ = _play(breakout, breakout.params.replace(sticky=1.0), [1, 2, 2, 1, 2],
                        jax.random.PRNGKey(0))
    assert executed == [0] * 5


def test_sticky_repeats_at_its_rate_and_keeps_the_last_action(breakout):
    """With probability p the previous executed action replaces the chosen one."""
    params = breakout.params.replace(sticky=0.3)
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    _, state = jax.vmap(breakout.env.reset, in_axes=(0, None))(keys, params)
    state = state.replace(last_action=jnp.full((n,), 2, jnp.int32))
    _, state, *_ = jax.vmap(breakout.env.step, in_axes=(0, 0, None, None))(
        keys, state, jnp.int32(1), params)
    repeated = float(np.mean(np.asarray(state.last_action) == 2))
    assert 0.27 < repeated < 0.33
    assert set(np.unique(np.asarray(state.last_action))) == {1, 2}


def test_sticky_is_the_minatar_shift_and_a_probability(breakout):
    assert robustness.shiftable(breakout.params) == ["sticky"]
    assert robustness.shifted_params("Breakout-MinAtar", breakout.params,
                                     {"sticky": 0.1}).sticky == 0.1
    with pytest.raises(ConfigError, match="between 0 and 1"):
        robustness.shifted_params("Breakout-MinAtar", breakout.params, {"sticky": 1.5})
    cartpole = envs.make("CartPole-v1")
    with pytest.raises(ConfigError, match="not a shiftable parameter of CartPole-v1"):
        robustness.shifted_params("CartPole-v1", cartpole.params, {"sticky": 0.1})


def _policy(tmp_path):
    """The student as the NumPy export writes it today: its committed weights (policy.npz)
    beside the exporter's current policy.py."""
    import shutil

    from distillq.commands.export import numpy_format

    shutil.copy(POLICY / "policy.npz", tmp_path / "policy.npz")
    (tmp_path / "policy.py").write_text(numpy_format.policy_py((10, 10, 4), 3))
    return numpy_format.load_numpy_policy(tmp_path)


def _returns_original(pi, p: float, episodes: int, cap: int = 1000) -> np.ndarray:
    import minatar

    env = minatar.Environment("breakout", sticky_action_prob=p)
    env.seed(0)
    actions = env.minimal_action_set()
    out = []
    for _ in range(episodes):
        env.reset()
        total = 0.0
        for _ in range(cap):     # gymnax's episode limit
            r, done = env.act(actions[pi.act(env.state().astype(np.float32))])
            total += r
            if done:
                break
        out.append(total)
    return np.asarray(out)


def _returns_distillq(env, pi, p: float, episodes: int) -> np.ndarray:
    params = env.params.replace(sticky=p)
    keys = jax.random.split(jax.random.PRNGKey(0), episodes)
    step = jax.jit(jax.vmap(env.env.step, in_axes=(0, 0, 0, None)))
    obs, state = jax.jit(jax.vmap(env.env.reset, in_axes=(0, None)))(keys, params)
    alive, total = np.ones(episodes, bool), np.zeros(episodes)
    for t in range(env.max_steps):
        a = np.argmax(pi.q(np.asarray(obs, np.float32)), axis=-1).astype(np.int32)
        obs, state, r, term, trunc, _ = step(
            jax.vmap(lambda k, t=t: jax.random.fold_in(k, t))(keys), state, jnp.asarray(a),
            params)
        total += np.asarray(r) * alive
        alive &= ~np.asarray(term | trunc)
        if not alive.any():
            break
    return total


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.0, 0.1])
def test_exported_student_scores_alike_in_the_original_minatar(breakout, p, tmp_path):
    """An exported Breakout student plays the original MinAtar package (sticky actions as
    the package has them) and distillq's sticky Breakout: mean returns agree within 4
    standard errors (measured: 56.5 vs 55.2 at p = 0, 10.7 vs 11.8 at p = 0.1, 200
    episodes each)."""
    pi = _policy(tmp_path)
    a = _returns_original(pi, p, 150)
    b = _returns_distillq(breakout, pi, p, 150)
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se + 0.5, (a.mean(), b.mean(), se)
    if p == 0.0:
        assert a.mean() > 30    # the student plays well without sticky actions
