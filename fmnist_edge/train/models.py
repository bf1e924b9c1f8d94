"""The report's convolutional autoencoder (its Figure 1) and the classifier built on its encoder."""

from __future__ import annotations

import torch
from torch import nn

from fmnist_edge.errors import FmnistEdgeError
from fmnist_edge.spec import NUM_CLASSES
from fmnist_edge.train.config import REPORT_DECODER_DILATION, ModelConfig
from fmnist_edge.train.dropout import FastDropout


class NormReLU(nn.Module):
    """Batch normalisation, then ReLU: what training with `batch_norm` puts where the report has a
    ReLU after a weighted layer. In evaluation it is an affine map per channel followed by the
    ReLU, so `fold_batch_norm` moves it into that layer's weights and the ReLU alone is left."""

    def __init__(self, channels: int, maps: bool):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels) if maps else nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(x))


def _relu(channels: int, maps: bool, batch_norm: bool) -> nn.Module:
    return NormReLU(channels, maps) if batch_norm else nn.ReLU()


class Encoder(nn.Module):
    """(B, 1, 28, 28) -> (B, n). Dropout before pooling, as in the report. With `batch_norm`
    (training only), each ReLU is a NormReLU; the layers and their indices stay the same."""

    def __init__(self, n: int = 64, p: float = 0.2, batch_norm: bool = False):
        super().__init__()
        self.n = n
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3),  # (B, 16, 26, 26)
            _relu(16, True, batch_norm),
            FastDropout(p),
            nn.MaxPool2d(2, 2),  # (B, 16, 13, 13)
            nn.Conv2d(16, 32, kernel_size=3),  # (B, 32, 11, 11)
            _relu(32, True, batch_norm),
            FastDropout(p),
            nn.MaxPool2d(2, 2),  # (B, 32, 5, 5)
            nn.Flatten(),  # (B, 800)
            nn.Linear(800, n),
            _relu(n, False, batch_norm),
            FastDropout(p),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(B, n) -> (B, 1, 28, 28) in [0, 1].

    `dilation` is the first ConvTranspose2d's: the report's 2 (with padding 2) writes only the even
    rows and columns of its 13x13 output; 1 (with padding 0) writes all of them with as many weights.
    """

    def __init__(self, n: int = 64, p: float = 0.2, dilation: int = REPORT_DECODER_DILATION,
                 batch_norm: bool = False):
        super().__init__()
        self.n = n
        self.net = nn.Sequential(
            nn.Linear(n, 800),
            _relu(800, False, batch_norm),
            FastDropout(p),
            nn.Unflatten(1, (32, 5, 5)),  # (B, 32, 5, 5)
            nn.ConvTranspose2d(32, 16, kernel_size=5, stride=2, padding=2 * (dilation - 1), output_padding=0,
                               dilation=dilation),
            _relu(16, True, batch_norm),  # (B, 16, 13, 13)
            FastDropout(p),
            nn.ConvTranspose2d(16, 1, kernel_size=6, stride=2, padding=1, output_padding=0, dilation=1),
            nn.Sigmoid(),  # (B, 1, 28, 28)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvAutoencoder(nn.Module):
    def __init__(self, n: int = 64, p: float = 0.2, decoder_dilation: int = REPORT_DECODER_DILATION,
                 batch_norm: bool = False):
        super().__init__()
        self.encoder = Encoder(n, p, batch_norm)
        self.decoder = Decoder(n, p, decoder_dilation, batch_norm)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Classifier(nn.Module):
    """Encoder + Linear(n, 10). A frozen encoder gets no gradients and keeps dropout off."""

    def __init__(self, n: int = 64, p: float = 0.2, freeze_encoder: bool = False):
        super().__init__()
        self.encoder = Encoder(n, p)
        self.head = nn.Linear(n, NUM_CLASSES)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a frozen encoder is a fixed feature extractor: no dropout
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class Teacher(nn.Module):
    """A larger CNN that only teaches: its soft predictions train the report's classifier
    (knowledge distillation), which is what gets exported. Four padded 3x3 convolutions with
    batch norm, 32 and 64 channels, then Linear(3136, n) and Linear(n, 10): about 27 times the
    classifier's multiply-adds, with channels_last for oneDNN's faster kernels on CPU."""

    def __init__(self, n: int = 256, p: float = 0.3, width: int = 32):
        super().__init__()
        self.n = n

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, width), *block(width, width), nn.MaxPool2d(2),  # (B, w, 14, 14)
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            nn.Flatten(), nn.Dropout(p), nn.Linear(2 * width * 49, n), nn.ReLU(), nn.Dropout(p),
        )
        self.head = nn.Linear(n, NUM_CLASSES)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.contiguous(memory_format=torch.channels_last)))


@torch.no_grad()
def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every NormReLU into the weighted layer before it, in place, with the running
    statistics evaluation uses: the model computes the same function (to float rounding) and is
    the report's architecture again, with the report's state-dict names. Returns the model."""
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i, module in enumerate(sequence):
            if not isinstance(module, NormReLU):
                continue
            layer, norm = sequence[i - 1], module.norm
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            # A transposed convolution's weight is (in, out, k, k): its output channels are axis 1.
            axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
            shape = [1] * layer.weight.dim()
            shape[axis] = -1
            layer.weight.mul_(scale.view(shape))
            layer.bias.copy_((layer.bias - norm.running_mean) * scale + norm.bias)
            sequence[i] = nn.ReLU()
    return model


def build_model(cfg: ModelConfig, batch_norm: bool = False) -> nn.Module:
    """The model `cfg` describes; `batch_norm` builds an autoencoder's training form (NormReLUs)."""
    cfg.check()
    if batch_norm and cfg.kind != "autoencoder":
        raise FmnistEdgeError(f"batch normalisation is for training autoencoders, not {cfg.kind}s")
    if cfg.kind == "autoencoder":
        return ConvAutoencoder(cfg.n, cfg.dropout, cfg.decoder_dilation, batch_norm)
    if cfg.kind == "teacher":
        return Teacher(cfg.n, cfg.dropout)
    return Classifier(cfg.n, cfg.dropout, freeze_encoder=cfg.frozen_encoder)
