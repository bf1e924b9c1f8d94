"""Configs as dataclasses: CLI options map onto them one to one, checkpoints store them as dicts."""

from __future__ import annotations

import operator
from dataclasses import asdict, dataclass, field, fields

from fmnist_edge.errors import UsageError
from fmnist_edge.fileio import NUMBER, json_typed

OPTIMIZERS = ("adam", "sgd")
RECON_LOSSES = ("mse", "bce")
LATEST_TRAIN_POINTER = "runs/latest.json"  # written by plain `fmnist-edge train`, read by plain `export`
QUICK_LIMIT = 2000  # --quick and --limit runs: training images, and test images for their final figures
RECIPES = ("paper", "best")
KINDS = ("autoencoder", "classifier", "teacher")
DEFAULT_DISTILL = 0.9  # Hinton et al.'s usual weighting: mostly the teacher, a little of the labels
DEFAULT_TEMPERATURE = 4.0
REPORT_DECODER_DILATION = 2
HALF_ACTIVE = 0.5  # calibrate_init's share before it was a setting: each unit active on half the images
CASES = {
    1: "pretrained encoder, fine-tuned with the classifier",
    2: "pretrained encoder frozen, only the classifier trained",
    3: "random encoder, trained with the classifier",
    4: "random encoder frozen, only the classifier trained",
}


@dataclass
class ModelConfig:
    """What rebuilds a model from a checkpoint alone."""

    kind: str = "autoencoder"  # or "classifier", or "teacher" (trains classifiers, is never exported)
    n: int = 64  # the width of the code the head reads: the latent size; the teacher's hidden layer
    dropout: float = 0.2
    case: int | None = None  # classifier only
    # The decoder's first ConvTranspose2d: 2 is the report's, which writes only the even rows and
    # columns of its 13x13 output; 1 (padding 0, same weights' shape) writes all of them.
    decoder_dilation: int = REPORT_DECODER_DILATION

    @property
    def title(self) -> str:
        """'autoencoder', 'classifier case 2': what the run is, for messages."""
        return self.kind + (f" case {self.case}" if self.case else "")

    def check(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"unknown model kind {self.kind!r}")
        if not (isinstance(self.n, int) and 1 <= self.n <= 4096):
            raise UsageError(f"--n must be an integer from 1 to 4096, got {self.n}")
        if not (0.0 <= self.dropout < 1.0):
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.decoder_dilation not in (1, 2):
            raise UsageError(f"--decoder-dilation must be 1 or 2, got {self.decoder_dilation}")
        if self.kind != "autoencoder" and self.decoder_dilation != REPORT_DECODER_DILATION:
            raise UsageError(f"--decoder-dilation is for autoencoders; {self.kind}s have no decoder")
        if self.kind == "classifier" and self.case not in CASES:
            raise UsageError(f"--case must be one of 1, 2, 3, 4, got {self.case}")

    @property
    def frozen_encoder(self) -> bool:
        return self.kind == "classifier" and self.case in (2, 4)

    @property
    def predicts_labels(self) -> bool:
        return self.kind in ("classifier", "teacher")

    @property
    def pretrained_encoder(self) -> bool:
        return self.kind == "classifier" and self.case in (1, 2)


@dataclass
class TrainConfig:
    """How a model is trained. `recipe="paper"` is the report's; "best" adds what beats it."""

    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 100
    max_epochs: int = 60
    patience: int = 5
    seed: int = 0
    limit: int | None = None  # train on the first N training images (smoke tests)
    recipe: str = "best"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = False  # random horizontal flips
    augment_shift: int = 0  # with augment, also random shifts of up to this many pixels
    # With augment, train the last fraction of max_epochs on the images as they are, so that the
    # last steps fit what evaluation sees.
    augment_off_last: float = 0.0
    schedule: str = "none"  # or "cosine"
    bf16: bool = False  # bf16 autocast (AMX or AVX-512 BF16); off by default: fp32 keeps curves comparable
    ema: float = 0.0  # decay of an exponential moving average of the weights, evaluated and kept; 0 = off
    # Train the last fraction of max_epochs with dropout off. Dropout before max-pooling makes
    # training activations larger than evaluation's; these epochs adapt to what evaluation sees.
    dropout_off_last: float = 0.0
    # Every this many steps, revive bottleneck units that no image activates (0 = never).
    revive_every: int = 0
    # A random encoder's biases set from unlabelled training images, layer by layer, so that every
    # unit is active on the `calibrate_active` share of them (no dead units, every feature
    # informative); weights stay random.
    calibrate_init: bool = False
    calibrate_active: float = HALF_ACTIVE
    # Autoencoders: train with batch normalisation before each ReLU that follows a weighted layer,
    # folded into that layer's weights when the run ends, so the saved model is the report's
    # architecture (models.fold_batch_norm). Dead-unit revival is off with it: its test reads the
    # latent layer's pre-activations, which batch normalisation re-centres on every batch.
    batch_norm: bool = False
    # Denoising (autoencoders): each input pixel is zeroed with this probability and the network
    # learns to give back the clean image (masking noise, Vincent et al. 2010). 0 = off.
    mask_inputs: float = 0.0
    # Autoencoders: each input moved by up to this many pixels, the unmoved image the target, so
    # that the code has to say what the garment is rather than where its pixels are. 0 = off.
    shift_inputs: int = 0
    # Autoencoders: the training loss, "mse" (the report's) or "bce", binary cross-entropy on the
    # sigmoid's output, whose gradient on the logit is the error itself where MSE's is the error
    # times the sigmoid's slope. Validation loss, early stopping and every reported figure stay MSE.
    recon_loss: str = "mse"
    # Knowledge distillation: a teacher checkpoint whose softened predictions (at `temperature`)
    # make up the `distill` fraction of the loss; the labels' cross-entropy the rest.
    teacher: str | None = None
    distill: float = 0.0
    temperature: float = DEFAULT_TEMPERATURE
    val_size: int = 6000
    split_seed: int = 20250201  # fixed: the same validation images for every run
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (self.lr > 0 and self.lr < 10):
            raise UsageError(f"--lr must be a positive number below 10, got {self.lr}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_epochs < 1:
            raise UsageError(f"--max-epochs must be at least 1, got {self.max_epochs}")
        try:
            seed = operator.index(self.seed)  # numpy integers too
        except TypeError:
            seed = -1
        if not 0 <= seed < 2**32:
            raise UsageError(f"--seed must be an integer from 0 to {2**32 - 1}, got {self.seed}")
        if self.patience < 1:
            raise UsageError(f"--patience must be at least 1, got {self.patience}")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1, got {self.limit}")
        if self.recipe not in RECIPES:
            raise UsageError(f"--recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if not (0.0 <= self.mask_inputs < 1.0):
            raise UsageError(f"mask_inputs must be in [0, 1), got {self.mask_inputs}")
        if not (0 <= self.shift_inputs <= 8):
            raise UsageError(f"shift_inputs must be 0 to 8 pixels, got {self.shift_inputs}")
        if self.recon_loss not in RECON_LOSSES:
            raise UsageError(f"recon_loss must be one of {', '.join(RECON_LOSSES)}, got {self.recon_loss!r}")
        if not (0.0 <= self.dropout_off_last <= 1.0):
            raise UsageError(f"--dropout-off-last must be in [0, 1], got {self.dropout_off_last}")
        if not (0.0 <= self.augment_off_last <= 1.0):
            raise UsageError(f"--augment-off-last must be in [0, 1], got {self.augment_off_last}")
        if not (0.0 <= self.ema < 1.0):
            raise UsageError(f"ema decay must be in [0, 1), got {self.ema}")
        if not (0 <= self.augment_shift <= 8):
            raise UsageError(f"augment_shift must be 0 to 8 pixels, got {self.augment_shift}")
        if not (0.0 < self.calibrate_active <= 1.0):
            raise UsageError(f"--calibrate-active must be in (0, 1], got {self.calibrate_active}")
        if self.calibrate_active != HALF_ACTIVE and not self.calibrate_init:
            raise UsageError("--calibrate-active applies to --calibrate-init, which is off for this run")
        if self.revive_every < 0:
            raise UsageError(f"--revive-every must be 0 or more, got {self.revive_every}")
        if self.schedule not in ("none", "cosine"):
            raise UsageError(f"unknown schedule {self.schedule!r}")
        if not (0.0 <= self.distill <= 1.0):
            raise UsageError(f"--distill must be in [0, 1], got {self.distill}")
        if self.distill > 0 and not self.teacher:
            raise UsageError("--distill needs a --teacher checkpoint")
        if self.teacher and self.distill == 0:
            raise UsageError("--teacher with --distill 0 would teach nothing; give --distill above 0")
        if not (0.0 < self.temperature <= 100.0):
            raise UsageError(f"--temperature must be in (0, 100], got {self.temperature}")


def recipe_lr(recipe: str, model_cfg: ModelConfig) -> float:
    """The learning rate a recipe trains a model with when none is given.

    The report's 1e-3 under-trains the classifier in 30 epochs (train accuracy stays below
    validation accuracy); measured on case 1, 3e-3 with the cosine schedule gained 0.6 points.
    A frozen encoder leaves only the linear head to learn, from fixed features: 3e-2, which
    converges in 30 epochs where 1e-2 did not on case 4 (+0.8 points of validation accuracy over
    3 seeds; case 2 the same either way)."""
    if recipe != "best" or model_cfg.kind == "autoencoder":
        return 1e-3
    return 3e-2 if model_cfg.frozen_encoder else 3e-3


def apply_recipe(cfg: TrainConfig, model_cfg: ModelConfig) -> TrainConfig:
    """Fill in the recipe's extras. "paper" trains exactly as the report did."""
    if cfg.recipe != "best":
        return cfg
    cfg.schedule = "cosine"  # the report's constant lr leaves validation loss noisy at its floor
    if model_cfg.kind == "autoencoder":
        cfg.revive_every = 50  # about half of the latent units die in the first steps otherwise
        # The last epochs train the network that evaluation runs. Dropout before max-pooling holds
        # the validation loss still while it is on (0.0137 at epoch 15 of the n=64, p=0.1 run), so
        # it stays on for the first quarter only, where p still shapes the run: 3/4 dropout-free
        # gave validation MSE 0.0098 against 0.0114 for the last quarter alone, and the same
        # linear-probe accuracy (benchmarks/recipe_experiments, "Autoencoders with less dropout").
        cfg.dropout_off_last = 0.75
    elif model_cfg.kind == "teacher":
        # No label smoothing: it erases what a teacher knows about which wrong classes are close
        # (Mueller et al. 2019), which is what distillation passes on. 27 times the classifier's
        # arithmetic: bf16 autocast, and it can afford the 2-pixel shifts that the classifier cannot.
        cfg.ema = 0.999
        cfg.augment, cfg.augment_shift = True, 2
        cfg.weight_decay = 5e-4
        cfg.bf16 = True
    else:
        cfg.ema = 0.999
        if model_cfg.frozen_encoder:
            # The linear head learns on fixed features: no augmentation, so that the features are
            # computed once, and nothing of the encoder to revive or decay. No label smoothing: it
            # caps the margins of a head that underfits already (case 2: +0.9 points of validation
            # accuracy without it, benchmarks/recipe_experiments).
            if not model_cfg.pretrained_encoder:
                # Case 4: no dead random units (+2.0 validation points, 3 seeds), and each unit active
                # on 90% of the images rather than half: a ReLU that is off for half of them throws
                # away what the head could use (+3.6 validation points over half, 3 seeds;
                # benchmarks/recipe_experiments, "How much of the time a random unit is active").
                cfg.calibrate_init, cfg.calibrate_active = True, 0.9
        else:
            cfg.label_smoothing = 0.1
            cfg.revive_every = 50
            # Flips and 1-pixel shifts. Shifts slow this small network's start (2-pixel ones cost it
            # 1.6 points in 15 epochs) and pay off over a long schedule: with 100 epochs, case 1 gained
            # 0.3 points of validation accuracy and 1.0 of test accuracy over 45 epochs of flips alone
            # (benchmarks/recipe_experiments, c1-shift1-e100).
            cfg.augment, cfg.augment_shift = True, 1
            # The last fifth of the epochs on the images as they are: the last, small steps fit what
            # evaluation sees (3 seeds: validation loss lower in all six runs of cases 1 and 3,
            # accuracy +0.16 and +0.03 points; benchmarks/recipe_experiments).
            cfg.augment_off_last = 0.2
            cfg.weight_decay = 5e-4
    return cfg


def from_dict(cls, data: dict):
    """Rebuild a config from a checkpoint's plain dict, ignoring keys a newer version added; a
    value of the wrong type (a string for a learning rate) is a TypeError that names its field."""
    known = {f.name: f.type for f in fields(cls)}
    for name, value in data.items():
        if name in known and not _fits(value, str(known[name])):
            raise TypeError(f"{name} is {type(value).__name__} {value!r:.40}, not {known[name]}")
    cfg = cls(**{k: v for k, v in data.items() if k in known})
    if cls is TrainConfig and data.get("augment") and "augment_shift" not in data:
        cfg.augment_shift = 2  # before augment_shift existed, augment meant flips and 2-pixel shifts
    return cfg


_FIELD_KINDS = {"bool": bool, "int": int, "float": NUMBER, "str": str, "dict": dict}


def _fits(value, annotation: str) -> bool:
    """Whether the JSON `value` is of the field type `annotation` names ("float", "int | None", ...)."""
    if value is None:
        return "None" in annotation
    kind = _FIELD_KINDS.get(annotation.split(" | ")[0])
    return kind is None or json_typed(value, kind)


def to_dict(cfg) -> dict:
    return asdict(cfg)
