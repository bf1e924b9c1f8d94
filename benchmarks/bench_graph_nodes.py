"""Where a batch-1 call's graph time goes: the classifier cut after each of its nodes.

Times, interleaved in one run on one thread, one 1x1x28x28 image through the compiled session:
- the exported classifier cut after node k, for every k (the cut's output is the tensor that
  node writes, so ONNX Runtime optimises each cut as it does the whole graph): the difference
  between two cuts is what the node costs, with the layout reorder its output needs;
- the classifier with its first Gemm written as a 5x5 convolution over the 32x5x5 map (the same
  arithmetic, kept in ONNX Runtime's NCHWc layout, so no reorder before it), to see whether the
  exporter should write it that way.

    .venv/bin/python benchmarks/bench_graph_nodes.py --model exported/classifier.onnx --out benchmarks/graph_nodes
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from benchlib import command_line, interleaved_args, interleaved_p50_us, cpu_session, publish, run_main


def cut_after(model: onnx.ModelProto, k: int) -> onnx.ModelProto:
    """The graph's first k nodes, with the k-th node's output as the graph's output."""
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[k:]
    info = {v.name: v for v in list(cut.graph.value_info) + list(cut.graph.output)}
    output = info[model.graph.node[k - 1].output[0]]
    del cut.graph.output[:]
    cut.graph.output.append(output)
    return cut


def gemm_as_conv(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Flatten -> Gemm(800 -> n) -> Relu rewritten as Conv(5x5, 32 -> n) -> Relu -> Flatten;
    None for a graph without that pattern (a classifier that is not the report's)."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    graph = changed.graph
    flatten = next((n for n in graph.node if n.op_type == "Flatten"), None)
    gemm = flatten and next((n for n in graph.node if n.op_type == "Gemm" and n.input[0] == flatten.output[0]), None)
    relu = gemm and next((n for n in graph.node if n.op_type == "Relu" and n.input[0] == gemm.output[0]), None)
    weights = {i.name: i for i in graph.initializer}
    if relu is None or gemm.input[1] not in weights:
        return None
    weight = numpy_helper.to_array(weights[gemm.input[1]])
    if weight.shape[1:] != (800,):
        return None
    graph.initializer.append(numpy_helper.from_array(weight.reshape(weight.shape[0], 32, 5, 5), "fc_as_conv.weight"))
    conv = helper.make_node("Conv", [flatten.input[0], "fc_as_conv.weight", gemm.input[2]], ["fc_as_conv.out"],
                            kernel_shape=[5, 5])
    relu_output = relu.output[0]
    relu.input[0], relu.output[0] = "fc_as_conv.out", "fc_as_conv.relu"
    new_flatten = helper.make_node("Flatten", ["fc_as_conv.relu"], [relu_output])
    graph.node.remove(flatten)
    graph.node.remove(gemm)
    position = list(graph.node).index(relu)
    graph.node.insert(position, conv)
    graph.node.insert(position + 2, new_flatten)
    del graph.value_info[:]
    onnx.checker.check_model(changed)
    return changed


def main() -> None:
    args = interleaved_args(__doc__.splitlines()[0], rounds=9)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(args.model)))
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    feed = {model.graph.input[0].name: x}

    def runner(proto: onnx.ModelProto):
        """The compiled session's run on `feed`, to the graph's one output."""
        run, outputs = cpu_session(proto.SerializeToString())._sess.run, [proto.graph.output[0].name]
        return lambda v: run(outputs, feed, None)[0]

    variants = {f"cut after node {k}, {node.op_type}": runner(cut_after(model, k))
                for k, node in enumerate(model.graph.node, start=1)}
    whole = list(variants.values())[-1]
    as_conv = gemm_as_conv(model)
    if as_conv is None:
        note = "This classifier has no Flatten -> Gemm(800 -> n) -> Relu to write as a convolution."
        difference = None
    else:
        variants["the whole classifier, first Gemm as a 5x5 Conv"] = runner(as_conv)
        difference = float(np.abs(variants["the whole classifier, first Gemm as a 5x5 Conv"](x) - whole(x)).max())
        note = f"The first Gemm as a convolution differs from the classifier by at most {difference:.1e} in the logits."
    p50 = interleaved_p50_us(variants, x, args.rounds, args.seconds)
    lines = [f"# Batch-1 graph time, node by node ({args.model}, 1 thread)", "",
             f"Produced by `{command_line()}`: median over {args.rounds} interleaved rounds of each "
             f"variant's p50, through the compiled session. {note}", "",
             "| variant | p50 us | added by this node |", "|---|---|---|"]
    previous = None
    for name, value in p50.items():
        added = "" if previous is None or not name.startswith("cut") else f"{value - previous:+.2f}"
        lines.append(f"| {name} | {value:.2f} | {added} |")
        previous = value
    publish(args.out, {"command": command_line(), "p50_us": p50, "rounds": args.rounds,
                       "gemm_as_conv_max_abs_difference": difference}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
