"""Knowledge distillation: the teacher model, its logits per batch, the loss, the loop and the CLI."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from conftest import invoke, misused, refused  # noqa: E402
from fmnist_edge.errors import FmnistEdgeError  # noqa: E402
from fmnist_edge.train import checkpoint  # noqa: E402
from fmnist_edge.train.config import ModelConfig, TrainConfig, apply_recipe  # noqa: E402
from fmnist_edge.train.data import augment, load_train_val  # noqa: E402
from fmnist_edge.train.distill import TeacherLogits  # noqa: E402
from fmnist_edge.train.loop import Trainer  # noqa: E402
from fmnist_edge.train.models import Teacher, build_model  # noqa: E402
from fmnist_edge.train.recipe import distillation_loss  # noqa: E402

pytestmark = pytest.mark.torch

STUDENT = ModelConfig("classifier", n=16, dropout=0.1, case=3)


def train(run_dir, data_dir, model_cfg=STUDENT, **train_kw):
    trainer_kw = {k: train_kw.pop(k) for k in ("resume", "on_epoch") if k in train_kw}
    train_kw.setdefault("recipe", "paper")
    return Trainer(model_cfg, TrainConfig(**train_kw), run_dir, data_dir=data_dir, device="cpu", quiet=True,
                   **trainer_kw).run()


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, fake_data_dir):
    """model.pt of a Teacher trained one epoch on the fake data (the best recipe's teacher settings)."""
    cfg = ModelConfig("teacher", n=32, dropout=0.1)
    train_cfg = apply_recipe(TrainConfig(max_epochs=1, bf16=False), cfg)
    return Trainer(cfg, train_cfg, tmp_path_factory.mktemp("teacher"), data_dir=fake_data_dir, device="cpu",
                   quiet=True).run().model_path


def test_distillation_loss_is_hintons_soft_target_loss():
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    assert distillation_loss(teacher, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    t = 4.0
    p = torch.softmax(teacher / t, 1)
    by_hand = (p * (p.log() - torch.log_softmax(student / t, 1))).sum(1).mean() * t * t
    assert distillation_loss(student, teacher, t).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert distillation_loss(student, teacher, t).item() > 0


def test_teacher_is_a_larger_cnn_with_the_classifiers_input_and_output():
    teacher, student = Teacher(), build_model(ModelConfig("classifier", n=64, dropout=0.1, case=1))
    assert teacher(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(teacher) > 10 * count(student)


def test_teacher_logits_are_the_teachers_for_flipped_and_plain_images(tiny_teacher, fake_data_dir):
    images = load_train_val(TrainConfig(), fake_data_dir)[0].images
    table = TeacherLogits(tiny_teacher, images, "cpu", flips_only=True)
    live = TeacherLogits(tiny_teacher, images, "cpu", flips_only=False)
    idx = torch.arange(40, 104)
    x, flipped = augment(images[idx], torch.Generator().manual_seed(0))
    assert 0 < int(flipped.sum()) < len(idx)
    model, _ = checkpoint.load_model(tiny_teacher)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(table.for_batch(idx, x, flipped), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(live.for_batch(idx, x, flipped), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(table.for_batch(idx, images[idx], None), model(images[idx]).detach(),
                               rtol=0, atol=1e-5)


def test_a_student_taught_by_a_teacher_alone_learns_the_teachers_answers(tmp_path, tiny_teacher,
                                                                          fake_data_dir):
    """With distill=1 the labels play no part: a teacher that swaps two classes' answers
    makes a student that swaps them too."""
    swapped = tmp_path / "swapped.pt"
    model, payload = checkpoint.load_model(tiny_teacher)
    order = torch.arange(10)
    order[[0, 1]] = order[[1, 0]]
    with torch.no_grad():
        model.head.weight.copy_(model.head.weight[order])
        model.head.bias.copy_(model.head.bias[order])
    checkpoint.save(swapped, payload["model_config_obj"], payload["train_config_obj"], model,
                    metrics=payload["metrics"])
    val = load_train_val(TrainConfig(), fake_data_dir)[1]
    with torch.no_grad():
        teacher_says = model(val.images).argmax(1)
    assert (teacher_says == val.labels).float().mean() < 0.9  # classes 0 and 1 are answered wrong
    result = train(tmp_path / "student", fake_data_dir, max_epochs=8, patience=8, lr=3e-3,
                   teacher=str(swapped), distill=1.0, temperature=2.0)
    student, _ = checkpoint.load_model(result.model_path)
    with torch.no_grad():
        student_says = student(val.images).argmax(1)
    agree_teacher = (student_says == teacher_says).float().mean().item()
    agree_labels = (student_says == val.labels).float().mean().item()
    on_swapped = (val.labels <= 1)
    assert agree_teacher > agree_labels
    assert (student_says[on_swapped] == teacher_says[on_swapped]).float().mean() > 0.5
    assert result.metrics["teacher_source"] == str(swapped)


@pytest.mark.parametrize("shift", [0, 1], ids=["logits-looked-up", "teacher-run-per-batch"])
def test_distilled_run_resumes_mid_epoch_to_the_same_weights(tmp_path, tiny_teacher, fake_data_dir, monkeypatch,
                                                             shift):
    from fmnist_edge.train.progress import EpochProgress

    kw = dict(max_epochs=2, patience=5, teacher=str(tiny_teacher), distill=0.5, augment=True, augment_shift=shift)
    whole = train(tmp_path / "whole", fake_data_dir, **kw)
    calls, original = {"n": 0}, EpochProgress.advance

    def stop_in_epoch_two(self, loss):  # 6 steps an epoch: stop after the 3rd step of the 2nd
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt
        original(self, loss)

    monkeypatch.setattr(EpochProgress, "advance", stop_in_epoch_two)
    with pytest.raises(FmnistEdgeError, match="interrupted in epoch 2"):
        train(tmp_path / "resumed", fake_data_dir, **kw)
    monkeypatch.undo()
    trained = {"n": 0}

    def count(self, loss):
        trained["n"] += 1
        original(self, loss)

    monkeypatch.setattr(EpochProgress, "advance", count)
    resumed = train(tmp_path / "resumed", fake_data_dir, resume=True, **kw)
    assert trained["n"] == 12 - 9  # the rest of epoch 2 only: resumed, not started over
    a, b = (torch.load(r.model_path, weights_only=True)["state_dict"] for r in (whole, resumed))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)
    assert math.isclose(whole.history[-1]["train_loss"], resumed.history[-1]["train_loss"], rel_tol=1e-5)


def test_a_resumed_run_refuses_a_changed_teacher_and_force_keeps_the_old_run(tmp_path, tiny_teacher,
                                                                              fake_data_dir):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(tiny_teacher.read_bytes())
    kw = dict(max_epochs=2, patience=5, teacher=str(teacher), distill=0.5)

    def stop_after_first(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(FmnistEdgeError, match="interrupted"):
        train(tmp_path / "run", fake_data_dir, on_epoch=stop_after_first, **kw)
    saved = checkpoint.load_raw(tmp_path / "run" / "last.pt")
    assert saved["train_config"]["teacher"] == str(teacher.resolve())  # absolute: resumable from anywhere
    model, payload = checkpoint.load_model(teacher)
    with torch.no_grad():
        model.head.bias.add_(1.0)
    checkpoint.save(teacher, payload["model_config_obj"], payload["train_config_obj"], model)
    with pytest.raises(FmnistEdgeError, match="teacher this run started with is gone or changed"):
        train(tmp_path / "run", fake_data_dir, resume=True, **kw)

    finished = train(tmp_path / "done", fake_data_dir, max_epochs=1).model_path.read_bytes()
    with pytest.raises(FmnistEdgeError, match="no such checkpoint"):
        Trainer(STUDENT, TrainConfig(recipe="paper", teacher=str(tmp_path / "missing.pt"), distill=0.5),
                tmp_path / "done", data_dir=fake_data_dir, device="cpu", quiet=True, force=True)
    assert (tmp_path / "done" / "model.pt").read_bytes() == finished  # --force deleted nothing


def test_only_label_predictors_distil(tmp_path, tiny_teacher, fake_data_dir):
    with pytest.raises(FmnistEdgeError, match="an autoencoder cannot distil"):
        Trainer(ModelConfig("autoencoder", n=16, dropout=0.1), TrainConfig(teacher=str(tiny_teacher), distill=0.5),
                tmp_path / "ae", data_dir=fake_data_dir, device="cpu", quiet=True)
    assert not (tmp_path / "ae").exists()


def test_distill_needs_a_teacher_and_a_share_in_range():
    with pytest.raises(FmnistEdgeError, match="--distill needs a --teacher"):
        TrainConfig(distill=0.5).check()
    with pytest.raises(FmnistEdgeError, match="--distill must be in"):
        TrainConfig(distill=1.5, teacher="t.pt").check()
    with pytest.raises(FmnistEdgeError, match="--temperature"):
        TrainConfig(temperature=0, teacher="t.pt", distill=0.5).check()
    with pytest.raises(FmnistEdgeError, match="would teach nothing"):
        TrainConfig(teacher="t.pt").check()


def test_cli_refuses_a_teacher_that_predicts_no_labels(tmp_path, fake_data_dir, tiny_autoencoder):
    result = invoke("train", "classifier", "--case", "3", "--teacher", tiny_autoencoder, "--out", tmp_path / "s",
                    "--data-dir", fake_data_dir, "--max-epochs", "1")
    refused(result, "a teacher must predict labels")
    assert not (tmp_path / "s").exists()
    result = invoke("train", "classifier", "--case", "3", "--teacher", tmp_path / "none.pt", "--out", tmp_path / "s",
                    "--data-dir", fake_data_dir)
    refused(result, "none.pt", "no such checkpoint")
    result = invoke("train", "classifier", "--case", "3", "--distill", "0.5", "--out", tmp_path / "s",
                    "--data-dir", fake_data_dir)
    misused(result, "--distill and --temperature need a --teacher")


def test_cli_trains_a_teacher_evaluates_it_and_refuses_to_export_it(tmp_path, fake_data_dir, tiny_teacher):
    result = invoke("train", "teacher", "--out", tmp_path / "t", "--data-dir", fake_data_dir, "--max-epochs", "1",
                    "--limit", "200", "--n", "32", "-q", "--no-bf16")
    assert result.exit_code == 0, result.output
    saved = checkpoint.load_raw(tmp_path / "t" / "model.pt")
    assert saved["metrics"]["kind"] == "teacher" and saved["metrics"]["dead_latent_units"] is None
    assert saved["train_config"]["bf16"] is False  # the option wins over the recipe's bf16
    result = invoke("evaluate", tiny_teacher, "--data-dir", fake_data_dir)
    assert result.exit_code == 0 and "test accuracy" in result.output
    result = invoke("export", tiny_teacher, "--out", tmp_path / "exported")
    refused(result, "teacher", "not exported")
    assert not (tmp_path / "exported").exists()


def test_plain_train_refuses_a_bad_teacher_before_training_anything(tmp_path, fake_data_dir, tiny_autoencoder):
    result = invoke("train", "--out", tmp_path / "deploy", "--teacher", tiny_autoencoder, "--data-dir", fake_data_dir,
                    "--limit", "200", "--max-epochs", "1")
    refused(result, "a teacher must predict labels")
    assert not (tmp_path / "deploy").exists()


def test_plain_train_distils_the_classifier_from_the_teacher(tmp_path, fake_data_dir, tiny_teacher, monkeypatch):
    monkeypatch.chdir(tmp_path)  # plain train writes runs/latest.json
    result = invoke("train", "--out", tmp_path / "deploy", "--teacher", tiny_teacher, "--distill", "0.7",
                    "--data-dir", fake_data_dir, "--limit", "200", "--max-epochs", "1", "-q")
    assert result.exit_code == 0, result.output
    saved = checkpoint.load_raw(tmp_path / "deploy" / "classifier" / "model.pt")["train_config"]
    assert (saved["teacher"], saved["distill"]) == (str(tiny_teacher), 0.7)
    assert checkpoint.load_raw(tmp_path / "deploy" / "autoencoder" / "model.pt")["train_config"]["teacher"] is None


def test_validation_loss_of_a_distilled_run_is_its_training_objective(tiny_teacher, fake_data_dir):
    from fmnist_edge.train.evaluate import evaluate

    val = load_train_val(TrainConfig(), fake_data_dir)[1]
    torch.manual_seed(0)
    student = build_model(STUDENT).eval()
    teacher = TeacherLogits(tiny_teacher, val.images, "cpu", flips_only=False)
    taught = teacher.logits(val.images, "cpu")
    with torch.no_grad():
        out = student(val.images)
    for share in (0.0, 0.3, 1.0):
        got = evaluate(student, val, "classifier", label_smoothing=0.1, distill=(taught, share, 3.0))["loss"]
        want = ((1 - share) * torch.nn.functional.cross_entropy(out, val.labels, label_smoothing=0.1)
                + share * distillation_loss(out, taught, 3.0))
        assert got == pytest.approx(want.item(), rel=1e-4)
