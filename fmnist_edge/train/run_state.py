"""A run's resumable state: what a fresh run starts from, what last.pt holds, and how a resumed
run continues exactly where it stopped (weights, optimizer, schedule, generators, history)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fmnist_edge.errors import FmnistEdgeError, ModelError, with_article
from fmnist_edge.train import checkpoint
from fmnist_edge.train.models import build_model
from fmnist_edge.train.recipe import WeightAverage, cpu_state, make_optimizer, make_scheduler

HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
# What a resume point holds beyond a checkpoint's weights and configs (`_save_resume_point`).
RESUME_KEYS = ("optimizer", "aug_rng", "torch_rng", "epoch", "step", "partial", "history", "best_val_loss",
               "best_epoch", "best_state", "bad_epochs", "wall_time")


@dataclass
class RunResult:
    run_dir: Path
    model_path: Path
    metrics: dict
    history: list = field(default_factory=list)


def run_state(run_dir: Path) -> str:
    """'finished', 'partial' (a resumable last.pt) or 'new'."""
    if (run_dir / checkpoint.MODEL_FILE).is_file():
        return "finished"
    if (run_dir / checkpoint.RESUME_FILE).is_file():
        return "partial"
    return "new"


def _load_encoder_into(model: nn.Module, encoder_ckpt: Path, n: int) -> str:
    ae, payload = checkpoint.load_model(encoder_ckpt, expect_kind="autoencoder")
    checkpoint.refuse_non_finite(ae.encoder, encoder_ckpt)
    if ae.encoder.n != n:
        raise ModelError(f"{encoder_ckpt}: encoder has n={ae.encoder.n}, the classifier wants n={n}")
    model.encoder.load_state_dict(ae.encoder.state_dict())
    return str(encoder_ckpt)


def load_resume_point(path: Path) -> tuple[nn.Module, dict]:
    """last.pt's model (in its training form) and payload; a ModelError when it does not read
    back or holds no training state."""
    model, payload = checkpoint.load_model(path, training_form=True)
    missing = [key for key in RESUME_KEYS if key not in payload]
    if missing:  # a model.pt copied over last.pt, say: weights, but no training state
        raise ModelError(f"{path}: not a resume point (it lacks {', '.join(missing)})")
    return model, payload


class RunState:
    """The state of a run that last.pt holds; the Trainer builds on it. Subclasses set model_cfg,
    cfg, encoder_ckpt, device and run_dir before calling `_fresh_state` or `_restore`."""

    def _fresh_state(self) -> None:
        torch.manual_seed(self.cfg.seed)
        self.model = build_model(self.model_cfg, batch_norm=self.cfg.batch_norm)
        self.encoder_source = None
        if self.model_cfg.pretrained_encoder:
            self.encoder_source = _load_encoder_into(self.model, self.encoder_ckpt, self.model_cfg.n)
        self.model.to(self.device)
        self._make_optimizer()
        self.aug_gen = torch.Generator().manual_seed(self.cfg.seed + 1)
        self.epoch, self.step = 0, 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.history: list[dict] = []
        self.best = {"val_loss": math.inf, "epoch": -1, "state": None, "bad_epochs": 0}
        self.wall_time = 0.0
        self.ema = WeightAverage(self.cfg.ema, cpu_state(self.model)) if self.cfg.ema else None
        self.teacher_sha256 = None  # recorded when the teacher is first loaded

    def _make_optimizer(self) -> None:
        # A frozen encoder's parameters stay out of the optimizer: no updates, no optimizer state.
        params = (self.model.trainable_parameters() if self.model_cfg.kind == "classifier"
                  else list(self.model.parameters()))
        self.optimizer = make_optimizer(params, self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg)

    def _save_resume_point(self) -> None:
        checkpoint.save(
            self.run_dir / checkpoint.RESUME_FILE, self.model_cfg, self.cfg, self.model,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler else None,
            epoch=self.epoch, step=self.step, partial=dict(self.partial), history=self.history,
            best_val_loss=self.best["val_loss"], best_epoch=self.best["epoch"],
            best_state=self.best["state"], bad_epochs=self.best["bad_epochs"],
            torch_rng=torch.get_rng_state(), aug_rng=self.aug_gen.get_state(),
            wall_time=self.wall_time, ema=self.ema and self.ema.state, ema_steps=self.ema and self.ema.steps,
            encoder_source=self.encoder_source, teacher_sha256=self.teacher_sha256,
            batch_norm=self.cfg.batch_norm,  # the weights are the training form's, NormReLUs unfolded
        )

    def _restore(self) -> None:
        path = self.run_dir / checkpoint.RESUME_FILE
        self.model, payload = load_resume_point(path)
        saved = payload["model_config_obj"]
        if (saved.kind, saved.case) != (self.model_cfg.kind, self.model_cfg.case):
            what = saved.kind if saved.case is None else f"{saved.kind} (case {saved.case})"
            raise FmnistEdgeError(f"{self.run_dir}: holds {with_article(what)} run; resume it with the "
                                  "command that started it")
        for name in getattr(self, "given", ()):  # said, not ignored: a resumed run keeps its own settings
            for asked, own in ((self.model_cfg, saved), (self.cfg, payload["train_config_obj"])):
                if hasattr(own, name) and getattr(asked, name) != getattr(own, name):
                    raise FmnistEdgeError(f"--{name.replace('_', '-')} {getattr(asked, name)} differs from the run's "
                                          f"{getattr(own, name)}; a resumed run keeps the settings it started with "
                                          "(leave the option out, or --force to start over)")
        # A resumed run keeps the configuration it was started with.
        self.model_cfg, self.cfg = saved, payload["train_config_obj"]
        self.model.to(self.device).train()
        self._make_optimizer()
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler and payload.get("scheduler"):
            self.scheduler.load_state_dict(payload["scheduler"])
        self.aug_gen = torch.Generator()
        self.aug_gen.set_state(payload["aug_rng"])
        torch.set_rng_state(payload["torch_rng"])
        self.epoch, self.step = payload["epoch"], payload["step"]
        self.partial = dict(payload["partial"])
        self.history = list(payload["history"])
        self.best = {"val_loss": payload["best_val_loss"], "epoch": payload["best_epoch"],
                     "state": payload["best_state"], "bad_epochs": payload["bad_epochs"]}
        self.wall_time = payload["wall_time"]
        self.ema = WeightAverage(self.cfg.ema, payload["ema"], payload["ema_steps"]) if payload.get("ema") else None
        self.encoder_source = payload.get("encoder_source")
        self.teacher_sha256 = payload.get("teacher_sha256")
