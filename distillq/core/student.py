"""What every student shares, single-env or multi-task: what it learns from (`Teaching`), who
acts while states are collected, and the distillation objective built from registry.LOSSES.

A student is one member of the vmapped axis: a seed, its teacher(s) and its hyperparameters
`Hyper(temp, weights)`. Sweeps over temperatures and loss weights are therefore just more
students in the same compiled call.

Teacher params carry a leading ensemble axis K: K = 1 for "student i learns from teacher seed
i", K > 1 for an ensemble. Targets are averaged in the space where averaging means something
(losses.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from distillq import registry
from distillq.config import DistillConfig
from distillq.core import losses, td


class Hyper(NamedTuple):
    """A student's hyperparameters (a sweep point); arrays, so sweeps are a vmap axis."""

    temp: jax.Array       # scalar temperature (kl terms)
    weights: jax.Array    # [n_terms], in cfg.term_names order


class Teaching(NamedTuple):
    """What a student learns from and is not trained: the loop's per-member `ctx`."""

    teacher_params: Any   # leaves [K, ...] (a multi-task student: a tuple, one per env)
    hyper: Hyper


def hyper_arrays(points: list[dict], names: tuple[str, ...]) -> Hyper:
    """Per-student hyperparameters with a leading student axis, from sweep points."""
    return Hyper(jnp.asarray([p["temp"] for p in points], jnp.float32),
                 jnp.asarray([[p["weights"][n] for n in names] for p in points], jnp.float32))


def teacher_prob(cfg: DistillConfig, t: jax.Array) -> jax.Array:
    """Probability that the teacher acts at iteration t: 1 for collect=teacher/dataset, 0 for
    student, and for mixed beta(t) = 1 - t / (mix_fraction * total_iterations), clipped."""
    if cfg.collect in ("teacher", "dataset"):
        return jnp.float32(1.0)
    if cfg.collect == "student":
        return jnp.float32(0.0)
    return jnp.clip(1.0 - t / (cfg.mix_fraction * cfg.total_iterations), 0.0, 1.0)


def collecting_action(cfg: DistillConfig, t_greedy: jax.Array, s_greedy: jax.Array,
                      t: jax.Array, key: jax.Array, num_actions: int) -> jax.Array:
    """The acting policy's actions [E] (cfg.collect: teacher, student or mixed; dataset
    collects with the teacher), epsilon-greedy with collect_eps."""
    k_eps, k_rand, k_mix = jax.random.split(key, 3)
    n = t_greedy.shape[0]
    if cfg.collect in ("teacher", "dataset"):
        act = t_greedy
    elif cfg.collect == "student":
        act = s_greedy
    else:  # mixed
        teacher_acts = jax.random.uniform(k_mix, (n,)) < teacher_prob(cfg, t)
        act = jnp.where(teacher_acts, t_greedy, s_greedy)
    explore = jax.random.uniform(k_eps, (n,)) < cfg.collect_eps
    return jnp.where(explore, jax.random.randint(k_rand, (n,), 0, num_actions), act)


def td_options(cfg: DistillConfig) -> td.TD:
    """The td term's TD learner (the td_* keys; the target is a hard copy)."""
    return td.TD(cfg.td_gamma, cfg.td_n_step, cfg.td_double, cfg.td_target_update, 1.0,
                 cfg.td_huber_delta)


def term_options(cfg: DistillConfig) -> losses.TermOptions:
    return losses.TermOptions(cfg.kl_mode, cfg.rkd_angle_batch, cfg.td_huber_delta)


class Objective(NamedTuple):
    """loss(train_params, teacher_params[K], batch, hyper, target, lam, window, student_obs)
    -> (loss, per-term losses [n_terms])."""

    loss: Callable
    names: tuple[str, ...]


def make_objective(cfg: DistillConfig, student_apply: Callable,
                   teacher_apply: Callable, teacher_sees_view: bool = False) -> Objective:
    """The weighted sum of cfg's terms, each built once from registry.LOSSES with its options.

    `batch` is a replay.Transition of sampled states [B, ...]. A td term also needs `window`
    ([B, td_n_step, ...] transitions starting at those states) and the student's `target`
    params. `lam` multiplies every non-td term's weight. student_apply / teacher_apply are
    (params, obs, return_hidden) -> (Q, hidden activations). teacher_sees_view: the teacher
    is itself a view student with the student's view: it labels the student's inputs.
    """
    names = cfg.term_names
    opts = term_options(cfg)
    terms = [registry.load(registry.LOSSES[n].impl)(opts) for n in names]
    need_hidden = any(registry.LOSSES[n].kind == "hidden" for n in names)
    (fa, fb), (fc, fd) = cfg.fsp_pairs
    need_pair = "fsp" in names
    is_td = jnp.asarray([registry.LOSSES[n].kind == "td" for n in names])
    ls, lt = cfg.layer_pair
    tdo = td_options(cfg)

    def loss(train_params, teacher_params, batch, hyper: Hyper, target=None, lam=1.0,
             window=None, student_obs=None):
        """student_obs: the student's inputs for the batch's states (a view), else obs."""
        td_y = (td.target(student_apply, train_params["student"], target, window, tdo.gamma,
                          tdo.double) if cfg.has_td else None)
        obs = batch.obs
        s_q, s_hs = student_apply(train_params["student"],
                                  obs if student_obs is None else student_obs,
                                  return_hidden=True)
        t_obs = student_obs if teacher_sees_view and student_obs is not None else obs
        t_q, t_hs = jax.vmap(lambda p: teacher_apply(p, t_obs, return_hidden=True))(
            teacher_params)
        x = losses.TermInputs(
            action=batch.action, student_q=s_q, teacher_q=jax.lax.stop_gradient(t_q),
            student_h=s_hs[ls] if need_hidden else None,
            teacher_h=jax.lax.stop_gradient(t_hs[lt]) if need_hidden else None,
            temp=hyper.temp, td_target=td_y,
            student_pair=(s_hs[fa], s_hs[fb]) if need_pair else None,
            teacher_pair=(jax.lax.stop_gradient(t_hs[fc]), jax.lax.stop_gradient(t_hs[fd]))
            if need_pair else None)
        parts = jnp.stack([term(x, train_params["terms"].get(name))
                           for name, term in zip(names, terms, strict=True)])
        weights = hyper.weights * jnp.where(is_td, 1.0, lam)
        return jnp.sum(weights * parts), parts

    return Objective(loss, names)


def term_dims(cfg: DistillConfig, s_sizes: list[int], t_sizes: list[int]) -> dict:
    """The widths each hidden term relates, by name (student's, then teacher's): feature
    (and rkd) the feature_layers pair, fsp the fsp_layers' four layers. s_sizes / t_sizes:
    the flattened widths of the student's and the teachers' hidden layers."""
    from distillq.errors import ConfigError

    def pick(sizes: list[int], i: int, who: str, key: str) -> int:
        if not -len(sizes) <= i < len(sizes):
            raise ConfigError(f"{key}: {who} layer {i} does not exist in a {who} with "
                              f"{len(sizes)} hidden layers")
        return sizes[i]

    ls, lt = cfg.layer_pair
    (fa, fb), (fc, fd) = cfg.fsp_pairs
    out = {}
    for n in cfg.term_names:
        if n == "fsp":
            out[n] = (pick(s_sizes, fa, "student", "fsp_layers"),
                      pick(s_sizes, fb, "student", "fsp_layers"),
                      pick(t_sizes, fc, "teacher", "fsp_layers"),
                      pick(t_sizes, fd, "teacher", "fsp_layers"))
        elif registry.LOSSES[n].kind == "hidden":
            out[n] = (pick(s_sizes, ls, "student", "feature_layers"),
                      pick(t_sizes, lt, "teacher", "feature_layers"))
    return out


def init_terms(cfg: DistillConfig, key: jax.Array, dims: dict, k: int) -> dict:
    """The trainable params of the terms that have some (FitNets and FSP projections), by
    name; dims: term_dims."""
    with_params = [n for n in cfg.term_names if registry.LOSSES[n].params]
    keys = jax.random.split(key, len(with_params)) if len(with_params) > 1 else [key]
    return {n: registry.load(registry.LOSSES[n].params)(kk, dims[n], k)
            for n, kk in zip(with_params, keys, strict=False)}
