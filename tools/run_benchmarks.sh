#!/usr/bin/env bash
# Re-run every benchmark of the shipped models (exported/), one after the other, into benchmarks/.
# Usage: bash tools/run_benchmarks.sh [--quick]
# Run it on an otherwise idle machine: every figure is a ratio within one run, but two benchmarks
# (or a test run) sharing the two cores spoil both. About 12 minutes; --quick (under 2 minutes)
# writes into /tmp/fmnist-edge-benchmarks instead, to check that every command still works.
# The training benchmarks (bench_train_epoch, bench_jobs, bench_dead_units) and the reproduction
# are not here: they train, for 10 minutes to hours; their commands are in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CLI=.venv/bin/fmnist-edge
case "${1-}" in
    "" | --quick) ;;
    *) echo "usage: bash tools/run_benchmarks.sh [--quick]" >&2; exit 2 ;;
esac
out=benchmarks
seconds=1 reps=21 rounds=15 quick=()
if [ "${1-}" = "--quick" ]; then
    out=/tmp/fmnist-edge-benchmarks seconds=0.05 reps=3 rounds=2 quick=(--count 300)
    mkdir -p "$out/runtime"
fi
step() { echo "== $*" >&2; "$@"; }

step "$CLI" bench --seconds "$seconds" --json "$out/runtime/bench.json" --markdown "$out/runtime/bench.md"
step "$CLI" bench --batch-sizes 1024 --threads 1,2 --chunk 64 --seconds "$seconds" \
    --json "$out/runtime/bench-chunked.json" --markdown "$out/runtime/bench-chunked.md"
step "$PY" benchmarks/bench_call_overhead.py --model exported/classifier.onnx --rounds "$rounds" --out "$out/call_overhead"
step "$PY" benchmarks/bench_graph_nodes.py --model exported/classifier.onnx --rounds "$rounds" --out "$out/graph_nodes"
step "$PY" benchmarks/bench_startup.py --reps "$reps" --out "$out/runtime"
crop=() quant=() pool=() spread=() ortf=()
[ ${#quick[@]} -gt 0 ] && crop=(--rounds 2 --seconds 0.05) quant=(--rounds 50 --repeats 1) pool=(--images 200 --passes 2) \
    spread=(--runs 2 --pause 0 --seconds 0.05) ortf=(--rounds 1 --seconds 0.05 --loads 2)
step "$PY" benchmarks/bench_ratio_spread.py --model exported/classifier.onnx "${spread[@]}" --out "$out/ratio_spread"
step "$PY" benchmarks/bench_input_crop.py --model exported/classifier.onnx "${crop[@]}" --out "$out/input_crop"
step "$PY" benchmarks/bench_first_pool.py --model exported/classifier.onnx "${crop[@]}" --out "$out/first_pool"
step "$PY" benchmarks/bench_input_crop.py --model exported/classifier.onnx --threads 2 "${crop[@]}" \
    --out "$out/input_crop/2-threads"
step "$PY" benchmarks/bench_quantization.py --model exported/classifier.onnx "${quant[@]}" --out "$out/quantization"
step "$PY" benchmarks/bench_ort_format.py --models exported "${ortf[@]}" --out "$out/ort_format"
step "$PY" benchmarks/bench_photo_like.py --models exported "${quick[@]}" --out "$out/photo_like"
step "$PY" benchmarks/bench_dropout_pooling.py --models exported "${pool[@]}" --out "$out/dropout_pooling"
echo "benchmarks written under $out/" >&2
