"""A large batch on several cores: split each call across them, or give each core its own chunks?

ONNX Runtime's intra-op threads split every node of one call across the cores. The classifier's
nodes are small (a 64-image chunk's convolution is a few hundred microseconds), so each node ends
in a wait for the slowest thread. The other way is data parallelism: chunks of the batch run side
by side, one call per core, each call on one thread, with no wait inside a call. This times, in
one run and taking turns, on the test images:

- `one thread`: a one-thread session, the chunks one after another (the scaling's reference);
- `intra-op`: a session on T threads, the chunks one after another;
- `side by side, intra-op sessions`: the same session, its chunks run by T Python threads at once;
- `side by side, one-thread session`: a one-thread session, its chunks run by T Python threads,
  a task (a future) per chunk;
- `a session per worker`: T one-thread sessions, one per Python thread, each thread taking the
  next chunk when it finishes one: a task per thread, not per chunk;
- `OnnxModel.run`: the runtime's own path on T threads (what `FashionClassifier.predict`, the
  CLI and `fmnist-edge bench` call), checks included.

ONNX Runtime releases the GIL while it runs, so the Python threads compute in parallel.

    .venv/bin/python benchmarks/bench_data_parallel.py --model exported/classifier.onnx --out benchmarks/data_parallel
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fmnist_edge.idx import load_split
from fmnist_edge.runtime.session import OnnxModel

from benchlib import command_line, cpu_session, interleaved_args, interleaved_p50_us, publish, run_main


def more_options(parser) -> None:
    parser.add_argument("--batch-sizes", default="128,256,1024,4096")
    parser.add_argument("--chunk", type=int, default=64, help="images per ONNX Runtime call")
    parser.add_argument("--threads", type=int, default=2)


def main() -> None:
    args = interleaved_args(__doc__.splitlines()[0], rounds=7, seconds=0.3, more=more_options)
    one, many = cpu_session(str(args.model)), cpu_session(str(args.model), args.threads)
    name, chunk = one.get_inputs()[0].name, args.chunk
    pool = ThreadPoolExecutor(args.threads)

    def in_sequence(s):
        return lambda x: np.concatenate([s.run(None, {name: x[i:i + chunk]})[0] for i in range(0, len(x), chunk)])

    def side_by_side(s):
        return lambda x: np.concatenate(list(pool.map(lambda i: s.run(None, {name: x[i:i + chunk]})[0],
                                                      range(0, len(x), chunk))))

    def per_worker(sessions):
        def run(x):
            starts, taken = range(0, len(x), chunk), itertools.count()
            out = [None] * len(starts)

            def work(s):
                for j in taken:
                    if j >= len(starts):
                        return
                    out[j] = s.run(None, {name: x[starts[j]:starts[j] + chunk]})[0]

            for done in [pool.submit(work, s) for s in sessions]:
                done.result()
            return np.concatenate(out)
        return run

    variants = {"one thread": in_sequence(one), "intra-op": in_sequence(many),
                "side by side, intra-op session": side_by_side(many),
                "side by side, one-thread session": side_by_side(one),
                "a session per worker": per_worker([cpu_session(str(args.model)) for _ in range(args.threads)]),
                "OnnxModel.run": (lambda m: lambda x: m.run(x, chunk))(OnnxModel(args.model, "classifier", args.threads))}
    test = load_split("test").images.astype(np.float32)[:, None] / 255.0
    reference = variants["one thread"](test)
    max_diff = max(float(np.abs(run(test) - reference).max()) for run in variants.values())
    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        x = np.ascontiguousarray(np.resize(test, (batch, *test.shape[1:])))
        p50 = interleaved_p50_us(variants, x, args.rounds, args.seconds)
        rows.append({"batch": batch, "p50_us": p50,
                     "images_per_s": {v: batch / (us / 1e6) for v, us in p50.items()},
                     "scaling_vs_one_thread": {v: p50["one thread"] / us for v, us in p50.items()}})
    command = command_line()
    result = {"model": str(args.model), "threads": args.threads, "chunk": chunk, "rows": rows,
              "max_abs_diff_vs_one_thread_on_10000_test_images": max_diff, "command": command}
    head = list(variants)
    lines = [f"# A large batch on {args.threads} threads ({args.model}, chunks of {chunk})", "",
             f"Produced by `{command}`: median over {args.rounds} interleaved rounds of each variant's p50. "
             "Each cell: images per second, and in brackets the speed-up over one thread.", "",
             f"Largest difference from the one-thread logits on the 10,000 test images: {max_diff:.2g}.", "",
             "| batch | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['images_per_s'][v]:,.0f} ({r['scaling_vs_one_thread'][v]:.2f}x)" for v in head]
        lines.append(f"| {r['batch']} | " + " | ".join(cells) + " |")
    publish(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    run_main(main)
