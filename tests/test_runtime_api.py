"""fmnist_edge.runtime API and sessions, on the committed linear fixture models."""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist_edge.errors import ImageError, ModelError, UsageError
from fmnist_edge.runtime import FashionAutoencoder, FashionClassifier, Prediction
from fmnist_edge.runtime.session import OnnxModel, model_file, models_dir
from fmnist_edge.spec import CLASS_NAMES
from conftest import refused

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).parents[1] / "exported" / "samples"


@pytest.fixture(scope="module")
def clf() -> FashionClassifier:
    return FashionClassifier.load(FIXTURES)


@pytest.fixture(scope="module")
def samples() -> list[Path]:
    paths = sorted(SAMPLES.glob("*.png"))
    assert len(paths) == 10, "run tools/make_samples.py"
    return paths


def test_one_path_gives_one_prediction(clf, samples):
    pred = clf.predict(SAMPLES / "trouser.png", top_k=3)
    assert isinstance(pred, Prediction)
    assert pred.label == "Trouser" and pred.index == 1 and pred.source.endswith("trouser.png")
    assert len(pred.top_k) == 3 and pred.top_k[0] == (pred.label, pred.probability)
    assert sum(p for _, p in pred.top_k) <= 1.0 + 1e-6
    assert set(pred.to_dict()) == {"file", "label", "index", "probability", "top_k"}


def test_paths_pil_and_arrays_agree(clf, samples):
    by_path = clf.predict([str(p) for p in samples])
    by_pil = clf.predict([Image.open(p) for p in samples])
    arrays = np.stack([np.asarray(Image.open(p)) for p in samples])  # (10, 28, 28) uint8
    by_batch = clf.predict(arrays)
    by_float = clf.predict(arrays[:, None] / 255.0)  # (10, 1, 28, 28) float
    for preds in (by_pil, by_batch, by_float):
        assert [p.index for p in preds] == [p.index for p in by_path]
        np.testing.assert_allclose([p.probability for p in preds], [p.probability for p in by_path], atol=1e-5)
    assert isinstance(clf.predict(arrays[0]), Prediction)  # one (28, 28) array is one picture


def test_a_stack_of_framed_pictures_is_scaled_at_once_to_what_each_alone_gives(clf, samples):
    """The one-pass scaling of an (N, 28, 28) stack matches the per-picture path bit for bit, and
    leaves to it every stack it cannot take whole: 0-255 floats, other integers, a blank picture."""
    from fmnist_edge.runtime import api, preprocess

    u8 = np.stack([np.asarray(Image.open(p)) for p in samples])
    stacks = {"uint8": u8, "uint16": u8.astype(np.uint16) * 257, ">u2": (u8.astype(np.uint16) * 257).astype(">u2"),
              "float32": u8 / np.float32(255), "float64 overshoot": np.clip(u8 / 255.0 * 1.04 - 0.02, -0.03, 1.04)}
    for name, stack in stacks.items():
        assert preprocess.framed_stack(stack) is not None, name
        each = np.stack([preprocess.from_array(a) for a in stack])
        assert np.array_equal(api.prepare(stack), each), name
    for name, stack in {"0-255 floats": u8.astype(np.float32), "int64": u8.astype(np.int64)}.items():
        assert preprocess.framed_stack(stack) is None, name  # the per-picture path, which reads their scale
        assert np.array_equal(api.prepare(stack), api.prepare(u8)), name
    blank = u8.copy()
    blank[7] = 40
    assert preprocess.framed_stack(blank) is None
    with pytest.raises(ImageError, match=r"^array\[7\]: blank picture"):
        clf.predict(blank)


def test_a_gray_and_alpha_array_is_one_picture_composited_on_white(clf, samples):
    """(H, W, 2), as numpy gives a Pillow LA image: one picture, as that image gives, not H
    pictures two pixels wide."""
    from fmnist_edge.runtime import preprocess

    gray = np.asarray(Image.open(samples[0]).resize((56, 56)))
    la = np.stack([255 - gray, np.full_like(gray, 255)], axis=-1)  # a dark garment on white, opaque
    la[:3, :, 1] = 0  # a transparent strip: white once composited, as the rest of the background
    as_pil = preprocess.from_pil(Image.fromarray(la, mode="LA"))
    np.testing.assert_array_equal(preprocess.from_array(la), as_pil)
    assert isinstance(clf.predict(la), Prediction)


def test_a_picture_files_bytes_are_one_picture(clf, samples):
    data = samples[0].read_bytes()
    by_bytes = clf.predict(data)
    assert isinstance(by_bytes, Prediction) and by_bytes.index == clf.predict(samples[0]).index
    many = clf.predict([data, bytearray(data), memoryview(data)])
    assert [p.probability for p in many] == [by_bytes.probability] * 3


def test_a_binary_file_object_is_one_picture_read_from_where_it_stands(clf, samples, tmp_path):
    import io

    data = samples[0].read_bytes()
    expected = clf.predict(data).probability
    with open(samples[0], "rb") as handle:
        pred = clf.predict(handle)
        assert not handle.closed  # the caller's to close
    assert pred.probability == expected and pred.source is None
    stream = io.BytesIO(b"header" + data)
    stream.seek(6)  # an upload's stream, already past its own header
    assert [p.probability for p in clf.predict([stream, io.BytesIO(data)])] == [expected] * 2
    with open(samples[0], "rb") as handle:  # named by its file in results and errors
        assert [name for name, _ in clf.classify_files([handle, io.BytesIO(b"junk")])] == [
            str(samples[0]), "file object[1]"]
    with open(samples[0], "rb") as handle:
        handle.read()  # at its end: nothing left to read
        with pytest.raises(ImageError, match=f"{samples[0].name}: empty$"):
            clf.predict(handle)
    text = tmp_path / "a.png"
    text.write_bytes(data[:8])
    for encoding in ("utf-8", "latin-1"):  # a PNG's bytes are not UTF-8: refused before decoding them
        with open(text, encoding=encoding) as handle:
            with pytest.raises(ImageError, match="a.png: a text stream; open a picture with 'rb'"):
                clf.predict(handle)

    class AsyncUpload:  # Starlette's UploadFile: read() is a coroutine
        filename = "upload.png"

        async def read(self, size=-1):
            return data

    with pytest.raises(ImageError, match=r"file object: its read\(\) is async; pass the bytes it gives"):
        clf.predict(AsyncUpload())
    closed = io.BytesIO(data)
    closed.close()
    with pytest.raises(ImageError, match="file object: unreadable file object"):
        clf.predict(closed)


@pytest.mark.parametrize("bad", [{"shirt.png": 1}, {"shirt.png"}])
def test_a_dict_or_a_set_is_not_a_list_of_pictures(clf, bad):
    with pytest.raises(ImageError, match=r"^an? (dict|set) is not a picture: .*, or a list of them$"):
        clf.predict(bad)


def test_an_empty_batch_gives_no_answers_of_every_form(clf):
    for empty in ([], (), np.zeros((0, 28, 28), np.uint8), np.zeros((0, 1, 28, 28), np.float32)):
        assert clf.predict(empty) == []
        assert clf.probabilities(empty).shape == (0, len(CLASS_NAMES))
    assert FashionAutoencoder.load(FIXTURES).encode(np.zeros((0, 28, 28))).shape[0] == 0


@pytest.mark.parametrize("bad, needle", [
    (None, "None is not a picture"), (5, "an int is not a picture"),
    (b"not a picture", "bytes: not a picture"),
    (np.zeros((28, 28, 3, 5)), "array[0]: an array of shape (28, 3, 5) is not a picture"),
    (np.zeros(5), "an array of shape (5,) is neither a picture nor a stack"),
    ([SAMPLES / "shirt.png", 3.5], "a float is not a picture")])
def test_what_is_not_a_picture_is_an_image_error_that_says_what_it_got(clf, bad, needle):
    with pytest.raises(ImageError) as raised:
        clf.predict(bad)
    assert needle in str(raised.value)


def test_batch_size_does_not_change_answers(clf):
    x = np.random.default_rng(0).random((37, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(clf.probabilities(x, batch_size=5), clf.probabilities(x, batch_size=256), atol=1e-6)
    assert clf.probabilities([]).shape == (0, len(CLASS_NAMES))


def test_the_direct_call_is_the_sessions_own_run_and_falls_back_to_it(monkeypatch):
    """OnnxModel.run skips InferenceSession.run's per-call Python checks (0.4 to 0.8 us a call)
    by calling the compiled session; the answers are the public run's, bit for bit, and an
    onnxruntime without the compiled handle gets the public run."""
    from fmnist_edge.runtime import session as session_module

    model = OnnxModel(FIXTURES / "classifier.onnx", "classifier", threads=1)
    x = np.random.default_rng(1).random((9, 1, 28, 28), dtype=np.float32)
    public = model.session.run([model.output_name], {model.input_name: x})[0]
    assert model._run.__self__ is model.session._sess
    assert np.array_equal(model.run(x), public) and np.array_equal(model.run(x, batch_size=4), public)

    class PublicOnly:
        def run(self, outputs, feed, options=None):
            return model.session.run(outputs, feed, options)

    fallback = PublicOnly()
    assert session_module._direct_run(fallback) == fallback.run
    monkeypatch.setattr(model, "_run", fallback.run)
    assert np.array_equal(model.run(x), public)


def test_one_image_goes_through_each_threads_own_bound_buffers():
    """A batch-1 call runs on buffers bound once per thread: the answers are the public run's,
    bit for bit, a returned array is never overwritten by a later call, and threads calling at
    once each get their own image's answer."""
    model = OnnxModel(FIXTURES / "classifier.onnx", "classifier", threads=1)
    images = np.random.default_rng(2).random((64, 1, 1, 28, 28), dtype=np.float32)
    public = [model.session.run([model.output_name], {model.input_name: x})[0] for x in images]
    first = model.run(images[0])
    assert model._single.bound[1].shape == (1, 1, 28, 28)  # the single-image path ran
    second = model.run(images[1])
    assert np.array_equal(first, public[0]) and np.array_equal(second, public[1])
    assert not np.shares_memory(first, second)

    def run_all(offset: int) -> list[bool]:
        order = [(i + offset) % len(images) for i in range(len(images))] * 20
        return [np.array_equal(model.run(images[i]), public[i]) for i in order]

    with ThreadPoolExecutor(4) as pool:
        assert all(all(ok) for ok in pool.map(run_all, range(4)))


@pytest.mark.parametrize("name", ["classifier.onnx", "classifier.int8.onnx"])
def test_a_large_batch_runs_its_chunks_side_by_side_with_one_threads_answers(name):
    """On several threads, a batch of many chunks runs them side by side, each worker on a
    one-thread session of its own (benchmarks/data_parallel): the answers are one thread's, bit
    for bit and in order, also when several callers share the model at once; int8 weights are
    folded in those sessions too."""
    one = OnnxModel(FIXTURES / name, "classifier", threads=1)
    two = OnnxModel(FIXTURES / name, "classifier", threads=2)
    batches = np.random.default_rng(4).random((4, 301, 1, 28, 28), dtype=np.float32)
    expected = [one.run(x, batch_size=64) for x in batches]
    assert one._side_by_side is None  # one thread: the chunks in sequence
    assert np.array_equal(two.run(batches[0], batch_size=64), expected[0])
    pool, slots = two._side_by_side  # the chunks ran side by side: the caller and one helper
    assert pool._max_workers == 1 and slots.qsize() == 2 and two.run(batches[0][:64], batch_size=64).shape == (64, 10)
    with ThreadPoolExecutor(4) as callers:
        got = list(callers.map(lambda i: two.run(batches[i], batch_size=64), [0, 1, 2, 3] * 3))
    assert all(np.array_equal(g, expected[i % 4]) for i, g in enumerate(got))


class _CountingSession:
    """Stands in for a one-thread ONNX Runtime session: answers each image with its first
    pixel, records how many calls run at once, in all and on itself, and fails on call `fail_at`."""

    def __init__(self, log: dict, fail_at: int | None = None):
        self.log, self.fail_at, self.busy = log, fail_at, 0
        self._sess = self

    def run(self, outputs, feed, options):
        log = self.log
        with log["lock"]:
            log["calls"] += 1
            call = log["calls"]
            log["active"] += 1
            self.busy += 1
            log["most"] = max(log["most"], log["active"])
            log["shared"] = log["shared"] or self.busy > 1
        try:
            time.sleep(0.002)
            if call == self.fail_at:
                raise RuntimeError("chunk failed")
            x = next(iter(feed.values()))
            return [np.repeat(x[:, 0, 0, :1], 10, axis=1)]
        finally:
            with log["lock"]:
                log["active"] -= 1
                self.busy -= 1


def _counting_model(monkeypatch, threads: int, fail_at: int | None = None) -> tuple[OnnxModel, dict]:
    model = OnnxModel(FIXTURES / "classifier.onnx", "classifier", threads=threads)
    log = {"lock": threading.Lock(), "calls": 0, "active": 0, "most": 0, "shared": False}
    monkeypatch.setattr(model, "_open", lambda threads: _CountingSession(log, fail_at))
    return model, log


def _numbered(count: int) -> np.ndarray:
    x = np.zeros((count, 1, 28, 28), np.float32)
    x[:, 0, 0, 0] = np.arange(count)
    return x


def test_many_callers_of_a_large_batch_compute_on_at_most_threads_sessions_at_once(monkeypatch):
    """However many threads call at once, no more chunks compute at a time than the model has
    threads, no two on one session, and each caller gets its own images' answers in order."""
    model, log = _counting_model(monkeypatch, threads=2)
    x = _numbered(96)
    with ThreadPoolExecutor(6) as callers:
        got = list(callers.map(lambda _: model.run(x, batch_size=8), range(12)))
    assert all(np.array_equal(g[:, 0], np.arange(96)) for g in got)
    assert log["calls"] == 12 * 12 and log["most"] <= 2 and not log["shared"]
    assert model._side_by_side[1].qsize() == 2  # every slot back, none opened twice over


def test_a_failing_chunk_stops_the_batch_and_is_raised_once_no_helper_runs(monkeypatch):
    """The first error stops the caller and its helper after their current chunk; it is raised
    only when nothing reads the caller's array any more, and the model still answers after it."""
    model, log = _counting_model(monkeypatch, threads=2, fail_at=3)
    x = _numbered(160)  # 20 chunks of 8
    with pytest.raises(RuntimeError, match="chunk failed"):
        model.run(x, batch_size=8)
    calls = log["calls"]
    time.sleep(0.05)
    assert log["calls"] == calls < 20 and log["active"] == 0
    assert np.array_equal(model.run(x, batch_size=8)[:, 0], np.arange(160))


def test_fmnist_edge_threads_sets_the_default_thread_count(monkeypatch, run):
    """Several processes on one machine each cap their threads with FMNIST_EDGE_THREADS; a
    thread count given in the call still wins, and a bad value is one error line."""
    monkeypatch.setenv("FMNIST_EDGE_THREADS", "1")
    model = OnnxModel(FIXTURES / "classifier.onnx", "classifier")
    assert model.threads == 1 and model.session.get_session_options().intra_op_num_threads == 1
    model.run(np.zeros((200, 1, 28, 28), np.float32), batch_size=64)
    assert model._side_by_side is None  # one thread: the chunks in sequence
    assert OnnxModel(FIXTURES / "classifier.onnx", "classifier", threads=2).threads == 2
    monkeypatch.setenv("FMNIST_EDGE_THREADS", " ")
    assert OnnxModel(FIXTURES / "classifier.onnx", "classifier").threads == len(os.sched_getaffinity(0))
    for bad in ("0", "two", "-1", "100000"):
        monkeypatch.setenv("FMNIST_EDGE_THREADS", bad)
        with pytest.raises(UsageError, match=f"FMNIST_EDGE_THREADS must be an integer from 1 to 256, got '{bad}'"):
            OnnxModel(FIXTURES / "classifier.onnx", "classifier")
    refused(run("classify", SAMPLES / "shirt.png", "--model", FIXTURES / "classifier.onnx"), "FMNIST_EDGE_THREADS",
            "'100000'", exit_code=2)


def test_one_image_falls_back_to_the_feed_without_fixed_output_shapes(monkeypatch):
    model = OnnxModel(FIXTURES / "encoder.onnx", "encoder", threads=1)
    x = np.random.default_rng(3).random((1, 1, 28, 28), dtype=np.float32)
    expected = model.run(x)
    monkeypatch.setattr(model, "_single_shape", None)
    assert np.array_equal(model.run(x), expected)


def test_eight_threads_give_the_same_answers_as_one(clf, samples):
    inputs = [str(p) for p in samples] * 4
    expected = [p.to_dict() for p in clf.predict(inputs)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda path: clf.predict(path).to_dict(), inputs * 2))
    assert got == expected * 2


def test_classify_files_keeps_going_past_bad_files(clf, tmp_path, samples):
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    results = list(clf.classify_files([samples[0], bad, tmp_path / "missing.png", samples[1]], batch_size=2))
    assert [type(r) for _, r in results] == [Prediction, ImageError, ImageError, Prediction]


def test_int8_model_agrees_with_fp32(clf, samples):
    int8 = FashionClassifier.load(FIXTURES, int8=True)
    assert int8.path.name == "classifier.int8.onnx"
    assert [p.index for p in int8.predict(samples)] == [p.index for p in clf.predict(samples)]


def test_int8_with_a_named_fp32_file_is_a_model_error_to_the_api():
    with pytest.raises(ModelError, match="name the int8 file itself"):  # the CLI's exit 2 is a subclass
        FashionClassifier.load(FIXTURES / "classifier.onnx", int8=True)


def test_autoencoder_encode_decode_reconstruct(samples):
    ae = FashionAutoencoder.load(FIXTURES)
    latents = ae.encode(samples)
    assert latents.shape == (10, ae.n) and latents.dtype == np.float32
    inputs, recon = ae.reconstruct(samples[:3])
    assert inputs.shape == recon.shape == (3, 1, 28, 28)
    assert 0.0 <= recon.min() and recon.max() <= 1.0
    np.testing.assert_allclose(ae.decode(latents[:3]), recon, atol=1e-5)


def test_default_folder_from_env(monkeypatch):
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(FIXTURES))
    assert models_dir() == FIXTURES
    assert FashionClassifier.load().path == FIXTURES / "classifier.onnx"
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(FIXTURES / "nowhere"))
    with pytest.raises(ModelError, match=r"^\$FMNIST_EDGE_MODELS is .*nowhere: no such folder$"):
        FashionClassifier.load()
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(FIXTURES / "classifier.onnx"))  # a file: --model's job
    with pytest.raises(ModelError, match=r"classifier.onnx: a file; it names a folder of models \(a file goes to --model"):
        FashionClassifier.load()
    empty = FIXTURES.parent  # a folder without models: said as such
    monkeypatch.setenv("FMNIST_EDGE_MODELS", str(empty))
    with pytest.raises(ModelError, match="no exported classifier.onnx or classifier.ort found"):
        FashionClassifier.load()


def test_a_device_can_insist_on_the_manifest(tmp_path, monkeypatch, run):
    """Without a manifest a model runs unchecked, unless FMNIST_EDGE_REQUIRE_MANIFEST=1: then a
    deleted manifest cannot turn the sha256 check off."""
    shutil.copy(FIXTURES / "classifier.onnx", tmp_path / "classifier.onnx")  # no manifest.json
    assert FashionClassifier.load(tmp_path).predict(SAMPLES / "bag.png").label
    monkeypatch.setenv("FMNIST_EDGE_REQUIRE_MANIFEST", "1")
    with pytest.raises(ModelError, match=r"classifier.onnx: no manifest.json beside it to check it against "
                                         r"\(\$FMNIST_EDGE_REQUIRE_MANIFEST is set\)$"):
        FashionClassifier.load(tmp_path)
    assert FashionClassifier.load(FIXTURES).predict(SAMPLES / "bag.png").label  # with one: checked, and run
    refused(run("classify", SAMPLES / "bag.png", "--model", tmp_path), "no manifest.json beside it")
    monkeypatch.setenv("FMNIST_EDGE_REQUIRE_MANIFEST", "yes")
    with pytest.raises(UsageError, match="FMNIST_EDGE_REQUIRE_MANIFEST must be 1 or 0, got 'yes'"):
        FashionClassifier.load(FIXTURES)


def test_altered_model_is_refused(tmp_path):
    for f in ("classifier.onnx", "encoder.onnx", "manifest.json"):
        shutil.copy(FIXTURES / f, tmp_path / f)
    shutil.copy(FIXTURES / "encoder.onnx", tmp_path / "classifier.onnx")  # swapped after export
    with pytest.raises(ModelError, match="sha256 .* differs from its manifest"):
        FashionClassifier.load(tmp_path)


def test_wrong_shape_and_wrong_kind_are_refused(tmp_path):
    with pytest.raises(ModelError, match=r"input 'image' has shape \[batch,1,32,32\]"):
        FashionClassifier.load(FIXTURES / "wrong-shape" / "classifier.onnx")
    with pytest.raises(ModelError, match="is an encoder model, expected a classifier"):
        OnnxModel(FIXTURES / "encoder.onnx", "classifier")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        FashionClassifier.load(junk)
    with pytest.raises(ModelError, match="no such model file"):
        model_file(tmp_path / "missing.onnx", "classifier")


def test_tta_averages_each_picture_with_its_mirror_image(clf, samples):
    from fmnist_edge.runtime.api import prepare

    batch = prepare(samples)
    plain, mirrored = clf.probabilities(batch), clf.probabilities(np.ascontiguousarray(batch[..., ::-1]))
    assert not np.allclose(plain, mirrored, atol=1e-3)  # so the average below can differ from either
    averaged = clf.probabilities(samples, tta=True)
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(averaged.sum(1), 1.0, atol=1e-6)
    assert [p.index for p in clf.predict(samples, tta=True)] == list(averaged.argmax(1))
    from_files = [p.probability for _, p in clf.classify_files(samples, batch_size=3, tta=True)]
    np.testing.assert_allclose(from_files, averaged.max(1), rtol=1e-5)
    symmetric = (batch + batch[..., ::-1]) / 2  # a mirror-symmetric picture gains nothing from its mirror
    np.testing.assert_allclose(clf.probabilities(symmetric, tta=True), clf.probabilities(symmetric), rtol=1e-5)


def test_wrong_arguments_are_usage_errors_never_python_ones(clf):
    from fmnist_edge.errors import UsageError

    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    for bad in (0, -1, 2.0, True, "64"):
        with pytest.raises(UsageError, match=f"batch_size must be a whole number of 1 or more, got {bad!r}"):
            clf.probabilities(x, batch_size=bad)
        with pytest.raises(UsageError, match="batch_size"):
            list(clf.classify_files([SAMPLES / "shirt.png"], batch_size=bad))
    for bad in (0, -2, "3", 1.5):
        with pytest.raises(UsageError, match="top_k must be a whole number"):
            clf.predict(x, top_k=bad)
    assert len(clf.predict(x[0], top_k=50).top_k) == len(CLASS_NAMES)  # more than there are: all of them
    with pytest.raises(UsageError, match="optimisation must be one of none, basic, extended, all, got 'bogus'"):
        FashionClassifier.load(FIXTURES, optimisation="bogus")
    with pytest.raises(UsageError, match="int8 must be True or False, got 'no'"):
        FashionClassifier.load(FIXTURES, int8="no")
    with pytest.raises(UsageError, match="a model path must be a str or a path, got bytes"):
        FashionClassifier.load(str(FIXTURES).encode())
    with pytest.raises(UsageError, match="tta must be True or False"):
        clf.predict(x, tta="yes")


def test_classify_files_gives_every_item_its_own_result(clf, tmp_path, samples):
    results = list(clf.classify_files([samples[0], samples[1].read_bytes(), None, "a\x00b.png", "",
                                       np.asarray(Image.open(samples[2]))], batch_size=4))
    names = [name for name, _ in results]
    assert names[0] == str(samples[0]) and names[1] == "bytes[1]" and names[5] == "array[5]"
    assert [type(r) for _, r in results] == [Prediction, Prediction, ImageError, ImageError, ImageError, Prediction]
    assert "item 2: None is not a picture" in str(results[2][1])
    assert results[1][1].source == "bytes[1]" and results[1][1].index == clf.predict(samples[1]).index
    one = list(clf.classify_files(str(samples[3])))  # one path, not its letters
    assert len(one) == 1 and one[0][1].source == str(samples[3])


def test_a_mixed_list_keeps_the_paths_of_its_path_items(clf, samples):
    preds = clf.predict([samples[0], samples[1].read_bytes(), str(samples[2])])
    assert [p.source for p in preds] == [str(samples[0]), None, str(samples[2])]


def test_a_loaded_model_keeps_serving_the_bytes_it_verified(tmp_path):
    """The helper sessions of a large batch are opened after loading: from the bytes the manifest
    check saw, not from a file that an export has replaced since (or deleted)."""
    for f in ("classifier.onnx", "classifier.int8.onnx", "manifest.json"):
        shutil.copy(FIXTURES / f, tmp_path / f)
    clf = FashionClassifier.load(tmp_path, threads=2)
    batch = np.random.default_rng(1).random((300, 28, 28), dtype=np.float32)
    want = FashionClassifier.load(FIXTURES, threads=1).probabilities(batch)
    shutil.copy(FIXTURES / "classifier.int8.onnx", tmp_path / "classifier.onnx")
    np.testing.assert_array_equal(clf.probabilities(batch), want)  # first large batch: sessions opened now
    (tmp_path / "classifier.onnx").unlink()
    clf.model._side_by_side = None  # again, with no file left at all
    np.testing.assert_array_equal(clf.probabilities(batch), want)


def test_a_large_batch_at_interpreter_shutdown_runs_on_the_calling_thread(tmp_path):
    import subprocess
    import sys

    program = tmp_path / "flush.py"
    program.write_text(
        "import atexit, numpy as np\n"
        "from fmnist_edge.runtime import FashionClassifier\n"
        f"clf = FashionClassifier.load({str(FIXTURES)!r}, threads=2)\n"
        "def flush():\n"
        "    print(clf.probabilities(np.zeros((200, 28, 28), np.float32) + np.eye(28)).shape)\n"
        "atexit.register(flush)\n")
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "(200, 10)", done.stderr


def test_decode_refuses_latents_it_cannot_decode():
    from fmnist_edge.errors import UsageError

    ae = FashionAutoencoder.load(FIXTURES)
    n = ae.n
    for bad, needle in ((np.full((1, n), np.nan), "NaN"), (np.zeros((2, n + 1)), f"shaped \\(N, {n}\\)"),
                        (np.array([["a"] * n]), "must be numbers"), (None, "must be")):
        with pytest.raises(UsageError, match=needle):
            ae.decode(bad)
    assert ae.decode(np.zeros(n)).shape == (1, 1, 28, 28)  # one (n,) latent
    assert ae.decode(np.zeros((0, n))).shape == (0, 1, 28, 28)
    with pytest.raises(UsageError, match="without its decoder"):
        FashionAutoencoder.load(FIXTURES, with_decoder=False).decode(np.zeros((1, n)))


def test_the_runtime_package_exports_what_an_embedder_needs():
    import fmnist_edge.runtime as runtime
    from fmnist_edge import errors

    assert runtime.ImageError is errors.ImageError and runtime.FmnistEdgeError is errors.FmnistEdgeError
    assert runtime.CLASS_NAMES == CLASS_NAMES and {"FashionClassifier", "CLASS_NAMES"} <= set(dir(runtime))
    assert "classifier.onnx" in repr(FashionClassifier.load(FIXTURES))
    assert FashionAutoencoder.load(SAMPLES.parent, int8=True).encoder.path.name == "encoder.int8.onnx"
