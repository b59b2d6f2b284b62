"""Evaluating saved runs from the host: episodes in chunks (interruptible, bounded memory)
give exactly one call's numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from distillq.core import networks, rollout
from distillq.runs import calls, evaluation


def test_chunked_evaluation_equals_one_call(cartpole):
    """Episode e's keys depend only on (key, e): 7 episodes in chunks of 3 (the last one
    padded) give exactly the 7-episode call's returns, for every seed of a vmap."""
    net = networks.build(networks.spec("8", "relu", cartpole.obs_shape, cartpole.num_actions))
    params = jax.vmap(lambda k: networks.init(net, k, cartpole.obs_shape))(
        jax.random.split(jax.random.PRNGKey(0), 2))
    keys = calls.eval_keys([0, 1])
    whole = jax.vmap(rollout.make_rollout(cartpole, net.apply, 7))(params, keys)
    part = jax.jit(jax.vmap(rollout.make_rollout(cartpole, net.apply, 3),
                            in_axes=(0, 0, None, None)))
    out = evaluation.in_chunks(lambda first: part(params, keys, None, jnp.int32(first)), 7, 3)
    for k in ("returns", "lengths"):
        assert out[k].shape == (2, 7)
        np.testing.assert_array_equal(out[k], np.asarray(whole[k]))
    assert len(set(np.asarray(whole["returns"])[0].tolist())) > 1     # episodes differ
