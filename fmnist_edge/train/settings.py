"""Checks of what a training command asks for, before anything trains: whether bf16 runs on
hardware here, settings that cannot go together, options given for something the run does not
do, and whether a finished or interrupted run in the way was started with the settings asked now."""

from __future__ import annotations

from pathlib import Path

from fmnist_edge.errors import FmnistEdgeError, UsageError


def native_bf16(device: str = "auto") -> bool:
    """Whether bf16 autocast runs on hardware for `device`: a GPU, or a CPU with AVX-512 BF16 or AMX."""
    import torch

    from fmnist_edge.machine import cpu_model

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        return True
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_model()["cpu_flags"]))


def refuse_contradictions(model_cfg, train_cfg, revive_every, augment_off_last, dropout_off_last,
                          calibrate_active=None) -> None:
    """An option given for something this run does not do is refused, not stored and ignored."""
    what = model_cfg.title
    no_revival = ("--batch-norm turns revival off" if train_cfg.batch_norm else
                  f"a {what} has no latent units of its own to revive" if model_cfg.frozen_encoder else None)
    refusals = [
        (revive_every and no_revival, f"--revive-every {revive_every}: {no_revival}"),
        (augment_off_last and not train_cfg.augment,
         f"--augment-off-last {augment_off_last}: this {what} trains without augmentation (recipe {train_cfg.recipe})"),
        (dropout_off_last and model_cfg.frozen_encoder,
         f"--dropout-off-last {dropout_off_last}: a {what}'s frozen encoder runs without dropout"),
        (dropout_off_last and not model_cfg.dropout,
         f"--dropout-off-last {dropout_off_last}: this run has no dropout to turn off (p = 0)"),
        (calibrate_active is not None and not train_cfg.calibrate_init,  # given, even at its default value
         f"--calibrate-active {calibrate_active}: it applies to --calibrate-init, which is off for this run"),
    ]
    _refuse_first(refusals)


def refuse_impossible(model_cfg, train_cfg, encoder_given: bool, resume: bool, force: bool) -> None:
    """Settings that cannot go together in any run, whatever its folder holds (the trainer's own
    check: the API reaches it too)."""
    refusals = [
        (resume and force, "--resume continues a run and --force starts it over: pass one of them"),
        (encoder_given and not model_cfg.pretrained_encoder,
         f"--encoder is for classifier cases 1 and 2; {model_cfg.title} starts from random weights"),
        (train_cfg.batch_norm and model_cfg.kind != "autoencoder",
         f"--batch-norm is for autoencoders; a {model_cfg.kind} trains without it"),
        (train_cfg.batch_norm and train_cfg.batch_size < 2,
         "--batch-norm needs batches of at least 2 images (--batch-size)"),
        (train_cfg.batch_norm and train_cfg.limit == 1, "--batch-norm needs at least 2 training images (--limit)"),
        (train_cfg.calibrate_init and not (model_cfg.kind == "classifier" and not model_cfg.pretrained_encoder),
         "--calibrate-init sets up a random encoder: it is for classifier cases 3 and 4"),
        (train_cfg.teacher and not model_cfg.predicts_labels,
         f"a teacher teaches label predictors; an {model_cfg.kind} cannot distil"),
    ]
    _refuse_first(refusals)


def _refuse_first(refusals: list) -> None:
    for refused, why in refusals:
        if refused:
            raise UsageError(why)


def refuse_other_settings(run_dir: Path, model_cfg, train_cfg) -> None:
    """A run that plain `train` would reuse (model.pt) or resume (last.pt) must have been started
    with the settings asked now; the teacher counts by its content, not its name."""
    from fmnist_edge.fileio import sha256_file
    from fmnist_edge.train.checkpoint import MODEL_FILE, RESUME_FILE, load_raw
    from fmnist_edge.train.config import ModelConfig, TrainConfig, from_dict, to_dict

    file = run_dir / (MODEL_FILE if (run_dir / MODEL_FILE).is_file() else RESUME_FILE)
    payload = load_raw(file)
    differing = []
    for cls, key, asked in ((ModelConfig, "model_config", model_cfg), (TrainConfig, "train_config", train_cfg)):
        saved = to_dict(from_dict(cls, payload.get(key, {})))  # a field older runs lack: its default
        for name, value in to_dict(asked).items():
            if name == "teacher" and value and saved.get(name):
                taught_by = payload.get("teacher_sha256") or (payload.get("metrics") or {}).get("teacher_sha256")
                same = Path(value).is_file() and sha256_file(Path(value)) == taught_by
                shown = ("another file" if not same else value, value)
            else:
                same, shown = saved.get(name) == value, (saved.get(name), value)
            if not same:
                differing.append(f"{name} {shown[0]} there, {shown[1]} asked")
    if differing:
        raise FmnistEdgeError(f"{run_dir}: {'already trained' if file.name == MODEL_FILE else 'started'} with "
                              f"other settings ({'; '.join(differing)}); --force retrains it, or name another --out")
