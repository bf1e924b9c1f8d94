"""Where a batch-1 call's time goes: ONNX Runtime's fixed cost, Python's checks, the graph.

Times, interleaved in one run on one thread, one 1x1x28x28 image:
- an Identity graph through InferenceSession.run and through the compiled session it wraps
  (the fixed cost of a call, and the share of it that is Python-side input checking);
- the exported classifier through InferenceSession.run, the compiled session, and OnnxModel.run
  (what the runtime's API calls: one image goes through buffers bound to the session once per
  thread, so the feed and the output are not built per call), and OnnxModel.run's checks
  followed by the compiled session's feed path (how the API ran one image before);
- the same classifier with the exporter's two per-axis Slice nodes instead of the one crop;
- the Python API's own layers on one 28x28 uint8 picture, as a program holding a camera frame
  or a test image calls them: FashionClassifier.logits (the array checked and scaled),
  .probabilities (and the softmax) and .predict (and the Prediction with its top 3);
- batches of 64 and 1,024 test pictures (uint8; skipped where the test set is not found):
  OnnxModel.run on them scaled beforehand, .predict on the stack, and .predict after scaling
  each picture alone (close to how .predict scaled a stack before 2026-12-08: it adds the
  stack's one-pass check of the floats so made).

    .venv/bin/python benchmarks/bench_call_overhead.py --model exported/classifier.onnx --out benchmarks/call_overhead
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fmnist_edge.runtime import FashionClassifier
from fmnist_edge.runtime.session import OnnxModel

from benchlib import command_line, interleaved_args, interleaved_p50_us, cpu_session, publish, run_main


def identity_model(path: Path) -> None:
    shape = ["batch", 1, 28, 28]
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["logits"])], "identity",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def two_slice_crop(model: onnx.ModelProto) -> onnx.ModelProto:
    """The classifier with its one crop split back into a Slice per axis, as the exporter writes it."""
    graph = model.graph
    crop = next(n for n in graph.node if n.op_type == "Slice" and n.input[0] == graph.input[0].name)
    ends = numpy_helper.to_array(next(i for i in graph.initializer if i.name == crop.input[2]))
    for name, values in (("rows", [2]), ("cols", [3]), ("zero", [0]), ("end", [int(ends[0])])):
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), f"split.{name}"))
    first = helper.make_node("Slice", [crop.input[0], "split.zero", "split.end", "split.rows"], ["split.mid"])
    second = helper.make_node("Slice", ["split.mid", "split.zero", "split.end", "split.cols"], [crop.output[0]])
    position = list(graph.node).index(crop)
    graph.node.remove(crop)
    graph.node.insert(position, second)
    graph.node.insert(position, first)
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    return model


def main() -> None:
    args = interleaved_args(__doc__.splitlines()[0], rounds=15, more=lambda parser: parser.add_argument(
        "--data-dir", type=Path, default=None, help="Fashion-MNIST's IDX files (default: the usual places)"))
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        identity_path, split_path = Path(tmp) / "identity.onnx", Path(tmp) / "classifier.onnx"
        identity_model(identity_path)
        onnx.save(two_slice_crop(onnx.load(str(args.model))), str(split_path))

        identity, split = cpu_session(str(identity_path)), cpu_session(str(split_path))
        model = OnnxModel(args.model, "classifier", threads=1)
        assert np.array_equal(split.run(None, {"image": x})[0], model.run(x))  # the same function
        feed, out = {"image": x}, ["logits"]

        def feed_path(v):  # OnnxModel.run as it was before the single-image buffers
            v = np.ascontiguousarray(v, dtype=np.float32)
            if v.shape[1:] != model.input_shape:
                raise AssertionError(v.shape)
            return model._run(out, {model.input_name: v}, None)[0]

        assert np.array_equal(feed_path(x), model.run(x))
        api = FashionClassifier(model)
        picture = (x[0, 0] * 255).astype(np.uint8)  # what a program holds: 8-bit pixels
        variants = {
            "identity graph, InferenceSession.run": lambda v: identity.run(out, feed),
            "identity graph, compiled session": lambda v: identity._sess.run(out, feed, None),
            "classifier, InferenceSession.run": lambda v: model.session.run(out, feed),
            "classifier, compiled session": lambda v: model.session._sess.run(out, feed, None),
            "classifier, OnnxModel.run (the API, pre-bound buffers)": model.run,
            "classifier, OnnxModel.run's checks, then the feed": lambda v: feed_path(v),
            "classifier with two crop Slices, compiled session": lambda v: split._sess.run(out, feed, None),
            "API: FashionClassifier.logits(uint8 28x28)": lambda v: api.logits(picture),
            "API: FashionClassifier.probabilities(uint8 28x28)": lambda v: api.probabilities(picture),
            "API: FashionClassifier.predict(uint8 28x28)": lambda v: api.predict(picture),
        }
        from fmnist_edge.errors import DataError
        from fmnist_edge.idx import load_split
        from fmnist_edge.runtime.preprocess import from_array

        try:
            test_images = load_split("test", args.data_dir).images
        except DataError as exc:  # the batch-1 rows need no data
            print(f"batch rows skipped: {exc}")
            test_images = None
        for size in (64, 1024) if test_images is not None else ():
            stack = test_images[:size]
            scaled = (stack / np.float32(255))[:, None].astype(np.float32)
            variants |= {
                f"batch {size}: OnnxModel.run (scaled beforehand)": lambda v, b=scaled: model.run(b, 64),
                f"batch {size}: FashionClassifier.predict(uint8 stack)": lambda v, b=stack: api.predict(b),
                f"batch {size}: each picture scaled alone, then .predict": (
                    lambda v, b=stack: api.predict(np.stack([from_array(a)[0] for a in b]))),
            }
        p50 = interleaved_p50_us(variants, x, args.rounds, args.seconds)
    lines = [f"# Call overhead: batch 1, and batches through the API ({args.model}, 1 thread)", "",
             f"Produced by `{command_line()}`: median over {args.rounds} interleaved rounds of each "
             "variant's p50.", "", "| variant | p50 us |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in p50.items()]
    publish(args.out, {"command": command_line(), "p50_us": p50, "rounds": args.rounds}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
