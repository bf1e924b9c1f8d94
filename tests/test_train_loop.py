"""The training loop: run folder, early stopping, resume, divergence, frozen encoders, real data."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")

from fmnist_edge.errors import FmnistEdgeError, ModelError  # noqa: E402
from fmnist_edge.train import checkpoint, loop  # noqa: E402
from fmnist_edge.train.config import ModelConfig, TrainConfig, apply_recipe  # noqa: E402
from fmnist_edge.train.data import load_train_val  # noqa: E402
from fmnist_edge.train.data import Tensors  # noqa: E402
from fmnist_edge.train.evaluate import evaluate, mirror_averaged_accuracy  # noqa: E402
from fmnist_edge.train.loop import Diverged, Trainer, resolve_device, run_state  # noqa: E402
from fmnist_edge.train.models import build_model  # noqa: E402
from fmnist_edge.train.progress import EpochProgress  # noqa: E402

pytestmark = pytest.mark.torch

STEPS_PER_EPOCH = 6  # 540 fake training images (600 minus a tenth for validation), batch 100


def ae_trainer(run_dir, data_dir, model_cfg=None, **train_kw) -> Trainer:
    trainer_kw = {k: train_kw.pop(k) for k in ("resume", "force", "on_epoch", "encoder_ckpt") if k in train_kw}
    train_kw.setdefault("max_epochs", 1)
    train_kw.setdefault("recipe", "paper")
    return Trainer(model_cfg or ModelConfig("autoencoder", n=16, dropout=0.2), TrainConfig(**train_kw),
                   run_dir, data_dir=data_dir, device="cpu", quiet=True, **trainer_kw)


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_weights(a: dict, b: dict, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


# -- a run and its folder --------------------------------------------------------------------

def test_one_epoch_writes_the_run_folder(tmp_path, fake_data_dir):
    result = ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=2).run()
    run = tmp_path / "run"
    assert result.model_path == run / checkpoint.MODEL_FILE
    assert {p.name for p in run.iterdir()} == {"model.pt", "last.pt", "history.json", "metrics.json"}
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and history == result.history
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in history)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.metrics))
    assert metrics["epochs"] == 2 and metrics["stop_reason"] == "max-epochs"
    assert 0 < metrics["test_mse"] < 1 and metrics["test_limited"] is False
    model, payload = checkpoint.load_model(run / "model.pt")
    assert payload["history"] == history and payload["metrics"]["best_epoch"] == metrics["best_epoch"]
    assert run_state(run) == "finished"


def test_classifier_history_has_accuracy(tmp_path, fake_data_dir):
    cfg = ModelConfig("classifier", n=16, dropout=0.1, case=3)
    result = ae_trainer(tmp_path / "run", fake_data_dir, cfg).run()
    record = result.history[0]
    assert 0 <= record["train_accuracy"] <= 1 and 0 <= record["val_accuracy"] <= 1
    m = result.metrics
    assert 0 <= m["test_accuracy"] <= 1 and len(m["per_class_accuracy"]) == 10
    assert sum(map(sum, m["confusion"])) == 200
    assert 0 <= m["test_accuracy_tta"] <= 1


class HalvesModel(torch.nn.Module):
    """Logits (10 L, 10 R, c (L + R)) from the mean brightness of an image's left (L) and right
    (R) halves: a left-lit image is class 0, over class 2; its mirror is class 1."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        left, right = x[..., :14].mean((1, 2, 3)), x[..., 14:].mean((1, 2, 3))
        return torch.stack([10 * left, 10 * right, self.c * (left + right)], 1)


def test_mirror_averaged_accuracy_averages_each_images_probabilities_with_its_mirrors():
    images = torch.zeros(4, 1, 28, 28)
    images[..., :14] = 1.0  # left-lit
    data = Tensors(images, torch.tensor([2, 2, 2, 0]))
    # c = 9.9: alone, a left-lit image is class 0 (p 0.525 against 0.475 for class 2); averaged
    # with its mirror, class 2 wins (0.475 against 0.2625 for classes 0 and 1).
    assert evaluate(HalvesModel(9.9), data, "classifier")["accuracy"] == 0.25
    assert mirror_averaged_accuracy(HalvesModel(9.9), data) == 0.75
    # c = 7: averaged logits (5, 5, 7) would say class 2; averaged probabilities say class 0
    # (0.49 for classes 0 and 1, 0.02 for class 2), as the runtime's --tta does.
    assert mirror_averaged_accuracy(HalvesModel(7.0), data) == 0.25


def test_bf16_autocast_runs(tmp_path, fake_data_dir):
    result = ae_trainer(tmp_path / "run", fake_data_dir, bf16=True, limit=200).run()
    assert math.isfinite(result.history[0]["train_loss"])
    assert weights(result.model_path)["encoder.net.0.weight"].dtype == torch.float32


def test_same_seed_same_run(tmp_path, fake_data_dir):
    a = ae_trainer(tmp_path / "a", fake_data_dir, max_epochs=2).run()
    b = ae_trainer(tmp_path / "b", fake_data_dir, max_epochs=2).run()
    assert_same_weights(weights(a.model_path), weights(b.model_path))
    c = ae_trainer(tmp_path / "c", fake_data_dir, max_epochs=2, seed=1).run()
    assert c.history[0]["train_loss"] != a.history[0]["train_loss"]


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(FmnistEdgeError, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FmnistEdgeError, match="no CUDA"):
            resolve_device("cuda")


# -- early stopping --------------------------------------------------------------------------

def test_early_stopping_stops_and_restores_the_best_weights(tmp_path, fake_data_dir, monkeypatch):
    scripted = [1.0, 0.5, 0.7, 0.8, 0.9, 0.95]
    seen = []  # the model's weights at each validation

    def fake_evaluate(model, data, kind, device="cpu", **objective):
        if len(seen) < len(scripted):
            seen.append({k: v.clone() for k, v in model.state_dict().items()})
            return {"mse": scripted[len(seen) - 1]}
        return evaluate(model, data, kind, device)  # the final test evaluation

    monkeypatch.setattr(loop, "evaluate", fake_evaluate)
    result = ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=10, patience=2).run()
    assert [r["val_loss"] for r in result.history] == [1.0, 0.5, 0.7, 0.8]
    m = result.metrics
    assert (m["epochs"], m["best_epoch"], m["best_val_loss"], m["stop_reason"]) == (4, 2, 0.5, "early-stop")
    assert_same_weights(weights(result.model_path), seen[1])
    with pytest.raises(AssertionError):
        assert_same_weights(weights(result.model_path), seen[3])


# -- interruption and --resume ---------------------------------------------------------------

def interrupt_after_epoch(epoch):
    def on_epoch(record):
        if record["epoch"] == epoch:
            raise KeyboardInterrupt

    return on_epoch


def interrupt_at_step(monkeypatch, step):
    calls = {"n": 0}
    original = EpochProgress.advance

    def advance(self, loss):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        original(self, loss)

    monkeypatch.setattr(EpochProgress, "advance", advance)


def count_steps(monkeypatch) -> dict:
    """Counts the training steps run from now on: a resumed run must train only what was left,
    where a run started over would give the same seeded losses and weights."""
    calls = {"n": 0}
    original = EpochProgress.advance

    def advance(self, loss):
        calls["n"] += 1
        original(self, loss)

    monkeypatch.setattr(EpochProgress, "advance", advance)
    return calls


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fake_data_dir):
    run = tmp_path_factory.mktemp("uninterrupted")
    result = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10).run()
    return result


def test_resume_after_an_epoch(tmp_path, fake_data_dir, uninterrupted, monkeypatch):
    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2.*--resume"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, on_epoch=interrupt_after_epoch(1)).run()
    assert run_state(run) == "partial"
    assert checkpoint.load_raw(run / "last.pt")["epoch"] == 1
    with pytest.raises(FmnistEdgeError, match="interrupted run; pass --resume"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10)
    steps = count_steps(monkeypatch)
    result = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, resume=True).run()
    assert steps["n"] == 2 * STEPS_PER_EPOCH  # epochs 2 and 3 only
    assert result.metrics["epochs"] == 3 and [r["epoch"] for r in result.history] == [1, 2, 3]
    for a, b in zip(result.history, uninterrupted.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert_same_weights(weights(result.model_path), weights(uninterrupted.model_path), atol=1e-5)


def test_resume_mid_epoch(tmp_path, fake_data_dir, uninterrupted, monkeypatch):
    run = tmp_path / "run"
    interrupt_at_step(monkeypatch, STEPS_PER_EPOCH + 3)  # epoch 2, after its third step
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10).run()
    saved = checkpoint.load_raw(run / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 3)
    monkeypatch.undo()
    steps = count_steps(monkeypatch)
    result = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, resume=True).run()
    assert steps["n"] == 3 * STEPS_PER_EPOCH - (STEPS_PER_EPOCH + 3)  # the rest of epoch 2, then epoch 3
    assert result.metrics["epochs"] == 3 and len(result.history) == 3
    for a, b in zip(result.history, uninterrupted.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert_same_weights(weights(result.model_path), weights(uninterrupted.model_path), atol=1e-5)


def test_ctrl_c_after_the_last_epoch_says_how_to_finish_and_resume_finishes(tmp_path, fake_data_dir, monkeypatch,
                                                                            uninterrupted):
    import fmnist_edge.train.loop as loop

    run = tmp_path / "run"
    real = loop.evaluate
    calls = []

    def evaluate_then_ctrl_c(model, data, kind, *args, **kwargs):  # the test evaluation is the first with mirror=
        if "mirror" in kwargs and not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return real(model, data, kind, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate_then_ctrl_c)
    with pytest.raises(FmnistEdgeError, match="after the last epoch, before the test; .*last.pt holds the run: "
                                              "finish it with --resume"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10).run()
    assert run_state(run) == "partial"
    result = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, resume=True).run()
    assert result.metrics["epochs"] == 3
    assert_same_weights(weights(result.model_path), weights(uninterrupted.model_path), atol=1e-5)


def test_a_stop_asked_for_after_the_last_step_is_kept_not_lost(tmp_path, fake_data_dir, uninterrupted):
    """A SIGTERM (or Ctrl-C) that lands after the last epoch's last step, while it is validated or
    saved, finds no step left to stop before: it still stops the run before the test, which
    --resume then finishes (a reproduction would otherwise go on to its next run)."""
    import os
    import signal
    import threading

    from fmnist_edge.errors import Terminated

    if threading.current_thread() is not threading.main_thread():  # no handler of the run's: the signal would kill
        pytest.skip("a signal handler can be set in the main thread only")

    def sigterm_at_the_end(record):
        if record["epoch"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    run, before = tmp_path / "run", signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match="terminated after the last epoch, before the test; .*last.pt holds the run"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, on_epoch=sigterm_at_the_end).run()
    assert run_state(run) == "partial" and not (run / "model.pt").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # put back as it was
    result = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, resume=True).run()
    assert result.metrics["epochs"] == 3
    assert_same_weights(weights(result.model_path), weights(uninterrupted.model_path), atol=1e-5)


def test_a_run_resumed_after_it_stopped_early_stops_again(tmp_path, fake_data_dir, monkeypatch):
    """Stopped early at epoch 2 of 5, then Ctrl-C during the test: --resume finishes at epoch 2."""
    import fmnist_edge.train.loop as loop

    monkeypatch.setattr(loop.Trainer, "_stops_early", lambda self: self.epoch >= 2)
    real, calls = loop.evaluate, []

    def evaluate_then_ctrl_c(model, data, kind, *args, **kwargs):
        if "mirror" in kwargs and not calls:
            calls.append(1)
            raise KeyboardInterrupt
        return real(model, data, kind, *args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", evaluate_then_ctrl_c)
    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="after the last epoch"):
        ae_trainer(run, fake_data_dir, max_epochs=5, patience=10).run()
    result = ae_trainer(run, fake_data_dir, max_epochs=5, patience=10, resume=True).run()
    assert (result.metrics["epochs"], result.metrics["stop_reason"]) == (2, "early-stop")
    assert len(result.history) == 2


def test_resume_keeps_the_started_configuration(tmp_path, fake_data_dir):
    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2"):
        ae_trainer(run, fake_data_dir, max_epochs=2, lr=1e-3, on_epoch=interrupt_after_epoch(1)).run()
    result = ae_trainer(run, fake_data_dir, max_epochs=2, lr=5e-3, resume=True).run()
    assert checkpoint.load_raw(result.model_path)["train_config"]["lr"] == 1e-3
    assert result.metrics["epochs"] == 2


def test_finished_run_needs_force(tmp_path, fake_data_dir):
    run = tmp_path / "run"
    ae_trainer(run, fake_data_dir).run()
    with pytest.raises(FmnistEdgeError, match="already holds a finished run; pass --force") as info:
        ae_trainer(run, fake_data_dir)
    assert "\n" not in str(info.value)
    with pytest.raises(FmnistEdgeError, match="already holds a finished run"):
        ae_trainer(run, fake_data_dir, resume=True)
    result = ae_trainer(run, fake_data_dir, max_epochs=2, force=True).run()
    assert result.metrics["epochs"] == 2 and len(result.history) == 2


def test_interrupted_forced_rerun_can_be_resumed(tmp_path, fake_data_dir):
    run = tmp_path / "run"
    ae_trainer(run, fake_data_dir).run()
    with pytest.raises(FmnistEdgeError, match="continue with --resume"):
        ae_trainer(run, fake_data_dir, max_epochs=2, seed=7, force=True, on_epoch=interrupt_after_epoch(1)).run()
    assert run_state(run) == "partial"
    result = ae_trainer(run, fake_data_dir, max_epochs=2, seed=7, resume=True).run()
    assert run_state(run) == "finished"
    assert result.metrics["epochs"] == 2 and [r["epoch"] for r in result.history] == [1, 2]
    saved = torch.load(run / "model.pt", weights_only=True)
    assert (saved["train_config"]["max_epochs"], saved["train_config"]["seed"]) == (2, 7)  # not the first run's


# -- divergence ------------------------------------------------------------------------------

def nan_loss_at(monkeypatch, call, value=math.nan):
    calls = {"n": 0}
    real = loop.loss_fn

    def loss_fn(kind, cfg):
        inner = real(kind, cfg)

        def wrapped(out, x, y):
            calls["n"] += 1
            loss = inner(out, x, y)
            return loss * value if calls["n"] == call else loss

        return wrapped

    monkeypatch.setattr(loop, "loss_fn", loss_fn)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, fake_data_dir, monkeypatch):
    run = tmp_path / "run"
    nan_loss_at(monkeypatch, STEPS_PER_EPOCH + 2)  # epoch 2, step 2
    with pytest.raises(Diverged) as info:
        ae_trainer(run, fake_data_dir, max_epochs=3).run()
    message = str(info.value)
    assert "\n" not in message
    assert "diverged (nan loss at epoch 2, step 2)" in message
    assert f"last good checkpoint kept at {run / 'last.pt'}" in message
    assert not (run / "model.pt").exists()
    kept = checkpoint.load_raw(run / "last.pt")
    assert kept["epoch"] == 1 and kept["step"] == 0
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values())
    assert len(json.loads((run / "history.json").read_text())) == 1
    assert run_state(run) == "partial"


def test_divergence_in_the_first_epoch(tmp_path, fake_data_dir, monkeypatch):
    run = tmp_path / "run"
    nan_loss_at(monkeypatch, 3, value=math.inf)
    with pytest.raises(Diverged, match=r"diverged \(inf loss at epoch 1, step 3\); no epoch had finished"):
        ae_trainer(run, fake_data_dir, max_epochs=2).run()
    assert run_state(run) == "new"


# -- the report's four classifier cases ------------------------------------------------------

def encoder_weights(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("encoder.")}


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_classifier_cases(tmp_path, fake_data_dir, tiny_autoencoder, case):
    model_cfg = ModelConfig("classifier", n=16, dropout=0.1, case=case)
    train_cfg = apply_recipe(TrainConfig(max_epochs=1, recipe="best"), model_cfg)  # as the CLI does
    # it sets case 4's biases once, before training: tested on its own
    train_cfg.calibrate_init, train_cfg.calibrate_active = False, 0.5
    kw = {"encoder_ckpt": tiny_autoencoder} if case in (1, 2) else {}
    trainer = Trainer(model_cfg, train_cfg, tmp_path / "run", data_dir=fake_data_dir, device="cpu",
                      quiet=True, **kw)
    trainer._fresh_state()
    model = trainer.model
    start = {k: v.clone() for k, v in encoder_weights(model.state_dict()).items()}
    if case in (1, 2):  # the pretrained encoder is loaded
        ae = weights(tiny_autoencoder)
        assert_same_weights(start, encoder_weights(ae))
    else:
        torch.manual_seed(train_cfg.seed)
        assert_same_weights(start, encoder_weights(build_model(model_cfg).state_dict()))
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    head_ids = {id(p) for p in model.head.parameters()}
    frozen = case in (2, 4)
    assert in_optimizer == (head_ids if frozen else head_ids | encoder_ids)

    result = trainer.run()
    end = encoder_weights(weights(result.model_path))
    if frozen:
        assert_same_weights(end, start)
    else:
        assert any(not torch.equal(end[k], start[k]) for k in start)
    optimizer_state = checkpoint.load_raw(tmp_path / "run" / "last.pt")["optimizer"]
    assert len(optimizer_state["state"]) == (2 if frozen else 2 + len(start))
    assert result.metrics["encoder_source"] == (str(tiny_autoencoder) if case in (1, 2) else None)


def test_pretrained_case_needs_an_encoder(tmp_path, fake_data_dir):
    with pytest.raises(FmnistEdgeError, match="case 1 needs a pretrained encoder: pass --encoder"):
        ae_trainer(tmp_path / "run", fake_data_dir, ModelConfig("classifier", n=16, case=1))
    with pytest.raises(FmnistEdgeError, match="no such checkpoint"):
        ae_trainer(tmp_path / "run", fake_data_dir, ModelConfig("classifier", n=16, case=2),
                   encoder_ckpt=tmp_path / "missing.pt")


def test_encoder_of_the_wrong_size_or_kind(tmp_path, fake_data_dir, tiny_autoencoder):
    with pytest.raises(ModelError, match="encoder has n=16, the classifier wants n=32"):
        ae_trainer(tmp_path / "a", fake_data_dir, ModelConfig("classifier", n=32, case=1),
                   encoder_ckpt=tiny_autoencoder).run()
    clf = ae_trainer(tmp_path / "clf", fake_data_dir, ModelConfig("classifier", n=16, case=3)).run()
    with pytest.raises(ModelError, match="is a classifier checkpoint, expected an autoencoder"):
        ae_trainer(tmp_path / "b", fake_data_dir, ModelConfig("classifier", n=16, case=1),
                   encoder_ckpt=clf.model_path).run()


# -- real data -------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_data_autoencoder_loss_falls(tmp_path, real_data_dir):
    cfg = TrainConfig(max_epochs=2, limit=3000, recipe="paper", patience=5)
    model_cfg = ModelConfig("autoencoder", n=64, dropout=0.2)
    torch.manual_seed(cfg.seed)
    _, val = load_train_val(cfg, real_data_dir)
    before = evaluate(build_model(model_cfg), val, "autoencoder")["mse"]
    result = Trainer(model_cfg, cfg, tmp_path / "run", data_dir=real_data_dir, device="cpu", quiet=True).run()
    first, second = result.history
    assert first["val_loss"] < 0.8 * before
    assert second["train_loss"] < first["train_loss"] and second["val_loss"] < first["val_loss"]
    assert result.metrics["test_mse"] < 0.8 * before


@pytest.mark.slow
def test_real_data_classifier_learns(tmp_path, real_data_dir):
    cfg = TrainConfig(max_epochs=1, limit=3000, recipe="paper")
    result = Trainer(ModelConfig("classifier", n=64, dropout=0.1, case=3), cfg, tmp_path / "run",
                     data_dir=real_data_dir, device="cpu", quiet=True).run()
    assert result.metrics["test_accuracy"] > 0.5  # chance is 0.1


def test_ema_weights_are_validated_kept_and_resumed(tmp_path, fake_data_dir):
    full = ae_trainer(tmp_path / "full", fake_data_dir, max_epochs=3, patience=10, ema=0.9).run()
    last = checkpoint.load_raw(tmp_path / "full" / "last.pt")
    # model.pt holds the averaged weights of the best epoch, not the raw training weights
    assert full.metrics["best_epoch"] == 3
    assert_same_weights(weights(full.model_path), last["ema"])
    assert not torch.equal(weights(full.model_path)["encoder.net.0.weight"], last["state_dict"]["encoder.net.0.weight"])
    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, ema=0.9, on_epoch=interrupt_after_epoch(1)).run()
    resumed = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, ema=0.9, resume=True).run()
    assert_same_weights(weights(resumed.model_path), weights(full.model_path), atol=1e-5)


def test_dropout_off_last_epochs_is_dropout_free_training(tmp_path, fake_data_dir):
    # All epochs without dropout: the same run, step for step, as a model built with p=0.
    off = ae_trainer(tmp_path / "off", fake_data_dir, max_epochs=2, dropout_off_last=1.0,
                     model_cfg=ModelConfig("autoencoder", n=16, dropout=0.5)).run()
    zero = ae_trainer(tmp_path / "zero", fake_data_dir, max_epochs=2,
                      model_cfg=ModelConfig("autoencoder", n=16, dropout=0.0)).run()
    assert_same_weights(weights(off.model_path), weights(zero.model_path))
    # Half of the epochs: the first one trains with dropout, so it differs from p=0.
    half = ae_trainer(tmp_path / "half", fake_data_dir, max_epochs=2, dropout_off_last=0.5,
                      model_cfg=ModelConfig("autoencoder", n=16, dropout=0.5)).run()
    assert half.history[0]["train_loss"] != pytest.approx(zero.history[0]["train_loss"], rel=1e-6)
    assert checkpoint.load_raw(half.model_path)["model_config"]["dropout"] == 0.5


def test_augment_off_last_epochs_train_on_the_images_as_they_are(tmp_path, fake_data_dir):
    clf = ModelConfig("classifier", n=16, dropout=0.1, case=3)
    # Every epoch without augmentation: the same run, step for step, as one without augment.
    off = ae_trainer(tmp_path / "off", fake_data_dir, model_cfg=clf, max_epochs=2, augment=True, augment_shift=1,
                     augment_off_last=1.0).run()
    plain = ae_trainer(tmp_path / "plain", fake_data_dir, model_cfg=clf, max_epochs=2).run()
    assert_same_weights(weights(off.model_path), weights(plain.model_path))
    # The last of two epochs: the first one is augmented, the second is not.
    half = ae_trainer(tmp_path / "half", fake_data_dir, model_cfg=clf, max_epochs=2, augment=True,
                      augment_shift=1, augment_off_last=0.5).run()
    full = ae_trainer(tmp_path / "full", fake_data_dir, model_cfg=clf, max_epochs=2, augment=True,
                      augment_shift=1).run()
    assert half.history[0]["train_loss"] == pytest.approx(full.history[0]["train_loss"], rel=1e-9)
    assert half.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], rel=1e-6)
    assert half.history[1]["train_loss"] != pytest.approx(full.history[1]["train_loss"], rel=1e-6)
    with pytest.raises(FmnistEdgeError, match="--augment-off-last"):
        TrainConfig(augment_off_last=1.5).check()


def _inputs_and_targets(monkeypatch, run) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch a training run feeds its model, and the target its loss compares with."""
    seen_inputs, targets = [], []
    original = Trainer._train_epoch

    def spy(self, step_module, train, val, objective, progress):
        def forward_hook(module, args):
            seen_inputs.append(args[0].detach().clone())

        def recording_objective(out, x, y):
            targets.append(x.detach().clone())
            return objective(out, x, y)

        handle = step_module.register_forward_pre_hook(forward_hook)
        try:
            return original(self, step_module, train, val, recording_objective, progress)
        finally:
            handle.remove()

    monkeypatch.setattr(Trainer, "_train_epoch", spy)
    run()
    return seen_inputs[0], targets[0]


def test_denoising_masks_what_the_autoencoder_sees_and_targets_the_clean_image(tmp_path, fake_data_dir, monkeypatch):
    seen, clean = _inputs_and_targets(
        monkeypatch, ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=1, mask_inputs=0.3).run)
    lit = clean > 0
    zeroed = (seen[lit] == 0).float().mean().item()
    assert abs(zeroed - 0.3) < 0.05, zeroed  # about 30% of the image's pixels are masked ...
    assert torch.equal(seen[seen > 0], clean[seen > 0])  # ... and the others are left as they were
    assert not torch.equal(seen, clean)


def test_shift_inputs_moves_what_the_autoencoder_sees_and_targets_the_unmoved_image(tmp_path, fake_data_dir,
                                                                                     monkeypatch):
    seen, target = _inputs_and_targets(
        monkeypatch, ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=1, shift_inputs=2).run)
    padded = torch.nn.functional.pad(target, (2, 2, 2, 2))
    moves = []
    for image, original in zip(seen, padded):  # each input is its target moved by at most 2 pixels
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(image[:, 2:-2, 2:-2], original[:, 4 - dy:32 - dy, 4 - dx:32 - dx][:, 2:-2, 2:-2])]
        assert found, "an input that is not its target moved by up to 2 pixels"
        moves.append(found[0])
    assert len(set(moves)) > 5  # a random move per image, not one for the batch
    assert not torch.equal(seen, target)


def test_mask_inputs_out_of_range_is_one_clear_error(tmp_path, fake_data_dir):
    with pytest.raises(FmnistEdgeError, match="mask_inputs"):
        ae_trainer(tmp_path / "run", fake_data_dir, mask_inputs=1.0).run()
    with pytest.raises(FmnistEdgeError, match="shift_inputs must be 0 to 8 pixels"):
        ae_trainer(tmp_path / "run", fake_data_dir, shift_inputs=9).run()


def test_bce_reconstruction_loss_trains_on_cross_entropy_and_still_reports_mse(tmp_path, fake_data_dir):
    from fmnist_edge.train.recipe import loss_fn

    out, target = torch.tensor([[0.9, 0.2]]), torch.tensor([[1.0, 0.0]])
    bce = loss_fn("autoencoder", TrainConfig(recon_loss="bce"))(out, target, None).item()
    assert bce == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2, rel=1e-6)
    assert loss_fn("autoencoder", TrainConfig())(out, target, None).item() == pytest.approx((0.01 + 0.04) / 2)
    ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=2, recon_loss="bce").run()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Per pixel, BCE >= 2 * squared error (Pinsker's inequality): the training loss is BCE, the
    # validation loss the MSE that early stopping watches.
    assert history[-1]["train_loss"] > 2 * history[-1]["val_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert 0 < metrics["test_mse"] < 0.2


def test_unknown_reconstruction_loss_is_one_clear_error(tmp_path, fake_data_dir):
    with pytest.raises(FmnistEdgeError, match="recon_loss must be one of mse, bce"):
        ae_trainer(tmp_path / "run", fake_data_dir, recon_loss="l1").run()


# -- dead latent units -----------------------------------------------------------------------

def _kill_units(model, units):
    from fmnist_edge.train.recipe import bottleneck

    with torch.no_grad():
        bottleneck(model).bias[units] = -1e3  # negative for every image: a dead ReLU


@pytest.mark.parametrize("kind", ["autoencoder", "classifier"])
def test_revive_dead_units_brings_back_exactly_the_dead_ones(kind):
    from fmnist_edge.train.recipe import (bottleneck, dead_units, latent_consumer, make_optimizer,
                                          revive_dead_units)

    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, n=16, dropout=0.2, case=3 if kind == "classifier" else None))
    probe = torch.rand(200, 1, 28, 28)
    optimizer = make_optimizer(model.parameters(), TrainConfig())
    model(probe[:10]).mean().backward()
    optimizer.step()  # Adam now has momentum for every parameter
    killed = [0, 3, 7]
    _kill_units(model, killed)
    model.eval()
    with torch.no_grad():
        out_before = model(probe)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dead_before = dead_units(model, probe)
    assert dead_before >= len(killed)

    assert revive_dead_units(model, optimizer, probe, torch.Generator().manual_seed(1)) == dead_before
    assert model.training  # the probe ran in eval mode, and the mode came back
    assert dead_units(model, probe) == 0
    layer, consumer = bottleneck(model), latent_consumer(model)
    model.eval()
    with torch.no_grad():
        active = (layer(model.encoder.net[:9](probe)) > 0).float().mean(0)
        out_after = model(probe)
    for unit in killed:  # fresh weights, and a bias that lets half of the probe through
        assert 0.4 <= active[unit] <= 0.6
        assert not torch.equal(layer.weight[unit], before["encoder.net.9.weight"][unit])
        assert torch.all(consumer.weight[:, unit] == 0)
    # The outgoing weights are zero: at the moment of revival the network computes the same function.
    torch.testing.assert_close(out_after, out_before, rtol=0, atol=1e-6)
    revived = [u for u in range(16) if not torch.equal(layer.weight[u], before["encoder.net.9.weight"][u])]
    assert set(killed) <= set(revived) and len(revived) == dead_before
    after = model.state_dict()
    consumer_name = "head.weight" if kind == "classifier" else "decoder.net.0.weight"
    for name in before:  # nothing else moved
        if name not in ("encoder.net.9.weight", "encoder.net.9.bias", consumer_name):
            assert torch.equal(after[name], before[name]), name
    live = [u for u in range(16) if u not in revived]
    assert torch.equal(after[consumer_name][:, live], before[consumer_name][:, live])
    for param, index in ((layer.bias, killed), (layer.weight, killed)):
        momentum = optimizer.state[param]["exp_avg"]
        assert torch.all(momentum[index] == 0) and torch.any(momentum != 0)
    assert torch.all(optimizer.state[consumer.weight]["exp_avg"][:, killed] == 0)


def test_revival_reaches_the_moving_average():
    from fmnist_edge.train.recipe import WeightAverage, bottleneck, cpu_state, make_optimizer, revive_dead_units

    torch.manual_seed(0)
    model = build_model(ModelConfig("classifier", n=16, dropout=0.1, case=3))
    probe = torch.rand(200, 1, 28, 28)
    average = WeightAverage(0.99, cpu_state(model))
    _kill_units(model, [2, 5])
    average.update(model)  # the average's biases of units 2 and 5: a blend of -1e3 and the old ones
    before = {k: v.clone() for k, v in average.state.items()}
    weights_before = bottleneck(model).weight.detach().clone()
    revive_dead_units(model, make_optimizer(model.parameters(), TrainConfig()), probe,
                      torch.Generator().manual_seed(1), average)
    layer = bottleneck(model)
    for unit in (2, 5):  # the average holds the fresh unit, not a blend with the dead one
        assert torch.equal(average.state["encoder.net.9.weight"][unit], layer.weight[unit])
        assert torch.equal(average.state["encoder.net.9.bias"][unit], layer.bias[unit])
        assert torch.all(average.state["head.weight"][:, unit] == 0)
    live = [u for u in range(16) if torch.equal(layer.weight[u], weights_before[u])]  # not revived
    assert 2 not in live and 5 not in live and live
    for name in ("encoder.net.9.weight", "encoder.net.9.bias"):  # living units' averages untouched
        assert torch.equal(average.state[name][live], before[name][live])
    assert torch.equal(average.state["head.weight"][:, live], before["head.weight"][:, live])


def test_revival_period_counts_steps_over_the_run(tmp_path, fake_data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(loop, "revive_dead_units", lambda *a: calls.append(1) or 0)
    ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=2, revive_every=4).run()
    assert len(calls) == 2 * STEPS_PER_EPOCH // 4  # steps 4, 8 and 12: an epoch of 6 steps still revives


def test_training_revives_and_reports_dead_units(tmp_path, fake_data_dir, monkeypatch):
    """Six latent units killed at the start stay dead without revival and come back with it; the
    reported count is what `dead_units` finds in the saved model on the test images."""
    from fmnist_edge.train import run_state as state_module
    from fmnist_edge.train.data import load_test
    from fmnist_edge.train.recipe import dead_units

    def with_dead_units(*args, **kwargs):
        model = build_model(*args, **kwargs)
        _kill_units(model, list(range(6)))
        return model

    monkeypatch.setattr(state_module, "build_model", with_dead_units)
    revived = ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=2, revive_every=2).run()
    plain = ae_trainer(tmp_path / "plain", fake_data_dir, max_epochs=2).run()
    assert sum(r["revived_units"] for r in revived.history) >= 6
    assert not any("revived_units" in r for r in plain.history)
    test_images = load_test(fake_data_dir).images
    for run, result in (("run", revived), ("plain", plain)):
        model = checkpoint.load_model(tmp_path / run / "model.pt")[0]
        assert result.metrics["dead_latent_units"] == dead_units(model, test_images)
    assert plain.metrics["dead_latent_units"] >= 6 > revived.metrics["dead_latent_units"]


def test_frozen_encoder_is_never_revived(tmp_path, fake_data_dir, tiny_autoencoder, monkeypatch):
    calls = []
    monkeypatch.setattr(loop, "revive_dead_units", lambda *a: calls.append(1) or 0)
    for case in (1, 2):
        Trainer(ModelConfig("classifier", n=16, dropout=0.1, case=case),
                TrainConfig(max_epochs=1, recipe="paper", revive_every=1), tmp_path / f"case{case}",
                data_dir=fake_data_dir, encoder_ckpt=tiny_autoencoder, device="cpu", quiet=True).run()
        assert len(calls) == (STEPS_PER_EPOCH if case == 1 else 0)
        calls.clear()


def test_frozen_encoder_features_are_computed_once_with_the_same_result(tmp_path, fake_data_dir,
                                                                        tiny_autoencoder, monkeypatch):
    def train(folder):
        return Trainer(ModelConfig("classifier", n=16, dropout=0.1, case=2),
                       TrainConfig(max_epochs=2, recipe="paper", lr=1e-2), tmp_path / folder,
                       data_dir=fake_data_dir, encoder_ckpt=tiny_autoencoder, device="cpu", quiet=True).run()

    cached = train("cached")
    calls = []
    real_encoder_forward = loop.Trainer._training_view

    def spy(self, tr, va):
        module, tr2, va2 = real_encoder_forward(self, tr, va)
        calls.append(module is self.model.head and tr2.images.shape[1:] == (16,))
        return module, tr2, va2

    monkeypatch.setattr(loop.Trainer, "_training_view", spy)
    train("spied")
    assert calls == [True]  # the steps ran on the head and 16 features
    monkeypatch.setattr(loop.Trainer, "_training_view", lambda self, tr, va: (self.model, tr, va))
    full = train("full")  # every step through the frozen encoder
    assert_same_weights(weights(cached.model_path), weights(full.model_path), atol=1e-5)
    assert cached.history[-1]["val_loss"] == pytest.approx(full.history[-1]["val_loss"], rel=1e-5)



def test_revival_resumes_to_the_same_weights(tmp_path, fake_data_dir, monkeypatch):
    # Units killed at the start so that revival really happens in both epochs.
    real_fresh_state = Trainer._fresh_state

    def with_dead_units(self):
        real_fresh_state(self)
        _kill_units(self.model, list(range(8)))

    monkeypatch.setattr(Trainer, "_fresh_state", with_dead_units)
    full = ae_trainer(tmp_path / "full", fake_data_dir, max_epochs=3, patience=10, revive_every=2).run()
    assert sum(r["revived_units"] for r in full.history) >= 8
    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2"):
        ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, revive_every=2,
                   on_epoch=interrupt_after_epoch(1)).run()
    resumed = ae_trainer(run, fake_data_dir, max_epochs=3, patience=10, revive_every=2, resume=True).run()
    assert_same_weights(weights(resumed.model_path), weights(full.model_path), atol=1e-5)


def test_early_stopping_waits_for_the_dropout_free_epochs(tmp_path, fake_data_dir, monkeypatch):
    # Validation never improves after epoch 1: patience 1 would stop after epoch 2, but the last
    # half of 6 epochs is dropout-free, so training runs into it (to epoch 4) before stopping.
    losses = iter([0.5] + [0.9] * 10)
    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: {"mse": next(losses)})
    seen = []
    result = ae_trainer(tmp_path / "run", fake_data_dir, max_epochs=6, patience=1, dropout_off_last=0.5,
                        on_epoch=lambda r: seen.append(r["epoch"])).run()
    assert seen == [1, 2, 3, 4] and result.metrics["stop_reason"] == "early-stop"
    losses = iter([0.5] + [0.9] * 10)
    plain = ae_trainer(tmp_path / "plain", fake_data_dir, max_epochs=6, patience=1).run()
    assert plain.metrics["epochs"] == 2
    # The same for the epochs planned without augmentation.
    losses = iter([0.5] + [0.9] * 10)
    seen.clear()
    result = ae_trainer(tmp_path / "clean", fake_data_dir, max_epochs=6, patience=1, augment=True,
                        augment_off_last=0.5, on_epoch=lambda r: seen.append(r["epoch"])).run()
    assert seen == [1, 2, 3, 4] and result.metrics["stop_reason"] == "early-stop"


# -- a calibrated random encoder ------------------------------------------------------------

@pytest.mark.parametrize("share", [0.5, 0.2, 0.9, 1.0])
def test_calibrated_biases_make_every_unit_active_on_the_share_of_the_probe(fake_data_dir, share):
    from fmnist_edge.train.recipe import calibrate_biases, dead_units

    torch.manual_seed(0)
    model = build_model(ModelConfig("classifier", n=16, dropout=0.1, case=4))
    probe = load_train_val(TrainConfig(), fake_data_dir)[0].images[:300]
    weights_before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("weight")}
    calibrate_biases(model, probe, share)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights_before.items())  # weights untouched
    net = model.encoder.net
    with torch.no_grad():
        for end, layer in ((1, net[0]), (5, net[4]), (10, net[9])):  # each layer's pre-activation
            pre = net[:end](probe)
            per_unit = pre.transpose(0, 1).reshape(pre.shape[1], -1) if pre.dim() == 4 else pre.T
            active = (per_unit > 0).float().mean(1)
            assert torch.all((active > share - 0.05) & (active < share + 0.05)), (layer, active)
    assert dead_units(model, probe) == 0


def test_case_4_with_calibration_keeps_the_calibrated_frozen_encoder(tmp_path, fake_data_dir):
    from fmnist_edge.train.recipe import calibrate_biases

    model_cfg = ModelConfig("classifier", n=16, dropout=0.1, case=4)
    train_cfg = apply_recipe(TrainConfig(max_epochs=2, recipe="best", calibrate_init=True), model_cfg)
    result = Trainer(model_cfg, train_cfg, tmp_path / "run", data_dir=fake_data_dir, device="cpu", quiet=True).run()
    torch.manual_seed(train_cfg.seed)
    expected = build_model(model_cfg)
    calibrate_biases(expected, load_train_val(train_cfg, fake_data_dir)[0].images[:1000], train_cfg.calibrate_active)
    # the weight average (kept as the model) started from the calibrated encoder, not the drawn one
    assert_same_weights(encoder_weights(weights(result.model_path)), encoder_weights(expected.state_dict()),
                        atol=1e-6)
    assert result.metrics["dead_latent_units"] == 0


def test_best_recipe_calibrates_case_4_and_smooths_labels_only_for_trained_encoders():
    def recipe(case, kind="best"):
        return apply_recipe(TrainConfig(recipe=kind), ModelConfig("classifier", n=16, dropout=0.1, case=case))

    assert [recipe(case).calibrate_init for case in (1, 2, 3, 4)] == [False, False, False, True]
    assert recipe(4).calibrate_active == 0.9 and recipe(4, "paper").calibrate_active == 0.5
    assert [recipe(case).label_smoothing for case in (1, 2, 3, 4)] == [0.1, 0.0, 0.1, 0.0]
    assert not recipe(4, "paper").calibrate_init and recipe(4, "paper").label_smoothing == 0.0


def test_calibration_is_refused_for_a_pretrained_encoder(tmp_path, fake_data_dir, tiny_autoencoder):
    with pytest.raises(FmnistEdgeError, match="for classifier cases 3 and 4"):
        ae_trainer(tmp_path / "run", fake_data_dir, ModelConfig("classifier", n=16, dropout=0.1, case=1),
                   calibrate_init=True, encoder_ckpt=tiny_autoencoder)
    assert not (tmp_path / "run").exists()


def test_fold_batch_norm_keeps_the_function_and_gives_the_reports_architecture():
    from fmnist_edge.train.models import ConvAutoencoder, NormReLU, fold_batch_norm

    torch.manual_seed(0)
    model = ConvAutoencoder(16, 0.2, batch_norm=True)
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        for _ in range(5):  # running statistics away from their initial 0 and 1
            model(x)
        for module in model.modules():
            if isinstance(module, NormReLU):  # and scales and shifts away from 1 and 0
                module.norm.weight.uniform_(0.5, 2.0)
                module.norm.bias.normal_()
    model.eval()
    before = model(x)
    fold_batch_norm(model)
    assert not any(isinstance(m, NormReLU) for m in model.modules())
    plain = ConvAutoencoder(16, 0.2).eval()
    plain.load_state_dict(model.state_dict(), strict=True)  # the report's names and shapes
    torch.testing.assert_close(plain(x), before, atol=2e-6, rtol=0)
    with pytest.raises(FmnistEdgeError, match="for training autoencoders"):
        build_model(ModelConfig("classifier", n=16, case=3), batch_norm=True)


def test_batch_norm_run_saves_the_plain_architecture_and_resumes(tmp_path, fake_data_dir):
    """last.pt holds the training form (NormReLUs), model.pt the folded report architecture; a run
    interrupted after an epoch resumes to the same weights as one that was not."""
    whole = ae_trainer(tmp_path / "whole", fake_data_dir, max_epochs=2, patience=10, batch_norm=True,
                       revive_every=2).run()
    saved = weights(whole.model_path)
    assert not any(".norm." in name for name in saved)
    assert any(".norm." in name for name in weights(tmp_path / "whole" / "last.pt"))
    model, payload = checkpoint.load_model(whole.model_path)
    assert payload["train_config_obj"].batch_norm and whole.metrics["test_mse"] < 0.2
    assert all("revived_units" not in r for r in whole.history)  # revival is off with batch norm
    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2"):
        ae_trainer(run, fake_data_dir, max_epochs=2, patience=10, batch_norm=True,
                   on_epoch=interrupt_after_epoch(1)).run()
    resumed = ae_trainer(run, fake_data_dir, max_epochs=2, patience=10, batch_norm=True, resume=True).run()
    assert_same_weights(weights(resumed.model_path), saved, atol=1e-5)
    with pytest.raises(FmnistEdgeError, match="--batch-norm is for autoencoders"):
        Trainer(ModelConfig("classifier", n=16, case=3), TrainConfig(batch_norm=True), tmp_path / "c",
                data_dir=fake_data_dir, device="cpu", quiet=True)


def test_a_batch_norm_resume_point_loads_folded_unless_asked_for_its_training_form(tmp_path, fake_data_dir):
    from fmnist_edge.train.models import NormReLU

    run = tmp_path / "run"
    with pytest.raises(FmnistEdgeError, match="interrupted"):
        ae_trainer(run, fake_data_dir, max_epochs=2, patience=10, batch_norm=True,
                   on_epoch=interrupt_after_epoch(1)).run()
    folded, _ = checkpoint.load_model(run / "last.pt")  # what export, evaluate and --encoder see
    trained, _ = checkpoint.load_model(run / "last.pt", training_form=True)  # what --resume sees
    assert not any(isinstance(m, NormReLU) for m in folded.modules())
    assert any(isinstance(m, NormReLU) for m in trained.modules())
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), trained(x), atol=2e-6, rtol=0)


def test_batch_norm_trains_with_a_last_batch_of_one_image_and_refuses_batches_of_one(tmp_path, fake_data_dir):
    # 540 training images in batches of 7: 77 of 7 and a last one of 1, which joins the one before
    result = ae_trainer(tmp_path / "odd", fake_data_dir, batch_size=7, batch_norm=True).run()
    assert math.isfinite(result.metrics["test_mse"])
    with pytest.raises(FmnistEdgeError, match="batches of at least 2"):
        ae_trainer(tmp_path / "one", fake_data_dir, batch_size=1, batch_norm=True)
    # one training image: refused before --force deletes the finished run it would replace
    with pytest.raises(FmnistEdgeError, match="at least 2 training images"):
        ae_trainer(tmp_path / "odd", fake_data_dir, limit=1, batch_norm=True, force=True).run()
    assert run_state(tmp_path / "odd") == "finished"
