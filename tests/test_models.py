"""The report's models: every layer's output shape (its Figure 1) and a really frozen encoder."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fmnist_edge.errors import FmnistEdgeError  # noqa: E402
from fmnist_edge.train.config import ModelConfig  # noqa: E402
from fmnist_edge.train.dropout import FastDropout  # noqa: E402
from fmnist_edge.train.models import Classifier, ConvAutoencoder, Decoder, Encoder, build_model  # noqa: E402

pytestmark = pytest.mark.torch

B = 3
# (layer type, output shape without the batch) in the report's order.
ENCODER_LAYERS = [
    (nn.Conv2d, (16, 26, 26)), (nn.ReLU, (16, 26, 26)), (nn.Dropout, (16, 26, 26)), (nn.MaxPool2d, (16, 13, 13)),
    (nn.Conv2d, (32, 11, 11)), (nn.ReLU, (32, 11, 11)), (nn.Dropout, (32, 11, 11)), (nn.MaxPool2d, (32, 5, 5)),
    (nn.Flatten, (800,)), (nn.Linear, ("n",)), (nn.ReLU, ("n",)), (nn.Dropout, ("n",)),
]
DECODER_LAYERS = [
    (nn.Linear, (800,)), (nn.ReLU, (800,)), (nn.Dropout, (800,)), (nn.Unflatten, (32, 5, 5)),
    (nn.ConvTranspose2d, (16, 13, 13)), (nn.ReLU, (16, 13, 13)), (nn.Dropout, (16, 13, 13)),
    (nn.ConvTranspose2d, (1, 28, 28)), (nn.Sigmoid, (1, 28, 28)),
]


def trace_shapes(seq: nn.Sequential, x: torch.Tensor) -> list[tuple[type, tuple]]:
    out = []
    for layer in seq:
        x = layer(x)
        out.append((layer, tuple(x.shape)))
    return out


def expected(layers, n):
    return [(kind, (B, *(n if d == "n" else d for d in shape))) for kind, shape in layers]


@pytest.mark.parametrize("n", [32, 64, 128])
def test_encoder_layer_shapes(n):
    enc = Encoder(n, 0.2).train()
    got = trace_shapes(enc.net, torch.rand(B, 1, 28, 28))
    want = expected(ENCODER_LAYERS, n)
    assert len(got) == len(want)
    for (layer, shape), (kind, want_shape) in zip(got, want):
        assert isinstance(layer, kind) and shape == want_shape, (layer, shape, want_shape)


@pytest.mark.parametrize("n", [32, 64, 128])
def test_decoder_layer_shapes_and_range(n):
    dec = Decoder(n, 0.2).train()
    got = trace_shapes(dec.net, torch.randn(B, n) * 10)
    want = expected(DECODER_LAYERS, n)
    assert len(got) == len(want)
    for (layer, shape), (kind, want_shape) in zip(got, want):
        assert isinstance(layer, kind) and shape == want_shape, (layer, shape, want_shape)
    out = dec(torch.randn(B, n) * 10)
    assert out.min() >= 0 and out.max() <= 1


def test_layer_hyper_parameters_are_the_reports():
    enc, dec = Encoder(64, 0.3), Decoder(64, 0.3)
    c1, c2 = enc.net[0], enc.net[4]
    assert (c1.in_channels, c1.out_channels, c1.kernel_size, c1.stride, c1.padding) == (1, 16, (3, 3), (1, 1), (0, 0))
    assert (c2.in_channels, c2.out_channels, c2.kernel_size) == (16, 32, (3, 3))
    assert all(m.kernel_size == 2 and m.stride == 2 for m in enc.net if isinstance(m, nn.MaxPool2d))
    t1, t2 = dec.net[4], dec.net[7]
    assert (t1.in_channels, t1.out_channels, t1.kernel_size, t1.stride, t1.padding, t1.output_padding,
            t1.dilation) == (32, 16, (5, 5), (2, 2), (2, 2), (0, 0), (2, 2))
    assert (t2.in_channels, t2.out_channels, t2.kernel_size, t2.stride, t2.padding, t2.output_padding,
            t2.dilation) == (16, 1, (6, 6), (2, 2), (1, 1), (0, 0), (1, 1))
    drops = [m for m in [*enc.net, *dec.net] if isinstance(m, nn.Dropout)]
    assert len(drops) == 5 and all(isinstance(m, FastDropout) and m.p == 0.3 for m in drops)


def test_parameter_count():
    n = 64
    want = (16 * 9 + 16) + (32 * 16 * 9 + 32) + (800 * n + n) + (n * 800 + 800) + (32 * 16 * 25 + 16) + (16 * 36 + 1)
    assert sum(p.numel() for p in ConvAutoencoder(n, 0.2).parameters()) == want


def test_autoencoder_encode_decode():
    model = ConvAutoencoder(64, 0.2).eval()
    x = torch.rand(B, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (B, 64) and (z >= 0).all()  # ReLU bottleneck
    y = model.decode(z)
    assert y.shape == (B, 1, 28, 28)
    torch.testing.assert_close(model(x), y)
    assert isinstance(model.encoder, Encoder) and isinstance(model.decoder, Decoder)


def test_classifier_shape_and_state_dict_shares_the_encoder_keys():
    clf = Classifier(64, 0.1)
    assert clf(torch.rand(B, 1, 28, 28)).shape == (B, 10)
    ae = ConvAutoencoder(64, 0.1)
    clf.encoder.load_state_dict(ae.encoder.state_dict())  # strict: the same layers
    assert set(clf.state_dict()) == {f"encoder.{k}" for k in ae.encoder.state_dict()} | {"head.weight", "head.bias"}


def test_build_model():
    assert isinstance(build_model(ModelConfig("autoencoder", n=32, dropout=0.1)), ConvAutoencoder)
    for case, frozen in [(1, False), (2, True), (3, False), (4, True)]:
        model = build_model(ModelConfig("classifier", n=16, dropout=0.1, case=case))
        assert isinstance(model, Classifier) and model.freeze_encoder is frozen
    for bad in [ModelConfig(n=0), ModelConfig(dropout=1.5), ModelConfig(dropout=-0.1),
                ModelConfig("classifier", case=7), ModelConfig("vae")]:
        with pytest.raises(FmnistEdgeError):
            build_model(bad)


# -- a frozen encoder is really frozen -------------------------------------------------------

def one_step(model, params):
    opt = torch.optim.Adam(params, lr=1e-2)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 10
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return opt


def test_frozen_encoder_gets_no_gradient_and_no_dropout():
    torch.manual_seed(0)
    model = build_model(ModelConfig("classifier", n=16, dropout=0.5, case=2))
    model.train()
    assert model.training and model.head.training
    assert not any(m.training for m in model.encoder.modules())  # dropout off even after train()
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert {id(p) for p in model.trainable_parameters()} == {id(model.head.weight), id(model.head.bias)}
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    head_before = model.head.weight.clone()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(model.encoder(x), model.encoder(x))  # deterministic: no dropout
    opt = one_step(model, model.trainable_parameters())
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(id(p) not in {id(q) for q in model.encoder.parameters()} for p in opt.state)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.head.weight, head_before)
    model.train(False)
    model.train(True)
    assert not model.encoder.training


def test_unfrozen_encoder_trains_with_dropout():
    torch.manual_seed(0)
    model = build_model(ModelConfig("classifier", n=16, dropout=0.5, case=1)).train()
    assert all(m.training for m in model.encoder.modules())
    before = [p.clone() for p in model.encoder.parameters()]
    one_step(model, model.trainable_parameters())
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.encoder.parameters(), before))


def test_dilated_transposed_conv_writes_only_even_positions():
    """The report's first decoder ConvTranspose2d (stride 2, dilation 2) leaves every odd row and
    column at its bias: the decoder works from a 7x7 grid. This bounds reconstruction quality."""
    decoder = Decoder(64, 0.0).eval()
    with torch.no_grad():
        h = decoder.net[:5](torch.rand(8, 64))  # (8, 16, 13, 13), after the first ConvTranspose2d
        bias = decoder.net[4].bias.view(1, 16, 1, 1)
        assert torch.equal(h[:, :, 1::2, :], bias.expand(8, 16, 6, 13))
        assert torch.equal(h[:, :, :, 1::2], bias.expand(8, 16, 13, 6))
        assert not torch.equal(h[:, :, 0::2, 0::2], bias.expand(8, 16, 7, 7))


def test_undilated_decoder_writes_every_position_with_as_many_weights():
    """--decoder-dilation 1: the same shapes and parameter count as the report's decoder, and its
    first ConvTranspose2d writes every row and column of the 13x13 map (none is the bias alone)."""
    report, undilated = Decoder(64, 0.0), Decoder(64, 0.0, dilation=1).eval()
    assert [p.shape for p in undilated.parameters()] == [p.shape for p in report.parameters()]
    t1 = undilated.net[4]
    assert (t1.kernel_size, t1.stride, t1.padding, t1.dilation) == ((5, 5), (2, 2), (0, 0), (1, 1))
    with torch.no_grad():
        z = torch.rand(8, 64)
        h = undilated.net[:5](z) - t1.bias.view(1, 16, 1, 1)
        assert h.shape == (8, 16, 13, 13)
        assert (h.abs().amax(dim=(0, 1)) > 0).all()  # every position carries the input
        assert undilated(z).shape == (8, 1, 28, 28)


def test_decoder_dilation_is_checked_and_built():
    assert build_model(ModelConfig(n=16, decoder_dilation=1)).decoder.net[4].dilation == (1, 1)
    with pytest.raises(FmnistEdgeError, match="--decoder-dilation must be 1 or 2"):
        build_model(ModelConfig(n=16, decoder_dilation=3))
