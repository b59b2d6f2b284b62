"""Students that reach the bar every time: inputs scaled from the teachers' visited states
(obs_norm = "teacher") everywhere the student is used, and selection over initialisations
(inits) on held-out episodes, never the final evaluation's."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import invoke, one_line_error, tiny_distill

from distillq.commands import distill as distill_cmd
from distillq.commands import evaluate as evaluate_cmd
from distillq.core import distill, networks, rollout
from distillq.runs import store

# ----------------------------------------------------------------- the scaling, pure


def test_pooled_scaling_weighs_teachers_alike_about_their_own_reference():
    """Teacher A visits dim 0 at {1, 3} (reference 1), teacher B at {5, 5} (reference 0);
    dim 1 is 7 always. Pooled: mean 3.5, E[x^2] = ((1 + 4) + (0 + 25)) / 2 = 15, var 2.75."""
    sums = distill.VisitedSums(ref=np.array([[1.0, 7.0], [0.0, 7.0]]), n=np.array([2.0, 2.0]),
                               s1=np.array([[2.0, 0.0], [10.0, 0.0]]),
                               s2=np.array([[4.0, 0.0], [50.0, 0.0]]))
    out = distill.pooled_scaling(sums)
    np.testing.assert_allclose(out["shift"], [3.5, 7.0])
    np.testing.assert_allclose(out["scale"], [1 / np.sqrt(2.75), 1.0])   # constant: left as is


def test_visited_sums_are_the_teachers_own_states(cartpole):
    """A teacher that always pushes right drives the cart right, one that pushes left, left:
    the sums are of the states the policy visits (eps = 0), n = steps x envs."""
    spec = networks.spec("linear", "relu", cartpole.obs_shape, cartpole.num_actions)
    net = networks.build(spec)
    params = networks.init(net, jax.random.PRNGKey(0), cartpole.obs_shape)

    def always(action):
        p = jax.tree.map(jnp.zeros_like, params)
        p = networks.set_output_bias(p, jnp.eye(2)[action])
        return jax.tree.map(lambda x: x[None], p)      # ensemble axis K = 1

    means = []
    for a in (0, 1):
        s = distill.visited_sums(cartpole, spec, always(a), jax.random.PRNGKey(1), 4, 20, 0.0)
        assert float(s.n) == 80
        means.append(np.asarray(s.ref + s.s1 / s.n))
    assert means[0][1] < -0.2 < 0.2 < means[1][1]      # mean cart velocity
    # one step: the sums hold exactly the first observations (their mean is the reference)
    one = distill.visited_sums(cartpole, spec, always(1), jax.random.PRNGKey(1), 4, 1, 0.0)
    np.testing.assert_allclose(one.s1, 0.0, atol=1e-6)


# ----------------------------------------------------------------- applied everywhere


@pytest.fixture(scope="module")
def normed(teacher_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("normed")
    t_dir, _ = teacher_run
    s = distill_cmd.run(tiny_distill(network="8", obs_norm="teacher", obs_norm_steps=256),
                        str(t_dir), out=str(d / "s"), show_progress=False)
    return d, s


def test_the_scaling_is_in_the_students_spec(normed, teacher_run):
    d, s = normed
    norm = store.read_meta(d / "s")["network"]["input_norm"]
    scale = np.asarray(norm["scale"])
    assert scale.shape == (4,) and np.all(scale > 1.0)    # CartPole's states: std < 1
    assert s["network"]["input_norm"] == norm


def test_training_needs_the_scaling(cartpole, teacher_run):
    t_spec = store.read_meta(teacher_run[0])["network"]
    with pytest.raises(ValueError, match="input_norm"):
        distill.make(tiny_distill(obs_norm="teacher"), cartpole, t_spec)
    norm = {"shift": [0.0] * 4, "scale": [2.0] * 4}
    algo = distill.make(tiny_distill(obs_norm="teacher"), cartpole, t_spec, norm)
    assert algo.net_spec["input_norm"] == norm
    net = networks.build(algo.net_spec)
    params = networks.init(net, jax.random.PRNGKey(0), (4,))
    x = jnp.ones((3, 4))
    np.testing.assert_allclose(net.apply(params, x), net.module.apply(params, 2.0 * x))


def _balancing(run_dir, tmp_path, name: str, shift_angle: float | None = None):
    """A copy of a scaled 8-unit student run whose params are a hand-made balancing policy on
    the *scaled* inputs (push towards the side the pole falls to: angle + angular velocity);
    shift_angle: replace the spec's shift of the pole angle."""
    out = tmp_path / name
    shutil.copytree(run_dir, out)
    meta = json.loads((out / "meta.json").read_text())
    if shift_angle is not None:
        meta["network"]["input_norm"]["shift"][2] = shift_angle
    params = store.restore_params(out)
    inner = params["params"]
    k = np.zeros_like(inner["hidden_0"]["kernel"])      # [seeds, 4, 8]
    k[:, 2, 0] = k[:, 3, 0] = 1.0
    k[:, 2, 1] = k[:, 3, 1] = -1.0
    q = np.zeros_like(inner["q"]["kernel"])             # [seeds, 8, 2]
    q[:, 1, 0] = q[:, 0, 1] = 1.0
    inner = {"hidden_0": {"kernel": k, "bias": np.zeros_like(inner["hidden_0"]["bias"])},
             "q": {"kernel": q, "bias": np.zeros_like(inner["q"]["bias"])}}
    (out / "meta.json").write_text(json.dumps(meta))
    _set_params(out, inner)
    ev = evaluate_cmd.run([str(out)], episodes=8, with_teacher=False)["results"][0]
    return [r["mean"] for r in ev["evaluation"]["per_seed"]]


def test_evaluate_applies_the_scaling(normed, tmp_path):
    """evaluate reproduces distill's own final figures; a hand-made balancing policy on the
    scaled inputs balances, and falls at once when the spec shifts the angle by 1 rad."""
    d, s = normed
    ev = evaluate_cmd.run([str(d / "s")], episodes=4, with_teacher=False)["results"][0]
    assert [r["mean"] for r in ev["evaluation"]["per_seed"]] == \
        [r["mean"] for r in s["evaluation"]["per_seed"]]
    good = _balancing(d / "s", tmp_path, "good")
    bad = _balancing(d / "s", tmp_path, "bad", shift_angle=1.0)
    assert min(good) > 30 and max(bad) < 12, (good, bad)


def test_a_chain_teacher_applies_the_scaling(normed, tmp_path):
    """A student distilled from the scaled student compares against it on the same episodes:
    its teacher_mean is the scaled student's own return."""
    d, s = normed
    c = distill_cmd.run(tiny_distill(network="4"), str(d / "s"), out=str(tmp_path / "c"),
                        show_progress=False)
    np.testing.assert_allclose([r["teacher_mean"] for r in c["evaluation"]["per_seed"]],
                               [r["mean"] for r in s["evaluation"]["per_seed"]])


def test_a_resumed_view_student_rebuilds_its_scaling(teacher_run, tmp_path, cartpole):
    """A view student (positions only, 2 frames): meta.json keeps the observation's scaling,
    and what --resume rebuilds from it is the spec the run trained with (rebuilding from the
    spec's own view-level scaling mapped the view twice: every shift became the first one)."""
    cfg = tiny_distill(network="4", obs_norm="teacher", obs_norm_steps=256,
                       student_obs="drop=1,3", frame_stack=2)
    distill_cmd.run(cfg, str(teacher_run[0]), out=str(tmp_path / "v"), show_progress=False)
    meta = store.read_meta(tmp_path / "v")
    obs, spec = meta["teacher_scaling"], meta["network"]["input_norm"]
    assert len(obs["shift"]) == 4 and spec["shift"] == [obs["shift"][i] for i in (0, 2)] * 2
    t_run = store.load_run(teacher_run[0])
    st = distill_cmd.Students.of(meta)
    again = distill_cmd.input_norm(cfg, cartpole, t_run.meta["network"], [t_run], st, meta)
    algo = distill.make(cfg, cartpole, t_run.meta["network"], again)
    assert algo.net_spec["input_norm"] == spec


def test_obs_norm_teacher_is_refused_where_it_has_no_teacher(teacher_run):
    assert "a teacher takes none or bounds" in one_line_error(
        ["train-teacher", "--set", "obs_norm=teacher", "--steps", "1000"])
    assert "multitask: inits" in one_line_error(
        ["distill", "-t", str(teacher_run[0]), "-t", str(teacher_run[0]), "--multitask",
         "--inits", "2"])
    assert "inits" in one_line_error(["distill", "-t", str(teacher_run[0]), "--inits", "0"])


# ----------------------------------------------------------------- selection


# briefly trained, so that initialisations still differ in how they play
BRIEF = dict(network="8", total_steps=256, final_episodes=8)


def _set_params(run_dir, inner: dict) -> None:
    shutil.rmtree(run_dir / store.PARAMS)
    store.save_params(run_dir, {"params": inner})
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["params_digest"] = store.params_digest(run_dir)
    (run_dir / "meta.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def balancer(teacher_run, tmp_path_factory):
    """The tiny teacher run with hand-made 32-16 params that balance the pole (push towards
    the side it falls to: angle + angular velocity): returns near 500, a teacher worth
    imitating, whose students' initialisations then play differently."""
    out = tmp_path_factory.mktemp("balancer") / "t"
    shutil.copytree(teacher_run[0], out)
    p = store.restore_params(out)["params"]
    h0 = np.zeros_like(p["hidden_0"]["kernel"])      # [seeds, 4, 32]
    h0[:, 2, 0] = h0[:, 3, 0] = 1.0
    h0[:, 2, 1] = h0[:, 3, 1] = -1.0
    h1 = np.zeros_like(p["hidden_1"]["kernel"])      # [seeds, 32, 16]
    h1[:, 0, 0] = h1[:, 1, 1] = 1.0
    q = np.zeros_like(p["q"]["kernel"])              # [seeds, 16, 2]
    q[:, 1, 0] = q[:, 0, 1] = 1.0
    _set_params(out, {"hidden_0": {"kernel": h0, "bias": np.zeros_like(p["hidden_0"]["bias"])},
                      "hidden_1": {"kernel": h1, "bias": np.zeros_like(p["hidden_1"]["bias"])},
                      "q": {"kernel": q, "bias": np.zeros_like(p["q"]["bias"])}})
    return out


@pytest.fixture(scope="module")
def chosen(balancer, tmp_path_factory):
    """3 initialisations per seed, chosen on as many episodes as the final evaluation has."""
    d = tmp_path_factory.mktemp("inits")
    s = distill_cmd.run(tiny_distill(inits=3, select_episodes=8, **BRIEF), str(balancer),
                        out=str(d / "s"), show_progress=False)
    return d, s


def test_the_best_initialisation_on_the_selection_episodes_is_kept(chosen):
    d, s = chosen
    rec = store.read_meta(d / "s")["inits"]
    assert rec["inits"] == 3 and rec["select_episodes"] == 8
    # the initialisations differ, and the choice is not always the first one
    assert all(len(set(row["selection_mean"])) > 1 for row in rec["per_seed"]), rec
    assert any(row["chosen"] != 0 for row in rec["per_seed"]), rec
    for row, ev in zip(rec["per_seed"], s["evaluation"]["per_seed"], strict=True):
        assert row["chosen"] == int(np.argmax(row["selection_mean"]))
        assert row["final_mean"][row["chosen"]] == ev["mean"]
        assert np.mean(row["selection_returns"]) == pytest.approx(
            row["selection_mean"][row["chosen"]])
    # the kept params are the chosen member's: evaluate reproduces its final figures
    ev = evaluate_cmd.run([str(d / "s")], episodes=8, with_teacher=False)["results"][0]
    assert [r["mean"] for r in ev["evaluation"]["per_seed"]] == \
        [row["final_mean"][row["chosen"]] for row in rec["per_seed"]]
    rows = [json.loads(x) for x in (d / "s" / "metrics.jsonl").read_text().splitlines()]
    assert {r["init"] for r in rows} == {0, 1, 2} and {r["seed"] for r in rows} == {0, 1}


def test_selection_never_reads_the_final_evaluations_episodes(chosen):
    """Same episode count: on the final evaluation's keys every member's selection mean would
    be its final mean (episode e of a key is the same game whatever the count)."""
    d, _ = chosen
    rec = store.read_meta(d / "s")["inits"]
    pairs = [(a, b) for row in rec["per_seed"]
             for a, b in zip(row["selection_mean"], row["final_mean"], strict=True)]
    assert any(a != b for a, b in pairs), pairs
    for seed in range(50):
        assert not np.array_equal(jax.random.key_data(rollout.select_key(seed)),
                                  jax.random.key_data(rollout.eval_key(seed)))


def test_initialisation_zero_is_the_run_without_inits(chosen, balancer, tmp_path):
    d, _ = chosen
    plain = distill_cmd.run(tiny_distill(**BRIEF), str(balancer),
                            out=str(tmp_path / "p"), show_progress=False)
    rec = store.read_meta(d / "s")["inits"]
    np.testing.assert_allclose([row["final_mean"][0] for row in rec["per_seed"]],
                               [r["mean"] for r in plain["evaluation"]["per_seed"]])


def test_inits_from_the_cli(teacher_run, tmp_path):
    code, out, err = invoke(["distill", "-t", str(teacher_run[0]), "--inits", "2",
                             "--obs-norm", "teacher", "--set", "obs_norm_steps=128",
                             "--out", str(tmp_path / "s"), "-q",
                             *sum((["--set", f"{k}={v}"] for k, v in
                                   dict(num_envs=4, total_steps=256, learning_starts=32,
                                        buffer_size=256, batch_size=32, chunk_steps=32,
                                        eval_episodes=2, final_episodes=4, select_episodes=2,
                                        network="4").items()), [])])
    assert code == 0, err
    res = json.loads(out)
    meta = store.read_meta(tmp_path / "s")
    assert meta["inits"]["inits"] == 2 and "input_norm" in res["network"]
    assert meta["config"]["inits"] == 2 and len(meta["seeds"]) == 2
    assert res["inits"] == {"inits": 2, "chosen": meta["inits"]["chosen"]}
