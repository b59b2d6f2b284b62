"""Pixels of the classic-control envs, drawn in JAX from the observation (jitted, vmapped; no
host round trip): what a pixel student sees (`--student-obs pixels`, views.py).

Each frame reproduces gymnasium's `rgb_array` picture of the same state (its screen
geometry: 600x400 px for CartPole and MountainCar, 500x500 for Acrobot; the same shapes,
sizes and positions) box-downsampled 10x (CartPole, MountainCar: 40x60) or 12.5x (Acrobot:
40x40), in grayscale "ink": 0 is gymnasium's white background, 1 black; a shape's ink is
1 - its colour's luminance (CartPole's pole 0.37, its axle 0.45; Acrobot's links 0.44,
joints 0.29; MountainCar's wheels 0.5, flag 0.29). Shapes are antialiased by their signed
distance (a pixel's value is the part of it a shape covers, to first order), so a pole
angle of a fraction of a degree still moves ink between pixels: CartPole's pole is 12.5
px long here, and one degree moves its tip by 0.22 px.

Why this size: 10x keeps gymnasium's aspect and every shape at least one pixel wide (the
pole is 1 px, the cart 5x3), 2,400 pixels a frame (uint8 in replay: 2.4 kB, 9.6 kB for a
stack of 4); half the size would make the pole half a pixel wide, and twice the size
quadruples the CNN's cost on a laptop CPU for nothing the policy needs.

The frame is drawn from the observation alone (CartPole's [x, x_dot, theta, theta_dot],
Acrobot's [cos, sin of both angles, velocities], MountainCar's [position, velocity]), with
the env's default geometry (a robustness shift of the pole's length is not drawn).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Canvas(NamedTuple):
    """Pixel centres of a frame in gymnasium's screen coordinates (x right, y up, px)."""

    x: jax.Array        # [H, W]
    y: jax.Array        # [H, W]
    px: float           # one frame pixel in screen px


class Frame(NamedTuple):
    height: int
    width: int
    screen: tuple[int, int]                       # gymnasium's (width, height) in px
    draw: Callable[[jax.Array, Canvas], jax.Array]  # (obs [d], canvas) -> ink [H, W]


def canvas(frame: Frame) -> Canvas:
    sw, sh = frame.screen
    px = sw / frame.width
    cols = (jnp.arange(frame.width, dtype=jnp.float32) + 0.5) * px
    rows = sh - (jnp.arange(frame.height, dtype=jnp.float32) + 0.5) * (sh / frame.height)
    y, x = jnp.meshgrid(rows, cols, indexing="ij")
    return Canvas(x, y, px)


# --------------------------------------------------------------------------- shapes


def coverage(sdf: jax.Array, px: float) -> jax.Array:
    """The part of a pixel inside a shape, from the signed distance of its centre (screen px;
    negative inside): 1 inside, 0 outside, linear across one pixel at the edge."""
    return jnp.clip(0.5 - sdf / px, 0.0, 1.0)


def box(c: Canvas, cx, cy, half_w, half_h, angle=0.0, ax=None, ay=None) -> jax.Array:
    """Signed distance to a rectangle of half sizes (half_w, half_h) centred at (cx, cy)
    before it is turned by `angle` (radians, counter-clockwise) about (ax, ay) (default: its
    centre)."""
    ax = cx if ax is None else ax
    ay = cy if ay is None else ay
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    dx, dy = c.x - ax, c.y - ay
    lx = dx * cos + dy * sin + ax - cx        # the canvas turned back by -angle
    ly = -dx * sin + dy * cos + ay - cy
    qx, qy = jnp.abs(lx) - half_w, jnp.abs(ly) - half_h
    outside = jnp.sqrt(jnp.maximum(qx, 0.0) ** 2 + jnp.maximum(qy, 0.0) ** 2)
    return outside + jnp.minimum(jnp.maximum(qx, qy), 0.0)


def disc(c: Canvas, cx, cy, r) -> jax.Array:
    return jnp.sqrt((c.x - cx) ** 2 + (c.y - cy) ** 2) - r


def strip(d: jax.Array, width: float, px: float) -> jax.Array:
    """The part of a pixel covered by a line `width` screen px wide whose centre is `d` px
    from the pixel's centre (a 1 px line covers a tenth of a 10 px pixel, which the
    signed-distance ramp of `coverage` would paint at half a pixel)."""
    d = jnp.abs(d)
    return jnp.clip(jnp.minimum(width / 2, d + px / 2) - jnp.maximum(-width / 2, d - px / 2),
                    0.0, None) / px


def paint(ink: jax.Array, sdf: jax.Array, value: float, px: float) -> jax.Array:
    """`ink` with a shape of ink `value` drawn over it (antialiased)."""
    return over(ink, coverage(sdf, px), value)


def over(ink: jax.Array, a: jax.Array, value: float) -> jax.Array:
    """`ink` with `value` drawn over it where a pixel is covered by the part `a`."""
    return ink * (1.0 - a) + value * a


def shade(rgb: tuple[int, int, int]) -> float:
    """A colour's ink: 1 - luminance (ITU-R 601, as PIL's "L" mode)."""
    r, g, b = rgb
    return 1.0 - (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


# --------------------------------------------------------------------------- envs


def _cartpole(obs: jax.Array, c: Canvas) -> jax.Array:
    scale = 600 / 4.8                       # screen px per metre (x_threshold 2.4)
    pole_w, pole_len = 10.0, scale * 1.0    # 2 * length (0.5)
    cart_w, cart_h, cart_y = 50.0, 30.0, 100.0
    axle = cart_y + cart_h / 4
    x, theta = obs[0], obs[2]
    cart_x = x * scale + 300.0
    ink = jnp.zeros_like(c.x)
    ink = paint(ink, box(c, cart_x, cart_y, cart_w / 2, cart_h / 2), 1.0, c.px)
    # the pole from (-w/2, -w/2) to (w/2, len - w/2) about the axle, turned by -theta:
    # theta > 0 leans it to the right (+x)
    ink = paint(ink, box(c, cart_x, axle + pole_len / 2 - pole_w / 2, pole_w / 2,
                         pole_len / 2, -theta, cart_x, axle), shade((202, 152, 101)), c.px)
    ink = paint(ink, disc(c, cart_x, axle, pole_w / 2), shade((129, 132, 203)), c.px)
    return over(ink, strip(c.y - cart_y, 1.0, c.px), 1.0)


def _acrobot(obs: jax.Array, c: Canvas) -> jax.Array:
    scale = 500 / (2 * 2.2)                 # links of 1 m, bound 2.2 m
    o = 250.0
    c1, s1, c2, s2 = obs[0], obs[1], obs[2], obs[3]
    x1, y1 = o + scale * s1, o - scale * c1                  # the first link's end
    s12, c12 = s1 * c2 + c1 * s2, c1 * c2 - s1 * s2          # angle 1 + angle 2
    ink = jnp.zeros_like(c.x)
    ink = over(ink, strip(c.y - (o + scale), 1.0, c.px), 1.0)   # the line the tip must pass
    half = 0.1 * scale
    for (bx, by), (dx, dy) in (((o, o), (s1, -c1)), ((x1, y1), (s12, -c12))):
        angle = jnp.arctan2(dy, dx)
        ink = paint(ink, box(c, bx + scale / 2, by, scale / 2, half, angle, bx, by),
                    shade((0, 204, 204)), c.px)
        ink = paint(ink, disc(c, bx, by, half), shade((204, 204, 0)), c.px)
    return ink


def _mc_height(x):
    return jnp.sin(3 * x) * 0.45 + 0.55


def _mountain_car(obs: jax.Array, c: Canvas) -> jax.Array:
    lo, scale = -1.2, 600 / 1.8
    car_w, car_h, clearance = 40.0, 20.0, 10.0
    pos = obs[0]
    ink = jnp.zeros_like(c.x)
    # the track: a 1 px curve; distance ~ vertical gap * cos(slope)
    wx = c.x / scale + lo
    slope = 3 * 0.45 * jnp.cos(3 * wx)
    ink = over(ink, strip((c.y - _mc_height(wx) * scale) / jnp.sqrt(1 + slope ** 2), 1.0, c.px),
               1.0)
    bx, by = (pos - lo) * scale, clearance + _mc_height(pos) * scale
    angle = jnp.cos(3 * pos)
    ink = paint(ink, box(c, bx, by + car_h / 2, car_w / 2, car_h / 2, angle, bx, by), 1.0, c.px)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    for wxo in (car_w / 4, -car_w / 4):
        ink = paint(ink, disc(c, bx + wxo * cos, by + wxo * sin, car_h / 2.5),
                    shade((128, 128, 128)), c.px)
    flag_x = (0.5 - lo) * scale
    with jax.ensure_compile_time_eval():   # a constant, also when drawn under jit
        flag_y = float(_mc_height(jnp.float32(0.5))) * scale
    ink = over(ink, strip(c.x - flag_x, 1.0, c.px) * (jnp.abs(c.y - flag_y - 25) <= 25), 1.0)
    tri = jnp.maximum(jnp.maximum(flag_x - c.x,                       # the flag: a triangle
                                  (c.y - (flag_y + 50)) - (-5 / 25) * (c.x - flag_x)),
                      (flag_y + 40) - c.y + (5 / 25) * (c.x - flag_x))
    return paint(ink, tri, shade((204, 204, 0)), c.px)


FRAMES: dict[str, Frame] = {
    "CartPole-v1": Frame(40, 60, (600, 400), _cartpole),
    "Acrobot-v1": Frame(40, 40, (500, 500), _acrobot),
    "MountainCar-v0": Frame(40, 60, (600, 400), _mountain_car),
}


def supported(env_id: str) -> bool:
    return env_id in FRAMES


def frame(env_id: str, scale: int = 1) -> Frame:
    """The env's frame, `scale` times as many pixels along each side (the same picture:
    `render` draws its GIFs at scale 5, 300x200 for CartPole; a pixel student sees scale 1)."""
    f = FRAMES[env_id]
    if scale != 1:
        if not (isinstance(scale, int) and scale >= 1):
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
        f = f._replace(height=f.height * scale, width=f.width * scale)
    return f


def shape(env_id: str) -> tuple[int, int]:
    """A pixel student's frame: (H, W)."""
    f = FRAMES[env_id]
    return f.height, f.width


def draw(env_id: str, obs: jax.Array, scale: int = 1) -> jax.Array:
    """Frames [N, H, W] of observations [N, d], ink in [0, 1] (float32); `scale`: larger
    frames of the same picture (frame())."""
    f = frame(env_id, scale)
    c = canvas(f)
    return jax.vmap(lambda o: f.draw(o.astype(jnp.float32), c))(obs.reshape(obs.shape[0], -1))


def draw_u8(env_id: str, obs: jax.Array) -> jax.Array:
    """Frames [N, H, W] as uint8 (0..255): what a pixel student keeps in replay."""
    return jnp.round(draw(env_id, obs) * 255.0).astype(jnp.uint8)


assert all(math.isclose(f.screen[0] / f.width, f.screen[1] / f.height)
           for f in FRAMES.values())
