"""`fmnist-edge train ...` and `fmnist-edge evaluate`: thin wrappers over fmnist_edge.train."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from fmnist_edge.cli.common import DataDir, JsonFlag, command, nonempty_path
from fmnist_edge.errors import FmnistEdgeError, UsageError, counted
from fmnist_edge.train.config import (DEFAULT_DISTILL, DEFAULT_TEMPERATURE, LATEST_TRAIN_POINTER,
                                     REPORT_DECODER_DILATION)
from fmnist_edge.train.settings import native_bf16, refuse_contradictions, refuse_other_settings

DEFAULT_TRAIN_DIR = Path("runs/train")
LATEST_POINTER = Path(LATEST_TRAIN_POINTER)

N = Annotated[int, typer.Option("--n", help="Size of the encoder's linear bottleneck.")]
Dropout = Annotated[float, typer.Option("--dropout", "-p", help="Dropout probability p, in [0, 1).")]
Optimizer = Annotated[str, typer.Option(help="adam or sgd.")]
Lr = Annotated[float, typer.Option("--lr", help="Learning rate.")]
ClassifierLr = Annotated[Optional[float], typer.Option(
    "--lr", help="Learning rate (default: the recipe's; best: 3e-3, or 3e-2 with a frozen encoder; paper: 1e-3).",
    show_default=False)]
BatchSize = Annotated[int, typer.Option(help="Training batch size.")]
MaxEpochs = Annotated[int, typer.Option(help="Upper bound on epochs; early stopping usually ends sooner.")]
Patience = Annotated[int, typer.Option(help="Epochs without a better validation loss before stopping.")]
Seed = Annotated[int, typer.Option(help="Seed for weights, batch order and dropout.")]
Limit = Annotated[Optional[int], typer.Option(help="Train on the first N training images (smoke tests).",
                                             show_default=False)]
Recipe = Annotated[str, typer.Option(help="paper: the report's recipe; best: adds augmentation, "
                                          "a cosine schedule, label smoothing and weight decay (classifier).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")]
Force = Annotated[bool, typer.Option("--force", help="Start over even if --out holds a run.")]
Device = Annotated[str, typer.Option(help="auto (CUDA when there is one), cpu or cuda.")]
Bf16 = Annotated[Optional[bool], typer.Option(
    "--bf16/--no-bf16", help="bf16 autocast (AMX or AVX-512 BF16 on recent CPUs): faster, not bit-equal (default: the recipe's; "
                             "on for the best recipe's teacher only).", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No per-epoch lines.")]
DropoutOffLast = Annotated[Optional[float], typer.Option(
    help="Train the last fraction of --max-epochs with dropout off (0 to 1; default: the recipe's).",
    show_default=False)]
AugmentOffLast = Annotated[Optional[float], typer.Option(
    help="With augmentation: train the last fraction of --max-epochs on the images as they are (0 to 1; "
         "default: the recipe's).", show_default=False)]
ReviveEvery = Annotated[Optional[int], typer.Option(
    help="Every N steps, revive latent units that no image activates (0: never; default: the recipe's).",
    show_default=False)]

Teacher = Annotated[Optional[Path], typer.Option(
    help="Distil from this checkpoint (from `fmnist-edge train teacher`): its soft predictions join the labels.",
    show_default=False, parser=nonempty_path)]
Distill = Annotated[Optional[float], typer.Option(
    help=f"With --teacher: the share of the loss that follows the teacher (default {DEFAULT_DISTILL}).",
    show_default=False)]
Temperature = Annotated[Optional[float], typer.Option(
    help=f"With --teacher: the softmax temperature of distillation (default {DEFAULT_TEMPERATURE}).",
    show_default=False)]


CalibrateInit = Annotated[Optional[bool], typer.Option(
    "--calibrate-init/--no-calibrate-init",
    help="Cases 3 and 4: set the random encoder's biases from 1,000 unlabelled training images so that every unit "
         "is active on a share of them (--calibrate-active); weights stay random (default: the recipe's; best: on "
         "for case 4).",
    show_default=False)]
CalibrateActive = Annotated[Optional[float], typer.Option(
    help="With --calibrate-init: the share of those images each random unit is made active on, in (0, 1] "
         "(default: the recipe's; best: 0.9 for case 4, else 0.5).", show_default=False)]


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option `name` was given on the command line (or by the environment), not defaulted."""
    return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"


def _configs(kind: str, n, dropout, optimizer, lr, batch_size, max_epochs, patience, seed, limit,
             recipe, bf16, case=None, dropout_off_last=None, revive_every=None, teacher=None,
             distill=None, temperature=None, calibrate_init=None, augment_off_last=None, calibrate_active=None,
             decoder_dilation=REPORT_DECODER_DILATION, batch_norm=None, device="auto"):
    from fmnist_edge.train.config import HALF_ACTIVE, ModelConfig, TrainConfig, apply_recipe, recipe_lr

    model_cfg = ModelConfig(kind=kind, n=n, dropout=dropout, case=case, decoder_dilation=decoder_dilation)
    model_cfg.check()
    lr = recipe_lr(recipe, model_cfg) if lr is None else lr
    train_cfg = TrainConfig(optimizer=optimizer.lower(), lr=lr, batch_size=batch_size, max_epochs=max_epochs,
                            patience=patience, seed=seed, limit=limit, recipe=recipe)
    train_cfg = apply_recipe(train_cfg, model_cfg)
    explicit = {"bf16": bf16, "dropout_off_last": dropout_off_last, "augment_off_last": augment_off_last,
                "revive_every": revive_every, "calibrate_init": calibrate_init, "calibrate_active": calibrate_active,
                "batch_norm": batch_norm}
    for name, value in explicit.items():
        if value is not None:  # an option given on the command line wins over the recipe
            setattr(train_cfg, name, value)
    if calibrate_active is None and not train_cfg.calibrate_init:
        train_cfg.calibrate_active = HALF_ACTIVE  # the recipe's share, for a calibration turned off (--no-calibrate-init)
    if bf16 is None and train_cfg.bf16 and not native_bf16(device):
        train_cfg.bf16 = False  # emulated, bf16 is many times slower than fp32 (AVX2-only CPUs)
    refuse_contradictions(model_cfg, train_cfg, revive_every, augment_off_last, dropout_off_last, calibrate_active)
    if teacher is None and (distill is not None or temperature is not None):
        raise UsageError("--distill and --temperature need a --teacher checkpoint")
    if teacher is not None:
        train_cfg.teacher = str(teacher)
        train_cfg.distill = DEFAULT_DISTILL if distill is None else distill
        train_cfg.temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    train_cfg.check()
    return model_cfg, train_cfg


# Options that say where and how to run, not what to train: a resumed run may change them.
# (--teacher's file is checked on resume by its sha256.)
NOT_SETTINGS = frozenset({"out", "resume", "force", "device", "quiet", "data_dir", "encoder", "teacher"})


def _run(model_cfg, train_cfg, out, data_dir, encoder=None, resume=False, force=False, device="auto",
         quiet=False, ctx=None):
    from rich.console import Console

    from fmnist_edge.train.loop import Trainer

    console = Console(stderr=True, soft_wrap=True)
    given = [p.name for p in ctx.command.params if p.name not in NOT_SETTINGS and _given(ctx, p.name)] if ctx else []
    trainer = Trainer(model_cfg, train_cfg, out, data_dir=data_dir, encoder_ckpt=encoder, resume=resume,
                      force=force, device=device, quiet=quiet, given=given)  # checks everything before saying anything
    if resume and not trainer.resume:  # said, so that a mistyped --out is noticed
        console.print(f"nothing to resume in {out} (no interrupted run there): starting a new run", highlight=False)
    trainer.prepare()  # the data files read and checked: a bad one is said before the banner
    model_cfg, train_cfg = trainer.model_cfg, trainer.cfg  # a resumed run's own settings
    what = model_cfg.title
    console.print(f"{'resuming' if trainer.resume else 'training'} {what} (n={model_cfg.n}, p={model_cfg.dropout}, "
                  f"{train_cfg.optimizer}, lr={train_cfg.lr}, batch {train_cfg.batch_size}, recipe {train_cfg.recipe}) "
                  f"into {out}", highlight=False)
    result = trainer.run()
    m = result.metrics
    score = (f"test MSE {m['test_mse']:.5f}" if "test_mse" in m else f"test accuracy {m['test_accuracy']:.4f}")
    console.print(f"done: {counted(m['epochs'], 'epoch')} ({m['stop_reason']}), best epoch {m['best_epoch']}, "
                  f"{score}, {m['wall_time_s']:.0f}s; checkpoint {result.model_path}", highlight=False)
    return result


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train the autoencoder and classifier variants (needs the train extra).",
                            invoke_without_command=True, rich_markup_mode=None)
    app.add_typer(train_app, name="train")

    @train_app.callback()
    @command
    def train_default(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option(help="Folder for both runs.", parser=nonempty_path)] = DEFAULT_TRAIN_DIR,
        max_epochs: MaxEpochs = 60, patience: Patience = 8, seed: Seed = 0, limit: Limit = None,
        recipe: Recipe = "best", resume: Resume = False, force: Force = False, device: Device = "auto",
        data_dir: DataDir = None, quiet: Quiet = False, teacher: Teacher = None,
        distill: Distill = None, temperature: Temperature = None,
    ):
        """With no subcommand: train what the report deploys, the n=64, p=0.1 autoencoder and then
        the case-1 classifier on its encoder (taught by --teacher when given)."""
        if ctx.invoked_subcommand is not None:
            given = [p.opts[0] for p in ctx.command.params if _given(ctx, p.name)]
            if given:  # they would be dropped: the subcommand has options of its own
                them = "them" if len(given) > 1 else "it"
                raise UsageError(f"{', '.join(given)} before `{ctx.invoked_subcommand}` "
                                 f"{'belong' if len(given) > 1 else 'belongs'} to plain `fmnist-edge train`; "
                                 f"put {them} after `{ctx.invoked_subcommand}`")
            return
        from fmnist_edge.fileio import write_json
        from fmnist_edge.train.run_state import run_state

        if teacher is not None:  # refused now, not after the autoencoder's minutes of training
            from fmnist_edge.train.distill import load_teacher

            load_teacher(teacher)
        ae_cfgs = _configs("autoencoder", 64, 0.1, "adam", 1e-3, 100, max_epochs, patience, seed, limit,
                           recipe, None)
        clf_cfgs = _configs("classifier", 64, 0.1, "adam", None, 100, max_epochs, patience, seed, limit,
                            recipe, None, case=1, teacher=teacher, distill=distill, temperature=temperature)
        ae_dir, clf_dir = out / "autoencoder", out / "classifier"
        states = {run_dir: run_state(run_dir) for run_dir in (ae_dir, clf_dir)}
        for run_dir, cfgs in ((ae_dir, ae_cfgs), (clf_dir, clf_cfgs)):  # both, before any training
            if not force and (states[run_dir] == "finished" or (states[run_dir] == "partial" and resume)):
                refuse_other_settings(run_dir, *cfgs)
        if states[ae_dir] == "finished" and not force:
            typer.echo(f"autoencoder already trained in {ae_dir} with these settings; reusing it", err=True)
        else:
            _run(*ae_cfgs, ae_dir, data_dir, resume=resume, force=force, device=device, quiet=quiet)
        if states[clf_dir] == "finished" and not force:
            typer.echo(f"classifier already trained in {clf_dir} with these settings; nothing to do "
                       "(--force retrains)", err=True)
        else:
            _run(*clf_cfgs, clf_dir, data_dir, encoder=ae_dir / "model.pt", resume=resume, force=force,
                 device=device, quiet=quiet)
        write_json(LATEST_POINTER, {"train_dir": str(out.resolve())})
        typer.echo(f"checkpoints: {ae_dir / 'model.pt'} and {clf_dir / 'model.pt'}")
        typer.echo("next: fmnist-edge export --quantize")

    @train_app.command("autoencoder")
    @command
    def train_autoencoder(
        ctx: typer.Context,
        n: N = 64, dropout: Dropout = 0.2, optimizer: Optimizer = "adam", lr: Lr = 1e-3,
        batch_size: BatchSize = 100, max_epochs: MaxEpochs = 60, patience: Patience = 8, seed: Seed = 0,
        limit: Limit = None, recipe: Recipe = "best",
        out: Annotated[Path, typer.Option(help="Run folder.", parser=nonempty_path)] = Path("runs/autoencoder"),
        resume: Resume = False, force: Force = False, device: Device = "auto", bf16: Bf16 = None,
        data_dir: DataDir = None, quiet: Quiet = False, dropout_off_last: DropoutOffLast = None,
        revive_every: ReviveEvery = None,
        decoder_dilation: Annotated[int, typer.Option(
            help="Dilation of the decoder's first transposed convolution: 2, the report's, writes only the even "
                 "rows and columns of its 13x13 output; 1 writes them all, with as many weights.")]
            = REPORT_DECODER_DILATION,
        batch_norm: Annotated[Optional[bool], typer.Option(
            "--batch-norm/--no-batch-norm",
            help="Train with batch normalisation before each ReLU after a convolution or linear layer, folded into "
                 "that layer's weights at the end: the saved model is the report's architecture (default: off; "
                 "dead-unit revival is off with it).", show_default=False)] = None,
    ):
        """Train ConvAutoencoder(n, p) with MSE loss and early stopping on validation loss."""
        cfgs = _configs("autoencoder", n, dropout, optimizer, lr, batch_size, max_epochs, patience, seed, limit,
                        recipe, bf16, dropout_off_last=dropout_off_last, revive_every=revive_every,
                        decoder_dilation=decoder_dilation, batch_norm=batch_norm)
        _run(*cfgs, out, data_dir, resume=resume, force=force, device=device, quiet=quiet, ctx=ctx)

    @train_app.command("classifier")
    @command
    def train_classifier(
        ctx: typer.Context,
        case: Annotated[int, typer.Option(help="1: pretrained, fine-tuned; 2: pretrained, frozen; "
                                               "3: random, trained; 4: random, frozen.")] = 1,
        encoder: Annotated[Optional[Path], typer.Option(help="Autoencoder checkpoint (cases 1 and 2).",
                                                        show_default=False, parser=nonempty_path)] = None,
        n: N = 64, dropout: Dropout = 0.1, optimizer: Optimizer = "adam", lr: ClassifierLr = None,
        batch_size: BatchSize = 100, max_epochs: MaxEpochs = 60, patience: Patience = 8, seed: Seed = 0,
        limit: Limit = None, recipe: Recipe = "best",
        out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/classifier-caseK).",
                                                    show_default=False, parser=nonempty_path)] = None,
        resume: Resume = False, force: Force = False, device: Device = "auto", bf16: Bf16 = None,
        data_dir: DataDir = None, quiet: Quiet = False, dropout_off_last: DropoutOffLast = None,
        revive_every: ReviveEvery = None, teacher: Teacher = None, distill: Distill = None,
        temperature: Temperature = None, calibrate_init: CalibrateInit = None,
        augment_off_last: AugmentOffLast = None, calibrate_active: CalibrateActive = None,
    ):
        """Train encoder + Linear(n, 10) with cross-entropy, in one of the report's four cases."""
        if case in (1, 2) and encoder is not None:
            from fmnist_edge.train.checkpoint import encoder_shape

            own_n, own_dropout = encoder_shape(encoder)  # the encoder decides its own shape
            for option, value, own in (("n", n, own_n), ("dropout", dropout, own_dropout)):
                if _given(ctx, option) and value != own:
                    raise FmnistEdgeError(f"--{option} {value} differs from the encoder's {own} ({encoder}); leave it out")
            n, dropout = own_n, own_dropout
        cfgs = _configs("classifier", n, dropout, optimizer, lr, batch_size, max_epochs, patience, seed, limit,
                        recipe, bf16, case=case, dropout_off_last=dropout_off_last,
                        revive_every=revive_every, teacher=teacher, distill=distill, temperature=temperature,
                        calibrate_init=calibrate_init, augment_off_last=augment_off_last,
                        calibrate_active=calibrate_active)
        _run(*cfgs, out or Path(f"runs/classifier-case{case}"), data_dir,
             encoder=encoder, resume=resume, force=force, device=device, quiet=quiet, ctx=ctx)

    @train_app.command("teacher")
    @command
    def train_teacher(
        ctx: typer.Context,
        n: Annotated[int, typer.Option("--n", help="Width of the hidden layer before the head.")] = 256,
        dropout: Dropout = 0.3, optimizer: Optimizer = "adam", lr: ClassifierLr = None,
        batch_size: BatchSize = 100, max_epochs: MaxEpochs = 30, patience: Patience = 8, seed: Seed = 0,
        limit: Limit = None, recipe: Recipe = "best",
        out: Annotated[Path, typer.Option(help="Run folder.", parser=nonempty_path)] = Path("runs/teacher"),
        resume: Resume = False, force: Force = False, device: Device = "auto", bf16: Bf16 = None,
        data_dir: DataDir = None, quiet: Quiet = False,
    ):
        """Train a larger CNN whose predictions teach the classifier (train classifier --teacher).
        It is never exported: the classifier it teaches keeps the report's architecture."""
        cfgs = _configs("teacher", n, dropout, optimizer, lr, batch_size, max_epochs, patience, seed, limit,
                        recipe, bf16, device=device)
        _run(*cfgs, out, data_dir, resume=resume, force=force, device=device, quiet=quiet, ctx=ctx)

    @app.command("evaluate")
    @command
    def evaluate_cmd(
        ckpt: Annotated[Path, typer.Argument(help="A model.pt from a training run.", parser=nonempty_path)],
        json_out: JsonFlag = False, data_dir: DataDir = None,
        validation: Annotated[bool, typer.Option(
            "--validation", help="Measure on the run's own validation images (the split it was trained "
                                 "with), to compare recipes without touching the test set.")] = False,
    ):
        """Test-set MSE (autoencoder), or accuracy, accuracy with mirror averaging (what `classify --tta`
        does) and per-class accuracy (classifier)."""
        from fmnist_edge.train.checkpoint import load_model, refuse_non_finite
        from fmnist_edge.train.data import load_test, load_train_val
        from fmnist_edge.train.evaluate import evaluate
        from fmnist_edge.train.recipe import dead_units

        model, payload = load_model(ckpt)
        refuse_non_finite(model, ckpt)
        kind = payload["model_config_obj"].kind
        split = "validation" if validation else "test"
        data = load_train_val(payload["train_config_obj"], data_dir)[1] if validation else load_test(data_dir)
        result = evaluate(model, data, kind, mirror=kind != "autoencoder")
        dead = None if kind == "teacher" else dead_units(model, data.images)
        result = {"checkpoint": str(ckpt), "kind": kind, "split": split, "images": len(data),
                  **{k: v for k, v in result.items() if k != "confusion"},
                  "dead_latent_units": dead,
                  **({"confusion": result["confusion"]} if json_out and "confusion" in result else {})}
        if json_out:
            typer.echo(json.dumps(result))
            return
        from rich.console import Console
        from rich.table import Table

        console = Console()
        if kind == "autoencoder":
            console.print(f"{ckpt}: autoencoder, {split} MSE per pixel {result['mse']:.6f} ({len(data):,} {split} images), "
                          f"{dead} of {model.encoder.n} latent units dead")
            return
        dead_note = "" if dead is None else f"; {dead} of {model.encoder.n} latent units dead"
        # A line of its own: as a table title it would wrap to the two narrow columns' width.
        console.print(f"{ckpt}: {split} accuracy {result['accuracy']:.4f} "
                      f"({result['accuracy_tta']:.4f} mirror-averaged, as classify --tta){dead_note}",
                      highlight=False, soft_wrap=True)
        table = Table()
        table.add_column("class")
        table.add_column("accuracy", justify="right")
        for name, acc in result["per_class_accuracy"].items():
            table.add_row(name, f"{acc:.4f}")
        console.print(table)
