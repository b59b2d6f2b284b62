"""Export: parity of every format with distillq's own forward pass, int8, latency, render."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import tiny_distill, tiny_teacher

from distillq.commands import distill as distill_cmd
from distillq.commands import export as export_cmd
from distillq.commands import train as train_cmd
from distillq.commands.export import c_format, program
from distillq.runs import store

pytestmark = pytest.mark.slow
EXE = [sys.executable, "-m", "distillq"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A CartPole MLP teacher, a linear student, and a MinAtar CNN teacher with a CNN student
    whose teacher scales its inputs (obs_norm)."""
    d = tmp_path_factory.mktemp("export")
    train_cmd.run(tiny_teacher(), out=str(d / "t"), show_progress=False)
    distill_cmd.run(tiny_distill(network="linear"), [str(d / "t")], out=str(d / "lin"),
                     show_progress=False)
    distill_cmd.run(tiny_distill(network="16", obs_norm="bounds"), [str(d / "t")],
                     out=str(d / "mlp"), show_progress=False)
    distill_cmd.run(tiny_distill(network="8", obs_norm="teacher", obs_norm_steps=256),
                    [str(d / "t")], out=str(d / "tnorm"), show_progress=False)
    train_cmd.run(tiny_teacher(env="Breakout-MinAtar", network="cnn:4,16",
                                        total_steps=512, learning_starts=64),
                           out=str(d / "cnn"), show_progress=False)
    distill_cmd.run(tiny_distill(network="cnn:2,8"), [str(d / "cnn")], out=str(d / "cnns"),
                     show_progress=False)
    distill_cmd.run(tiny_distill(network="strided:3,4,8", student_obs="pixels", frame_stack=2,
                                 buffer_size=128), [str(d / "t")], out=str(d / "pixels"),
                    show_progress=False)
    return d


@pytest.mark.parametrize("run", ["lin", "mlp", "tnorm", "cnns", "cnn", "pixels"])
@pytest.mark.parametrize("fmt", ["numpy", "c", "onnx"])
def test_every_format_matches_distillq_on_10000_states(runs, run, fmt, tmp_path):
    if fmt == "c" and c_format.c_compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) on this machine")
    res = export_cmd.run(str(runs / run), fmt, str(tmp_path / "e"), states=10_000)
    par = res["parity"]
    assert par["states"] == 10_000 and par["decided_states"] > 9_000
    assert par["ok"] and par["action_mismatches"] == 0, par
    assert par["max_rel_q_error"] <= 1e-4
    assert (tmp_path / "e" / "export.json").exists() and res["size_bytes"] > 0


@pytest.mark.parametrize("fmt", ["numpy", "c"])
def test_int8_export_matches_its_dequantised_network_and_is_evaluated(runs, fmt, tmp_path):
    if fmt == "c" and c_format.c_compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) on this machine")
    res = export_cmd.run(str(runs / "mlp"), fmt, str(tmp_path / "q"), int8=True,
                            states=2_000)
    assert res["parity"]["ok"], res["parity"]
    ev = res["int8_evaluation"]
    assert set(ev) == {"float", "int8"} and "retention" in ev["int8"]
    float_bytes = export_cmd.run(str(runs / "mlp"), fmt, str(tmp_path / "f"),
                                    states=100)["weights_bytes"]
    assert res["weights_bytes"] < 0.6 * float_bytes     # int8 weights; float biases, scales


def test_quantise_is_per_output_channel_and_round_trips():
    w = np.array([[1.0, -0.01], [-2.0, 0.02], [0.5, 0.0]], np.float32)
    (q,) = program.quantise([{"op": "dense", "w": w, "b": np.zeros(2, np.float32),
                             "act": None}])
    assert q["w"].dtype == np.int8 and q["w_scale"].shape == (2,)
    np.testing.assert_allclose(q["w_scale"], [2.0 / 127, 0.02 / 127], rtol=1e-6)
    assert q["w"][1, 0] == -127 and q["w"][1, 1] == 127
    (d,) = program.dequantised([q])
    assert np.all(np.abs(d["w"] - w) <= np.abs(w).max(0) / 254 + 1e-9)    # half a step


def test_the_numpy_policy_runs_without_distillq(runs, tmp_path):
    """policy.py needs numpy only: run it in a fresh interpreter without distillq or jax
    on the path, and compare its actions with distillq's."""
    res = export_cmd.run(str(runs / "mlp"), "numpy", str(tmp_path / "np"), states=200)
    obs = export_cmd.sample_states(store.load_run(runs / "mlp"), 200, 0)
    np.save(tmp_path / "obs.npy", obs)
    code = ("import sys, json, numpy as np\nsys.path.insert(0, sys.argv[1])\n"
            "from policy import Policy\npi = Policy(sys.argv[1] + '/policy.npz')\n"
            "obs = np.load(sys.argv[2])\nprint(json.dumps([pi.act(o) for o in obs]))\n"
            "assert 'jax' not in sys.modules and 'distillq' not in sys.modules\n")
    p = subprocess.run([sys.executable, "-I", "-c", code, str(tmp_path / "np"),
                        str(tmp_path / "obs.npy")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    run = store.load_run(runs / "mlp")
    one = jax.tree.map(lambda x: x[0], run.params)
    want = np.argmax(export_cmd.reference_q(run.meta["network"], one, obs), -1)
    assert json.loads(p.stdout) == want.tolist()
    assert res["files"][1].endswith("policy.py")


def test_export_cli_bench_and_refusals(runs, tmp_path):
    out = tmp_path / "b"
    p = subprocess.run(EXE + ["export", str(runs / "lin"), "--format", "onnx", "--out",
                              str(out), "--bench", "--states", "500"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert set(res["latency_us"]) == {"jax", "numpy", "onnxruntime"}
    assert all(v > 0 for v in res["latency_us"].values())
    bad = subprocess.run(EXE + ["export", str(runs / "lin"), "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "already exists" in bad.stderr
    inside = subprocess.run(EXE + ["export", str(runs / "lin"), "--out",
                                   str(runs / "lin" / "x")], capture_output=True, text=True)
    assert inside.returncode == 2 and "inside the run dir" in inside.stderr
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    forced = subprocess.run(EXE + ["export", str(runs / "lin"), "--out", str(other),
                                   "--force"], capture_output=True, text=True)
    assert forced.returncode == 2 and "not a distillq export" in forced.stderr
    assert (other / "notes.txt").read_text() == "keep"


def test_render_side_by_side_gif(runs, tmp_path):
    from PIL import Image

    out = tmp_path / "r.gif"
    p = subprocess.run(EXE + ["render", str(runs / "cnns"), "--out", str(out),
                              "--max-frames", "10"], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert res["student_steps"] > 0 and res["teacher_steps"] > 0
    im = Image.open(out)
    assert 2 <= im.n_frames <= 11 and im.width > im.height
    assert json.loads(out.with_suffix(".json").read_text())["run_dir"] == str(runs / "cnns")
    rep = subprocess.run(EXE + ["report", str(runs / "cnns"), "--out", str(tmp_path / "rep"),
                                "--gifs", str(tmp_path)], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr[-2000:]
    assert "](../r.gif)" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize("net,shape", [("16,8+ln", (4,)), ("cnn:3,8+ln", (10, 10, 4))])
@pytest.mark.parametrize("fmt", ["numpy", "c", "onnx"])
def test_layer_norm_networks_export_exactly(net, shape, fmt, tmp_path):
    """LayerNorm (PQN's `+ln` networks) in every format, with its scale and bias far from
    their initial 1 and 0 so that dropping or misplacing any part of it shows."""
    import jax

    from distillq.core import networks

    if fmt == "c" and c_format.c_compiler() is None:
        pytest.skip("no C compiler (cc, gcc or clang) on this machine")
    spec = networks.spec(net, "relu", shape, 2)
    params = networks.init(networks.build(spec), jax.random.PRNGKey(0), (1, *shape))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: np.asarray(x) + rng.normal(0, 0.5, x.shape)
                          .astype(np.float32), params)
    assert any("norm" in k for k in params["params"])
    layers = program.lower(spec, params)
    obs = (rng.integers(0, 2, (500, *shape)) if len(shape) == 3     # frames are 0/1
           else rng.normal(0, 1, (500, *shape))).astype(np.float32)
    ref = export_cmd.reference_q(spec, params, obs)
    np.testing.assert_allclose(program.numpy_forward(layers, obs), ref, rtol=1e-4, atol=1e-4)
    form = export_cmd.FORMATS[fmt]
    files = form.write(layers, spec, tmp_path)
    par = export_cmd.parity(ref, form.q_values(tmp_path, files, obs))
    assert par["ok"] and par["action_mismatches"] == 0, par
    back = program.to_params(layers, spec)          # what int8 parity evaluates
    np.testing.assert_allclose(export_cmd.reference_q(spec, back, obs), ref, rtol=1e-5)


def test_a_failed_parity_check_exits_1_and_writes_nothing(runs, tmp_path, monkeypatch):
    """An artefact that disagrees with distillq's forward pass is an error, not a warning."""
    from distillq.errors import ParityError

    good = export_cmd.FORMATS["numpy"]
    monkeypatch.setitem(export_cmd.FORMATS, "numpy", good._replace(
        q_values=lambda d, f, obs: -good.q_values(d, f, obs)))
    with pytest.raises(ParityError, match="disagrees") as e:
        export_cmd.run(str(runs / "t"), "numpy", str(tmp_path / "e"), states=200)
    assert e.value.exit_code == 1
    assert not (tmp_path / "e").exists() and not list(tmp_path.glob(".e.tmp-*"))
