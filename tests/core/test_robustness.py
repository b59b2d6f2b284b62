"""Robustness: evaluation under shifted env params and observation noise, a vmap axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_distill

from distillq.commands import distill as distill_cmd
from distillq.commands import evaluate as evaluate_cmd
from distillq.core import envs, networks, robustness, rollout
from distillq.errors import ConfigError
from distillq.runs import store


def test_parsing_and_grid_order():
    assert robustness.parse_env_params(["length=0.25,1", "force_mag=5"]) == {
        "length": [0.25, 1.0], "force_mag": [5.0]}
    assert robustness.parse_noise(None) == [0.0]
    g = robustness.grid({"length": [0.25, 1.0], "force_mag": [5.0]}, [0.0, 0.1])
    assert [(p["env_params"]["length"], p["obs_noise"]) for p in g] == [
        (0.25, 0.0), (0.25, 0.1), (1.0, 0.0), (1.0, 0.1)]
    assert robustness.label(g[1]) == "length=0.25 force_mag=5 noise=0.1"
    assert robustness.grid({}, [0.0, 0.5]) == [{"env_params": {}, "obs_noise": 0.0},
                                                {"env_params": {}, "obs_noise": 0.5}]


def test_shifted_params_recompute_derived_fields(cartpole):
    p = robustness.shifted_params("CartPole-v1", cartpole.params, {"length": 1.0})
    assert p.length == 1.0 and p.polemass_length == pytest.approx(0.1 * 1.0)
    p = robustness.shifted_params("CartPole-v1", cartpole.params, {"masscart": 2.0})
    assert p.total_mass == pytest.approx(2.1) and p.polemass_length == pytest.approx(0.05)
    # a derived field given explicitly is kept as given
    p = robustness.shifted_params("CartPole-v1", cartpole.params, {"length": 1.0,
                                                                   "polemass_length": 0.3})
    assert p.polemass_length == 0.3
    with pytest.raises(ConfigError, match=r"not a shiftable parameter of CartPole-v1 "
                       r"\(choose from: gravity, masscart"):
        robustness.shifted_params("CartPole-v1", cartpole.params, {"pole": 1.0})
    with pytest.raises(ConfigError, match="max_steps_in_episode: not a shiftable"):
        robustness.shifted_params("CartPole-v1", cartpole.params, {"max_steps_in_episode": 9.0})


@pytest.fixture(scope="module")
def student(teacher_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("rob") / "s"
    distill_cmd.run(tiny_distill(), str(teacher_run[0]), out=str(out), show_progress=False)
    return store.load_run(out)


def test_a_shift_is_the_env_with_those_params(teacher_run, cartpole):
    """The grid's rollout at a shifted point equals a plain rollout of an env built with
    the shifted params; the noise is reproducible and changes what the networks see."""
    t = store.load_run(teacher_run[0])
    net = networks.build(t.meta["network"])
    params = jax.tree.map(lambda x: jnp.asarray(x)[0], t.params)
    key = rollout.eval_key(0)
    shifts = robustness.grid({"force_mag": [3.0, 10.0], "length": [0.5, 2.0]}, [0.0])
    fn = robustness.make_grid_eval(cartpole, net.apply, 6)
    ep = robustness.stack_params(cartpole, shifts)
    batch = jax.tree.map(lambda x: x[None], params)
    out = fn(batch, None, key[None], jnp.int32(0), ep, jnp.zeros(len(shifts)))
    for i, s in enumerate(shifts):
        env_i = cartpole._replace(params=robustness.shifted_params(
            "CartPole-v1", cartpole.params, s["env_params"]))
        want = rollout.make_rollout(env_i, net.apply, 6)(params, key)
        np.testing.assert_array_equal(out["returns"][i, 0], want["returns"])
    assert not np.array_equal(out["returns"][0, 0], out["returns"][3, 0])
    # noise: same keys -> same numbers; different levels -> different observations seen
    def balance(_, obs):   # push toward the pole's lean: balances for 500 steps unless noisy
        s = obs[..., 2] + obs[..., 3]
        return jnp.stack([-s, s], axis=-1)

    noisy = robustness.make_grid_eval(cartpole, balance, 6)
    n = noisy(batch, None, key[None], jnp.int32(0), None, jnp.asarray([0.0, 0.5, 0.5]))
    plain = rollout.make_rollout(cartpole, balance, 6)(params, key)
    np.testing.assert_array_equal(n["returns"][0, 0], plain["returns"])
    assert np.all(plain["returns"] == 500)
    np.testing.assert_array_equal(n["returns"][1, 0], n["returns"][2, 0])
    assert np.all(n["returns"][1, 0] < 500)


def test_evaluate_under_shifts_student_and_teacher(student, teacher_run):
    shifts = robustness.grid({"length": [0.5, 2.0]}, [0.0, 0.2])
    res = evaluate_cmd.run([str(student.path)], episodes=5, shifts=shifts)["results"][0]
    rows = res["robustness"]["shifts"]
    assert [(r["env_params"]["length"], r["obs_noise"]) for r in rows] == [
        (0.5, 0.0), (0.5, 0.2), (2.0, 0.0), (2.0, 0.2)]
    # the default point is the unshifted evaluation, number for number
    base, at_default = res["evaluation"], rows[0]["evaluation"]
    for k in ("mean", "teacher_mean", "random_mean", "retention", "fidelity"):
        assert at_default["overall"][k] == pytest.approx(base["overall"][k]), k
    assert [r["mean"] for r in at_default["per_seed"]] == [r["mean"] for r in base["per_seed"]]
    for r in rows:
        o = r["evaluation"]["overall"]
        assert o["episodes"] == 5 * len(student.meta["seeds"]) and "retention_min" in o
    assert rows[2]["evaluation"]["overall"]["teacher_mean"] != base["overall"]["teacher_mean"]
    # a teacher run: its own returns under each shift
    t = evaluate_cmd.run([str(teacher_run[0])], episodes=5, shifts=shifts)["results"][0]
    assert t["robustness"]["shifts"][0]["evaluation"]["overall"]["mean"] == \
        t["evaluation"]["overall"]["mean"]
    assert "retention" not in t["robustness"]["shifts"][0]["evaluation"]["overall"]
    # the student's teacher under a shift is the teacher run under the same shift
    np.testing.assert_allclose(
        [x["teacher_mean"] for x in rows[3]["evaluation"]["per_seed"]],
        [x["mean"] for x in t["robustness"]["shifts"][3]["evaluation"]["per_seed"]])


def test_unknown_env_param_refused_before_work(student):
    with pytest.raises(ConfigError, match="not a shiftable parameter"):
        evaluate_cmd.run([str(student.path)], episodes=2,
                               shifts=robustness.grid({"pole": [1.0]}, [0.0]))


def test_minatar_shifts_sticky_actions_only():
    env = envs.make("Breakout-MinAtar")
    assert robustness.shiftable(env.params) == ["sticky"]
