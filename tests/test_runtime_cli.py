"""`fmnist-edge classify | encode | reconstruct | models | bench` through typer's CliRunner, on the fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke, refused


FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).parents[1] / "exported" / "samples"


def test_classify_table(run):
    result = run("classify", SAMPLES / "shirt.png", SAMPLES / "trouser.png", "--model", FIXTURES)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and "probability" in lines[0]
    assert lines[1].startswith(str(SAMPLES / "shirt.png")) and lines[2].startswith(str(SAMPLES / "trouser.png"))
    assert [line.split()[1] for line in lines[1:]] == ["Shirt", "Trouser"]


def test_classify_json_folder_and_glob(run):
    result = run("classify", SAMPLES, str(SAMPLES / "s*.png"), "--model", FIXTURES, "--json", "--top-k", "2",
                 "--batch-size", "3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 10 + 3  # the folder, then sandal, shirt, sneaker
    assert {r["file"] for r in rows} >= {str(SAMPLES / "trouser.png")}
    trouser = next(r for r in rows if r["file"].endswith("trouser.png"))
    assert trouser["label"] == "Trouser" and trouser["index"] == 1 and len(trouser["top_k"]) == 2
    assert set(trouser["top_k"][0]) == {"label", "probability"}


def test_mixed_good_and_bad_files(run, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    args = [SAMPLES / "bag.png", text, tmp_path / "missing.png", empty, SAMPLES / "coat.png", "--model", FIXTURES]
    result = run("classify", *args, "--json")
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [("error" in r) for r in rows] == [False, True, True, True, False]
    assert rows[1]["file"] == str(text) and "not a picture" in rows[1]["error"]
    assert "no such file" in rows[2]["error"] and "empty file" in rows[3]["error"]
    # the same line on stderr, for whoever watches the program that reads the JSON
    assert result.stderr.splitlines() == [f"fmnist-edge: error: {r['error']}" for r in rows if "error" in r]

    result = run("classify", *args)  # table: the good ones on stdout, one stderr line per bad file
    assert result.exit_code == 1
    assert "Bag" in result.stdout and "Coat" in result.stdout
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("fmnist-edge: error: ") for e in errors)


def test_altered_model_one_line_exit_1(run, tmp_path):
    shutil.copy(FIXTURES / "manifest.json", tmp_path / "manifest.json")
    data = bytearray((FIXTURES / "classifier.onnx").read_bytes())
    data[-1] ^= 1
    (tmp_path / "classifier.onnx").write_bytes(bytes(data))
    result = run("classify", SAMPLES / "shirt.png", "--model", tmp_path)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "differs from its manifest" in result.stderr


def test_wrong_input_shape_refused(run):
    result = run("classify", SAMPLES / "shirt.png", "--model", FIXTURES / "wrong-shape" / "classifier.onnx")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "has shape [batch,1,32,32]" in result.stderr


def test_no_models_anywhere(run, monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(tmp_path))
    result = run("classify", SAMPLES / "shirt.png", "--int8")
    assert result.exit_code == 1 and "classifier.int8.onnx" in result.stderr


def test_models_lists_and_checks_every_model_of_a_folder(run):
    result = run("models", FIXTURES, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert (found["folder"], found["origin"], found["manifest"]) == (str(FIXTURES), "given", True)
    rows = {m["file"]: m for m in found["models"]}
    assert set(rows) == {"encoder.onnx", "decoder.onnx", "classifier.onnx", "classifier.int8.onnx"}
    assert rows["classifier.int8.onnx"]["loaded_as"] == "int8" and rows["classifier.onnx"]["loaded_as"] == "default"
    assert all(m["status"] == "ok" for m in found["models"])

    result = run("models", FIXTURES)  # the table
    assert result.exit_code == 0 and f"models: {FIXTURES} (given)" in result.stdout
    assert result.stdout.count(" ok\n") == 4


@pytest.mark.parametrize("validation, shown", [
    ({"accuracy": 0.9275, "max_abs_diff_vs_onnx": 0.0}, "test accuracy 92.75%"),
    ({"reconstruction_mse": 0.010078}, "test MSE 0.0101"),
    ({"max_abs_diff_vs_onnx": 0.0}, "the outputs of its .onnx"),
    ({"max_abs_diff_vs_onnx": 4.8e-6}, "within 4.8e-06 of its .onnx"),
    ({"max_abs_diff_vs_torch": 6.7e-6}, "within 6.7e-06 of PyTorch"),
    ({"max_abs_diff_vs_fp32": 0.12}, "within 1.2e-01 of fp32"), ({}, "")])
def test_models_shows_each_files_own_export_figure(validation, shown):
    from fmnist_edge.runtime.inventory import _figure

    assert _figure({"validation": validation}) == shown


def test_models_without_a_folder_is_the_repositorys_exported_folder(run, monkeypatch):
    monkeypatch.delenv("FMNIST_EDGE_MODELS", raising=False)
    result = run("models", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert (found["folder"], found["origin"]) == (str(SAMPLES.parent), "the repository's exported/")
    assert found["samples"] == str(SAMPLES) and len(found["models"]) == 12


def test_models_of_an_empty_folder_or_an_empty_lookup_is_one_line(run, monkeypatch, tmp_path):
    refused(run("models", tmp_path), str(tmp_path), "no model files")
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(tmp_path))
    line = refused(run("models"), "no exported model files found", str(tmp_path))
    assert "classifier.int8.ort" not in line  # not the twelve names


def test_models_names_the_lookup_and_refuses_an_altered_file(run, monkeypatch, tmp_path):
    for name in ("manifest.json", "classifier.onnx", "encoder.onnx"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    (tmp_path / "classifier.ort").write_bytes(b"not a model")  # a twin the manifest does not list
    data = bytearray((tmp_path / "encoder.onnx").read_bytes())
    data[-1] ^= 1
    (tmp_path / "encoder.onnx").write_bytes(bytes(data))
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(tmp_path))
    result = run("models", "--json")
    assert result.exit_code == 1
    found = json.loads(result.stdout)
    assert found["origin"] == "$FMNIST_EDGE_MODELS" and found["samples"] is None
    rows = {m["file"]: m for m in found["models"]}
    assert rows["classifier.onnx"]["status"] == "ok"
    assert rows["classifier.ort"]["loaded_as"] == "classifier.onnx is preferred"
    assert "not listed" in rows["classifier.ort"]["status"]
    assert "differs from its manifest" in rows["encoder.onnx"]["status"]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith(f"fmnist-edge: error: {tmp_path}") for e in errors)


@pytest.mark.parametrize("bits, no_vnni, noted", [(8, True, True), (7, True, False), (8, False, False),
                                                  (None, True, True)])
def test_models_notes_eight_bit_int8_kernels_on_a_cpu_without_vnni(run, monkeypatch, tmp_path, bits, no_vnni,
                                                                   noted):
    from fmnist_edge import manifest as manifest_file
    from fmnist_edge.runtime import inventory

    for name in ("classifier.onnx", "classifier.int8.onnx"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    quantization = {"method": "qdq", **({"weight_bits": bits} if bits else {})}  # None: an older export
    manifest_file.write(tmp_path, {"classifier.onnx": {"kind": "classifier"},
                                   "classifier.int8.onnx": {"kind": "classifier", "quantization": quantization}})
    monkeypatch.setattr(inventory, "saturates_here", lambda: no_vnni)
    result = run("models", tmp_path)
    assert result.exit_code == 0, result.output
    assert ("note: classifier.int8.onnx: 8-bit weights in int8 kernels saturate" in result.stdout) == noted


def test_encode(run, tmp_path):
    out = tmp_path / "latents.npy"
    result = run("encode", SAMPLES, tmp_path / "missing.png", "-o", out, "--model", FIXTURES)
    assert result.exit_code == 1 and "missing.png: no such file" in result.stderr  # the rest still encoded
    assert np.load(out).shape == (10, 8)


def test_encode_into_npz_names_each_rows_picture(run, tmp_path):
    out = tmp_path / "latents.npz"
    pictures = [SAMPLES / "bag.png", tmp_path / "missing.png", SAMPLES / "coat.png"]
    result = run("encode", *pictures, "-o", out, "--model", FIXTURES)
    assert result.exit_code == 1 and "missing.png: no such file" in result.stderr
    with np.load(out) as saved:  # no pickle needed: the names are a string array
        assert set(saved.files) == {"latents", "files"}
        assert saved["files"].tolist() == [str(SAMPLES / "bag.png"), str(SAMPLES / "coat.png")]
        alone = np.load(_encoded(run, tmp_path, SAMPLES / "coat.png"))
        np.testing.assert_array_equal(saved["latents"][1], alone[0])
    usage = run("encode", SAMPLES / "bag.png", "-o", tmp_path / "z.npy.txt", "--model", FIXTURES)
    assert usage.exit_code == 2 and "written as .npy or .npz" in usage.stderr


def _encoded(run, tmp_path, picture) -> Path:
    out = tmp_path / f"{picture.stem}.npy"
    assert run("encode", picture, "-o", out, "--model", FIXTURES).exit_code == 0
    return out


def test_reconstruct(run, tmp_path):
    out = tmp_path / "rec.png"
    result = run("reconstruct", SAMPLES / "dress.png", "-o", out, "--model", FIXTURES, "--scale", "4")
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (58 * 4, 28 * 4)


def test_bench_json_and_markdown(run, tmp_path):
    result = run("bench", "--models", FIXTURES, "--batch-sizes", "1,16", "--threads", "1", "--seconds", "0.02",
                 "--no-torch", "--json", tmp_path / "b.json", "--markdown", tmp_path / "b.md")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    rows = report["results"]
    assert {(r["model"], r["batch"]) for r in rows} == {(m, b) for m in ("classifier", "classifier.int8")
                                                       for b in (1, 16)}
    for key in ("mean_us", "std_us", "p50_us", "p90_us", "p99_us", "images_per_s", "startup_ms", "peak_rss_mb",
                "size_bytes"):
        assert all(r[key] > 0 for r in rows), key
    assert all("speedup_vs_classifier" in r for r in rows if r["model"] == "classifier.int8")
    markdown = (tmp_path / "b.md").read_text()
    assert "| classifier.int8 |" in markdown
    env = report["environment"]  # what the figures were measured on, in both files
    assert env["cpu"] and isinstance(env["cpu_flags"], list) and env["onnxruntime"]
    assert markdown.startswith(f"Measured on {env['cpus']} CPUs of {env['cpu']}")
    assert report["rounds"] == 3 and "in 3 round(s), the models taking turns" in markdown


def test_bench_bad_option(run):
    result = run("bench", "--models", FIXTURES, "--batch-sizes", "1,x")
    assert result.exit_code == 2 and "--batch-sizes" in result.stderr
    for typo in ("1,,8", "1,", ","):  # an empty item is refused, not skipped
        result = run("bench", "--models", FIXTURES, "--batch-sizes", typo, "--no-torch")
        assert result.exit_code == 2 and "--batch-sizes" in result.stderr, typo
    result = run("bench", "--models", FIXTURES, "--rounds", "0")
    assert result.exit_code == 2 and "--rounds" in result.stderr


def test_a_folder_without_pictures_is_an_error_alone_or_among_others(run, tmp_path):
    (tmp_path / "notes.txt").write_text("no picture")
    refused(run("classify", tmp_path, "--model", FIXTURES), f"{tmp_path}: no pictures in this folder")
    result = run("classify", tmp_path, SAMPLES / "bag.png", "--model", FIXTURES)
    assert result.exit_code == 1 and "Bag" in result.stdout
    assert result.stderr.strip().splitlines() == [f"fmnist-edge: error: {tmp_path}: no pictures in this folder "
                                                  "(.png, .jpg, .webp, ...; its subfolders are not searched)"]


def test_an_oserror_no_check_foresaw_is_one_line(run, tmp_path):
    too_long = tmp_path / ("m" * 300)
    refused(run("classify", SAMPLES / "bag.png", "--model", too_long), "File name too long")
    refused(run("encode", SAMPLES / "bag.png", "-o", tmp_path / ("z" * 300 + ".npy"), "--model", FIXTURES),
            "File name too long")
    refused(run("models", too_long), "File name too long")


def test_classify_tta_gives_the_apis_mirror_averaged_probability(run):
    from fmnist_edge.runtime import FashionClassifier

    shirt = SAMPLES / "shirt.png"
    rows = [json.loads(line) for line in run("classify", shirt, "--model", FIXTURES, "--json", "--tta").stdout.splitlines()]
    expected = FashionClassifier.load(FIXTURES).predict(shirt, tta=True)
    assert rows[0]["label"] == expected.label
    assert abs(rows[0]["probability"] - expected.probability) < 1e-5
    plain = json.loads(run("classify", shirt, "--model", FIXTURES, "--json").stdout.splitlines()[0])
    assert abs(plain["probability"] - rows[0]["probability"]) > 1e-4


@pytest.mark.parametrize("rounds, runs", [(None, 21), ("4", 20), ("1", 20)])
def test_bench_rounds_reach_the_timing(run, tmp_path, rounds, runs):
    # With --seconds 0 every case runs its minimum: 20 calls shared out over the rounds, rounded up.
    extra = ["--rounds", rounds] if rounds else []
    result = run("bench", "--models", FIXTURES / "classifier.onnx", "--batch-sizes", "1", "--threads", "1",
                 "--seconds", "0", "--no-torch", "--json", tmp_path / "b.json", *extra)
    assert result.exit_code == 0, result.output
    assert [r["runs"] for r in json.loads((tmp_path / "b.json").read_text())["results"]] == [runs]


def test_bench_labels_same_named_models_by_folder(run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(FIXTURES / "classifier.onnx", other / "classifier.onnx")
    result = run("bench", "--models", f"{FIXTURES / 'classifier.onnx'},{other / 'classifier.onnx'},"
                 f"{FIXTURES / 'classifier.onnx'}", "--batch-sizes", "1", "--threads", "1", "--seconds", "0",
                 "--no-torch", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert [r["model"] for r in rows] == ["fixtures/classifier", "other/classifier"]  # the repeat timed once


def test_classify_reads_one_picture_from_standard_input(run):
    shirt = (SAMPLES / "shirt.png").read_bytes()
    result = invoke("classify", "-", SAMPLES / "bag.png", "--model", FIXTURES, "--json", stdin=shirt)
    assert result.exit_code == 0, result.output
    piped, bag = [json.loads(line) for line in result.stdout.splitlines()]
    direct = json.loads(run("classify", SAMPLES / "shirt.png", "--model", FIXTURES, "--json").stdout)
    assert piped["file"] == "-" and bag["file"].endswith("bag.png")
    assert {k: v for k, v in piped.items() if k != "file"} == {k: v for k, v in direct.items() if k != "file"}


@pytest.mark.parametrize("data, needle", [(b"", "empty"), (b"hello", "not a picture")])
def test_bad_standard_input_is_one_line_and_the_other_files_still_run(data, needle):
    result = invoke("classify", "-", SAMPLES / "bag.png", "--model", FIXTURES, stdin=data)
    assert result.exit_code == 1
    assert "Bag" in result.stdout
    assert result.stderr.startswith(f"fmnist-edge: error: -: {needle}")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_standard_input_named_twice_is_a_usage_error():
    result = invoke("classify", "-", "-", "--model", FIXTURES, stdin=b"x")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == "fmnist-edge: error: '-' (standard input) given 2 times; it holds one picture"


def test_a_file_named_dash_is_a_file_and_shown_by_its_full_path(tmp_path, monkeypatch):
    shutil.copy(SAMPLES / "bag.png", tmp_path / "-")
    monkeypatch.chdir(tmp_path)
    result = invoke("classify", "./-", "-", "--model", FIXTURES, "--json", stdin=(SAMPLES / "shirt.png").read_bytes())
    assert result.exit_code == 0, result.output
    bag, shirt = [json.loads(line) for line in result.stdout.splitlines()]
    assert bag["file"] == str(tmp_path / "-") and bag["label"] == "Bag"
    assert shirt["file"] == "-" and shirt["label"] == "Shirt"


def test_encode_and_reconstruct_read_standard_input(tmp_path):
    shirt = (SAMPLES / "shirt.png").read_bytes()
    result = invoke("encode", "-", "-o", tmp_path / "z.npy", "--model", FIXTURES, stdin=shirt)
    assert result.exit_code == 0, result.output
    direct = invoke("encode", SAMPLES / "shirt.png", "-o", tmp_path / "d.npy", "--model", FIXTURES, stdin=b"")
    assert direct.exit_code == 0, direct.output
    assert np.array_equal(np.load(tmp_path / "z.npy"), np.load(tmp_path / "d.npy"))
    for source, out, data in (("-", "r.png", shirt), (SAMPLES / "shirt.png", "f.png", b"")):
        result = invoke("reconstruct", source, "-o", tmp_path / out, "--model", FIXTURES, stdin=data)
        assert result.exit_code == 0, result.output
    piped, direct = (np.asarray(Image.open(tmp_path / name)) for name in ("r.png", "f.png"))
    assert piped.shape == (28 * 8, 58 * 8) and np.array_equal(piped, direct)


class _Stdin:
    def __init__(self, data=b"", tty=False):
        import io

        self.buffer, self.tty = io.BytesIO(data), tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("stdin, needle", [
    (_Stdin(tty=True), "standard input is a terminal; pipe a picture into it"),
    (None, "standard input is closed"),
    (__import__("io").StringIO("text"), "standard input is text"),
    (_Stdin(b"x" * 2048), "standard input: more than 1,024 bytes"),
])
def test_standard_input_that_holds_no_picture_is_refused(monkeypatch, stdin, needle):
    from fmnist_edge.errors import ImageError
    from fmnist_edge.runtime import inputs

    monkeypatch.setattr(inputs.sys, "stdin", stdin)
    with pytest.raises(ImageError, match=needle):
        inputs.read_stdin(limit=1024)


def test_the_python_api_never_reads_standard_input(monkeypatch, tmp_path):
    from fmnist_edge.errors import ImageError
    from fmnist_edge.runtime import inputs
    from fmnist_edge.runtime.api import FashionClassifier

    class Exploding:
        def __getattr__(self, name):
            raise AssertionError("standard input was touched")

    monkeypatch.setattr(inputs.sys, "stdin", Exploding())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageError, match="-: no such file"):
        FashionClassifier.load(FIXTURES).predict("-")


def test_version_names_the_package_and_its_engines():
    import tomllib
    from importlib import metadata

    result = invoke("--version")
    assert result.exit_code == 0, result.output
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    line = result.stdout.strip()
    assert line.startswith(f"fmnist-edge {project['version']} (onnxruntime {metadata.version('onnxruntime')}, ")
    assert f"numpy {np.__version__}" in line and "Python 3." in line


def test_version_imports_none_of_the_engines():
    import subprocess
    import sys

    code = ("import sys; from fmnist_edge.cli import versions; versions(); "
            "print([m for m in ('onnxruntime', 'numpy', 'PIL', 'torch', 'rich') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_json_lines_are_streamed_batch_by_batch(run, monkeypatch):
    import typer

    from fmnist_edge.runtime import inputs

    events, real_load, real_echo = [], inputs.to_input, typer.echo

    def load(source):
        events.append(("read", Path(str(source)).name))
        return real_load(source)

    def echo(message=None, **kw):
        if message and message.startswith("{"):
            events.append(("printed", Path(json.loads(message)["file"]).name))
        return real_echo(message, **kw)

    monkeypatch.setattr(inputs, "to_input", load)
    monkeypatch.setattr(typer, "echo", echo)
    names = ["bag.png", "coat.png", "dress.png"]
    result = run("classify", *(SAMPLES / n for n in names), "--model", FIXTURES, "--json", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert events == [("read", "bag.png"), ("read", "coat.png"), ("printed", "bag.png"), ("printed", "coat.png"),
                      ("read", "dress.png"), ("printed", "dress.png")]


def test_a_runtime_command_is_run_by_an_app_holding_it_alone(capsys):
    from fmnist_edge.cli import RUNTIME_COMMANDS, build_app, main

    for name in RUNTIME_COMMANDS:
        assert [c.name for c in build_app(name).registered_commands] == [name]
    assert {c.name for c in build_app().registered_commands} >= RUNTIME_COMMANDS | {"export", "reproduce"}
    with pytest.raises(SystemExit) as exited:
        main(["classify", str(SAMPLES / "trouser.png"), "--model", str(FIXTURES), "--json"])
    assert exited.value.code == 0
    assert json.loads(capsys.readouterr().out)["label"] == "Trouser"


def test_arguments_that_name_no_picture_fail_alone(run, tmp_path, monkeypatch):
    """An empty argument (not the working folder's pictures), a name too long for the system and
    a name with a newline each get one line of their own; the good pictures are still classified."""
    monkeypatch.chdir(SAMPLES)  # where "" would have found ten pictures
    newline = tmp_path / "bad\nname.png"
    newline.write_bytes(b"")
    too_long = str(tmp_path / ("a" * 300 + ".png"))
    result = run("classify", "", SAMPLES / "bag.png", too_long, newline, "--model", FIXTURES)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Bag" in result.stdout and len(result.stdout.strip().splitlines()) == 2  # header and bag
    errors = result.stderr.strip().splitlines()
    assert errors == ["fmnist-edge: error: '': an empty argument names no picture",
                      f"fmnist-edge: error: {too_long}: unreadable (File name too long)",
                      f"fmnist-edge: error: {tmp_path}/bad\\nname.png: empty file"]
    rows = [json.loads(line) for line in run("classify", newline, "--model", FIXTURES, "--json").stdout.splitlines()]
    assert rows == [{"file": str(newline), "error": f"{tmp_path}/bad\\nname.png: empty file"}]
    refused(run("reconstruct", "", "-o", tmp_path / "r.png", "--model", FIXTURES), "'': an empty argument")
    assert refused(run("reconstruct", newline, "-o", tmp_path / "r.png", "--model", FIXTURES)).endswith(
        "bad\\nname.png: empty file")


def test_a_folder_that_cannot_be_searched_or_listed_costs_its_own_line(run, tmp_path, monkeypatch):
    """Root searches any folder, so the refusal the system gives a user is put in its place."""
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(SAMPLES / "coat.png", locked / "coat.png")
    real_is_dir, real_iterdir = Path.is_dir, Path.iterdir

    def refuse(path):
        if str(path).startswith(str(locked)):
            raise PermissionError(13, "Permission denied", str(path))

    def is_dir(self):
        if self != locked:
            refuse(self)  # a path inside: the folder cannot be searched
        return real_is_dir(self)

    def iterdir(self):
        refuse(self)  # the folder itself: it cannot be listed
        return real_iterdir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = run("classify", locked / "coat.png", locked, SAMPLES / "bag.png", "--model", FIXTURES)
    assert result.exit_code == 1 and "Traceback" not in result.output
    rows = result.stdout.strip().splitlines()[1:]  # under the header
    assert len(rows) == 1 and rows[0].split()[:2] == [str(SAMPLES / "bag.png"), "Bag"]
    assert result.stderr.strip().splitlines() == [
        f"fmnist-edge: error: {locked / 'coat.png'}: unreadable (Permission denied)",
        f"fmnist-edge: error: {locked}: unreadable (Permission denied)"]


def test_the_command_line_turns_ort_telemetry_off_and_keeps_a_users_setting(tmp_path):
    """Set before onnxruntime is imported (its telemetry warns as it loads); the API leaves the
    host's environment alone."""
    import os
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\n"
        "class Seen:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnxruntime':\n"
        "            open(os.environ['SEEN'], 'a').write(repr(os.environ.get('ORT_DISABLE_TELEMETRY')) + '\\n')\n"
        "sys.meta_path.insert(0, Seen())\n")
    seen = tmp_path / "seen.txt"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(PYTHONPATH=str(tmp_path), SEEN=str(seen))
    calls = ([sys.executable, "-m", "fmnist_edge", "classify", SAMPLES / "bag.png", "--model", FIXTURES], {}),\
            ([sys.executable, "-m", "fmnist_edge", "models", FIXTURES], {"ORT_DISABLE_TELEMETRY": "0"}),\
            ([sys.executable, "-c", "from fmnist_edge.runtime import FashionClassifier"], {})
    for cmd, extra in calls:
        done = subprocess.run([str(c) for c in cmd], env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert seen.read_text().splitlines() == ["'1'", "'0'", "None"]


def test_a_picture_from_a_pipe_path_is_read_whole(tmp_path):
    """/dev/stdin, a FIFO or process substitution has no size to check: it is read, not refused
    as empty."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "fmnist_edge", "classify", "/dev/stdin", "--model", str(FIXTURES), "--json"]
    done = subprocess.run(cmd, input=(SAMPLES / "trouser.png").read_bytes(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["file"] == "/dev/stdin" and "label" in json.loads(done.stdout)
    empty = subprocess.run(cmd, input=b"", capture_output=True, timeout=120)
    assert empty.returncode == 1 and b"/dev/stdin: empty" in empty.stdout


def test_outputs_that_cannot_hold_the_result_are_refused_first(run, tmp_path):
    for args, needle in [(("encode", SAMPLES / "bag.png", "-o", tmp_path / "z.png"), "latents are written as .npy"),
                         (("reconstruct", SAMPLES / "bag.png", "-o", tmp_path / "r.npy"), "no picture format"),
                         (("reconstruct", SAMPLES / "bag.png", "-o", tmp_path / "r.blp"), "no picture format"),
                         (("encode", SAMPLES / "bag.png", "-o", "-"), "standard output is not supported"),
                         (("reconstruct", SAMPLES / "bag.png", "-o", "-"), "standard output is not supported")]:
        result = run(*args, "--model", FIXTURES)
        assert result.exit_code == 2 and needle in result.stderr and "Traceback" not in result.output, args
    assert list(tmp_path.iterdir()) == [] and not Path("-").exists()
    assert run("reconstruct", SAMPLES / "bag.png", "-o", tmp_path / "r.jpg", "--model", FIXTURES).exit_code == 0
    assert Image.open(tmp_path / "r.jpg").format == "JPEG"
    assert run("reconstruct", SAMPLES / "bag.png", "-o", tmp_path / "r", "--model", FIXTURES).exit_code == 0
    assert Image.open(tmp_path / "r").format == "PNG"  # no suffix: PNG
    for command in ("encode", "reconstruct"):  # a device takes any name
        assert run(command, SAMPLES / "bag.png", "-o", "/dev/null", "--model", FIXTURES).exit_code == 0
    assert Path("/dev/null").is_char_device()


@pytest.mark.torch  # onnx, to write the broken model, comes with the train extra
def test_a_model_whose_scores_are_nan_gives_no_answer(run, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    model = onnx.load(FIXTURES / "classifier.onnx")
    last = model.graph.node[-1]  # the fixture's logits: x @ W + b
    bias = next(i for i in model.graph.initializer if i.name == last.input[-1])
    bias.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(bias).shape, np.nan, np.float32), bias.name))
    onnx.save(model, tmp_path / "nan.onnx")
    refused(run("classify", SAMPLES / "bag.png", "--model", tmp_path / "nan.onnx"), "NaN or infinite")
    refused(run("classify", SAMPLES / "bag.png", "--model", tmp_path / "nan.onnx", "--tta", "--json"), "NaN")


def test_a_broken_manifest_is_one_line_for_its_folder(run, tmp_path):
    for name in ("classifier.onnx", "encoder.onnx", "decoder.onnx", "manifest.json"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    (tmp_path / "manifest.json").write_text("{")
    refused(run("models", tmp_path), "manifest.json: unreadable manifest")
    data = json.loads((FIXTURES / "manifest.json").read_text())
    data["files"]["classifier.onnx"]["kind"] = ["classifier"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    for args in (("models", tmp_path), ("classify", SAMPLES / "bag.png", "--model", tmp_path)):
        refused(run(*args), "the entry for classifier.onnx has a kind of the wrong type")


def test_bench_without_a_model_named_is_a_usage_error(run):
    result = run("bench", "--models", ",", "--no-torch")
    assert result.exit_code == 2 and "--models: no file or folder named" in result.stderr


def test_ctrl_c_while_the_command_starts_is_one_line_and_130(tmp_path):
    """A Ctrl-C that lands while typer is still being imported (the first tenth of a second)."""
    import os
    import subprocess
    import sys

    fake = tmp_path / "fake" / "typer"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise KeyboardInterrupt\n")  # as if the signal came now
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(Path(__file__).parents[1])])}
    proc = subprocess.run([sys.executable, "-m", "fmnist_edge", "classify", str(SAMPLES / "shirt.png")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 130 and proc.stderr == "fmnist-edge: error: interrupted\n", proc.stderr
