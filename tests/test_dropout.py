"""FastDropout: the same Bernoulli(1 - p) keep-mask and 1/(1 - p) scaling as nn.Dropout, faster."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from fmnist_edge.train.dropout import FastDropout, keep_mask  # noqa: E402
from fmnist_edge.train.models import ConvAutoencoder  # noqa: E402

pytestmark = pytest.mark.torch

N = 1_000_000


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_keep_rate_and_scale(p):
    torch.manual_seed(1)
    out = FastDropout(p).train()(torch.ones(N))
    kept = out != 0
    rate = kept.double().mean().item()
    sigma = math.sqrt(p * (1 - p) / N)
    assert abs(rate - (1 - p)) < 5 * sigma + 2**-17
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    assert abs(out.double().mean().item() - 1.0) < 5 * sigma / (1 - p)  # the mean is preserved


def test_threshold_within_2_to_minus_17():
    for i in range(1, 1000):
        p = i / 1000
        keep = 1 - round(p * 2**16) / 2**16
        assert abs(keep - (1 - p)) <= 2**-17


def test_neighbouring_elements_are_independent():
    torch.manual_seed(2)
    m = keep_mask(torch.Size([N]), 0.5).double()
    both = (m[:-1] * m[1:]).mean().item()  # four 16-bit draws share one 64-bit word
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / N)
    m4 = m[: N // 4 * 4].view(-1, 4).sum(1)
    counts = torch.bincount(m4.long(), minlength=5).double() / len(m4)
    for k, want in enumerate([1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]):
        assert abs(counts[k].item() - want) < 0.005


def test_identity_in_eval_and_at_p_zero():
    x = torch.randn(5, 7)
    assert FastDropout(0.5).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x


def test_p_one_drops_everything():
    assert torch.count_nonzero(FastDropout(1.0).train()(torch.ones(100))) == 0


def test_gradient_matches_the_mask():
    torch.manual_seed(3)
    x = (torch.rand(64, 16, 13, 13) + 0.5).requires_grad_()
    y = FastDropout(0.2).train()(x)
    g = torch.randn_like(y)
    y.backward(g)
    scale = (y / x).detach()  # 0 or 1/(1-p), element by element
    assert set(scale.unique().round(decimals=5).tolist()) == {0.0, round(1 / 0.8, 5)}
    torch.testing.assert_close(x.grad, g * scale)


def test_keeps_dtype_and_shape():
    x = torch.rand(4, 16, 26, 26, dtype=torch.bfloat16)
    y = FastDropout(0.2).train()(x)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert FastDropout(0.2).train()(x.to(memory_format=torch.channels_last)).shape == x.shape


def test_drop_in_for_nn_dropout():
    fast = FastDropout(0.3, inplace=False)
    assert isinstance(fast, nn.Dropout)
    assert fast.state_dict() == nn.Dropout(0.3).state_dict() == {}
    assert repr(fast).endswith("(p=0.3, inplace=False)")
    ours = ConvAutoencoder(16, 0.3)
    plain = ConvAutoencoder(16, 0.3)
    for seq in (plain.encoder.net, plain.decoder.net):
        for i, m in enumerate(seq):
            if isinstance(m, FastDropout):
                seq[i] = nn.Dropout(m.p)
    assert not any(type(m) is FastDropout for m in plain.modules())
    assert list(ours.state_dict()) == list(plain.state_dict())
    ours.load_state_dict(plain.state_dict())  # strict
    plain.load_state_dict(ours.state_dict())
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(ours.eval()(x), plain.eval()(x))


def test_repeatable_under_manual_seed():
    layer = FastDropout(0.5).train()
    x = torch.ones(10_000)
    torch.manual_seed(7)
    a1, a2 = layer(x), layer(x)
    torch.manual_seed(7)
    b1, b2 = layer(x), layer(x)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)  # a second manual_seed(7) restarts the masks
    assert not torch.equal(a1, a2)
    torch.manual_seed(8)
    assert not torch.equal(layer(x), a1)


def test_repeatable_under_torch_rng_state_and_manual_seed():
    layer = FastDropout(0.2).train()
    x = torch.ones(10_000)
    state = torch.get_rng_state()
    a = layer(x)
    torch.set_rng_state(state)
    assert torch.equal(layer(x), a)
    torch.manual_seed(5)
    c = layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), c)
    with torch.random.fork_rng():
        layer(x)
    torch.set_rng_state(state)
    assert torch.equal(layer(x), a)


def test_statistically_like_nn_dropout_in_a_model():
    # Averaged over many masks, the train-mode encoder is close to the eval one (not equal:
    # ReLU and max-pooling after dropout are not linear).
    torch.manual_seed(0)
    ours = ConvAutoencoder(16, 0.2)
    x = torch.rand(1, 1, 28, 28).expand(400, 1, 28, 28)
    with torch.no_grad():
        enc_train = ours.encoder.train()(x).mean(0)
        enc_eval = ours.encoder.eval()(x[:1])[0]
    assert torch.nn.functional.cosine_similarity(enc_train, enc_eval, dim=0) > 0.9
