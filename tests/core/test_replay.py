"""Circular buffer invariants: wrap-around, counts, windows never cross the write head."""

import jax
import jax.numpy as jnp
import numpy as np

from distillq.core import replay


def _fill(rows, envs, n_written):
    data = replay.init(rows, envs, 1)
    for t in range(n_written):
        data = replay.write(data, jnp.full((envs, 1), float(t)), jnp.int32(t))
    return data


def test_write_wraps_around():
    data = _fill(4, 2, 6)   # rows hold t = 4, 5, 2, 3
    np.testing.assert_array_equal(np.asarray(data[:, 0, 0]), [4, 5, 2, 3])
    assert int(replay.count(jnp.int32(6), 4)) == 4
    assert int(replay.count(jnp.int32(3), 4)) == 3


def test_samples_only_written_rows_and_contiguous_windows():
    rows, envs, span = 8, 3, 3
    for written in (3, 5, 8, 11, 30):
        data = _fill(rows, envs, written)
        r, e = replay.sample_indices(jax.random.PRNGKey(written), jnp.int32(written), rows, envs,
                                     512, span)
        vals = np.asarray(replay.gather(data, r, e))[:, :, 0]
        oldest = max(0, written - rows)
        assert vals.min() >= oldest and vals.max() <= written - 1
        np.testing.assert_array_equal(np.diff(vals, axis=1), 1)   # consecutive in time
        assert (np.asarray(e) >= 0).all() and (np.asarray(e) < envs).all()
        if written >= rows + span:   # every valid window start is reachable
            assert set(vals[:, 0]) == set(range(oldest, written - span + 1))


def test_write_is_unbatched_update_under_vmap():
    data = jnp.zeros((2, 4, 1, 1))
    row = jnp.ones((2, 1, 1))
    out = jax.vmap(replay.write, in_axes=(0, 0, None))(data, row, jnp.int32(5))
    np.testing.assert_array_equal(np.asarray(out[:, 1]), 1.0)
    assert float(out.sum()) == 2.0


def test_layouts_round_trip_a_transition():
    """Packed float rows and the binary-frame layout (uint8 obs) give the transition back."""
    key = jax.random.PRNGKey(0)
    for shape, binary in (((4,), False), ((3, 3, 2), False), ((3, 3, 2), True)):
        lay = replay.Layout(shape, binary)
        obs = jax.random.bernoulli(key, 0.5, (5, *shape)).astype(jnp.float32)
        nxt = 1.0 - obs
        tr = replay.Transition(obs, jnp.arange(5) % 3, jnp.linspace(-1, 1, 5),
                               jnp.array([0, 1, 0, 0, 1], bool), jnp.array([0, 1, 1, 0, 1], bool),
                               nxt)
        data = lay.init(4, 5)
        data = replay.write(data, lay.pack(tr), jnp.int32(6))       # row 6 % 4 = 2
        back = lay.unpack(jax.tree.map(lambda d: d[2], data))
        for a, b in zip(back, tr, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert back.obs.dtype == jnp.float32 and back.obs.shape == (5, *shape)
        leaves = jax.tree.leaves(data)
        assert (leaves[0].dtype == jnp.uint8) == binary
        nbytes = sum(x.nbytes for x in leaves)
        assert nbytes == 4 * 5 * ((2 * 18 + 16) if binary and len(shape) == 3
                                  else 4 * lay.width)


def test_sample_reaches_every_written_row_and_env_in_both_layouts():
    """Through replay.sample: windows start at every valid row, every env is drawn, and the
    observations come back with their shape (packed floats and binary frames alike)."""
    rows, envs, span = 6, 3, 2
    for shape, binary in (((2,), False), ((2, 2, 1), True)):
        lay = replay.Layout(shape, binary)
        data = lay.init(rows, envs)
        for t in range(9):                     # 9 rows written into 6: rows hold t = 3..8
            obs = jnp.stack([jnp.full(shape, (t * envs + e) % 2, jnp.float32)
                             for e in range(envs)])
            tr = replay.Transition(obs, jnp.arange(envs), jnp.full((envs,), float(t)),
                                   jnp.zeros(envs, bool), jnp.zeros(envs, bool), obs)
            data = replay.write(data, lay.pack(tr), jnp.int32(t))
        w = replay.sample(data, lay, jax.random.PRNGKey(0), jnp.int32(9), 600, span)
        assert w.obs.shape == (600, span, *shape)
        starts = np.asarray(w.reward)[:, 0]
        assert set(starts.tolist()) == {3.0, 4.0, 5.0, 6.0, 7.0}    # 8 has no successor yet
        np.testing.assert_array_equal(np.diff(np.asarray(w.reward), axis=1), 1.0)
        envs_drawn = np.asarray(w.action)[:, 0]
        assert set(envs_drawn.tolist()) == {0, 1, 2}                     # every env drawn,
        np.testing.assert_allclose(np.bincount(envs_drawn) / 600, 1 / 3, atol=0.07)  # alike
        assert replay.capacity(data) == (rows, envs)
