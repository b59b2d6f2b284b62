"""The pixel renderer (frames.py): gymnasium's picture of the same state, box-downsampled,
and the geometry a pixel student depends on (pole angle sign, cart position scale, link
directions, the car's place on the hill)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from distillq.core import frames


def draw(env_id, obs):
    return np.asarray(frames.draw(env_id, jnp.asarray([obs], jnp.float32))[0])


def gym_frame(env_id, state):
    """gymnasium's rgb_array render of `state`, as ink, box-downsampled to our frame."""
    gym = pytest.importorskip("gymnasium")
    pytest.importorskip("pygame")
    from PIL import Image

    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    env.unwrapped.state = np.asarray(state, np.float64)
    rgb = env.render()
    env.close()
    h, w = frames.shape(env_id)
    g = Image.fromarray(rgb).convert("L").resize((w, h), Image.BOX)
    return 1.0 - np.asarray(g, np.float32) / 255.0


def acrobot_obs(t1, t2):
    return [math.cos(t1), math.sin(t1), math.cos(t2), math.sin(t2), 0.0, 0.0]


CASES = [("CartPole-v1", [1.0, 0.0, 0.2, 0.0], [1.0, 0.0, 0.2, 0.0]),
         ("CartPole-v1", [-1.5, 0.0, -0.15, 0.0], [-1.5, 0.0, -0.15, 0.0]),
         ("Acrobot-v1", [0.3, -1.0, 0.0, 0.0], acrobot_obs(0.3, -1.0)),
         ("Acrobot-v1", [2.0, 0.5, 0.0, 0.0], acrobot_obs(2.0, 0.5)),
         ("MountainCar-v0", [-0.5, 0.0], [-0.5, 0.0]),
         ("MountainCar-v0", [0.3, 0.0], [0.3, 0.0])]


@pytest.mark.parametrize("env_id,state,obs", CASES)
def test_frames_are_gymnasiums_picture_downsampled(env_id, state, obs):
    """Squared difference to gymnasium's own render of the state, summed over the frame,
    stays under 1 (measured 0.04-0.55); a pole leaning the other way scores 2.2 and a cart
    0.1 m off 7.2, so a wrong sign or scale fails."""
    g = gym_frame(env_id, state)
    ours = draw(env_id, obs)
    assert ours.shape == g.shape == frames.shape(env_id)
    assert float(((ours - g) ** 2).sum()) < 1.0
    assert np.corrcoef(ours.ravel(), g.ravel())[0, 1] > 0.97


def test_a_mirrored_pole_or_a_moved_cart_is_not_gymnasiums_picture():
    g = gym_frame("CartPole-v1", [1.0, 0.0, 0.2, 0.0])
    assert float(((draw("CartPole-v1", [1.0, 0.0, -0.2, 0.0]) - g) ** 2).sum()) > 2.0
    assert float(((draw("CartPole-v1", [1.1, 0.0, 0.2, 0.0]) - g) ** 2).sum()) > 2.0


def centroid(ink):
    rows, cols = np.indices(ink.shape)
    return float((rows * ink).sum() / ink.sum()), float((cols * ink).sum() / ink.sum())


def test_cartpole_geometry_without_gymnasium():
    """The cart's centre moves 125 px per metre / 10 = 12.5 columns per metre; a positive
    angle leans the pole right (+x), a negative one left; the pole stands above the cart."""
    h, w = frames.shape("CartPole-v1")
    assert (h, w) == (40, 60)
    cart_rows = slice(27, 32)          # the cart: 30 px tall, centred 100 px above the bottom
    track = draw("CartPole-v1", [-10.0, 0.0, 0.0, 0.0])      # the cart out of the picture

    def cart_col(x):
        ink = draw("CartPole-v1", [x, 0.0, 0.0, 0.0]) - track
        return centroid(np.clip(ink, 0, None)[cart_rows])[1]

    assert cart_col(0.0) == pytest.approx(29.5, abs=0.1)
    assert cart_col(1.0) - cart_col(0.0) == pytest.approx(12.5, abs=0.2)
    assert cart_col(-2.0) - cart_col(0.0) == pytest.approx(-25.0, abs=0.2)
    upright = draw("CartPole-v1", [0.0, 0.0, 0.0, 0.0])[:26]
    right = draw("CartPole-v1", [0.0, 0.0, 0.2, 0.0])[:26]
    left = draw("CartPole-v1", [0.0, 0.0, -0.2, 0.0])[:26]
    assert upright.sum() > 1.0                        # the pole is above the cart
    # the pole's centre of ink: 62.5 px up the pole * sin(0.2) / 10 = 1.24 columns right
    assert centroid(right)[1] - centroid(upright)[1] == pytest.approx(
        6.25 * math.sin(0.2), abs=0.35)
    assert centroid(left)[1] - centroid(upright)[1] == pytest.approx(
        -6.25 * math.sin(0.2), abs=0.35)


def test_a_fraction_of_a_degree_moves_ink():
    """Antialiasing: a 0.5 degree lean changes the frame (a pixel student can see it)."""
    a = draw("CartPole-v1", [0.0, 0.0, 0.0, 0.0])
    b = draw("CartPole-v1", [0.0, 0.0, math.radians(0.5), 0.0])
    assert np.abs(a - b).sum() > 0.05 and np.abs(a - b).max() < 0.2


def test_acrobot_and_mountain_car_geometry():
    hanging = draw("Acrobot-v1", acrobot_obs(0.0, 0.0))
    swung_up = draw("Acrobot-v1", acrobot_obs(math.pi, 0.0))
    assert centroid(hanging)[0] > 25 and centroid(swung_up)[0] < 15    # rows grow downwards
    sideways = draw("Acrobot-v1", acrobot_obs(math.pi / 2, 0.0))        # link 1 to the right
    assert centroid(sideways)[1] > centroid(hanging)[1] + 5

    def car_col(pos):
        ink = draw("MountainCar-v0", [pos, 0.0]) - draw("MountainCar-v0", [-2.0, 0.0])
        return centroid(np.clip(ink, 0, None))[1]

    # 333.3 px per unit of position / 10; the body (20 px tall) leans by cos(3 pos) radians,
    # which moves its centre 10 px * -sin(angle) sideways
    def centre(pos):
        return (pos + 1.2) * 33.33 - math.sin(math.cos(3 * pos))

    assert car_col(0.0) - car_col(-0.6) == pytest.approx(centre(0.0) - centre(-0.6), abs=0.3)


def test_frames_are_uint8_ink_and_vectorised():
    obs = jnp.asarray([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.1, 0.0]], jnp.float32)
    u8 = frames.draw_u8("CartPole-v1", obs)
    assert u8.dtype == jnp.uint8 and u8.shape == (2, 40, 60)
    f = np.asarray(frames.draw("CartPole-v1", obs))
    assert f.min() >= 0.0 and f.max() <= 1.0
    np.testing.assert_allclose(np.asarray(u8) / 255.0, f, atol=0.5 / 255 + 1e-6)
    assert not np.array_equal(np.asarray(u8[0]), np.asarray(u8[1]))
