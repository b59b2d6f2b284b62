"""The ONNX artefact: policy.onnx built with onnx's own helpers (no converter, no jax
tracing), run by onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from distillq.commands.export.program import LN_EPS, dequantised
from distillq.errors import ConfigError


def write_onnx(layers: list[dict], spec: dict, out: Path, inputs: str | None = None
               ) -> list[Path]:
    """policy.onnx (opset 17): input "obs" [N, *obs_shape] float32, outputs "q" [N, A] and
    "action" [N] int64. Built with onnx's own helpers: these graphs are a handful of
    standard ops (Sub, Mul, Transpose, Conv, Reshape, MatMul, Add, Relu/Tanh/Sigmoid, ArgMax),
    so no converter is needed (and none has to trace jax)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install "
                          "'distillq[export]'") from None
    out.mkdir(parents=True, exist_ok=True)
    layers = dequantised(layers)
    shape = list(spec["obs_shape"])
    nodes, inits = [], []
    cur = "obs"

    def const(name: str, a: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def act(i: int, name: str | None, x: str) -> str:
        if name is None:
            return x
        y = f"a{i}"
        if name == "relu":
            nodes.append(helper.make_node("Relu", [x], [y]))
        elif name == "tanh":
            nodes.append(helper.make_node("Tanh", [x], [y]))
        else:
            nodes.append(helper.make_node("Sigmoid", [x], [f"sg{i}"]))
            nodes.append(helper.make_node("Mul", [x, f"sg{i}"], [y]))
        return y

    def ln(i: int, layer: dict, x: str) -> str:
        """The layer's LayerNorm over the last axis (opset 17), if it has one."""
        if "ln_scale" not in layer:
            return x
        nodes.append(helper.make_node(
            "LayerNormalization", [x, const(f"g{i}", layer["ln_scale"]),
                                   const(f"beta{i}", layer["ln_bias"])], [f"ln{i}"],
            axis=-1, epsilon=LN_EPS))
        return f"ln{i}"

    for i, layer in enumerate(layers):
        op = layer["op"]
        if op == "scale":
            s = layer["shift"].reshape(shape)
            c = layer["scale"].reshape(shape)
            nodes.append(helper.make_node("Sub", [cur, const(f"shift{i}", s)], [f"sub{i}"]))
            nodes.append(helper.make_node("Mul", [f"sub{i}", const(f"scale{i}", c)],
                                          [f"norm{i}"]))
            cur = f"norm{i}"
        elif op == "conv":
            k = layer["kernel"]                                    # [kh, kw, C, F]
            nodes.append(helper.make_node("Transpose", [cur], [f"nchw{i}"], perm=[0, 3, 1, 2]))
            nodes.append(helper.make_node(
                "Conv", [f"nchw{i}", const(f"k{i}", k.transpose(3, 2, 0, 1)),
                         const(f"cb{i}", layer["bias"])], [f"conv{i}"],
                kernel_shape=[k.shape[0], k.shape[1]], pads=[0, 0, 0, 0],
                strides=[layer.get("stride", 1)] * 2))
            nodes.append(helper.make_node("Transpose", [f"conv{i}"], [f"nhwc{i}"],
                                          perm=[0, 2, 3, 1]))
            cur = act(i, layer["act"], ln(i, layer, f"nhwc{i}"))
        elif op == "flatten":
            nodes.append(helper.make_node(
                "Reshape", [cur, const(f"flat{i}", np.array([-1, layer["size"]], np.int64))],
                [f"flat_out{i}"]))
            cur = f"flat_out{i}"
        else:
            nodes.append(helper.make_node("MatMul", [cur, const(f"w{i}", layer["w"])],
                                          [f"mm{i}"]))
            nodes.append(helper.make_node("Add", [f"mm{i}", const(f"b{i}", layer["b"])],
                                          [f"lin{i}"]))
            cur = act(i, layer["act"], ln(i, layer, f"lin{i}"))
    nodes.append(helper.make_node("Identity", [cur], ["q"]))
    nodes.append(helper.make_node("ArgMax", ["q"], ["action"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes, "distillq_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("q", TensorProto.FLOAT, ["N", spec["num_actions"]]),
         helper.make_tensor_value_info("action", TensorProto.INT64, ["N"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="distillq")
    model.ir_version = 8
    inputs = inputs or f"one observation of shape {tuple(spec['obs_shape'])}, float32"
    model.doc_string = f"distillq policy. Input obs: {inputs}."
    model.graph.input[0].doc_string = inputs
    helper.set_model_props(model, {"input": inputs, "network": json.dumps(spec)})
    onnx.checker.check_model(model)
    path = out / "policy.onnx"
    onnx.save(model, str(path))
    return [path]


def run_onnx(path: Path, obs: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running ONNX needs onnxruntime: pip install "
                          "'distillq[export]'") from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["q"], {"obs": np.asarray(obs, np.float32)})[0]
