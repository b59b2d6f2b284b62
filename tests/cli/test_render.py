"""render: evaluate's own episode (a trace of evaluate's batched call), the same env steps in
both panes, frames drawn without matplotlib/pygame, and outputs checked before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import one_line_error, tiny_distill, tiny_teacher

from distillq.commands import distill as distill_cmd
from distillq.commands import evaluate as evaluate_cmd
from distillq.commands import render as render_cmd
from distillq.commands import train as train_cmd
from distillq.core import envs, frames, networks, rollout
from distillq.errors import ConfigError

EXE = [sys.executable, "-m", "distillq"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny CartPole teacher (2 seeds; seed 1 plays 27-65 steps) and two students of it:
    a linear one (17-25 steps: shorter than its teacher's), and a view student (dimensions
    dropped, a stack of 2): short episodes of varied lengths."""
    d = tmp_path_factory.mktemp("render")
    train_cmd.run(tiny_teacher(total_steps=2048), out=str(d / "t"), show_progress=False)
    distill_cmd.run(tiny_distill(network="linear"), [str(d / "t")], out=str(d / "s"),
                    show_progress=False)
    distill_cmd.run(tiny_distill(student_obs="drop=1;noise=0.01", frame_stack=2),
                    [str(d / "t")], out=str(d / "v"), show_progress=False)
    return d


# --------------------------------------------------------------------- the trace itself


def _tiny_net(env, seed=0):
    net = networks.build(networks.spec("8", "relu", env.obs_shape, env.num_actions))
    return net, networks.init(net, jax.random.PRNGKey(seed), env.obs_shape)


def test_traced_rollout_is_the_untraced_one_and_records_the_watched_episode(cartpole):
    """trace=True returns the untraced numbers exactly, and the watched episode's raw
    observations (row t: after t steps; the last row the true final observation, zeros
    past it) and rewards (1 per CartPole step, 0 past the end)."""
    net, params = _tiny_net(cartpole)
    key = rollout.eval_key(3)
    plain = jax.jit(rollout.make_rollout(cartpole, net.apply, 8, other_apply=net.apply))
    traced = jax.jit(rollout.make_rollout(cartpole, net.apply, 8, other_apply=net.apply,
                                          trace=True))
    first = 16
    want = plain(params, key, params, first)
    k_reset, _ = jax.random.split(key)
    starts = np.asarray(envs.reset(cartpole, rollout._per_episode(
        k_reset, first + jnp.arange(8)))[0])
    assert len(set(np.asarray(want["lengths"]).tolist())) > 1       # episodes differ
    tau, steps = 0.02, cartpole.max_steps
    for watch in range(8):
        got = traced(params, key, params, first, watch=watch)
        for k in ("returns", "lengths", "agree"):
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
        n = int(got["lengths"][watch])
        obs, rew = np.asarray(got["trace_obs"]), np.asarray(got["trace_rewards"])
        assert obs.shape == (steps + 1, 4) and rew.shape == (steps,)
        np.testing.assert_array_equal(obs[0], starts[watch])        # its own initial state
        np.testing.assert_array_equal(rew, np.r_[np.ones(n), np.zeros(steps - n)])
        assert float(rew.sum()) == float(got["returns"][watch])
        # consecutive rows are consecutive states (Euler: x' = x + tau x_dot, same for theta)
        np.testing.assert_allclose(obs[1:n + 1, [0, 2]],
                                   obs[:n, [0, 2]] + tau * obs[:n, [1, 3]], atol=1e-5)
        assert np.all(obs[n + 1:] == 0)
        if n < steps:      # the final row is the state that ended it, not the reset one
            assert abs(obs[n, 0]) > 2.4 or abs(obs[n, 2]) > 12 * 2 * np.pi / 360


def test_traced_comparison_traces_the_teachers_own_episode(cartpole):
    net, params = _tiny_net(cartpole)
    t_net, t_params = _tiny_net(cartpole, 1)
    key = rollout.eval_key(0)
    plain = jax.jit(rollout.make_comparison(cartpole, net.apply, t_net.apply, 6))
    traced = jax.jit(rollout.make_comparison(cartpole, net.apply, t_net.apply, 6, trace=True))
    want = plain(params, t_params, key, 0)
    t_alone = jax.jit(rollout.make_rollout(cartpole, t_net.apply, 6))(t_params, key)
    for watch in (0, 5):
        got = traced(params, t_params, key, 0, watch)
        for k in want:
            np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))
        n = int(got["teacher_lengths"][watch])
        assert n == int(t_alone["lengths"][watch])
        assert float(np.sum(got["teacher_trace_rewards"])) == float(want["teacher_returns"][watch])
        t_obs = np.asarray(got["teacher_trace_obs"])
        np.testing.assert_array_equal(t_obs[0], np.asarray(got["trace_obs"])[0])  # same start
        assert np.all(t_obs[n + 1:] == 0) and np.any(t_obs[n] != 0)


# --------------------------------------------------------------------- render == evaluate


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s", "v"])
def test_render_returns_are_evaluates_per_episode_returns(runs, name, tmp_path):
    """Episodes 0..9 of `evaluate --episodes 10`, seed 1: render's student and teacher
    returns are evaluate's per-episode returns exactly (the old unbatched scan differed
    from evaluate's batch in 2 of 10 episodes of a user's run)."""
    path = str(runs / name)
    ev = evaluate_cmd.run([path], episodes=10)["results"][0]["evaluation"]["per_seed"][1]
    assert len(set(ev["returns"])) > 1          # the episodes differ: a wrong watch shows
    got_s, got_t = [], []
    for e in range(10):
        r = render_cmd.run(path, str(tmp_path / f"e{e}.gif"), seed_index=1, episode_index=e,
                           episodes=10, max_frames=4)
        assert r["episode"] == e and r["episodes"] == 10 and r["seed"] == 1
        assert r["student_steps"] == r["student_return"]        # CartPole: 1 per step
        got_s.append(r["student_return"])
        got_t.append(r["teacher_return"])
    assert got_s == ev["returns"]
    assert got_t == ev["teacher_returns"]
    alone = evaluate_cmd.run([path], episodes=10, with_teacher=False
                             )["results"][0]["evaluation"]["per_seed"][1]["returns"]
    r = render_cmd.run(path, str(tmp_path / "alone.gif"), seed_index=1, episode_index=7,
                       episodes=10, with_teacher=False, max_frames=4)
    assert r["student_return"] == alone[7] and "teacher_return" not in r


@pytest.mark.slow
def test_episode_e_is_found_in_its_chunk(runs, tmp_path, monkeypatch):
    """With N > EVAL_CHUNK, episode e is batch (e // chunk) * chunk, index e % chunk."""
    from distillq.runs import evaluation

    monkeypatch.setattr(evaluation, "EVAL_CHUNK", 4)
    ev = evaluate_cmd.run([str(runs / "s")], episodes=10)["results"][0]["evaluation"]
    for e in (5, 9):
        r = render_cmd.run(str(runs / "s"), str(tmp_path / f"c{e}.gif"), seed_index=1,
                           episode_index=e, episodes=10, max_frames=3)
        assert r["student_return"] == ev["per_seed"][1]["returns"][e]
        assert r["teacher_return"] == ev["per_seed"][1]["teacher_returns"][e]


# --------------------------------------------------------------------- frames and captions


def test_frame_steps_are_shared_and_bounded():
    assert render_cmd.frame_steps(500, 120) == list(range(0, 500, 5)) + [500]
    for last, m in ((1, 2), (7, 2), (37, 5), (500, 120), (500, 10_000), (999, 3)):
        s = render_cmd.frame_steps(last, m)
        assert s[0] == 0 and s[-1] == last and len(s) <= m and s == sorted(set(s))
    assert render_cmd.frame_steps(12, 10_000) == list(range(13))


def test_captions_say_the_env_step_and_when_a_pane_ended():
    rets = [0.0, 1.0, 2.0, 3.0]
    assert render_cmd.caption("student", 2, 3, rets) == ("student  step 2", "return 2")
    assert render_cmd.caption("teacher", 9, 3, rets) == ("teacher  ended at step 3",
                                                         "return 3")


@pytest.mark.slow
def test_both_panes_show_the_same_env_steps(runs, tmp_path, monkeypatch, cartpole):
    """Frame j of each pane is its state at steps[j] (held at its end): the pane that ended
    first stops changing, the caption's return is the return so far; both panes start
    from the episode's (seed's) initial state and step through consecutive states."""
    from PIL import Image

    seen = {}
    real = render_cmd.write_gif

    def spy(panes, steps, path, *a, **kw):
        seen.update(panes=panes, steps=steps)
        return real(panes, steps, path, *a, **kw)

    monkeypatch.setattr(render_cmd, "write_gif", spy)
    ev = evaluate_cmd.run([str(runs / "s")], episodes=10)["results"][0]["evaluation"]
    per = ev["per_seed"][1]
    e = next(i for i in range(10) if per["returns"][i] != per["teacher_returns"][i])
    r = render_cmd.run(str(runs / "s"), str(tmp_path / "a.gif"), seed_index=1,
                       episode_index=e, episodes=10, max_frames=10_000)
    assert r["student_steps"] != r["teacher_steps"]
    steps, panes = seen["steps"], seen["panes"]
    last = max(r["student_steps"], r["teacher_steps"])
    assert steps == list(range(last + 1)) and r["frames"] == len(steps) == last + 1
    assert r["frame_steps"] == steps
    k_reset, _ = jax.random.split(rollout.eval_key(r["seed"]))
    start = np.asarray(envs.reset(cartpole, rollout._per_episode(k_reset, jnp.arange(e, e + 1))
                                  )[0][0])
    for p in panes:
        n = p["length"]
        assert p["returns"] == [float(t) for t in range(n + 1)]      # CartPole: 1 a step
        obs = p["obs"]
        assert obs.shape == (n + 1, 4)
        np.testing.assert_array_equal(obs[0], start)
        np.testing.assert_allclose(obs[1:, [0, 2]], obs[:-1, [0, 2]] + 0.02 * obs[:-1, [1, 3]],
                                   atol=1e-5)
        want = render_cmd.draw_panes("classic", "CartPole-v1",
                                     p["obs"][np.minimum(steps, n)])
        np.testing.assert_array_equal(p["frames"], want)
        held = p["frames"][n:]
        assert np.all(held == held[0])                 # ended: its last frame, held
        assert not np.all(p["frames"][:n + 1] == p["frames"][0])
    im = Image.open(tmp_path / "a.gif")
    assert im.n_frames == len(steps) and im.width > 2 * im.height
    assert json.loads((tmp_path / "a.json").read_text()) == r


def test_classic_frames_are_the_pixel_students_frames_larger():
    """scale multiplies the frame's size and draws the same picture: the scale-5 frame
    box-downsampled 5x is the pixel student's frame (which itself is unchanged)."""
    obs = jnp.asarray([[0.3, 0.0, 0.1, 0.0], [-1.0, 0.0, -0.15, 0.0]])
    small = np.asarray(frames.draw("CartPole-v1", obs))
    big = np.asarray(frames.draw("CartPole-v1", obs, scale=5))
    assert small.shape == (2, 40, 60) and big.shape == (2, 200, 300)
    f = frames.frame("CartPole-v1", 5)
    assert frames.shape("CartPole-v1") == (40, 60) and (f.height, f.width) == (200, 300)
    pooled = big.reshape(2, 40, 5, 60, 5).mean((2, 4))
    assert np.abs(pooled - small).mean() < 0.01 and np.abs(pooled - small).max() < 0.3
    np.testing.assert_array_equal(np.asarray(frames.draw("CartPole-v1", obs, scale=1)), small)
    # every classic env draws under jit (render's one call), MountainCar's flag included
    for env_id, o, shape in (("Acrobot-v1", [[1, 0, 1, 0, 0, 0]], (1, 200, 200)),
                             ("MountainCar-v0", [[-0.5, 0.0]], (1, 200, 300))):
        idx = render_cmd.draw_panes("classic", env_id, np.asarray(o, np.float32))
        assert idx.shape == shape and idx.dtype == np.uint8 and 0 < idx.max() < 224
        np.testing.assert_allclose(idx / (render_cmd.GRAYS - 1),
                                   np.asarray(frames.draw(env_id, jnp.asarray(o), scale=5)),
                                   atol=0.51 / (render_cmd.GRAYS - 1) + 1e-5)


def test_minatar_frames_colour_each_channel_and_other_envs_are_refused():
    obs = np.zeros((2, 10, 10, 4), np.float32)
    obs[0, 1, 2, 0] = 1
    obs[0, 1, 2, 3] = 1          # two channels on one cell: the last one's colour
    obs[1, 9, 9, 1] = 1
    idx = render_cmd.draw_panes("minatar", "Breakout-MinAtar", obs)
    assert idx.shape == (2, 200, 200) and idx.dtype == np.uint8
    assert np.all(idx[0, 20:40, 40:60] == render_cmd.CHANNEL0 + 3)
    assert np.all(idx[1, 180:, 180:] == render_cmd.CHANNEL0 + 1)
    assert idx[0, 0, 0] == render_cmd.BOARD
    assert render_cmd.drawable("Breakout-MinAtar") == "minatar"
    assert render_cmd.drawable("Acrobot-v1") == "classic"
    with pytest.raises(ConfigError, match="render draws CartPole.*not Catch-bsuite"):
        render_cmd.drawable("Catch-bsuite")


# --------------------------------------------------------------------- outputs


def _no_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("render computed before refusing its output")

    monkeypatch.setattr(render_cmd, "_render", boom)


@pytest.mark.slow
def test_bad_outputs_fail_before_any_work(runs, tmp_path, monkeypatch):
    _no_work(monkeypatch)
    s = str(runs / "s")
    ro = tmp_path / "ro"
    ro.mkdir()
    cases = [("/dev/full/x.gif", "not a directory"), ("/proc/x.gif", "cannot write"),
             ("/sys/x.gif", "cannot write"), (str(tmp_path / "x.png"), "must end in .gif"),
             (str(runs / "s" / "x.gif"), "inside the run dir")]
    if os.geteuid() != 0:      # root writes into a 0555 dir anyway (/sys above is read-only)
        ro.chmod(0o555)
        cases.append((str(ro / "x.gif"), "cannot write"))
    for out, needle in cases:
        assert needle in one_line_error(["render", s, "--out", out]), out
    bad = os.fsdecode(b"\xff\xfe.gif")
    assert "not valid UTF-8" in one_line_error(["render", s, "--out", str(tmp_path / bad)])
    assert "--episode must be in 0..9" in one_line_error(
        ["render", s, "--out", str(tmp_path / "y.gif"), "--episode", "10", "--episodes", "10"])
    assert not any(p.name != "ro" for p in tmp_path.iterdir())
    ro.chmod(0o755)


@pytest.mark.slow
def test_existing_outputs_and_their_summaries(runs, tmp_path, monkeypatch):
    """A .json beside the GIF that is not a render summary is never replaced (--force or
    not): `--out last-evaluation.gif` beside `make run`'s last-evaluation.json, or
    notes.gif beside notes.json; an existing GIF only with --force; a symlink never."""
    _no_work(monkeypatch)
    s = str(runs / "s")
    evaluation = tmp_path / "last-evaluation.json"
    evaluation.write_text('{"kind": "evaluation", "episodes": 100}\n')
    (tmp_path / "notes.json").write_text("my notes\n")
    for name in ("last-evaluation.gif", "notes.gif"):
        for force in ([], ["--force"]):
            err = one_line_error(["render", s, "--out", str(tmp_path / name), *force])
            assert "already exists" in err if not force else "not a distillq render" in err
    assert evaluation.read_text() == '{"kind": "evaluation", "episodes": 100}\n'
    assert (tmp_path / "notes.json").read_text() == "my notes\n"
    gif = tmp_path / "old.gif"
    gif.write_bytes(b"GIF89a....")
    assert "already exists" in one_line_error(["render", s, "--out", str(gif)])
    (tmp_path / "fake.gif").write_text("not a gif")
    assert "not a distillq GIF" in one_line_error(["render", s, "--out",
                                                   str(tmp_path / "fake.gif"), "--force"])
    (tmp_path / "link.gif").symlink_to(gif)
    assert "symbolic link" in one_line_error(["render", s, "--out", str(tmp_path / "link.gif"),
                                              "--force"])
    assert gif.read_bytes() == b"GIF89a...."


@pytest.mark.slow
def test_render_cli_replaces_its_own_output_with_force_atomically(runs, tmp_path):
    """Through the CLI (a subprocess): a refusal is one line, exit 2, nothing computed; with
    --force a previous render (GIF and summary) is replaced in place, nothing staged is left,
    and stderr says what is played."""
    out = tmp_path / "r.gif"
    out.write_bytes(b"GIF89a old")
    out.with_suffix(".json").write_text('{"kind": "render"}\n')
    p = subprocess.run(EXE + ["render", str(runs / "s"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "already exists" in p.stderr and p.stdout == ""
    p = subprocess.run(EXE + ["render", str(runs / "s"), "--out", str(out), "--force",
                              "--episode", "3", "--max-frames", "5"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert json.loads(out.with_suffix(".json").read_text()) == res
    assert res["size_bytes"] == out.stat().st_size and out.read_bytes()[:6] == b"GIF89a"
    assert set(res) >= {"kind", "run_dir", "env", "seed", "episode", "out", "student_return",
                        "student_steps", "teacher_return", "teacher_steps", "size_bytes",
                        "frames", "frame_steps", "episodes"}
    assert res["frames"] <= 5 and "episode 3 of `evaluate --episodes 100`" in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.gif", "r.json"]   # no staging



@pytest.mark.slow
def test_render_matches_evaluate_where_the_unbatched_episode_did_not(tmp_path):
    """A half-trained pair (long episodes, near-tied Q-values): on the development CPU the
    old render (one episode, its own scan) gave 234 where evaluate gave 235 (seed 0,
    episode 88), teacher 395 vs 404 (episode 35) and 361 vs 365 (51); seed 1: 452 vs 451
    (15), 251 vs 248 (97), teacher 259 vs 260 (30). render is evaluate's batch, traced."""
    t, s = tmp_path / "t", tmp_path / "s"
    for args in (["train-teacher", "--seeds", "2", "--steps", "20000", "--out", str(t), "-q"],
                 ["distill", "-t", str(t), "--steps", "4000", "--out", str(s), "-q"]):
        p = subprocess.run(EXE + args, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
    ev = evaluate_cmd.run([str(s)], episodes=100)["results"][0]["evaluation"]["per_seed"]
    for seed_index, e in ((0, 88), (0, 35), (0, 51), (1, 15), (1, 97), (1, 30)):
        r = render_cmd.run(str(s), str(tmp_path / f"{seed_index}-{e}.gif"),
                           seed_index=seed_index, episode_index=e, max_frames=2)
        assert r["student_return"] == ev[seed_index]["returns"][e], (seed_index, e)
        assert r["teacher_return"] == ev[seed_index]["teacher_returns"][e], (seed_index, e)
