"""The export package: checkpoint -> ONNX (spec, metadata, manifest), parity with PyTorch, the
exact input crop, int8 quantization, `validate`, and refusals that leave --out untouched."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from fmnist_edge import manifest  # noqa: E402
from fmnist_edge.errors import ModelError  # noqa: E402
from fmnist_edge.export.baseline import load_classifier, model_from_onnx  # noqa: E402
from fmnist_edge.export.onnx_export import CroppedInput, export_module, used_input_extent  # noqa: E402
from fmnist_edge.export.quantize import METHODS  # noqa: E402
from fmnist_edge.idx import load_split  # noqa: E402
from fmnist_edge.runtime.session import OnnxModel  # noqa: E402
from fmnist_edge.spec import (CLASS_NAMES, CLASSIFIER, DECODER, FP32_MAX_ABS_DIFF, IMAGE_SIZE,  # noqa: E402
                              META_QUANTIZATION, MODELS, OPSET)
from fmnist_edge.train.checkpoint import load_model, load_raw  # noqa: E402
from fmnist_edge.train.models import Decoder, Encoder  # noqa: E402
from conftest import invoke as cli, misused, refused  # noqa: E402

pytestmark = pytest.mark.torch

N = 16
KINDS = ("encoder", "decoder", "classifier")


# -- helpers ---------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) -> its sha256."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def no_staging_left(parent: Path) -> bool:
    return not list(parent.glob(".staging-*"))


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_run(sess: ort.InferenceSession, x) -> np.ndarray:
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def torch_run(module: nn.Module, x) -> np.ndarray:
    x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
    with torch.no_grad():
        return module(x).numpy()


def op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def dims(value_info) -> list:
    """[dim_param or dim_value, ...] of a graph input/output."""
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in value_info.type.tensor_type.shape.dim]


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def rewrite_manifest(folder: Path) -> None:
    """As if the export itself had written the altered files: sizes and sha256 recomputed."""
    entries = {name: {k: v for k, v in e.items() if k not in ("size_bytes", "sha256")}
               for name, e in manifest.read(folder)["files"].items()}
    manifest.write(folder, entries, producer="fmnist-edge")


def fake_test_images(data_dir: Path) -> np.ndarray:
    return (load_split("test", data_dir).images.astype(np.float32) / 255.0)[:, None]


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory, fake_data_dir) -> Path:
    """model.pt of a case-3 Classifier(n=16, p=0.1). Three epochs on the 600 fake images: one
    epoch on 300 predicts a single class for every image, which would make every top-1
    agreement below trivially 100%; this one spreads its answers over the classes."""
    from fmnist_edge.train.config import ModelConfig, TrainConfig
    from fmnist_edge.train.loop import Trainer

    result = Trainer(ModelConfig("classifier", n=N, dropout=0.1, case=3),
                     TrainConfig(max_epochs=3, limit=600, recipe="paper"),
                     tmp_path_factory.mktemp("tiny-clf"), data_dir=fake_data_dir, device="cpu", quiet=True).run()
    return result.model_path


@pytest.fixture(scope="module")
def other_classifier(tiny_classifier, tmp_path_factory) -> Path:
    """tiny_classifier with one weight tensor halved: another model, which exports to other bytes."""
    import torch

    payload = torch.load(tiny_classifier, weights_only=True)
    weight = next(k for k in payload["state_dict"] if k.endswith("weight"))
    payload["state_dict"][weight] = payload["state_dict"][weight] * 0.5
    path = tmp_path_factory.mktemp("other-clf") / "model.pt"
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def full_test_split(tmp_path_factory, make_fake_data) -> Path:
    """`validate` insists on the full 10,000-image test set: a fake one of that size
    (as in test_hostile.py)."""
    return make_fake_data(tmp_path_factory.mktemp("fake-10k"), n_train=100, n_test=10_000)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_autoencoder, tiny_classifier, full_test_split):
    """`fmnist-edge export AE CLF --out DIR`, validated on the (fake) full test split.
    Returns (folder, the CLI result). Tests must not modify the folder: copy it first."""
    out = tmp_path_factory.mktemp("export") / "models"
    result = cli("export", tiny_autoencoder, tiny_classifier, "--out", out, "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def export_dir(exported) -> Path:
    return exported[0]


@pytest.fixture(scope="module")
def torch_modules(tiny_autoencoder, tiny_classifier) -> dict[str, nn.Module]:
    ae, _ = load_model(tiny_autoencoder)
    clf, _ = load_model(tiny_classifier)
    return {"encoder": ae.encoder.eval(), "decoder": ae.decoder.eval(), "classifier": clf.eval()}


@pytest.fixture(scope="module")
def sessions(export_dir) -> dict[str, ort.InferenceSession]:
    return {kind: session(export_dir / MODELS[kind].filename) for kind in KINDS}


@pytest.fixture
def export_copy(export_dir, tmp_path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(export_dir, folder)
    return folder


# -- 1. files, spec, metadata, manifest ------------------------------------------------------

def test_export_writes_the_three_models_and_a_manifest(exported):
    folder, result = exported
    assert sorted(p.name for p in folder.iterdir()) == ["classifier.onnx", "decoder.onnx", "encoder.onnx",
                                                        "manifest.json"]
    for kind in KINDS:
        assert f"{folder / MODELS[kind].filename}: " in result.stdout
    assert f"manifest: {folder / 'manifest.json'}" in result.stdout
    assert no_staging_left(folder.parent)


@pytest.mark.parametrize("kind", KINDS)
def test_each_model_passes_the_full_onnx_check(export_dir, kind):
    model = onnx.load(str(export_dir / MODELS[kind].filename))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == OPSET
    assert model.producer_name == "fmnist-edge"
    assert model.graph.value_info  # strict shape inference ran at export and its shapes were kept


@pytest.mark.parametrize("kind", KINDS)
def test_inputs_and_outputs_follow_the_spec(export_dir, kind):
    spec = MODELS[kind]
    graph = onnx.load(str(export_dir / spec.filename)).graph
    for found, wanted in ((graph.input, spec.inputs), (graph.output, spec.outputs)):
        assert [v.name for v in found] == [t.name for t in wanted]
        for value, tensor in zip(found, wanted):
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            got = dims(value)
            assert len(got) == len(tensor.shape)
            assert isinstance(got[0], str) and got[0], f"{value.name}: batch axis is not symbolic: {got}"
            want_rest = [N if d == "n" else d for d in tensor.shape[1:]]
            assert got[1:] == want_rest, (value.name, got)
    # the names and shapes ONNX Runtime reports, and a batch size the export never saw
    sess = session(export_dir / spec.filename)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert isinstance(inp.shape[0], str) and isinstance(out.shape[0], str)
    x = np.random.default_rng(0).random((5, *inp.shape[1:]), dtype=np.float32)
    assert ort_run(sess, x).shape == (5, *out.shape[1:])


def test_exact_shapes_per_model(export_dir):
    def io(kind):
        graph = onnx.load(str(export_dir / MODELS[kind].filename)).graph
        return dims(graph.input[0])[1:], dims(graph.output[0])[1:]

    assert io("encoder") == ([1, IMAGE_SIZE, IMAGE_SIZE], [N])
    assert io("decoder") == ([N], [1, IMAGE_SIZE, IMAGE_SIZE])
    assert io("classifier") == ([1, IMAGE_SIZE, IMAGE_SIZE], [len(CLASS_NAMES)])


@pytest.mark.parametrize("kind", KINDS)
def test_metadata(export_dir, kind, tiny_autoencoder, tiny_classifier):
    meta = metadata(export_dir / MODELS[kind].filename)
    ckpt = tiny_classifier if kind == "classifier" else tiny_autoencoder
    assert meta["fmnist_edge.kind"] == kind
    names = json.loads(meta["class_names"])
    assert names == list(CLASS_NAMES) and len(names) == 10
    assert meta["n"] == str(N)
    assert meta["checkpoint_sha256"] == sha256(ckpt)
    config = json.loads(meta["model_config"])
    assert config["kind"] == ("classifier" if kind == "classifier" else "autoencoder") and config["n"] == N
    assert "confusion" not in json.loads(meta["metrics"])
    layouts = {"encoder": ("[batch,1,28,28]", f"[batch,{N}]"), "decoder": (f"[batch,{N}]", "[batch,1,28,28]"),
               "classifier": ("[batch,1,28,28]", "[batch,10]")}[kind]
    assert layouts[0] in meta["input_layout"] and layouts[1] in meta["output_layout"]


def test_manifest_lists_every_file_with_size_and_sha256(export_dir, tiny_autoencoder, tiny_classifier):
    data = json.loads((export_dir / "manifest.json").read_text())
    assert data["format"] == manifest.FORMAT_VERSION
    assert set(data["files"]) == {"encoder.onnx", "decoder.onnx", "classifier.onnx"}
    for name, entry in data["files"].items():
        path = export_dir / name
        assert entry["size_bytes"] == path.stat().st_size
        assert entry["sha256"] == sha256(path)
        ckpt = tiny_classifier if name == "classifier.onnx" else tiny_autoencoder
        assert entry["kind"] == name.split(".")[0] and entry["precision"] == "fp32" and entry["n"] == N
        assert entry["checkpoint"] == str(ckpt) and entry["checkpoint_sha256"] == sha256(ckpt)
        assert manifest.verify(path)["sha256"] == entry["sha256"]
        # export validated before installing, and stored its figures
        assert entry["validation"]["max_abs_diff_vs_torch"] < FP32_MAX_ABS_DIFF
        assert entry["validation"]["images"] == 10_000
    clf = data["files"]["classifier.onnx"]["validation"]
    assert clf["top1_agreement_vs_torch"] == 1.0 and 0.0 <= clf["accuracy"] <= 1.0
    assert data["files"]["decoder.onnx"]["validation"]["reconstruction_mse"] > 0


# -- 2. numerical parity with PyTorch --------------------------------------------------------

def random_input(kind: str, batch: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "decoder":
        return (rng.standard_normal((batch, N)) * scale).astype(np.float32)
    return rng.random((batch, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("kind", KINDS)
def test_onnx_matches_pytorch(sessions, torch_modules, kind, batch):
    x = random_input(kind, batch, seed=batch)
    got, want = ort_run(sessions[kind], x), torch_run(torch_modules[kind], x)
    assert got.shape == want.shape and got.shape[0] == batch
    assert np.abs(got - want).max() < FP32_MAX_ABS_DIFF


def test_classifier_matches_pytorch_on_fake_images(sessions, torch_modules, fake_data_dir):
    x = fake_test_images(fake_data_dir)
    got, want = ort_run(sessions["classifier"], x), torch_run(torch_modules["classifier"], x)
    assert np.abs(got - want).max() < FP32_MAX_ABS_DIFF
    assert (got.argmax(1) == want.argmax(1)).all()
    assert len(set(want.argmax(1))) >= 3  # the fixture model answers more than one class


@pytest.mark.parametrize("scale", [10.0, 1000.0])
def test_decoder_matches_pytorch_on_large_latents(sessions, torch_modules, scale):
    x = random_input("decoder", 64, seed=3, scale=scale)
    got, want = ort_run(sessions["decoder"], x), torch_run(torch_modules["decoder"], x)
    assert np.abs(got - want).max() < FP32_MAX_ABS_DIFF


def test_decoder_keeps_the_dilated_strided_conv_transpose(export_dir):
    convs = [n for n in onnx.load(str(export_dir / "decoder.onnx")).graph.node if n.op_type == "ConvTranspose"]
    assert len(convs) == 2
    attrs = {a.name: list(a.ints) for a in convs[0].attribute}
    assert attrs["strides"] == [2, 2] and attrs["dilations"] == [2, 2]


@pytest.mark.parametrize("dilation", [2, 1])
@pytest.mark.parametrize("scale", [1.0, 100.0, 10_000.0])
def test_decoder_before_its_sigmoid_matches_pytorch(tmp_path, scale, dilation):
    """The sigmoid flattens large pre-activations to 0 or 1 and would hide a wrong transposed
    convolution: export the decoder without it (random weights, nothing dead) and compare the
    raw values, relative to their size; the report's dilated layer and --decoder-dilation 1."""
    torch.manual_seed(0)
    body = nn.Sequential(*list(Decoder(N, 0.1, dilation).net)[:-1]).eval()
    path = tmp_path / "decoder.onnx"
    export_module(body, DECODER, N, path, {"fmnist_edge.kind": "decoder"})
    sess = session(path)
    for batch in (1, 7, 64):
        x = random_input("decoder", batch, seed=batch, scale=scale)
        got, want = ort_run(sess, x), torch_run(body, x)
        assert got.shape == (batch, 1, IMAGE_SIZE, IMAGE_SIZE)
        size = max(1.0, float(np.abs(want).max()))
        assert np.abs(got - want).max() / size < 1e-5, (scale, np.abs(got - want).max(), size)  # seen: 3e-7
        assert np.abs(want).max() > 0.1 * scale  # really large values went through


# -- 3. the exact input crop -----------------------------------------------------------------

def test_used_input_extent_of_the_report_encoder():
    assert used_input_extent(Encoder()) == 26
    assert used_input_extent(Encoder(n=N, p=0.1)) == 26


def poke(x: torch.Tensor, row: int | None = None, col: int | None = None, value: float = 50.0) -> torch.Tensor:
    y = x.clone()
    if row is not None:
        y[:, :, row, :] = value
    if col is not None:
        y[:, :, :, col] = value
    return y


def test_the_encoder_never_reads_rows_and_columns_26_and_27():
    torch.manual_seed(1)
    enc = Encoder(n=N, p=0.1).eval()
    x = torch.rand(8, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        ref = enc(x)
        for row, col in ((27, None), (None, 27), (27, 27), (26, 26)):
            assert torch.equal(enc(poke(x, row, col)), ref), (row, col)
        assert not torch.equal(enc(poke(x, row=25)), ref)  # the last row it does read
        assert not torch.equal(enc(poke(x, col=25)), ref)
        # the wrapper is exact: bit-identical outputs from the 26 x 26 crop
        assert torch.equal(CroppedInput(enc, 26)(x), ref)


@pytest.mark.parametrize("layers, extent", [
    ([nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)], 28),  # padded: reads the border
    ([nn.Conv2d(1, 4, 3, padding="same"), nn.ReLU()], 28),
    ([nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)], 28),  # one padded layer is enough
    ([nn.Conv2d(1, 4, 5, stride=2)], 27),  # (28 - 5) % 2 = 1: the last row is skipped
    ([nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(3)], 26),
    ([nn.MaxPool2d(2, stride=3)], 26),
    ([nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)], 28),  # 26 is even: pooling uses every row
])
def test_used_input_extent_is_exactly_what_the_stack_reads(layers, extent):
    torch.manual_seed(2)
    stack = nn.Sequential(*layers, nn.Flatten()).eval()
    assert used_input_extent(stack) == extent
    x = torch.rand(4, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        ref = stack(x)
        for row in range(extent, IMAGE_SIZE):  # never read: changing them changes nothing
            assert torch.equal(stack(poke(x, row=row, col=row)), ref), row
        assert not torch.equal(stack(poke(x, row=extent - 1)), ref)  # read: the crop is not too small
        assert torch.equal(CroppedInput(stack, extent)(x), ref)


def test_exported_image_models_crop_their_input_and_still_match(export_dir, sessions, torch_modules):
    for kind in ("classifier", "encoder"):
        graph = onnx.load(str(export_dir / MODELS[kind].filename)).graph
        slices = [n for n in graph.node if n.op_type == "Slice"]
        assert len(slices) == 1, f"{kind}: {len(slices)} Slice nodes, want one crop over rows and columns"
        assert dims(graph.input[0])[1:] == [1, IMAGE_SIZE, IMAGE_SIZE]  # the input stays 28 x 28
        assert "image" in slices[0].input
        assert not [n for n in graph.node if n.op_type == "Constant"]  # the per-axis slices' leftovers
    x = random_input("classifier", 7, seed=11)
    poked = poke(torch.from_numpy(x), row=27, col=27, value=1000.0).numpy()
    got = ort_run(sessions["classifier"], x)
    assert np.array_equal(ort_run(sessions["classifier"], poked), got)
    assert np.abs(got - torch_run(torch_modules["classifier"], poked)).max() < FP32_MAX_ABS_DIFF
    assert not np.array_equal(ort_run(sessions["classifier"], poke(torch.from_numpy(x), row=25).numpy()), got)
    assert not np.array_equal(ort_run(sessions["classifier"], poke(torch.from_numpy(x), col=25).numpy()), got)


def test_a_padded_image_model_is_exported_without_a_crop(tmp_path):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * IMAGE_SIZE * IMAGE_SIZE, 10)).eval()
    path = tmp_path / "classifier.onnx"
    export_module(model, CLASSIFIER, N, path, {"fmnist_edge.kind": "classifier"})
    assert "Slice" not in op_types(path)
    x = random_input("classifier", 7, seed=4)
    assert np.abs(ort_run(session(path), x) - torch_run(model, x)).max() < FP32_MAX_ABS_DIFF


def test_exported_weights_keep_the_checkpoint_names(export_dir, tiny_autoencoder, tiny_classifier):
    """baseline.model_from_onnx rebuilds the PyTorch model from the initializer names: the crop
    wrapper must not rename them ("module.encoder.net.0.weight")."""
    for paths, ckpt in (((export_dir / "classifier.onnx",), tiny_classifier),
                        ((export_dir / "encoder.onnx", export_dir / "decoder.onnx"), tiny_autoencoder)):
        rebuilt = model_from_onnx(*paths)
        state = load_raw(ckpt)["state_dict"]
        assert set(rebuilt.state_dict()) == set(state)
        for key, value in rebuilt.state_dict().items():
            assert torch.equal(value, state[key]), key
    x = random_input("classifier", 7, seed=5)
    clf_from_onnx = load_classifier(export_dir / "classifier.onnx")
    clf_from_ckpt = load_classifier(tiny_classifier)
    assert np.array_equal(torch_run(clf_from_onnx, x), torch_run(clf_from_ckpt, x))


# -- 4. int8 quantization --------------------------------------------------------------------

@pytest.fixture(scope="module", params=METHODS)
def quantized(request, tmp_path_factory, tiny_autoencoder, tiny_classifier, fake_data_dir):
    """(method, folder) of `export --quantize-method METHOD`, calibrated on the fake training images."""
    method = request.param
    out = tmp_path_factory.mktemp(f"int8-{method}") / "models"
    result = cli("export", tiny_autoencoder, tiny_classifier, "--out", out, "--quantize-method", method,
                 "--no-validate", "--data-dir", fake_data_dir)
    assert result.exit_code == 0, result.output
    return method, out


def test_quantize_flag_writes_int8_models_with_the_default_method(run, tmp_path, tiny_autoencoder,
                                                                  tiny_classifier):
    out = tmp_path / "models"
    result = run("export", tiny_autoencoder, tiny_classifier, "--out", out, "--quantize", "--no-validate")
    assert result.exit_code == 0, result.output
    files = manifest.read(out)["files"]
    for kind in KINDS:
        int8 = MODELS[kind].int8_filename
        assert (out / int8).is_file() and f"{out / int8}: " in result.stdout
        assert files[int8]["precision"] == "int8" and files[int8]["quantization"]["method"] == "weights"
        assert metadata(out / int8)[META_QUANTIZATION] == "weights"


def test_int8_files_are_listed_loadable_and_keep_the_metadata(quantized):
    method, folder = quantized
    files = manifest.read(folder)["files"]
    assert set(files) == {f"{k}.onnx" for k in KINDS} | {f"{k}.int8.onnx" for k in KINDS}
    for kind in KINDS:
        spec = MODELS[kind]
        path = folder / spec.int8_filename
        entry = files[spec.int8_filename]
        assert entry["precision"] == "int8" and entry["kind"] == kind
        assert entry["quantization"]["method"] == method
        assert entry["size_bytes"] == path.stat().st_size and entry["sha256"] == sha256(path)
        onnx.checker.check_model(onnx.load(str(path)))
        meta, fp32_meta = metadata(path), metadata(folder / spec.filename)
        assert meta[META_QUANTIZATION] == method
        assert {k: v for k, v in meta.items() if k != META_QUANTIZATION} == fp32_meta
        model = OnnxModel(path, kind, threads=1)  # the runtime's loader: manifest and spec checked
        x = random_input(kind, 5, seed=6)
        out = model.run(x)
        assert out.shape == (5, *model.output_shape) and np.isfinite(out).all()
    if method in ("qdq", "qoperator", "linear"):  # calibrated: the decoder on its encoder's latents
        assert files["decoder.int8.onnx"]["quantization"]["calibration_images"] == 600
        assert files["classifier.int8.onnx"]["quantization"]["calibration_images"] == 600


def test_int8_files_are_smaller(quantized):
    method, folder = quantized
    for kind in KINDS:
        fp32 = (folder / MODELS[kind].filename).stat().st_size
        int8 = (folder / MODELS[kind].int8_filename).stat().st_size
        assert int8 < fp32, (kind, int8, fp32)
        if method == "weights":  # every weight int8: close to 4x, less the scales and the graph
            assert fp32 / int8 > 2.5, (kind, fp32 / int8)


EXPECTED_OPS = {  # (must be in the classifier, must not be)
    "weights": ({"DequantizeLinear", "Conv", "Gemm"},
                {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}),
    "qdq": ({"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"}, {"QLinearConv", "ConvInteger"}),
    "qoperator": ({"QLinearConv", "QuantizeLinear", "DequantizeLinear"}, {"Conv", "ConvInteger"}),
    "linear": ({"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"}, {"QLinearConv", "ConvInteger"}),
    "dynamic": ({"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"}, {"QuantizeLinear", "QLinearConv"}),
}


def test_int8_graphs_have_the_method_ops(quantized):
    method, folder = quantized
    required, forbidden = EXPECTED_OPS[method]
    ops = op_types(folder / "classifier.int8.onnx")
    assert required <= ops, (method, sorted(ops))
    assert not (forbidden & ops), (method, sorted(forbidden & ops))
    assert "Slice" in ops  # the crop survives quantization
    counts = manifest.read(folder)["files"]["classifier.int8.onnx"]["quantization"]["op_counts"]
    assert set(counts) == ops
    graph = onnx.load(str(folder / "classifier.int8.onnx")).graph
    produced_by = {out: node for node in graph.node for out in node.output}
    inits = {i.name: i for i in graph.initializer}
    integer_weights = {"QLinearConv": 3, "ConvInteger": 1, "MatMulInteger": 1}  # the weight's input index
    checked = 0
    for node in graph.node:
        if node.op_type in integer_weights:  # qoperator, dynamic: the integer op reads int8 weights itself
            weight = inits[node.input[integer_weights[node.op_type]]]
            assert weight.data_type == onnx.TensorProto.INT8, (method, node.name)
            checked += 1
            continue
        if node.op_type not in ("Conv", "Gemm"):
            continue
        checked += 1
        weight = node.input[1]
        if method == "linear" and node.op_type == "Conv":  # Gemm only: conv weights stay fp32
            assert inits[weight].data_type == onnx.TensorProto.FLOAT
        else:  # the weight is int8 behind a DequantizeLinear
            dq = produced_by[weight]
            assert dq.op_type == "DequantizeLinear"
            assert inits[dq.input[0]].data_type == onnx.TensorProto.INT8
    assert checked >= 2, (method, checked)  # both convolutions (and the Gemms) were looked at
    if method in ("qdq", "qoperator", "linear"):  # the decoder is quantized (statically) too
        assert "QuantizeLinear" in op_types(folder / "decoder.int8.onnx")


@pytest.mark.parametrize("quantized", ["weights"], indirect=True)
def test_weights_method_is_per_channel_symmetric_rounding(quantized):
    """The int8 weights times their scale give the fp32 weights back within half a step,
    per output channel: axis 0 for Conv and Gemm, axis 1 for ConvTranspose."""
    _, folder = quantized
    for kind in ("classifier", "decoder"):
        fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(folder / MODELS[kind].filename)).graph.initializer}
        graph = onnx.load(str(folder / MODELS[kind].int8_filename)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        dqs = [n for n in graph.node if n.op_type == "DequantizeLinear"]
        assert len(dqs) == {"classifier": 4, "decoder": 3}[kind]  # every Conv, ConvTranspose, Gemm weight
        consumers = {name: n for n in graph.node for name in n.input}
        for node in dqs:
            q, scale, zero = (inits[name] for name in node.input)
            axis = next(a.i for a in node.attribute if a.name == "axis")
            op = consumers[node.output[0]]
            trans_b = next((a.i for a in op.attribute if a.name == "transB"), 0)
            assert axis == {"Conv": 0, "ConvTranspose": 1, "Gemm": 0 if trans_b else 1}[op.op_type], op.op_type
            w = fp32[node.output[0]]
            assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127 and not zero.any()
            assert scale.shape == (w.shape[axis],)
            shape = [1] * w.ndim
            shape[axis] = -1
            err = np.abs(q.astype(np.float32) * scale.reshape(shape) - w)
            assert (err <= scale.reshape(shape) / 2 + 1e-7).all(), node.output[0]
            assert (np.abs(q).max(axis=tuple(i for i in range(q.ndim) if i != axis)) == 127).all()


def test_int8_agrees_with_fp32(quantized, fake_data_dir):
    method, folder = quantized
    x = fake_test_images(fake_data_dir)
    fp32 = ort_run(session(folder / "classifier.onnx"), x).argmax(1)
    int8 = ort_run(session(folder / "classifier.int8.onnx"), x).argmax(1)
    assert len(set(fp32)) >= 3
    # seen: 99.5% (weights, dynamic), 98.5-99% (static) of the 200 fake test images
    assert (fp32 == int8).mean() >= (0.98 if method == "weights" else 0.9), (method, (fp32 == int8).mean())
    z32 = ort_run(session(folder / "encoder.onnx"), x)
    z8 = ort_run(session(folder / "encoder.int8.onnx"), x)
    # Relative RMS error of the latents, seen on an AVX2 CPU without VNNI: weights 0.12%, the static
    # methods 0.46% (11% with 8-bit weights, which saturate there: quantize.py), dynamic 1.25%.
    assert np.abs(z32).max() > 0 and np.sqrt(np.mean((z8 - z32) ** 2) / np.mean(z32 ** 2)) <= 0.02
    assert np.abs(z8 - z32).max() <= 0.05 * np.abs(z32).max()  # seen: <= 3.6% (dynamic)
    entry = manifest.read(folder)["files"][MODELS["encoder"].int8_filename]
    assert entry["quantization"]["weight_bits"] == (7 if method in ("qdq", "qoperator", "linear") else 8)
    r32 = ort_run(session(folder / "decoder.onnx"), z32)
    r8 = ort_run(session(folder / "decoder.int8.onnx"), z32)
    assert ((r8 - r32) ** 2).mean() < 1e-4  # seen: <= 5e-7


@pytest.mark.parametrize("content, needle", [
    (b"this is not a numpy file\n", "not a .npy file (numpy.save writes one)"),
    (b"\x93NUMPY garbage", "not a numpy array file"),
    (np.zeros((20, 32, 32), dtype=np.float32), "expected images"),  # a readable .npy of the wrong shape
    (np.full((20, 28, 28), "0.5"), "holds <U3 values"),  # numbers written as strings
    (np.zeros((20, 28, 28), dtype=bool), "holds bool values"),
])
def test_bad_calibration_file_is_refused_and_nothing_written(run, tmp_path, tiny_autoencoder, tiny_classifier,
                                                             content, needle):
    calib = tmp_path / "calib.npy"
    if isinstance(content, np.ndarray):
        np.save(calib, content)
    else:
        calib.write_bytes(content)
    out = tmp_path / "models"
    result = run("export", tiny_autoencoder, tiny_classifier, "--out", out, "--quantize-method", "qdq",
                 "--calibration", calib, "--no-validate")
    refused(result, str(calib), needle)
    assert "exporting" not in result.stdout + result.stderr  # refused before any model is exported (logged on stderr)
    assert not out.exists() and no_staging_left(tmp_path)


def test_bad_calibration_leaves_a_previous_export_untouched(run, tmp_path, export_dir, tiny_classifier):
    out = tmp_path / "models"
    shutil.copytree(export_dir, out)
    before = snapshot(out)
    calib = tmp_path / "calib.npy"
    calib.write_bytes(b"\x93NUMPY garbage")
    refused(run("export", tiny_classifier, "--out", out, "--quantize-method", "qoperator", "--calibration", calib,
                "--no-validate"), str(calib))
    assert snapshot(out) == before and no_staging_left(tmp_path)


def _largest_weight_code(path: Path) -> int:
    """The largest |int8| weight code of a QDQ model's Conv and Gemm weights."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    codes = [inits[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
             and inits[n.input[0]].dtype == np.int8]
    assert codes
    return max(int(np.abs(c.astype(int)).max()) for c in codes)


@pytest.mark.parametrize("full_range, bits, largest", [(False, 7, 64), (True, 8, 127)])
def test_integer_methods_store_seven_bit_weights_unless_full_range(run, tmp_path, tiny_classifier, fake_data_dir,
                                                                  full_range, bits, largest):
    """7-bit weights by default: x86 CPUs without VNNI saturate 8-bit ones (quantize.py says why)."""
    out = tmp_path / "models"
    result = run("export", tiny_classifier, "--out", out, "--quantize-method", "qdq", "--no-validate",
                 "--data-dir", fake_data_dir, "--calibration-size", "50", *(["--full-range"] if full_range else []))
    assert result.exit_code == 0, result.output
    entry = manifest.read(out)["files"][CLASSIFIER.int8_filename]
    assert entry["quantization"]["weight_bits"] == bits
    assert entry["quantization"]["calibration_images"] == 50  # --calibration-size reaches the calibration
    assert _largest_weight_code(out / CLASSIFIER.int8_filename) == largest


def test_full_range_with_the_weights_method_is_refused(run, tmp_path, tiny_classifier):
    out = tmp_path / "models"
    misused(run("export", tiny_classifier, "--out", out, "--quantize", "--full-range", "--no-validate"),
            "--full-range", "weights always stores 8-bit weights")
    assert not out.exists() and no_staging_left(tmp_path)


def test_unknown_quantize_method_is_refused(run, tmp_path, tiny_classifier):
    out = tmp_path / "models"
    misused(run("export", tiny_classifier, "--out", out, "--quantize-method", "int4", "--no-validate"),
            "--quantize-method must be one of", "'int4'")
    assert not out.exists() and no_staging_left(tmp_path)


# -- 5. validate -----------------------------------------------------------------------------

def test_validate_passes_a_good_export(run, export_dir, full_test_split):
    result = run("validate", export_dir, "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for kind in KINDS:
        assert MODELS[kind].filename in result.stdout
    assert "all bounds met" in result.stderr
    assert "e-0" in result.stdout  # the max |ORT - PyTorch| column, e.g. 5.96e-08
    accuracy = manifest.read(export_dir)["files"]["classifier.onnx"]["validation"]["accuracy"]
    assert format(accuracy, ".4f") in result.stdout  # the same figure export measured


def test_validate_reports_the_accuracy_that_classify_tta_gives(export_dir, full_test_split):
    from fmnist_edge.export.validate import validate_folder
    from fmnist_edge.idx import load_split
    from fmnist_edge.runtime import FashionClassifier

    figures = validate_folder(export_dir, data_dir=full_test_split)["models"]["classifier.onnx"]
    test = load_split("test", full_test_split)
    images = (test.images.astype(np.float32) / 255.0)[:, None]
    averaged = FashionClassifier.load(export_dir).probabilities(images, batch_size=1000, tta=True)
    assert figures["accuracy_mirror_averaged"] == float((averaged.argmax(1) == test.labels).mean())


def test_training_measures_the_same_mirror_averaged_accuracy_as_the_runtime(export_dir, full_test_split,
                                                                              tiny_classifier):
    """metrics.json's test_accuracy_tta (PyTorch) and `classify --tta` (ONNX Runtime) are one figure."""
    from fmnist_edge.train.data import load_test
    from fmnist_edge.train.evaluate import mirror_averaged_accuracy

    ort_figure = manifest.read(export_dir)["files"]["classifier.onnx"]["validation"]["accuracy_mirror_averaged"]
    torch_figure = mirror_averaged_accuracy(load_model(tiny_classifier)[0], load_test(full_test_split))
    assert abs(torch_figure - ort_figure) <= 2 / 10_000  # float rounding may flip a near-tie or two


def test_validate_says_which_models_it_could_not_compare_with_pytorch(run, export_copy, full_test_split):
    """The shipped folder's checkpoints are not shipped: the ONNX figures are still measured, and
    each model without its checkpoint is named, instead of a silent '-' in the PyTorch columns."""
    data = manifest.read(export_copy)
    data["files"]["classifier.onnx"]["checkpoint"] = "runs/gone/model.pt"
    data["files"]["encoder.onnx"].pop("checkpoint")
    (export_copy / "manifest.json").write_text(json.dumps(data))
    result = run("validate", export_copy, "--data-dir", full_test_split, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["notes"] == [
        "encoder.onnx: not compared with PyTorch: its manifest entry names no source checkpoint",
        "classifier.onnx: not compared with PyTorch: its checkpoint runs/gone/model.pt is not on disk, "
        "looked for from the working folder"]
    assert "max_abs_diff_vs_torch" not in report["models"]["classifier.onnx"]
    assert report["models"]["decoder.onnx"]["max_abs_diff_vs_torch"] < FP32_MAX_ABS_DIFF  # its checkpoint is there
    assert report["models"]["classifier.onnx"]["accuracy"] > 0
    assert report["notes"][1] in result.stderr


def test_validate_without_torch_says_so_once_and_checks_the_rest(export_dir, full_test_split, monkeypatch):
    import fmnist_edge.export.validate as validate

    monkeypatch.setattr(validate, "_torch_importable", lambda: False)
    report = validate.validate_folder(export_dir, data_dir=full_test_split)
    assert report["notes"] == ["not compared with PyTorch: PyTorch is not installed (the train extra)"]
    assert not any("max_abs_diff_vs_torch" in f for f in report["models"].values())
    assert report["models"]["classifier.onnx"]["accuracy"] > 0 and not report["failures"]


def test_validate_refuses_an_altered_model(run, export_copy, full_test_split):
    path = export_copy / "classifier.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    refused(run("validate", export_copy, "--data-dir", full_test_split), "classifier.onnx",
            "differs from its manifest")


def test_validate_refuses_a_folder_without_manifest(run, export_copy, full_test_split):
    (export_copy / "manifest.json").unlink()
    refused(run("validate", export_copy, "--data-dir", full_test_split), str(export_copy), "no manifest.json")


def test_validate_refuses_an_unreadable_manifest(run, export_copy, full_test_split):
    (export_copy / "manifest.json").write_text("{not json")
    refused(run("validate", export_copy, "--data-dir", full_test_split), "manifest.json", "unreadable manifest")


def test_validate_fails_when_onnx_differs_from_the_checkpoint(run, export_copy, full_test_split):
    """classifier.onnx no longer matches its checkpoint by 1e-3 in one bias (manifest rewritten to
    match the file, so only the PyTorch comparison can notice): exit 1, the model named."""
    path = export_copy / "classifier.onnx"
    model = onnx.load(str(path))
    bias = next(i for i in model.graph.initializer if i.name == "head.bias")
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(1e-3), bias.name))
    onnx.save(model, str(path))
    rewrite_manifest(export_copy)
    manifest.verify(path)  # the control: the manifest check passes
    result = run("validate", export_copy, "--data-dir", full_test_split, "--json")
    refused(result, "classifier.onnx", "max |ONNX - PyTorch|", "> 1e-04")
    report = json.loads(result.stdout)
    assert report["models"]["classifier.onnx"]["max_abs_diff_vs_torch"] == pytest.approx(1e-3, rel=0.05)
    assert report["models"]["encoder.onnx"]["max_abs_diff_vs_torch"] < FP32_MAX_ABS_DIFF
    assert len(report["failures"]) == 1 and report["failures"][0].startswith("classifier.onnx: ")


def test_export_installs_nothing_when_validation_fails(run, tmp_path, export_dir, tiny_classifier,
                                                       full_test_split, monkeypatch):
    """A missed bound at export time: the previous folder stays exactly as it was."""
    import fmnist_edge.export.validate as validate

    real = validate._torch_outputs

    def off_by_a_little(entry, x, kind):
        out = real(entry, x, kind)
        return out + np.float32(1e-3) if kind == "classifier" else out

    monkeypatch.setattr(validate, "_torch_outputs", off_by_a_little)
    out = tmp_path / "models"
    shutil.copytree(export_dir, out)
    (out / "samples").mkdir()
    (out / "samples" / "note.txt").write_text("kept")
    before = snapshot(out)
    refused(run("export", tiny_classifier, "--out", out, "--data-dir", full_test_split), "classifier.onnx",
            "validation bound(s) missed")
    assert snapshot(out) == before and no_staging_left(tmp_path)


# -- 6. refused checkpoints ------------------------------------------------------------------

def make_missing(path: Path, tiny_classifier: Path) -> None:
    pass


def make_foreign(path: Path, tiny_classifier: Path) -> None:
    torch.save({"a": 1}, path)


def make_text(path: Path, tiny_classifier: Path) -> None:
    path.write_text("hello, I am not a checkpoint\n")


def make_empty(path: Path, tiny_classifier: Path) -> None:
    path.write_bytes(b"")


def make_truncated(path: Path, tiny_classifier: Path) -> None:
    data = tiny_classifier.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def make_mismatched(path: Path, tiny_classifier: Path) -> None:
    payload = torch.load(tiny_classifier, weights_only=True)
    payload["model_config"]["n"] = 32  # the weights are of n=16
    torch.save(payload, path)


BAD_CHECKPOINTS = {
    "missing": (make_missing, "no such checkpoint"),
    "foreign": (make_foreign, "not an fmnist-edge checkpoint"),
    "text": (make_text, "not a readable PyTorch checkpoint"),
    "empty": (make_empty, "not a readable PyTorch checkpoint"),
    "truncated": (make_truncated, "not a readable PyTorch checkpoint"),
    "mismatched": (make_mismatched, "do not fit the architecture"),
}


@pytest.mark.parametrize("previous", [False, True], ids=["no-out", "existing-out"])
@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_export_refuses_a_bad_checkpoint(run, tmp_path, tiny_classifier, export_dir, case, previous):
    make, needle = BAD_CHECKPOINTS[case]
    ckpt = tmp_path / "bad" / "model.pt"
    ckpt.parent.mkdir()
    make(ckpt, tiny_classifier)
    out = tmp_path / "models"
    if previous:
        shutil.copytree(export_dir, out)
        before = snapshot(out)
    refused(run("export", ckpt, "--out", out, "--no-validate"), str(ckpt), needle)
    if previous:
        assert snapshot(out) == before
    else:
        assert not out.exists()
    assert no_staging_left(tmp_path)


def test_one_bad_checkpoint_stops_the_whole_export(run, tmp_path, tiny_autoencoder):
    out = tmp_path / "models"
    missing = tmp_path / "nope" / "model.pt"
    refused(run("export", tiny_autoencoder, missing, "--out", out, "--no-validate"), str(missing))
    assert not out.exists() and no_staging_left(tmp_path)


def test_export_without_checkpoints_and_no_training_run(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(run("export", "--no-validate"), "no trained models", "fmnist-edge train")
    assert not (tmp_path / "exported").exists()


def test_export_without_checkpoints_uses_the_latest_training_run(run, tmp_path, monkeypatch, tiny_classifier):
    monkeypatch.chdir(tmp_path)
    train_dir = tmp_path / "somewhere" / "train"
    (train_dir / "classifier").mkdir(parents=True)
    shutil.copy(tiny_classifier, train_dir / "classifier" / "model.pt")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest.json").write_text(json.dumps({"train_dir": str(train_dir)}))
    result = run("export", "--no-validate")
    assert result.exit_code == 0, result.output
    assert set(manifest.read(tmp_path / "exported")["files"]) == {"classifier.onnx"}
    assert metadata(tmp_path / "exported" / "classifier.onnx")["checkpoint_sha256"] == sha256(tiny_classifier)


@pytest.mark.parametrize("pointer", ["{", "[]", '{"folder": "runs/train"}', '"runs/train"'])
def test_export_with_an_unreadable_latest_pointer(run, tmp_path, monkeypatch, pointer):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest.json").write_text(pointer)
    refused(run("export", "--no-validate"), "runs/latest.json", "unreadable")
    assert not (tmp_path / "exported").exists()


def test_reexport_replaces_its_models_and_keeps_the_others(run, tmp_path, export_dir, tiny_classifier,
                                                          other_classifier):
    out = tmp_path / "models"
    shutil.copytree(export_dir, out)
    (out / "samples").mkdir()
    (out / "samples" / "shirt.png").write_bytes(b"png")
    encoder_before = sha256(out / "encoder.onnx")
    result = run("export", tiny_classifier, "--out", out, "--quantize", "--no-validate")
    assert result.exit_code == 0, result.output
    files = manifest.read(out)["files"]
    assert set(files) == {"encoder.onnx", "decoder.onnx", "classifier.onnx", "classifier.int8.onnx"}
    assert (out / "samples" / "shirt.png").read_bytes() == b"png"
    assert sha256(out / "encoder.onnx") == encoder_before and files["encoder.onnx"]["kind"] == "encoder"
    for name in files:  # every listed file matches the new manifest
        assert manifest.verify(out / name)["size_bytes"] == (out / name).stat().st_size
    assert "validation" not in files["classifier.onnx"]  # --no-validate: no stale figures
    assert no_staging_left(tmp_path)
    # The same checkpoint again without --quantize: the same fp32 bytes, so its int8 file still
    # holds the model it was made from, and stays.
    # From another path (a runs folder moved): the int8 entry names where its checkpoint lies now.
    int8_before = sha256(out / "classifier.int8.onnx")
    moved = tmp_path / "moved" / "model.pt"
    moved.parent.mkdir()
    shutil.copy(tiny_classifier, moved)
    result = run("export", moved, "--out", out, "--no-validate")
    assert result.exit_code == 0, result.output
    assert "dropping" not in result.output
    files = manifest.read(out)["files"]
    assert files["classifier.int8.onnx"]["checkpoint"] == files["classifier.onnx"]["checkpoint"] == str(moved)
    assert sha256(out / "classifier.int8.onnx") == int8_before
    # Another classifier without --quantize: the int8 file would be the old classifier's: left behind.
    result = run("export", other_classifier, "--out", out, "--no-validate")
    assert result.exit_code == 0, result.output
    assert "dropping classifier.int8.onnx" in result.output
    assert set(manifest.read(out)["files"]) == {"encoder.onnx", "decoder.onnx", "classifier.onnx"}
    assert not (out / "classifier.int8.onnx").exists()


def test_an_entry_without_a_checkpoint_sha256_is_carried_over_as_it_is(run, tmp_path, tiny_autoencoder,
                                                                        tiny_classifier):
    """The manifest's checkpoint_sha256 is optional (an older export, a hand-made folder): an
    entry without it keeps its checkpoint when another model is exported beside it."""
    out = tmp_path / "models"
    assert run("export", tiny_classifier, "--out", out, "--quantize", "--no-validate").exit_code == 0
    data = json.loads((out / "manifest.json").read_text())
    for name in ("classifier.onnx", "classifier.int8.onnx"):
        del data["files"][name]["checkpoint_sha256"]
    (out / "manifest.json").write_text(json.dumps(data))
    result = run("export", tiny_autoencoder, "--out", out, "--no-validate")
    assert result.exit_code == 0, result.output
    files = manifest.read(out)["files"]
    assert files["classifier.int8.onnx"]["checkpoint"] == str(tiny_classifier)
    assert "checkpoint_sha256" not in files["classifier.int8.onnx"] and "encoder.onnx" in files


# -- manifest.py -----------------------------------------------------------------------------

def test_export_into_a_folder_with_a_users_files_replaces_only_its_own(run, tmp_path, export_dir,
                                                                         tiny_classifier, other_classifier):
    """`--out .` in a checkout, or a folder of notes: the user's files are neither copied nor
    swapped away (links stay links, even to /; the same inodes), and the folder itself stays."""
    out = tmp_path / "models"
    shutil.copytree(export_dir, out)
    assert run("export", tiny_classifier, "--out", out, "--quantize", "--no-validate").exit_code == 0
    assert (out / "classifier.int8.onnx").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "root").symlink_to("/")  # followed, a copy would take the whole disk
    (out / "work").mkdir()
    (out / "work" / "draft.md").write_text("draft")
    mine = {name: (out / name).lstat().st_ino for name in ("notes.txt", "root", "work")}
    folder = out.stat().st_ino
    result = run("export", other_classifier, "--out", out, "--no-validate")
    assert result.exit_code == 0, result.output
    assert out.stat().st_ino == folder  # not swapped: nothing of the user's moved out with it
    assert {name: (out / name).lstat().st_ino for name in mine} == mine
    assert (out / "root").is_symlink() and (out / "work" / "draft.md").read_text() == "draft"
    files = manifest.read(out)["files"]
    assert set(files) == {"encoder.onnx", "decoder.onnx", "classifier.onnx"}
    assert not (out / "classifier.int8.onnx").exists()  # the old classifier's: dropped, as in a swap
    for name in files:
        manifest.verify(out / name)
    assert no_staging_left(tmp_path) and no_staging_left(out)


def test_export_into_the_working_folder_leaves_the_shell_in_it(run, tmp_path, monkeypatch, export_dir,
                                                              tiny_classifier):
    out = tmp_path / "models"
    shutil.copytree(export_dir, out)
    monkeypatch.chdir(out)
    folder = out.stat().st_ino
    result = run("export", tiny_classifier, "--out", ".", "--no-validate")
    assert result.exit_code == 0, result.output
    assert out.stat().st_ino == folder and Path.cwd().stat().st_ino == folder
    manifest.verify(out / "classifier.onnx")


def test_an_export_folder_with_only_its_own_files_is_still_swapped_whole(run, tmp_path, export_dir,
                                                                         tiny_classifier):
    out = tmp_path / "models"
    shutil.copytree(export_dir, out)
    (out / "samples").mkdir()
    (out / "samples" / "shirt.png").write_bytes(b"png")
    folder = out.stat().st_ino
    result = run("export", tiny_classifier, "--out", out, "--no-validate")
    assert result.exit_code == 0, result.output
    assert out.stat().st_ino != folder  # one atomic exchange: no reader sees half of each
    assert (out / "samples" / "shirt.png").read_bytes() == b"png"


def test_manifest_read_write_verify(tmp_path):
    assert manifest.read(tmp_path) is None
    (tmp_path / "a.onnx").write_bytes(b"abc")
    with pytest.raises(ModelError, match="missing file"):
        manifest.write(tmp_path, {"b.onnx": {"kind": "classifier"}})
    assert not (tmp_path / "manifest.json").exists()
    manifest.write(tmp_path, {"a.onnx": {"kind": "classifier"}}, producer="test")
    data = manifest.read(tmp_path)
    assert data["producer"] == "test" and data["format"] == manifest.FORMAT_VERSION
    assert data["files"]["a.onnx"] == {"kind": "classifier", "size_bytes": 3,
                                       "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert manifest.verify(tmp_path / "a.onnx")["kind"] == "classifier"
    (tmp_path / "c.onnx").write_bytes(b"c")
    with pytest.raises(ModelError, match="not listed"):
        manifest.verify(tmp_path / "c.onnx")
    (tmp_path / "a.onnx").write_bytes(b"abd")
    with pytest.raises(ModelError, match="altered after export"):
        manifest.verify(tmp_path / "a.onnx")
    (tmp_path / "manifest.json").write_text(json.dumps({"files": []}))
    with pytest.raises(ModelError, match="not an fmnist-edge manifest"):
        manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("[1,")
    with pytest.raises(ModelError, match="unreadable manifest"):
        manifest.read(tmp_path)


@pytest.mark.parametrize("field, value, needle", [
    ("kind", ["classifier"], "a kind of the wrong type (list)"),
    ("quantization", "weights", "a quantization of the wrong type (str)"),
    ("quantization", {"method": "qdq", "weight_bits": "7"}, "a quantization weight_bits of the wrong type"),
    ("validation", {"accuracy": "92%"}, "a validation accuracy of the wrong type (str)"),
    ("validation", {"accuracy": True}, "a validation accuracy of the wrong type (bool)"),
    ("source", ["a.onnx"], "a source of the wrong type (list)"),
])
def test_a_hand_edited_manifest_with_a_field_of_the_wrong_type_is_refused(tmp_path, field, value, needle):
    (tmp_path / "a.onnx").write_bytes(b"abc")
    manifest.write(tmp_path, {"a.onnx": {"kind": "classifier", "validation": {"accuracy": 0.9, "precision": "fp32"}}})
    assert manifest.read(tmp_path)["files"]["a.onnx"]["validation"]["accuracy"] == 0.9
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["files"]["a.onnx"][field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=re.escape(f"the entry for a.onnx has {needle}")):
        manifest.read(tmp_path)


def test_verify_without_manifest_is_none(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"abc")
    assert manifest.verify(tmp_path / "a.onnx") is None


def test_model_from_onnx_refuses_an_int8_file(tmp_path, tiny_classifier):
    out = tmp_path / "models"
    result = cli("export", tiny_classifier, "--out", out, "--quantize", "--no-validate")
    assert result.exit_code == 0, result.output
    with pytest.raises(ModelError, match="cannot rebuild a PyTorch model"):
        model_from_onnx(out / "classifier.int8.onnx")


@pytest.mark.parametrize("extra", [[], ["--quantize"], ["--quantize-method", "dynamic"]])
def test_calibration_without_a_static_method_is_refused(tmp_path, extra, tiny_autoencoder):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((4, 1, 28, 28), np.float32))
    result = cli("export", tiny_autoencoder, "--out", tmp_path / "out", "--calibration", calib, *extra)
    misused(result, "--calibration")
    assert not (tmp_path / "out").exists()


def test_export_refuses_two_checkpoints_of_one_kind(run, tmp_path, tiny_autoencoder):
    refused(run("export", tiny_autoencoder, tiny_autoencoder, "--out", tmp_path / "m", "--no-validate"),
            "are both an autoencoder")
    assert not (tmp_path / "m").exists()


def test_validate_says_the_checkpoint_changed_rather_than_blaming_the_model(run, export_copy, full_test_split):
    data = json.loads((export_copy / "manifest.json").read_text())
    data["files"]["classifier.onnx"]["checkpoint_sha256"] = "0" * 64  # as if retrained since the export
    (export_copy / "manifest.json").write_text(json.dumps(data))
    refused(run("validate", export_copy, "--data-dir", full_test_split), "changed since the model was exported")
