"""Checkpoints: rebuilt from the file alone; anything foreign or with code in it is refused."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fmnist_edge.errors import ModelError  # noqa: E402
from fmnist_edge.train import checkpoint  # noqa: E402
from fmnist_edge.train.config import ModelConfig, TrainConfig  # noqa: E402
from fmnist_edge.train.models import Classifier, ConvAutoencoder, build_model  # noqa: E402

pytestmark = pytest.mark.torch


class Planted:
    """Unpickling this creates a marker file: the proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def save_model(path, model_cfg, train_cfg=None, **extra):
    torch.manual_seed(0)
    model = build_model(model_cfg)
    checkpoint.save(path, model_cfg, train_cfg or TrainConfig(), model, **extra)
    return model


def refused(path, match: str) -> str:
    with pytest.raises(ModelError, match=match) as info:
        checkpoint.load_model(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path):
    cfg = ModelConfig("autoencoder", n=32, dropout=0.3)
    model = save_model(tmp_path / "m.pt", cfg, TrainConfig(lr=3e-4, seed=9), metrics={"test_mse": 0.01})
    loaded, payload = checkpoint.load_model(tmp_path / "m.pt")
    assert isinstance(loaded, ConvAutoencoder) and not loaded.training
    assert payload["model_config_obj"] == cfg
    assert payload["train_config_obj"].lr == 3e-4 and payload["train_config_obj"].seed == 9
    assert payload["metrics"] == {"test_mse": 0.01}
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


def test_classifier_round_trip_keeps_case_and_freezing(tmp_path):
    cfg = ModelConfig("classifier", n=16, dropout=0.1, case=2)
    save_model(tmp_path / "c.pt", cfg)
    loaded, payload = checkpoint.load_model(tmp_path / "c.pt", expect_kind="classifier")
    assert isinstance(loaded, Classifier) and loaded.freeze_encoder
    assert payload["model_config_obj"].case == 2
    assert loaded(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_checkpoint_is_plain_data(tmp_path):
    save_model(tmp_path / "m.pt", ModelConfig(n=8))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload[checkpoint.FORMAT_KEY] == checkpoint.FORMAT_VERSION
    assert payload["model_config"] == {"kind": "autoencoder", "n": 8, "dropout": 0.2, "case": None,
                                       "decoder_dilation": 2}


def test_a_checkpoint_from_before_decoder_dilation_loads_the_reports_decoder(tmp_path):
    save_model(tmp_path / "m.pt", ModelConfig(n=8))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["model_config"]["decoder_dilation"]
    torch.save(payload, tmp_path / "old.pt")
    model, loaded = checkpoint.load_model(tmp_path / "old.pt")
    assert loaded["model_config_obj"].decoder_dilation == 2 and model.decoder.net[4].dilation == (2, 2)


def test_newer_config_keys_are_ignored(tmp_path):
    save_model(tmp_path / "m.pt", ModelConfig(n=8))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["model_config"]["added_later"] = 1
    payload["train_config"]["also_new"] = "x"
    torch.save(payload, tmp_path / "m2.pt")
    model, _ = checkpoint.load_model(tmp_path / "m2.pt")
    assert model.encoder.n == 8


def test_wrong_kind(tmp_path):
    save_model(tmp_path / "m.pt", ModelConfig(n=8))
    with pytest.raises(ModelError, match="is an autoencoder checkpoint, expected a classifier"):
        checkpoint.load_model(tmp_path / "m.pt", expect_kind="classifier")


@pytest.mark.parametrize("legacy", [False, True])
def test_pickled_code_is_refused_without_running_it(tmp_path, legacy):
    marker = tmp_path / "code-ran"
    payload = {checkpoint.FORMAT_KEY: checkpoint.FORMAT_VERSION, "model_config": {"n": 8},
               "state_dict": {}, "evil": Planted(marker)}
    path = tmp_path / "evil.pt"
    if legacy:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # the old, zip-less format
    else:
        torch.save(payload, path)
    refused(path, "refused, not a plain-data checkpoint")
    assert not marker.exists()
    # The payload is live: an unguarded load would have run it.
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Planted(proof)))
    assert proof.exists()


def test_random_bytes(tmp_path):
    (tmp_path / "r.pt").write_bytes(os.urandom(4096))
    refused(tmp_path / "r.pt", "not a readable PyTorch checkpoint|not a plain-data checkpoint")


def test_a_pickle_of_an_unknown_protocol_is_one_line_without_torchs_warning(tmp_path):
    """Random bytes after the pickle magic: torch warns of "pickle protocol 28" and fails with a
    paragraph of advice; the user gets one line saying what the unpickler met, and no warning."""
    (tmp_path / "r.pt").write_bytes(b"\x80\x1c" + bytes(range(29, 256)) * 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning reaching the caller would fail the test
        message = refused(tmp_path / "r.pt", "refused, not a plain-data checkpoint")
    assert "Unsupported operand" in message and "PyTorch 2.6" not in message


def test_a_text_file_is_named_as_such_not_given_torchs_advice(tmp_path):
    (tmp_path / "notes.pt").write_text("epoch 3: loss 0.2\n")
    with pytest.raises(ModelError) as info:
        checkpoint.load_raw(tmp_path / "notes.pt")
    assert str(info.value) == f"{tmp_path / 'notes.pt'}: not a readable PyTorch checkpoint (neither a zip archive nor a pickle)"


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    refused(tmp_path / "e.pt", "not a readable PyTorch checkpoint")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_checkpoint(tmp_path, fraction):
    save_model(tmp_path / "m.pt", ModelConfig(n=64))
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(data[: int(len(data) * fraction)])
    refused(tmp_path / "t.pt", "not a readable PyTorch checkpoint")


def test_foreign_torch_checkpoint(tmp_path):
    torch.save({"state_dict": ConvAutoencoder(64, 0.2).state_dict(), "epoch": 3}, tmp_path / "f.pt")
    refused(tmp_path / "f.pt", "not an fmnist-edge checkpoint")
    torch.save(ConvAutoencoder(8, 0.2).state_dict(), tmp_path / "sd.pt")  # a bare state dict
    refused(tmp_path / "sd.pt", "not an fmnist-edge checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    refused(tmp_path / "list.pt", "not an fmnist-edge checkpoint")


def test_missing_checkpoint(tmp_path):
    refused(tmp_path / "nope.pt", "no such checkpoint")
    refused(tmp_path, "is a folder, not a checkpoint")


def test_weights_that_do_not_fit_the_config(tmp_path):
    save_model(tmp_path / "m.pt", ModelConfig(n=8))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["model_config"]["n"] = 16
    torch.save(payload, tmp_path / "bad.pt")
    refused(tmp_path / "bad.pt", "its weights do not fit the architecture its config describes")
    payload["model_config"] = {"kind": "autoencoder", "n": 0}
    torch.save(payload, tmp_path / "bad2.pt")
    refused(tmp_path / "bad2.pt", "its model config is invalid .--n must be")
    del payload["model_config"]
    torch.save(payload, tmp_path / "bad3.pt")
    refused(tmp_path / "bad3.pt", "its model config is missing or malformed")


@pytest.mark.parametrize("part, value, match", [
    ("model_config", {"kind": "autoencoder", "n": "64"}, "its model config is missing or malformed .TypeError: n is str"),
    ("model_config", ["autoencoder"], "its model config is missing or malformed"),
    ("train_config", {"lr": "fast"}, "its training config is malformed .TypeError: lr is str 'fast', not float"),
    ("train_config", {"augment": 1}, "its training config is malformed .TypeError: augment is int 1, not bool"),
    ("train_config", {"limit": True}, "limit is bool True, not int | None"),
    ("train_config", "adam", "its training config is malformed .AttributeError"),
])
def test_a_config_of_the_wrong_shape_or_types_is_one_line(tmp_path, part, value, match):
    save_model(tmp_path / "m.pt", ModelConfig(n=8))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload[part] = value
    torch.save(payload, tmp_path / "bad.pt")
    refused(tmp_path / "bad.pt", match)


def test_config_values_of_the_field_types_load():
    from fmnist_edge.train.config import TrainConfig, from_dict

    cfg = from_dict(TrainConfig, {"lr": 1, "limit": None, "teacher": None, "augment": False, "extra": {"a": 1}})
    assert cfg.lr == 1 and cfg.limit is None and cfg.extra == {"a": 1}  # an int is a fine learning rate
    assert from_dict(TrainConfig, {"limit": 200, "teacher": "t.pt"}).teacher == "t.pt"


def test_configs_saved_before_augment_shift_keep_their_shifts():
    from fmnist_edge.train.config import TrainConfig, from_dict

    assert from_dict(TrainConfig, {"augment": True}).augment_shift == 2  # flips and 2-pixel shifts, as then
    assert from_dict(TrainConfig, {"augment": True, "augment_shift": 0}).augment_shift == 0
    assert from_dict(TrainConfig, {"augment": False}).augment_shift == 0
