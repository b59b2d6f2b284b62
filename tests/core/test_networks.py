"""Networks: every registered type built from its spec, the im2col convolution against flax's,
the fixed input scaling, the multi-task network's encoding and heads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillq import registry
from distillq.core import envs, networks


def test_cnn_conv_equals_flax_conv():
    """The im2col convolution is flax's VALID stride-1 nn.Conv, params and result alike."""
    import flax.linen as nn

    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (2, 5, 10, 10, 4)).astype(jnp.float32)
    ours = networks.Conv(16, 3)
    p = ours.init(jax.random.PRNGKey(0), x)
    ref = nn.Conv(16, (3, 3), padding="VALID")
    assert jax.tree.map(jnp.shape, p) == jax.tree.map(jnp.shape, ref.init(
        jax.random.PRNGKey(0), x[0]))
    want = ref.apply(p, x.reshape(-1, 10, 10, 4)).reshape(2, 5, 8, 8, 16)
    np.testing.assert_allclose(np.asarray(ours.apply(p, x)), np.asarray(want), rtol=1e-5,
                               atol=1e-5)


def test_strided_conv_equals_flax_conv_with_stride():
    import flax.linen as nn

    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 40, 60, 2))
    ours = networks.Conv(8, 3, 2)
    p = ours.init(jax.random.PRNGKey(0), x)
    want = nn.Conv(8, (3, 3), strides=(2, 2), padding="VALID").apply(p, x)
    got = ours.apply(p, x)
    assert got.shape == (3, 19, 29, 8)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_the_strided_cnn_exposes_each_conv_and_dense_layer():
    spec = networks.spec("strided:8,16,32", "relu", (40, 60, 2), 2)
    assert spec["convs"] == [8, 16] and spec["dense"] == [32] and spec["stride"] == 2
    assert registry.network_text(spec) == "strided:8,16,32"
    assert networks.hidden_sizes(spec) == [19 * 29 * 8, 9 * 14 * 16, 32]
    assert networks.param_count(spec) == (9 * 2 * 8 + 8) + (9 * 8 * 16 + 16) + \
        (9 * 14 * 16 * 32 + 32) + (32 * 2 + 2)
    with pytest.raises(Exception, match="image observations"):
        networks.spec("strided", "relu", (4,), 2)
    with pytest.raises(ValueError, match="conv channels and a dense width"):
        registry.parse_network("strided:8")


def test_bounds_input_scaling_maps_bounded_dimensions_to_unit_range():
    mc = envs.make("MountainCar-v0")           # position [-1.2, 0.6], velocity [-0.07, 0.07]
    sc = envs.input_scaling(mc)
    np.testing.assert_allclose(sc["shift"], [-0.3, 0.0], atol=1e-6)
    np.testing.assert_allclose(sc["scale"], [2 / 1.8, 2 / 0.14], rtol=1e-5)
    cp = envs.input_scaling(envs.make("CartPole-v1"))       # velocities are unbounded
    np.testing.assert_allclose(cp["scale"], [2 / 9.6, 1.0, 2 / 0.8377580, 1.0], rtol=1e-5)
    spec = networks.spec("linear", "relu", mc.obs_shape, mc.num_actions, sc)
    net = networks.build(spec)
    p = networks.init(net, jax.random.PRNGKey(0), mc.obs_shape)
    obs = jnp.array([[0.6, 0.07], [-1.2, -0.07], [-0.3, 0.0]])
    np.testing.assert_allclose(np.asarray(net.prep(obs)), [[1, 1], [-1, -1], [0, 0]], atol=1e-5)
    np.testing.assert_allclose(np.asarray(net.apply(p, obs)),
                               np.asarray(net.module.apply(p, net.prep(obs))), rtol=1e-6)
    assert networks.param_count(spec) == 2 * 3 + 3          # the scaling adds no parameter


@pytest.mark.parametrize("text,count", [("8,4", 4 * 8 + 8 + 8 * 4 + 4 + 4 * 2 + 2),
                                        ("linear", 4 * 2 + 2)])
def test_every_named_type_builds_from_its_spec(text, count):
    spec = networks.spec(text, "relu", (4,), 2)
    assert networks.param_count(spec) == count
    q, hidden = networks.build(spec).apply(
        networks.init(networks.build(spec), jax.random.PRNGKey(0), (4,)), jnp.ones((3, 4)),
        return_hidden=True)
    assert q.shape == (3, 2) and len(hidden) == registry.hidden_layers(spec)


def test_the_multitask_network_is_a_registered_type_users_cannot_name():
    assert "multitask" in registry.NETWORKS and not registry.NETWORKS["multitask"].named
    with pytest.raises(ValueError, match="unknown network type 'multitask'"):
        registry.parse_network("multitask:8")
    tasks = [{"env": "a", "obs_shape": [4], "num_actions": 2},
             {"env": "b", "obs_shape": [2, 3], "num_actions": 3}]
    spec = networks.multitask_spec([5], "relu", tasks)
    assert spec["in_dim"] == 6 + 2 and registry.hidden_layers(spec) == 1
    # trunk 8x5 + 5, heads 5x2 + 2 and 5x3 + 3: counted as any network's params are
    assert networks.param_count(spec) == 8 * 5 + 5 + 5 * 2 + 2 + 5 * 3 + 3
    assert registry.network_text(spec) == "multitask:5"


def test_multitask_encoding_pads_and_names_the_env():
    tasks = [{"env": "a", "obs_shape": [2], "num_actions": 2,
              "input_norm": {"shift": [1.0, 0.0], "scale": [2.0, 1.0]}},
             {"env": "b", "obs_shape": [3], "num_actions": 2}]
    spec = networks.multitask_spec([4], "relu", tasks)
    x = networks.encode(spec, 0, jnp.array([[2.0, 5.0]]))
    np.testing.assert_allclose(np.asarray(x), [[2.0, 5.0, 0.0, 1.0, 0.0]])
    y = networks.encode(spec, 1, jnp.ones((2, 7, 3)))      # leading axes kept
    assert y.shape == (2, 7, 5) and np.all(np.asarray(y[..., 3:]) == [0.0, 1.0])
    params = networks.init(networks.build(spec), jax.random.PRNGKey(0), (5,))
    head0 = networks.task_apply(spec, 0)(params, jnp.array([[2.0, 5.0]]))
    qs = networks.build(spec).apply(params, x)
    np.testing.assert_array_equal(np.asarray(head0), np.asarray(qs[0]))
