"""Train one model with any TrainConfig field set by hand: the ablations behind the best recipe.

    python tools/train_variant.py OUT kind=classifier case=1 encoder=runs/ae/model.pt \
        lr=0.003 schedule=cosine augment=1 label_smoothing=0.1 ema=0.999 revive_every=50 max_epochs=30

Model keys: kind (autoencoder|classifier|teacher), case, n, p, decoder_dilation, encoder. Every other key is a TrainConfig
field (fmnist_edge/train/config.py), starting from the report's recipe ("paper") with nothing
added, so that a variant differs from it by exactly the fields named. Prints metrics.json.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.train.checkpoint import encoder_shape
from fmnist_edge.train.config import REPORT_DECODER_DILATION, ModelConfig, TrainConfig
from fmnist_edge.train.loop import Trainer


OPTIONAL_FIELDS = {"limit": int, "teacher": str}


def parse(argv: list[str]) -> tuple[Path, ModelConfig, TrainConfig, str | None]:
    if not argv or "=" in argv[0]:
        raise SystemExit(__doc__)
    out, pairs = Path(argv[0]), dict(a.split("=", 1) for a in argv[1:])
    shape_given = "n" in pairs or "p" in pairs
    model_cfg = ModelConfig(kind=pairs.pop("kind", "classifier"), n=int(pairs.pop("n", 64)),
                            dropout=float(pairs.pop("p", 0.1)),
                            decoder_dilation=int(pairs.pop("decoder_dilation", REPORT_DECODER_DILATION)))
    if model_cfg.kind == "classifier":
        model_cfg.case = int(pairs.pop("case", 1))
    encoder = pairs.pop("encoder", None)
    if encoder and not shape_given:
        model_cfg.n, model_cfg.dropout = encoder_shape(encoder)  # the encoder decides its own shape
    train_cfg = TrainConfig(recipe="paper")
    types = {f.name: type(getattr(train_cfg, f.name)) for f in fields(TrainConfig)}
    for key, value in pairs.items():
        if key not in types or key in ("recipe", "extra"):
            raise SystemExit(f"unknown TrainConfig field {key!r}")
        kind = OPTIONAL_FIELDS.get(key, types[key])  # fields whose default is None
        setattr(train_cfg, key, value in ("1", "true", "True") if kind is bool else kind(value))
    return out, model_cfg, train_cfg, encoder


def main() -> None:
    try:
        out, model_cfg, train_cfg, encoder = parse(sys.argv[1:])
        print(model_cfg, train_cfg, flush=True)
        Trainer(model_cfg, train_cfg, out, encoder_ckpt=encoder, force=True).run()
    except (FmnistEdgeError, ValueError) as exc:
        raise SystemExit(f"train_variant: error: {exc}") from None
    metrics = json.loads((out / "metrics.json").read_text())
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("confusion", "per_class_accuracy")}))


if __name__ == "__main__":
    main()
