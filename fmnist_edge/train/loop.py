"""The training loop: early stopping, checkpoints every epoch and on Ctrl-C, --resume, divergence.

What a run saves and restores (last.pt) is in run_state.py."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Collection

import torch
from torch import nn

from fmnist_edge.errors import FmnistEdgeError, Interrupted, ModelError, Terminated, UsageError
from fmnist_edge.fileio import sha256_file, write_json
from fmnist_edge.folders import file_in_the_way
from fmnist_edge.idx import find_data_dir
from fmnist_edge.train import checkpoint
from fmnist_edge.train.config import QUICK_LIMIT, ModelConfig, TrainConfig
from fmnist_edge.train.data import Tensors, augment, batches, load_test, load_train_val, random_shift
from fmnist_edge.train.evaluate import evaluate
from fmnist_edge.train.models import fold_batch_norm
from fmnist_edge.train.recipe import (WeightAverage, calibrate_biases, cpu_state, dead_units, distillation_loss, loss_fn,
                                      revive_dead_units)
from fmnist_edge.train.run_state import HISTORY_FILE, METRICS_FILE, RunResult, RunState, run_state
from fmnist_edge.train.settings import refuse_impossible


class Diverged(FmnistEdgeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FmnistEdgeError("--device cuda asked for, but no CUDA device is available")
    return device


@torch.no_grad()
def encoded(encoder: nn.Module, data: Tensors, device: str = "cpu") -> Tensors:
    """`data` with its images replaced by `encoder`'s features (on the CPU), 1,000 at a time."""
    return Tensors(torch.cat([encoder(data.images[i:i + 1000].to(device)).cpu()
                              for i in range(0, len(data), 1000)]), data.labels)


class Trainer(RunState):
    """One run in one folder. Construct, then `run()`; every piece of state lives in last.pt."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, run_dir: str | Path,
                 data_dir=None, encoder_ckpt: str | Path | None = None, resume: bool = False,
                 force: bool = False, device: str = "auto", quiet: bool = False,
                 on_epoch: Callable[[dict], None] | None = None, given: Collection[str] = (),
                 resume_how: str = "with --resume", restart_how: str = "--force starts the run over"):
        """`given`: the settings the user named (CLI option names = config fields); a resumed run
        refuses one that differs from its own. `resume_how`: how the user resumes the run, for
        the message of an interrupted one; `restart_how`: how they start it over, for that of a
        resume point that cannot be continued."""
        model_cfg.check()
        train_cfg.check()
        self.model_cfg, self.cfg = model_cfg, train_cfg
        self.run_dir = Path(run_dir)
        self.data_dir = data_dir
        self.encoder_ckpt = Path(encoder_ckpt) if encoder_ckpt else None
        # Usage errors first: before the machine, the folder, the data.
        refuse_impossible(model_cfg, train_cfg, self.encoder_ckpt is not None, resume, force)
        self.device = resolve_device(device)
        self.quiet = quiet
        self.on_epoch = on_epoch
        self.given = tuple(given)
        self.resume_how, self.restart_how = resume_how, restart_how
        self._interrupted, self._stopped_by = False, None  # a stop asked for between steps, and its signal
        state = run_state(self.run_dir)
        if state == "finished" and not force:
            raise FmnistEdgeError(f"{self.run_dir} already holds a finished run; pass --force to train it again, "
                                  "or choose another --out")
        if state == "partial" and not (resume or force):
            raise FmnistEdgeError(f"{self.run_dir} holds an interrupted run; pass --resume to continue it, "
                                  "or --force to start over")
        find_data_dir(data_dir)  # no data: say so before anything is printed or written
        self.resume = resume and state == "partial"
        # Everything a run needs is checked before --force deletes the run it replaces.
        if model_cfg.pretrained_encoder and self.encoder_ckpt is None and not self.resume:
            raise UsageError(f"case {model_cfg.case} needs a pretrained encoder: pass --encoder CKPT")
        if self.encoder_ckpt is not None and not self.encoder_ckpt.is_file():
            raise FmnistEdgeError(f"{self.encoder_ckpt}: no such checkpoint")
        if train_cfg.teacher and not self.resume:
            from fmnist_edge.train.distill import load_teacher

            load_teacher(train_cfg.teacher)
            train_cfg.teacher = str(Path(train_cfg.teacher).resolve())  # a resume from elsewhere finds it
        # Starting over deletes the old run, but only once the new one is ready to train (prepare()):
        # a --force retrain that fails on a corrupt file keeps the finished run it would replace.
        self._replaces_a_run = force and state != "new"
        self._prepared = None  # (training module, train set, validation set), by prepare()
        blocker = file_in_the_way(self.run_dir)
        if blocker is not None:  # said now; the folder is made by prepare()
            raise FmnistEdgeError(f"cannot create {self.run_dir}: {blocker} is not a folder")

    # -- loop --------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Build or restore the run's state and read the data: every file is read and checked
        here, before the first epoch (the CLI calls it before it says what it trains). `run`
        calls it when it has not been called."""
        if self._prepared is not None:
            return
        if self.resume:
            try:
                self._restore()
            except ModelError as exc:  # a damaged resume point cannot be continued: say the way out
                raise ModelError(f"{exc}; {self.restart_how}") from None
        else:
            self._fresh_state()
        train, val = load_train_val(self.cfg, self.data_dir)
        # Read now, not after the last epoch: a bad test file is said before any training, and
        # before --force deletes the run it would replace.
        self._test_set = load_test(self.data_dir, limit=self.cfg.limit and QUICK_LIMIT)
        if self.cfg.calibrate_init and not self.resume:
            calibrate_biases(self.model, train.images[:1000].to(self.device), self.cfg.calibrate_active)
            if self.ema is not None:  # the average starts from the calibrated weights
                self.ema = WeightAverage(self.cfg.ema, cpu_state(self.model))
        if self.cfg.batch_norm and len(train) < 2:  # before --force deletes the run it replaces
            raise FmnistEdgeError("--batch-norm needs at least 2 training images")
        self._prepare_teacher(train, val)
        step_module, train, val = self._training_view(train, val)
        if self._replaces_a_run:  # everything is ready: now the old run goes
            # An old model.pt left beside a new, interrupted run would look finished.
            for name in (checkpoint.MODEL_FILE, checkpoint.RESUME_FILE, HISTORY_FILE, METRICS_FILE):
                (self.run_dir / name).unlink(missing_ok=True)
            self._replaces_a_run = False
        try:  # only now: a run refused for its data or its encoder leaves no empty folder behind
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FmnistEdgeError(f"cannot create {self.run_dir}: {exc.strerror}") from None
        self._prepared = (step_module, train, val)

    def run(self) -> RunResult:
        self.prepare()
        (step_module, train, val), self._prepared = self._prepared, None
        kind = self.model_cfg.kind
        objective = loss_fn(kind, self.cfg)
        from fmnist_edge.train.progress import EpochProgress

        progress = EpochProgress(quiet=self.quiet)
        try:
            with progress, self._ctrl_c_between_steps():
                # Checked before each epoch: a run resumed after it stopped early (a Ctrl-C during
                # the test) stops again rather than train one epoch more.
                while self.epoch < self.cfg.max_epochs and not self._stops_early():
                    record = self._train_epoch(step_module, train, val, objective, progress)
                    if self.on_epoch:
                        self.on_epoch(record)
                asked_during_the_last_epoch = self._interrupted  # after its last step: its end was saved
            stop_reason = "early-stop" if self._stops_early() else "max-epochs"
        except (KeyboardInterrupt, Terminated) as exc:
            self._save_resume_point()
            raise self._stopped(exc, f"in epoch {self.epoch + 1}; state saved to "
                                     f"{self.run_dir / checkpoint.RESUME_FILE}, continue {self.resume_how}") from None
        try:
            if asked_during_the_last_epoch:  # a stop asked for is a stop, even with no step left to end
                raise KeyboardInterrupt
            return self._finish(stop_reason)
        except (KeyboardInterrupt, Terminated) as exc:  # the epochs are done and saved: the test and model.pt are left
            raise self._stopped(exc, f"after the last epoch, before the test; {self.run_dir / checkpoint.RESUME_FILE} "
                                     f"holds the run: finish it {self.resume_how}") from None

    def _stopped(self, exc: BaseException, where: str) -> Interrupted | Terminated:
        """What the run stopped by `exc` raises: Terminated for a SIGTERM (raised, or asked for
        between steps), else Interrupted; its message says which, then `where`."""
        if isinstance(exc, Terminated) or self._stopped_by == signal.SIGTERM:
            return Terminated(f"terminated {where}")
        return Interrupted(f"interrupted {where}")

    @contextlib.contextmanager
    def _ctrl_c_between_steps(self):
        """The first Ctrl-C or SIGTERM (a service manager's stop, `timeout`, `kill`) asks the loop
        to stop after the current step, so that the state it saves is whole; a second one stops at once."""
        self._interrupted, self._stopped_by = False, None
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask_to_stop(signum, frame):
            self._interrupted, self._stopped_by = True, signum
            for number, handler in previous.items():
                signal.signal(number, handler)

        previous = {number: signal.signal(number, ask_to_stop) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stops_early(self) -> bool:
        """Patience run out. Epochs planned without dropout or augmentation get their own patience:
        a plateau before them says nothing of the network they make, which evaluation runs."""
        waiting = any(self.epoch < start + self.cfg.patience for start in self._phase_starts())
        return self.best["bad_epochs"] >= self.cfg.patience and not waiting

    def _off_from(self, last_fraction: float) -> int:
        """The first epoch (0-based) of the last `last_fraction` of max_epochs; max_epochs for 0.
        Short of the whole run (1), the first epoch stays on: 0.75 of 2 epochs would round to
        both, and a run of one or two epochs (`--quick`) would never see its dropout."""
        off = round(last_fraction * self.cfg.max_epochs)
        if last_fraction < 1:
            off = min(off, self.cfg.max_epochs - 1)
        return self.cfg.max_epochs - off

    def _phase_starts(self) -> list[int]:
        """The epochs (0-based) where a planned last phase begins: dropout off, augmentation off."""
        planned = [(self.model_cfg.dropout > 0, self.cfg.dropout_off_last),
                   (self.cfg.augment, self.cfg.augment_off_last)]
        starts = [self._off_from(fraction) for applies, fraction in planned if applies]
        return [start for start in starts if start < self.cfg.max_epochs]

    def _prepare_teacher(self, train: Tensors, val: Tensors) -> None:
        """The teacher's logits for the training images and for validation, when distilling."""
        self.teacher, self.val_distill = None, None
        if not self.cfg.teacher:
            return
        from fmnist_edge.train.distill import TeacherLogits

        teacher_path = Path(self.cfg.teacher)
        found = sha256_file(teacher_path) if teacher_path.is_file() else None
        if self.teacher_sha256 is None and not self.resume:
            self.teacher_sha256 = found
        if found is None or found != self.teacher_sha256:
            raise FmnistEdgeError(f"{teacher_path}: the teacher this run started with is gone or changed; "
                                  "a resumed run would learn from another teacher (--force starts over)")
        self.teacher = TeacherLogits(teacher_path, train.images, self.device,
                                     flips_only=self.cfg.augment_shift == 0 or not self.cfg.augment)
        # Validation loss is the training objective, the teacher's share included: with T=4 the
        # labels' cross-entropy alone rises while the distilled student still improves.
        self.val_distill = (self.teacher.logits(val.images, self.device), self.cfg.distill, self.cfg.temperature)

    def _training_view(self, train: Tensors, val: Tensors) -> tuple[nn.Module, Tensors, Tensors]:
        """What the steps run on: the model and images, or, when a frozen encoder sees unaugmented
        images, the head and the encoder's features computed once (the same numbers: a frozen
        encoder runs without dropout; 40 epochs take seconds instead of minutes)."""
        if not (self.model_cfg.frozen_encoder and not self.cfg.augment):
            return self.model, train, val
        encoder = self.model.encoder
        return self.model.head, encoded(encoder, train, self.device), encoded(encoder, val, self.device)

    def _train_epoch(self, step_module: nn.Module, train: Tensors, val: Tensors, objective, progress) -> dict:
        kind, cfg, model = self.model_cfg.kind, self.cfg, self.model
        model.train()
        dropout_on = self.epoch < self._off_from(self.cfg.dropout_off_last)
        augment_on = cfg.augment and self.epoch < self._off_from(cfg.augment_off_last)
        for module in model.modules():
            if isinstance(module, nn.Dropout):  # p is not in the state dict: export is unchanged
                module.p = self.model_cfg.dropout if dropout_on else 0.0
        # The epoch's order depends only on (seed, epoch), so a resumed epoch sees the same batches.
        order_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch)
        all_batches = list(batches(len(train), cfg.batch_size, order_gen))
        if cfg.batch_norm and len(all_batches) > 1 and len(all_batches[-1]) == 1:
            # Batch statistics need two images: a last, single one joins the batch before it.
            all_batches[-2:] = [torch.cat(all_batches[-2:])]
        progress.start_epoch(self.epoch + 1, cfg.max_epochs, len(all_batches), done=self.step)
        # A frozen encoder is a fixed feature extractor: nothing of it is revived. A teacher has no latent code.
        revive = (cfg.revive_every and self.model_cfg.kind != "teacher" and not self.model_cfg.frozen_encoder
                  and not cfg.batch_norm)
        probe = train.images[:1000].to(self.device) if revive else None
        started = time.perf_counter()
        p = self.partial
        for i in range(self.step, len(all_batches)):
            if self._interrupted:  # Ctrl-C lands here, between steps, so the saved state is consistent
                p["seconds"] += time.perf_counter() - started
                raise KeyboardInterrupt
            idx = all_batches[i]
            x = train.images[idx]
            y = train.labels[idx]
            flipped = None
            if augment_on:
                x, flipped = augment(x, self.aug_gen, cfg.augment_shift)
            seen = x
            if cfg.shift_inputs and kind == "autoencoder":  # a moved input, the unmoved target
                seen = random_shift(seen, self.aug_gen, cfg.shift_inputs)
            if cfg.mask_inputs and kind == "autoencoder":  # denoising: a masked input, the clean target
                seen = seen * (torch.rand(x.shape, generator=self.aug_gen) >= cfg.mask_inputs)
            x, y, seen = x.to(self.device), y.to(self.device), seen.to(self.device)
            with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.bf16):
                out = step_module(seen)
            loss = objective(out.float(), x, y)
            if self.teacher is not None:
                taught = self.teacher.for_batch(idx, x, flipped)
                loss = (1 - cfg.distill) * loss + cfg.distill * distillation_loss(out.float(), taught, cfg.temperature)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                self._diverged(loss_value, i)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            # Counted over the run, not the epoch: epochs shorter than the period still revive.
            if revive and (self.epoch * len(all_batches) + i + 1) % cfg.revive_every == 0:
                # A generator of its own per step: a resumed run revives with the same weights.
                fresh = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch * 10_007 + i)
                p["revived"] = p.get("revived", 0) + revive_dead_units(model, self.optimizer, probe, fresh,
                                                                       self.ema)
            if self.ema is not None:
                self.ema.update(model)
            p["loss_sum"] += loss_value * len(idx)
            p["seen"] += len(idx)
            if self.model_cfg.predicts_labels:
                p["correct"] += (out.argmax(1) == y).sum().item()
            self.step = i + 1
            progress.advance(p["loss_sum"] / p["seen"])
        seconds = p["seconds"] + time.perf_counter() - started
        with self.ema.applied_to(model) if self.ema else contextlib.nullcontext():
            val_metrics = evaluate(step_module, val, kind, self.device, label_smoothing=cfg.label_smoothing,
                                   distill=self.val_distill)
            snapshot = cpu_state(model)  # the weights just validated (the average, with EMA)
        val_loss = val_metrics["mse" if kind == "autoencoder" else "loss"]
        if not math.isfinite(val_loss):
            self._diverged(val_loss, None)
        record = {"epoch": self.epoch + 1, "train_loss": p["loss_sum"] / max(p["seen"], 1),
                  "val_loss": val_loss, "lr": self.optimizer.param_groups[0]["lr"],
                  "seconds": round(seconds, 3)}
        if revive:
            record["revived_units"] = p.get("revived", 0)
        if self.model_cfg.predicts_labels:
            record["train_accuracy"] = p["correct"] / max(p["seen"], 1)
            record["val_accuracy"] = val_metrics["accuracy"]
        if self.scheduler:
            self.scheduler.step()
        if val_loss < self.best["val_loss"]:
            self.best.update(val_loss=val_loss, epoch=self.epoch + 1, bad_epochs=0, state=snapshot)
        else:
            self.best["bad_epochs"] += 1
        self.history.append(record)
        self.wall_time += seconds
        self.epoch, self.step = self.epoch + 1, 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        write_json(self.run_dir / HISTORY_FILE, self.history)
        self._save_resume_point()
        progress.end_epoch(record, best=self.best["epoch"] == record["epoch"])
        return record

    def _diverged(self, value: float, step: int | None) -> None:
        where = f"epoch {self.epoch + 1}" + (f", step {step + 1}" if step is not None else "")
        kept = self.run_dir / checkpoint.RESUME_FILE
        note = f"last good checkpoint kept at {kept}" if kept.is_file() else "no epoch had finished"
        raise Diverged(f"training diverged ({value} loss at {where}); {note}. Start again with --force "
                       "and a lower --lr")

    def _finish(self, stop_reason: str) -> RunResult:
        if self.best["state"] is not None:
            self.model.load_state_dict(self.best["state"])  # early stopping restores the best weights
        if self.cfg.batch_norm:  # from here on, and in model.pt, the report's architecture
            fold_batch_norm(self.model)
        kind = self.model_cfg.kind
        test_set = self._test_set
        test = evaluate(self.model, test_set, kind, self.device, mirror=self.model_cfg.predicts_labels)
        best_val = self.best["val_loss"]
        metrics = {
            "kind": kind, "n": self.model_cfg.n, "dropout": self.model_cfg.dropout, "case": self.model_cfg.case,
            "epochs": self.epoch, "best_epoch": self.best["epoch"], "best_val_loss": best_val,
            "stop_reason": stop_reason, "wall_time_s": round(self.wall_time, 2),
            "test_mse" if kind == "autoencoder" else "test_accuracy":
                test["mse"] if kind == "autoencoder" else test["accuracy"],
            "test_limited": self.cfg.limit is not None,
            "dead_latent_units": (None if kind == "teacher" else
                                  dead_units(self.model, test_set.images.to(self.device))),
            "encoder_source": self.encoder_source,
            "teacher_source": self.cfg.teacher,
            "teacher_sha256": self.teacher_sha256,
        }
        if self.model_cfg.predicts_labels:
            metrics["test_loss"] = test["loss"]
            metrics["test_accuracy_tta"] = test["accuracy_tta"]
            metrics["per_class_accuracy"] = test["per_class_accuracy"]
            metrics["confusion"] = test["confusion"]
        self.model.cpu()
        model_path = self.run_dir / checkpoint.MODEL_FILE
        # model.pt last: it is what makes the run finished, so a Ctrl-C before it leaves a run that
        # --resume finishes (metrics.json is written again then).
        write_json(self.run_dir / METRICS_FILE, metrics)
        checkpoint.save(model_path, self.model_cfg, self.cfg, self.model, metrics=metrics, history=self.history)
        return RunResult(self.run_dir, model_path, metrics, self.history)
