"""The first convolution, its ReLU and max-pool, computed at the pooled resolution instead.

ONNX Runtime's profile of the classifier at batch 1,024 on one thread puts about a quarter of
the kernel time in the first Conv and a sixth in the MaxPool after it, for a seventh of the
arithmetic (the profile is part of this benchmark's output): the 16x24x24 map is written whole and read back by the pool. Since
MaxPool(ReLU(conv(x))) = ReLU(max over the four pooling phases of a stride-2 conv), the
exporter could write that instead, with the same result to the bit. Two such graphs, timed
interleaved with the exported classifier on one thread, at batch 1, 64 (the API's chunk) and
1,024:
- four stride-2 convolutions on the input shifted by one row or column, then Max and Relu;
- one 4x4 stride-2 convolution with 64 output channels (each phase's 3x3 kernel placed in it),
  then Reshape, ReduceMax over the phases and Relu.

    .venv/bin/python benchmarks/bench_first_pool.py --model exported/classifier.onnx --out benchmarks/first_pool
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from benchlib import command_line, cpu_session, interleaved_args, interleaved_p50_us, publish, run_main

BATCHES = (1, 64, 1024)


def _parts(model: onnx.ModelProto):
    """The first Conv's weight and bias, the MaxPool's output name, and the nodes after it; None
    when the graph does not open with Slice -> Conv(3x3) -> Relu -> MaxPool (not the report's)."""
    nodes = list(model.graph.node)
    if [n.op_type for n in nodes[:4]] != ["Slice", "Conv", "Relu", "MaxPool"]:
        return None
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weight, bias = weights[nodes[1].input[1]], weights[nodes[1].input[2]]
    if weight.shape[1:] != (1, 3, 3):
        return None
    return weight, bias, nodes[3].output[0], nodes[4:]


def _graph(model: onnx.ModelProto, front: list, initializers: list, rest: list) -> onnx.ModelProto:
    kept = {name for node in rest for name in node.input}
    graph = helper.make_graph(front + rest, "first_pool", list(model.graph.input), list(model.graph.output),
                              [i for i in model.graph.initializer if i.name in kept] + initializers)
    changed = helper.make_model(graph, opset_imports=model.opset_import)
    changed.ir_version = model.ir_version
    onnx.checker.check_model(changed)
    return changed


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def four_phases(model: onnx.ModelProto, parts) -> onnx.ModelProto:
    """Four stride-2 convolutions on the input shifted by (a, b) in {0, 1}^2, Max, Relu."""
    weight, bias, pooled, rest = parts
    image = model.graph.input[0].name
    inits = [numpy_helper.from_array(weight, "phase.w"), numpy_helper.from_array(bias, "phase.b"),
             _ints("phase.axes", [2, 3])]
    front, phases = [], []
    for a in (0, 1):
        for b in (0, 1):
            tag = f"phase{a}{b}"
            inits += [_ints(f"{tag}.starts", [a, b]), _ints(f"{tag}.ends", [a + 25, b + 25])]
            front += [helper.make_node("Slice", [image, f"{tag}.starts", f"{tag}.ends", "phase.axes"], [tag]),
                      helper.make_node("Conv", [tag, "phase.w", "phase.b"], [f"{tag}.conv"],
                                       kernel_shape=[3, 3], strides=[2, 2])]
            phases.append(f"{tag}.conv")
    front += [helper.make_node("Max", phases, ["phase.max"]), helper.make_node("Relu", ["phase.max"], [pooled])]
    return _graph(model, front, inits, rest)


def one_wide_conv(model: onnx.ModelProto, parts) -> onnx.ModelProto:
    """One 4x4 stride-2 convolution with a 3x3 kernel per phase (64 channels), ReduceMax, Relu."""
    weight, bias, pooled, rest = parts
    channels = weight.shape[0]
    wide = np.zeros((4 * channels, 1, 4, 4), np.float32)
    for a in (0, 1):
        for b in (0, 1):
            phase = 2 * a + b
            wide[phase * channels:(phase + 1) * channels, :, a:a + 3, b:b + 3] = weight
    image = model.graph.input[0].name
    inits = [numpy_helper.from_array(wide, "wide.w"), numpy_helper.from_array(np.tile(bias, 4), "wide.b"),
             _ints("wide.starts", [0, 0]), _ints("wide.ends", [26, 26]), _ints("wide.axes", [2, 3]),
             _ints("wide.shape", [0, 4, channels, 12, 12])]
    front = [helper.make_node("Slice", [image, "wide.starts", "wide.ends", "wide.axes"], ["wide.crop"]),
             helper.make_node("Conv", ["wide.crop", "wide.w", "wide.b"], ["wide.conv"], kernel_shape=[4, 4], strides=[2, 2]),
             helper.make_node("Reshape", ["wide.conv", "wide.shape"], ["wide.phases"]),
             helper.make_node("ReduceMax", ["wide.phases"], ["wide.max"], axes=[1], keepdims=0),
             helper.make_node("Relu", ["wide.max"], [pooled])]
    return _graph(model, front, inits, rest)


def kernel_shares(model: onnx.ModelProto, x: np.ndarray, calls: int = 10) -> dict:
    """Each node's share of the kernel time in ONNX Runtime's own profile of `calls` runs on `x`
    (one thread, after one warm-up run), by the node names ONNX Runtime gives them."""
    import onnxruntime as ort

    from fmnist_edge.runtime.session import session_options

    with tempfile.TemporaryDirectory() as folder:
        options = session_options(1)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {model.graph.input[0].name: x}
        session.run(None, feed)
        for _ in range(calls):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            totals[f'{event["args"]["op_name"]} {event["name"].removesuffix("_kernel_time")}'] += event["dur"]
    whole = sum(totals.values())
    return {name: value / whole for name, value in sorted(totals.items(), key=lambda kv: -kv[1])}


def main() -> None:
    args = interleaved_args(__doc__.splitlines()[0], rounds=9)
    model = onnx.load(str(args.model))
    parts = _parts(model)
    if parts is None:
        raise SystemExit("bench_first_pool.py: error: the classifier does not open with the report's "
                         "Slice -> Conv(1 -> C, 3x3) -> Relu -> MaxPool")
    graphs = {"exported": model, "four stride-2 phase convs, Max": four_phases(model, parts),
              "one 4x4 stride-2 conv, 64 channels, ReduceMax": one_wide_conv(model, parts)}
    runners = {}
    for name, proto in graphs.items():
        session = cpu_session(proto.SerializeToString())
        runners[name] = (lambda s, feed: lambda v: s.run(None, {feed: v})[0])(session, model.graph.input[0].name)
    x = np.random.default_rng(0).random((max(BATCHES), 1, 28, 28), dtype=np.float32)
    reference = runners["exported"](x)
    difference = {name: float(np.abs(run(x) - reference).max()) for name, run in runners.items()}
    shares = kernel_shares(model, x)
    p50 = {batch: interleaved_p50_us(runners, np.ascontiguousarray(x[:batch]), args.rounds, args.seconds)
           for batch in BATCHES}
    lines = [f"# The first convolution and pool at the pooled resolution ({args.model}, 1 thread)", "",
             f"Produced by `{command_line()}`: median over {args.rounds} interleaved rounds of each "
             "graph's p50, through `InferenceSession.run` (batch 1 pays Python's feed and output here, "
             "which the API's bound buffers avoid). Images per second are batch / p50; the last column "
             "is the largest difference from the exported classifier's logits on the 1,024 images.", "",
             "| graph | " + " | ".join(f"batch {b}: us, images/s" for b in BATCHES) + " | vs exported, batch 1,024 | max abs difference |",
             "|---|" + "---|" * (len(BATCHES) + 2)]
    for name in graphs:
        cells = [f"{p50[b][name]:,.1f}, {b / p50[b][name] * 1e6:,.0f}" for b in BATCHES]
        ratio = p50[max(BATCHES)]["exported"] / p50[max(BATCHES)][name]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}x | {difference[name]:.1e} |")
    lines += ["", f"The exported classifier's kernel time at batch {max(BATCHES):,} by node, from ONNX Runtime's "
              "profile of 10 calls on one thread:", "", "| node | share |", "|---|---|"]
    lines += [f"| {name} | {share:.1%} |" for name, share in shares.items()]
    publish(args.out, {"command": command_line(), "rounds": args.rounds, "batches": list(BATCHES),
                       "p50_us": {str(b): p50[b] for b in BATCHES}, "max_abs_difference": difference,
                       "kernel_shares_exported": shares},
            "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
