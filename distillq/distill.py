"""Distillation of teacher Q-networks into a student: jitted, vmapped over students.

`make_distiller(cfg, env, teacher_spec)` returns pure functions:
  init(key, teacher_params)                   -> DistillState           (vmap over students)
  chunk(state, teacher_params, hyper, t0)      -> (DistillState, metrics) (lax.scan)
A *student* is one point of the vmap axis: a seed, its teacher(s) and its hyperparameters
`hyper = {"temp": scalar, "weights": [n_terms]}`. Sweeps over temperatures and loss weights
are therefore just more students in the same compiled call.

teacher_params carry a leading ensemble axis K: K = 1 for "student i learns from teacher
seed i", K > 1 for an ensemble. Targets are averaged in the space where averaging means
something (losses.py docstring).

Data collection (cfg.collect): the teacher acts (teacher-driven, Rusu et al.), the student
acts and the teacher labels what it visits (student-driven, DAgger-like), a mixture whose
teacher probability decays linearly (mixed), or a fixed dataset collected by the teacher
first and then fitted (dataset). The acting policy is epsilon-greedy with collect_eps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from distillq import envs, evaluate, losses, networks, replay
from distillq.config import DistillConfig
from distillq.dqn import optimizer

HIDDEN_LOSSES = ("feature", "rkd_distance", "rkd_angle")


class DistillState(NamedTuple):
    params: Any          # {"student": student params, "proj": FitNets projections or {}}
    opt_state: Any
    buffer: jax.Array
    env_state: Any
    obs: jax.Array
    key: jax.Array
    best_params: Any     # student params with the best in-training evaluation
    best_return: jax.Array


class Distiller(NamedTuple):
    cfg: DistillConfig
    env: envs.Env
    net: networks.MLP
    net_spec: dict
    teacher_net: networks.MLP
    init: Any
    chunk: Any
    final_eval: Any      # (params, teacher_params, key) -> student vs teacher, same keys
    teacher_eval: Any    # (teacher_params, key) -> the teacher (ensemble) alone
    objective: Any


def hyper_arrays(points: list[dict], names: tuple[str, ...]) -> dict:
    """Per-student hyperparameters as arrays with a leading student axis."""
    return {"temp": jnp.asarray([p["temp"] for p in points], jnp.float32),
            "weights": jnp.asarray([[p["weights"][n] for n in names] for p in points],
                                   jnp.float32)}


def make_objective(cfg: DistillConfig, student: networks.MLP, teacher: networks.MLP):
    """objective(train_params, teacher_params[K], obs[B], hyper) -> (loss, per-term losses)."""
    names = cfg.term_names
    ls, lt = cfg.layer_pair
    need_hidden = any(n in HIDDEN_LOSSES for n in names)
    rusu = cfg.kl_mode == "rusu"
    n_angle = min(cfg.rkd_angle_batch, cfg.batch_size)

    def objective(train_params, teacher_params, obs, hyper):
        s_q, s_hs = student.apply(train_params["student"], obs, return_hidden=True)
        t_q, t_hs = jax.vmap(lambda p: teacher.apply(p, obs, return_hidden=True))(teacher_params)
        t_q = jax.lax.stop_gradient(t_q)                          # [K, B, A]
        k = t_q.shape[0]
        temp = hyper["temp"]
        if need_hidden:
            s_h = s_hs[ls]
            t_h = jax.lax.stop_gradient(t_hs[lt])                 # [K, B, H]
        parts = []
        for name in names:
            if name == "mse":
                part = losses.mse(s_q, t_q.mean(0))
            elif name == "kl" and k == 1:
                part = (losses.kl_rusu(s_q, t_q[0], temp) if rusu
                        else losses.kl(s_q, t_q[0], temp))
            elif name == "kl":                                   # mixture of teacher policies
                p = jax.nn.softmax(t_q / temp, axis=-1).mean(0)
                part = (losses.kl_probs(s_q, p) if rusu
                        else temp**2 * losses.kl_probs(s_q / temp, p))
            elif name == "ce" and k == 1:
                part = losses.ce(s_q, t_q[0])
            elif name == "ce":                                   # mixture of greedy policies
                part = losses.soft_ce(s_q, losses.greedy_probs(t_q).mean(0))
            elif name == "feature":
                pr = train_params["proj"]
                part = jax.vmap(losses.feature, in_axes=(None, 0, 0, 0))(
                    s_h, t_h, pr["w"], pr["b"]).mean()
            elif name == "rkd_distance":
                part = jax.vmap(losses.rkd_distance, in_axes=(None, 0))(s_h, t_h).mean()
            elif name == "rkd_angle":
                part = jax.vmap(losses.rkd_angle, in_axes=(None, 0))(
                    s_h[:n_angle], t_h[:, :n_angle]).mean()
            else:  # pragma: no cover (config validation)
                raise ValueError(name)
            parts.append(part)
        parts = jnp.stack(parts)
        return jnp.sum(hyper["weights"] * parts), parts

    return objective


def make_distiller(cfg: DistillConfig, env: envs.Env, teacher_spec: dict) -> Distiller:
    net_spec = networks.spec(cfg.hidden, cfg.activation, env.obs_dim, env.num_actions)
    net = networks.build(net_spec)
    teacher = networks.build(teacher_spec)
    apply, t_apply = net.apply, networks.ensemble_apply(teacher.apply)   # mean Q over K
    tx = optimizer(cfg.lr, cfg.lr_end, cfg.total_updates, cfg.grad_clip)
    d, E, R, B = env.obs_dim, cfg.num_envs, cfg.buffer_rows, cfg.batch_size
    objective = make_objective(cfg, net, teacher)
    ls, lt = cfg.layer_pair
    use_proj = "feature" in cfg.term_names
    if use_proj and not -len(teacher_spec["hidden"]) <= lt < len(teacher_spec["hidden"]):
        from distillq.errors import ConfigError

        raise ConfigError(f"feature_layers: teacher layer {lt} does not exist in a "
                          f"{len(teacher_spec['hidden'])}-hidden-layer teacher")
    rollout = evaluate.make_rollout(env, apply, max(cfg.eval_episodes, 1))
    final_eval = evaluate.make_comparison(env, apply, t_apply, cfg.final_episodes)
    teacher_rollout = evaluate.make_rollout(env, t_apply, cfg.final_episodes)

    def init(key: jax.Array, teacher_params: Any) -> DistillState:
        """Student params, with the output bias set to the teacher's mean Q on the first
        states: Q-values of ~100 (CartPole, gamma 0.99) are otherwise reached only by blowing
        up the weights, which leaves an MSE student unable to resolve small action gaps."""
        k_net, k_env, k_run, k_proj = jax.random.split(key, 4)
        params = networks.init(net, k_net, d)
        obs, env_state = envs.reset(env, jax.random.split(k_env, E))
        params = networks.set_output_bias(params, t_apply(teacher_params, obs).mean(axis=0))
        proj = {}
        if use_proj:
            n_t = jax.tree.leaves(teacher_params)[0].shape[0]
            hs, ht = cfg.hidden[ls], teacher_spec["hidden"][lt]
            w = jax.random.normal(k_proj, (n_t, hs, ht)) / jnp.sqrt(hs)
            proj = {"w": w, "b": jnp.zeros((n_t, ht))}
        train = {"student": params, "proj": proj}
        return DistillState(train, tx.init(train), replay.init(R, E, d), env_state, obs, k_run,
                            params, jnp.asarray(-jnp.inf, jnp.float32))

    def update(train, opt_state, teacher_params, hyper, buffer, t_written, key):
        rows, env_idx = replay.sample_indices(key, t_written, R, E, B, 1)
        obs = replay.gather(buffer, rows, env_idx)[:, 0]
        (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(
            train, teacher_params, obs, hyper)
        updates, opt_state = tx.update(grads, opt_state, train)
        return optax.apply_updates(train, updates), opt_state, loss, parts

    def behaviour(state: DistillState, teacher_params, t, key):
        """Actions of the collecting policy and the teacher's greedy actions."""
        k_eps, k_rand, k_mix = jax.random.split(key, 3)
        t_greedy = jnp.argmax(t_apply(teacher_params, state.obs), -1)
        s_greedy = jnp.argmax(apply(state.params["student"], state.obs), -1)
        if cfg.collect in ("teacher", "dataset"):
            act = t_greedy
        elif cfg.collect == "student":
            act = s_greedy
        else:  # mixed: teacher with probability beta(t), decaying 1 -> 0
            beta = jnp.clip(1.0 - t / (cfg.mix_fraction * cfg.total_iterations), 0.0, 1.0)
            act = jnp.where(jax.random.uniform(k_mix, (E,)) < beta, t_greedy, s_greedy)
        explore = jax.random.uniform(k_eps, (E,)) < cfg.collect_eps
        act = jnp.where(explore, jax.random.randint(k_rand, (E,), 0, env.num_actions), act)
        return act, t_greedy, s_greedy

    def iteration(carry, t):
        state, teacher_params, hyper = carry
        key, k_act, k_env, k_upd = jax.random.split(state.key, 4)

        def collect(s: DistillState):
            act, t_greedy, s_greedy = behaviour(s, teacher_params, t, k_act)
            buffer = replay.write(s.buffer, s.obs, t)
            st = envs.step(env, jax.random.split(k_env, E), s.env_state, act)
            agree = jnp.mean((t_greedy == s_greedy).astype(jnp.float32))
            return s._replace(buffer=buffer, env_state=st.state, obs=st.obs), agree

        if cfg.collect == "dataset":
            state, agree = jax.lax.cond(t < cfg.dataset_iterations, collect,
                                        lambda s: (s, jnp.float32(jnp.nan)), state)
            written = jnp.minimum(t + 1, cfg.dataset_iterations)
        else:
            state, agree = collect(state)
            written = t + 1

        n_terms = len(cfg.term_names)

        def learn(c):
            def one(c2, j):
                p, o = c2
                p, o, loss, parts = update(p, o, teacher_params, hyper, state.buffer, written,
                                           jax.random.fold_in(k_upd, j))
                return (p, o), (loss, parts)

            c, (loss, parts) = jax.lax.scan(one, c, jnp.arange(cfg.updates_per_step))
            return c, loss.mean(), parts.mean(0)

        def skip(c):
            return c, jnp.float32(0.0), jnp.zeros((n_terms,), jnp.float32)

        (train, opt_state), loss, parts = jax.lax.cond(
            t >= cfg.warmup_iterations, learn, skip, (state.params, state.opt_state))
        state = state._replace(params=train, opt_state=opt_state, key=key)
        return (state, teacher_params, hyper), (loss, parts, agree)

    def chunk(state: DistillState, teacher_params: Any, hyper: dict, t0: jax.Array):
        ts = t0 + jnp.arange(cfg.chunk_steps, dtype=jnp.int32)
        (state, _, _), (loss, parts, agree) = jax.lax.scan(
            iteration, (state, teacher_params, hyper), ts)
        key, k_eval = jax.random.split(state.key)
        student = state.params["student"]
        if cfg.eval_episodes > 0:
            eval_ret = rollout(student, k_eval)["returns"].mean()
            better = eval_ret >= state.best_return
            best = jax.tree.map(lambda a, b: jnp.where(better, a, b), student, state.best_params)
            best_ret = jnp.maximum(eval_ret, state.best_return)
        else:
            eval_ret, best, best_ret = jnp.float32(jnp.nan), student, jnp.float32(jnp.nan)
        learning = ts >= cfg.warmup_iterations
        n_learn = jnp.maximum(learning.sum(), 1)
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x))
                                    for x in jax.tree.leaves(state.params)]))
        metrics = {
            "loss": jnp.where(learning, loss, 0.0).sum() / n_learn,
            "agreement": jnp.nanmean(agree),
            "eval_return": eval_ret,
            "best_return": best_ret,
            "finite": finite & jnp.all(jnp.isfinite(loss)),
        }
        for i, name in enumerate(cfg.term_names):
            metrics[f"loss_{name}"] = jnp.where(learning, parts[:, i], 0.0).sum() / n_learn
        return state._replace(key=key, best_params=best, best_return=best_ret), metrics

    def teacher_eval(teacher_params, key):
        return teacher_rollout(teacher_params, key)["returns"]

    return Distiller(cfg, env, net, net_spec, teacher, init, chunk, final_eval, teacher_eval,
                     objective)
