"""ORT-format twins of an export (`fmnist-edge to-ort`, `export --ort-format`) for ONNX Runtime's minimal builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.torch

from fmnist_edge import manifest  # noqa: E402
from fmnist_edge.export.ort_format import OPERATORS_CONFIG, ort_name  # noqa: E402
from fmnist_edge.runtime.session import OnnxModel  # noqa: E402
from fmnist_edge.spec import MODELS  # noqa: E402
from conftest import invoke as cli, misused, refused  # noqa: E402
from test_export import full_test_split, other_classifier, tiny_classifier  # noqa: E402,F401  (fixtures)

KINDS = ("encoder", "decoder", "classifier")


@pytest.fixture(scope="module")
def with_ort(tmp_path_factory, tiny_autoencoder, tiny_classifier, full_test_split) -> Path:  # noqa: F811
    """`export --quantize --ort-format`: fp32 and int8 models, each with its .ort twin, validated."""
    out = tmp_path_factory.mktemp("ort") / "models"
    result = cli("export", tiny_autoencoder, tiny_classifier, "--out", out, "--quantize", "--ort-format",
                 "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    assert f"{out / 'classifier.ort'}: " in result.stdout
    return out


@pytest.fixture
def copy_of(with_ort, tmp_path) -> Path:
    folder = tmp_path / "models"
    shutil.copytree(with_ort, folder)
    return folder


def _onnx_names() -> list[str]:
    return [name for kind in KINDS for name in (MODELS[kind].filename, MODELS[kind].int8_filename)]


def test_every_onnx_model_gets_a_listed_ort_twin_and_the_operators_config(with_ort):
    files = manifest.read(with_ort)["files"]
    for name in _onnx_names():
        twin = ort_name(name)
        assert (with_ort / twin).is_file() and (with_ort / twin).read_bytes()[4:8] == b"ORTM"  # flatbuffer id
        entry = files[twin]
        assert entry["format"] == "ort" and entry["source"] == name and entry["platform"] == "portable"
        assert entry["source_sha256"] == files[name]["sha256"]
        assert entry["validation"]["max_abs_diff_vs_onnx"] <= 1e-4
        assert manifest.verify(with_ort / twin) == entry
    config = (with_ort / OPERATORS_CONFIG).read_text()
    ops = {op for line in config.splitlines() if not line.startswith("#") for op in line.split(";")[2].split(",")}
    assert {"Gemm", "MaxPool", "ConvTranspose", "Sigmoid", "DequantizeLinear"} <= ops
    assert str(with_ort.parent) not in config  # model names, not this machine's folders
    assert files[OPERATORS_CONFIG]["models"] == sorted(ort_name(n) for n in _onnx_names())


def test_ort_twins_compute_what_their_onnx_files_compute(with_ort, full_test_split):  # noqa: F811
    x = np.random.default_rng(0).random((300, 1, 28, 28), dtype=np.float32)
    for kind in ("encoder", "classifier"):
        for name in (MODELS[kind].filename, MODELS[kind].int8_filename):
            got = OnnxModel(with_ort / ort_name(name), kind).run(x)
            want = OnnxModel(with_ort / name, kind).run(x)
            assert np.abs(got - want).max() <= 1e-5, name
    figures = manifest.read(with_ort)["files"]["classifier.ort"]["validation"]
    assert figures["images"] == 10_000 and figures["top1_agreement_vs_onnx"] == 1.0
    assert figures["accuracy"] == manifest.read(with_ort)["files"]["classifier.onnx"]["validation"]["accuracy"]


def test_classify_and_validate_take_the_ort_files(with_ort, full_test_split, tmp_path):  # noqa: F811
    picture = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(1).random((28, 28)) * 255).astype(np.uint8)).save(picture)
    by_ort = cli("classify", picture, "--model", with_ort / "classifier.ort", "--json")
    by_onnx = cli("classify", picture, "--model", with_ort / "classifier.onnx", "--json")
    assert by_ort.exit_code == 0, by_ort.output
    assert json.loads(by_ort.stdout)["label"] == json.loads(by_onnx.stdout)["label"]
    checked = cli("validate", with_ort, "--json", "--data-dir", full_test_split)
    assert checked.exit_code == 0, checked.output
    models = json.loads(checked.stdout)["models"]
    assert all(ort_name(n) in models for n in _onnx_names())


def test_to_ort_on_an_export_without_twins_and_the_x86_platform(copy_of, full_test_split):  # noqa: F811
    for item in copy_of.iterdir():
        if item.suffix == ".ort" or item.name == OPERATORS_CONFIG:
            item.unlink()
    entries = manifest.read(copy_of)["files"]
    manifest.write(copy_of, {n: e for n, e in entries.items() if e.get("format") != "ort"}, producer="fmnist-edge")
    result = cli("to-ort", copy_of, "--platform", "x86", "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    files = manifest.read(copy_of)["files"]
    assert files["classifier.ort"]["platform"] == "x86" and files["classifier.ort"]["optimisation"] == "all"
    assert not list(copy_of.parent.glob(".staging-*"))  # swapped in, nothing left beside it


def test_to_ort_refuses_an_altered_model_and_writes_nothing(copy_of, full_test_split):  # noqa: F811
    with open(copy_of / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    before = {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()}
    result = cli("to-ort", copy_of, "--data-dir", full_test_split)
    refused(result, "encoder.onnx", "altered after export")
    assert {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()} == before


def test_an_altered_ort_file_is_refused_by_the_runtime_and_by_validate(copy_of, full_test_split):  # noqa: F811
    data = bytearray((copy_of / "classifier.ort").read_bytes())
    data[-1] ^= 1
    (copy_of / "classifier.ort").write_bytes(bytes(data))
    shirt = Path(__file__).resolve().parents[1] / "exported" / "samples" / "shirt.png"
    refused(cli("classify", shirt, "--model", copy_of / "classifier.ort"),
            "classifier.ort", "altered after export")
    refused(cli("validate", copy_of, "--data-dir", full_test_split), "classifier.ort", "altered after export")


@pytest.mark.parametrize("args, needle", [
    (("to-ort", "{folder}", "--platform", "arm"), "--platform must be one of portable, x86"),
    (("to-ort", "{missing}"), "nothing-here: no such folder"),
    (("to-ort", "{empty}"), "no manifest.json"),
])
def test_bad_to_ort_calls_are_one_line(args, needle, copy_of, tmp_path):
    (tmp_path / "empty").mkdir()
    values = {"folder": copy_of, "missing": tmp_path / "nothing-here", "empty": tmp_path / "empty"}
    refused(cli(*[str(a).format(**values) for a in args]), needle, exit_code=2 if "--platform" in args else 1)


def test_export_platform_without_ort_format_is_refused(tmp_path, tiny_classifier):  # noqa: F811
    misused(cli("export", tiny_classifier, "--out", tmp_path / "m", "--platform", "x86"), "--ort-format")
    assert not (tmp_path / "m").exists()


def test_reexport_drops_the_twins_of_the_models_it_replaces(copy_of, other_classifier, full_test_split):  # noqa: F811
    result = cli("export", other_classifier, "--out", copy_of, "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    names = {p.name for p in copy_of.iterdir()}
    assert "classifier.onnx" in names and "encoder.ort" in names  # the autoencoder's twins stay
    assert not {"classifier.ort", "classifier.int8.onnx", "classifier.int8.ort"} & names
    assert "dropping classifier.ort" in result.stderr and "fmnist-edge to-ort" in result.stderr
    files = manifest.read(copy_of)["files"]
    assert set(files) == names - {"manifest.json"}
    kept = ["decoder.int8.ort", "decoder.ort", "encoder.int8.ort", "encoder.ort"]
    assert files[OPERATORS_CONFIG]["models"] == kept  # written again for the twins that stay
    config = (copy_of / OPERATORS_CONFIG).read_text()
    assert "classifier" not in config and all(f"# - {n}" in config for n in kept)
    assert f"rewriting {OPERATORS_CONFIG}" in result.stderr


def test_reexporting_the_same_checkpoint_keeps_its_int8_file_and_twins(copy_of, tiny_classifier,  # noqa: F811
                                                                      full_test_split):  # noqa: F811
    """The same checkpoint exports to the same bytes: what was made from the old file still holds."""
    before = {p.name: p.read_bytes() for p in copy_of.iterdir() if p.name.startswith("classifier")}
    result = cli("export", tiny_classifier, "--out", copy_of, "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    assert "dropping" not in result.output and "rewriting" not in result.output
    assert {p.name: p.read_bytes() for p in copy_of.iterdir() if p.name.startswith("classifier")} == before
    assert set(before) <= set(manifest.read(copy_of)["files"])


def test_converting_again_keeps_unchanged_twins_and_a_new_platform_replaces_them(copy_of, full_test_split):  # noqa: F811
    before = manifest.read(copy_of)["files"]
    again = cli("to-ort", copy_of, "--data-dir", full_test_split)
    assert again.exit_code == 0, again.output
    after = manifest.read(copy_of)["files"]
    for name in _onnx_names():  # ONNX Runtime writes other bytes each time: kept, not rewritten
        assert after[ort_name(name)]["sha256"] == before[ort_name(name)]["sha256"]
        assert f"keeping {ort_name(name)}" in again.stderr
    x86 = cli("to-ort", copy_of, "--platform", "x86", "--data-dir", full_test_split)
    assert x86.exit_code == 0, x86.output
    files = manifest.read(copy_of)["files"]
    assert all(files[ort_name(n)]["platform"] == "x86" for n in _onnx_names())
    assert "converting classifier.onnx to classifier.ort" in x86.stderr
    for name in files:
        assert manifest.verify(copy_of / name) == files[name]


def test_to_ort_keeps_unlisted_files_and_refuses_one_in_the_way(copy_of, full_test_split):  # noqa: F811
    (copy_of / "notes.txt").write_text("mine")
    (copy_of / "classifier-arm.ort").write_bytes(b"my own conversion")
    (copy_of / "samples").mkdir()
    (copy_of / "samples" / "a.png").write_bytes(b"x")
    (copy_of / "root").symlink_to("/")  # followed, a copy would take the whole disk
    mine = {name: (copy_of / name).lstat().st_ino for name in ("notes.txt", "classifier-arm.ort", "root")}
    folder = copy_of.stat().st_ino
    result = cli("to-ort", copy_of, "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    # the user's files were neither copied nor swapped away: the same folder, the same inodes
    assert copy_of.stat().st_ino == folder and (copy_of / "root").is_symlink()
    assert {name: (copy_of / name).lstat().st_ino for name in mine} == mine
    assert (copy_of / "notes.txt").read_text() == "mine"
    assert (copy_of / "classifier-arm.ort").read_bytes() == b"my own conversion"
    assert (copy_of / "samples" / "a.png").read_bytes() == b"x"
    entries = manifest.read(copy_of)["files"]
    manifest.write(copy_of, {n: e for n, e in entries.items() if n != OPERATORS_CONFIG}, producer="fmnist-edge")
    (copy_of / OPERATORS_CONFIG).write_text("# hand-made\n")  # now a file the manifest does not list
    refused(cli("to-ort", copy_of, "--data-dir", full_test_split), OPERATORS_CONFIG, "not listed")
    assert (copy_of / OPERATORS_CONFIG).read_text() == "# hand-made\n"


def test_a_missed_bound_leaves_the_folder_as_it_was(copy_of, full_test_split, monkeypatch):  # noqa: F811
    import fmnist_edge.export.ort_format as ort_format

    monkeypatch.setattr(ort_format, "FP32_MAX_ABS_DIFF", -1.0)  # every twin now misses its bound
    before = {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()}
    refused(cli("to-ort", copy_of, "--platform", "x86", "--data-dir", full_test_split), "validation bound")
    assert {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()} == before
    assert not list(copy_of.parent.glob(".staging-*"))


def test_to_ort_on_the_current_folder(copy_of, full_test_split, monkeypatch):  # noqa: F811
    monkeypatch.chdir(copy_of)
    result = cli("to-ort", ".", "--platform", "x86", "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    assert manifest.read(copy_of)["files"]["classifier.ort"]["platform"] == "x86"


def test_a_decoder_twin_without_an_encoder_is_not_passed_unchecked(copy_of, full_test_split):  # noqa: F811
    entries = manifest.read(copy_of)["files"]
    for name in [n for n in entries if n.startswith("encoder.")]:
        (copy_of / name).unlink()
        del entries[name]
    manifest.write(copy_of, {n: {k: v for k, v in e.items() if k not in ("size_bytes", "sha256")}
                             for n, e in entries.items()}, producer="fmnist-edge")
    refused(cli("to-ort", copy_of, "--platform", "x86", "--data-dir", full_test_split),
            "decoder.ort: no encoder", "cannot be checked")


def test_no_validate_with_a_data_dir_is_refused(copy_of, full_test_split):  # noqa: F811
    misused(cli("to-ort", copy_of, "--no-validate", "--data-dir", full_test_split), "--data-dir", "--no-validate")


def test_the_api_pairs_an_ort_encoder_with_the_decoder_of_the_same_form(with_ort):
    from fmnist_edge.runtime import FashionAutoencoder

    ae = FashionAutoencoder.load(with_ort / "encoder.int8.ort", threads=1)
    assert ae.decoder.path.name == "decoder.int8.ort"
    assert FashionAutoencoder.load(with_ort / "encoder.onnx").decoder.path.name == "decoder.onnx"
    assert FashionAutoencoder.load(with_ort / "encoder.int8.onnx").decoder.path.name == "decoder.int8.onnx"
    assert FashionAutoencoder.load(with_ort).decoder.path.name == "decoder.onnx"  # a folder: the .onnx files


def test_a_folder_of_ort_twins_alone_serves_the_runtime(with_ort, tmp_path, monkeypatch):
    """What a device gets: the .ort files and the manifest, no .onnx file."""
    device = tmp_path / "device"
    device.mkdir()
    for item in with_ort.iterdir():
        if item.suffix != ".onnx":
            shutil.copy2(item, device / item.name)
    shirt = Path(__file__).resolve().parents[1] / "exported" / "samples" / "shirt.png"
    result = cli("classify", shirt, "--model", device, "--json")
    assert result.exit_code == 0, result.output
    int8 = cli("classify", shirt, "--model", device, "--int8", "--json")
    assert int8.exit_code == 0, int8.output
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(device))
    from fmnist_edge.runtime import FashionAutoencoder, FashionClassifier

    assert FashionClassifier.load().path == device / "classifier.ort"
    assert FashionClassifier.load(int8=True).path == device / "classifier.int8.ort"
    ae = FashionAutoencoder.load()
    assert (ae.encoder.path.name, ae.decoder.path.name) == ("encoder.ort", "decoder.ort")
    assert FashionClassifier.load(with_ort).path == with_ort / "classifier.onnx"  # .onnx first when both


def test_export_ort_format_refuses_a_file_in_the_way_and_leaves_the_folder(copy_of, tiny_classifier,  # noqa: F811
                                                                             full_test_split):
    entries = manifest.read(copy_of)["files"]
    del entries["classifier.ort"]  # the file stays: now somebody's own, not listed
    manifest.write(copy_of, {n: {k: v for k, v in e.items() if k not in ("size_bytes", "sha256")}
                             for n, e in entries.items()}, producer="fmnist-edge")
    before = {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()}
    result = cli("export", tiny_classifier, "--out", copy_of, "--ort-format", "--data-dir", full_test_split)
    refused(result, "classifier.ort", "not listed")
    assert {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()} == before


def test_export_ort_format_converts_in_the_same_swap(copy_of, other_classifier, full_test_split):  # noqa: F811
    result = cli("export", other_classifier, "--out", copy_of, "--ort-format", "--platform", "x86",
                 "--data-dir", full_test_split)
    assert result.exit_code == 0, result.output
    files = manifest.read(copy_of)["files"]
    assert files["classifier.ort"]["platform"] == "x86" and files["encoder.ort"]["platform"] == "x86"
    assert files["classifier.ort"]["source_sha256"] == files["classifier.onnx"]["sha256"]
    assert "classifier.int8.ort" not in files  # its int8 source was left behind by the re-export
    assert files["classifier.ort"]["validation"]["max_abs_diff_vs_onnx"] <= 1e-4
    for name in files:
        assert manifest.verify(copy_of / name) == files[name]


def test_an_altered_twin_is_converted_again_and_figures_stay_without_validation(copy_of):
    data = bytearray((copy_of / "encoder.ort").read_bytes())
    data[-1] ^= 1
    (copy_of / "encoder.ort").write_bytes(bytes(data))
    before = manifest.read(copy_of)["files"]
    result = cli("to-ort", copy_of, "--no-validate")
    assert result.exit_code == 0, result.output
    assert "converting encoder.onnx to encoder.ort" in result.stderr
    assert "keeping classifier.ort" in result.stderr
    after = manifest.read(copy_of)["files"]
    assert manifest.verify(copy_of / "encoder.ort") == after["encoder.ort"]
    assert after["classifier.ort"]["validation"] == before["classifier.ort"]["validation"]  # same bytes, same source
    assert "validation" not in after["encoder.ort"]  # new bytes, not checked


def test_a_model_folder_may_be_named_like_a_file(with_ort, tmp_path):
    folder = tmp_path / "device.ort"
    shutil.copytree(with_ort, folder)
    from fmnist_edge.runtime import FashionClassifier

    assert FashionClassifier.load(folder).path == folder / "classifier.onnx"


def test_to_ort_through_a_symlink_converts_its_target_and_keeps_the_link(copy_of):
    for twin in [ort_name(n) for n in _onnx_names()]:
        (copy_of / twin).unlink()
    link = copy_of.parent / "link"
    link.symlink_to(copy_of.name)
    result = cli("to-ort", link, "--no-validate")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and (copy_of / "classifier.ort").is_file()
    assert "classifier.ort" in manifest.read(copy_of)["files"]
    assert not list(copy_of.parent.glob(".staging-*"))


def test_a_failed_conversion_names_the_folder_not_its_staging_copy(copy_of):
    import hashlib

    (copy_of / "classifier.onnx").write_text("not a model")
    data = json.loads((copy_of / "manifest.json").read_text())
    data["files"]["classifier.onnx"]["sha256"] = hashlib.sha256(b"not a model").hexdigest()
    (copy_of / "manifest.json").write_text(json.dumps(data))
    before = {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()}
    line = refused(cli("to-ort", copy_of, "--no-validate"), f"{copy_of / 'classifier.onnx'}: cannot be converted")
    assert ".staging-" not in line
    assert {p.name: p.read_bytes() for p in copy_of.iterdir() if p.is_file()} == before
