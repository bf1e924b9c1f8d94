"""The exported classifier with and without its input crop: same outputs, how much faster.

The export slices the image to the 26 x 26 pixels the encoder can see (floor-mode pooling never
reads row and column 27). This removes that Slice from an exported classifier, checks that both
graphs give bit-identical logits on the test images, and times them interleaved in one run.

    .venv/bin/python benchmarks/bench_input_crop.py --model exported/classifier.onnx --out benchmarks/input_crop
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx

from fmnist_edge.idx import load_split
from fmnist_edge.runtime.bench import summarise, time_calls
from fmnist_edge.runtime.session import OnnxModel

from benchlib import checked_classifier, command_line, publish, run_main


def without_crop(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph reading the whole 28 x 28 image: the Slice on the input removed."""
    graph = model.graph
    crop = next(n for n in graph.node if n.op_type == "Slice" and n.input[0] == graph.input[0].name)
    for node in graph.node:
        node.input[:] = [graph.input[0].name if name == crop.output[0] else name for name in node.input]
    graph.node.remove(crop)
    del graph.value_info[:]
    del model.metadata_props[:]
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("exported/classifier.onnx"))
    parser.add_argument("--batch-sizes", default="1,64,1024")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per batch size")
    parser.add_argument("--seconds", type=float, default=0.4, help="per model, per round")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    checked_classifier(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        plain_path = Path(tmp) / "classifier.onnx"
        onnx.save(without_crop(onnx.load(str(args.model))), str(plain_path))
        cropped = OnnxModel(args.model, "classifier", threads=args.threads)
        plain = OnnxModel(plain_path, "classifier", threads=args.threads)
        test = load_split("test").images.astype(np.float32)[:, None] / 255.0
        max_diff = float(np.abs(cropped.run(test, 1000) - plain.run(test, 1000)).max())
        rows = []
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            x = np.ascontiguousarray(test[:batch])
            times = {"cropped": [], "plain": []}
            for _ in range(args.rounds):  # interleaved: both see the same machine load
                for name, model in (("cropped", cropped), ("plain", plain)):
                    run = (lambda s, f, o: (lambda v: s.run(o, {f: v})))(model.session, model.input_name,
                                                                          [model.output_name])
                    times[name].append(time_calls(run, x, args.seconds))
            stats = {name: summarise(np.concatenate(t), batch) for name, t in times.items()}
            rows.append({"batch": batch, "threads": args.threads, "cropped_p50_us": stats["cropped"]["p50_us"],
                         "plain_p50_us": stats["plain"]["p50_us"],
                         "speedup": stats["plain"]["p50_us"] / stats["cropped"]["p50_us"]})
    command = command_line()
    result = {"model": str(args.model), "max_abs_diff_on_10000_test_images": max_diff, "rows": rows,
              "command": command}
    lines = [f"# Input crop ({args.model}, {args.threads} thread(s))", "", f"Produced by `{command}`.", "",
             f"Largest difference between the logits of the two graphs on the 10,000 test images: {max_diff}.", "",
             "| batch | without crop, p50 us | with crop, p50 us | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['plain_p50_us']:.1f} | {r['cropped_p50_us']:.1f} | {r['speedup']:.2f}x |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    publish(args.out, result, text)


if __name__ == "__main__":
    run_main(main)
