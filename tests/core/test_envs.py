"""gymnax auto-reset handling: terminated vs truncated, true next observation."""

import jax
import jax.numpy as jnp
import numpy as np

from distillq.core import envs


def test_truncation_is_done_but_not_terminated(cartpole):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    obs, state = envs.reset(cartpole, keys)
    state = state.replace(time=jnp.full((3,), cartpole.max_steps - 1))
    st = envs.step(cartpole, keys, state, jnp.zeros((3,), jnp.int32))
    assert st.done.all() and not st.terminated.any()
    # auto-reset: the new obs starts a new episode; next_obs is the true successor
    assert (np.asarray(st.state.time) == 0).all()
    assert not np.allclose(np.asarray(st.obs), np.asarray(st.next_obs))


def test_termination_when_pole_falls(cartpole):
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    obs, state = envs.reset(cartpole, keys)
    state = state.replace(theta=jnp.full((2,), 0.5))   # beyond the 12 degree limit
    st = envs.step(cartpole, keys, state, jnp.zeros((2,), jnp.int32))
    assert st.terminated.all() and st.done.all()
    assert np.allclose(np.asarray(st.next_obs)[:, 2], 0.5, atol=0.05)   # pre-reset angle


def test_ordinary_step_next_obs_equals_obs(cartpole):
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    obs, state = envs.reset(cartpole, keys)
    st = envs.step(cartpole, keys, state, jnp.ones((4,), jnp.int32))
    assert not st.done.any()
    np.testing.assert_array_equal(np.asarray(st.obs), np.asarray(st.next_obs))
    assert st.obs.shape == (4, cartpole.obs_dim) and st.obs.dtype == jnp.float32


def test_unknown_env_lists_valid_ones():
    import pytest

    from distillq.errors import ConfigError

    with pytest.raises(ConfigError, match="valid: CartPole-v1"):
        envs.make("CartPol-v1")


def test_fast_import_matches_gymnax_make_in_a_fresh_process():
    """The fast path (env module only) builds the same env as gymnax.make, and a later full
    `import gymnax` in the same process still works."""
    import subprocess
    import sys

    code = """
import sys, jax, jax.numpy as jnp, numpy as np
from distillq.core import envs
e = envs.make("CartPole-v1")
assert "matplotlib" not in sys.modules and "seaborn" not in sys.modules
keys = jax.random.split(jax.random.PRNGKey(0), 3)
o1, s1 = envs.reset(e, keys)
st1 = envs.step(e, keys, s1, jnp.array([0, 1, 1]))
b = envs.make("Breakout-MinAtar")
import gymnax
g, gp = gymnax.make("CartPole-v1")
assert type(g) is type(e.env) and gp == e.params
o2, s2 = jax.vmap(g.reset, in_axes=(0, None))(keys, gp)
assert np.array_equal(np.asarray(o1), np.asarray(o2))
assert envs.make("Catch-bsuite").num_actions == 3
print("OK", b.obs_dim, b.num_actions)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "OK 400 3" in p.stdout
