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


def test_threshold_within_2_to_minus_17(monkeypatch):
    """Fed every 16-bit value once, the mask keeps exactly 2^16 - round(p * 2^16) of them: a keep
    rate within 2^-17 of 1 - p, for p from 0.001 to 0.999."""
    import numpy as np

    from fmnist_edge.train import dropout

    class EveryValue:  # one draw of each 16-bit value, four to a 64-bit word
        class bit_generator:
            @staticmethod
            def random_raw(words):
                return np.arange(1 << 16, dtype=np.uint16).view(np.uint64)[:words]

    monkeypatch.setattr(dropout, "_generator", lambda: EveryValue)
    for i in range(1, 1000):
        p = i / 1000
        kept = int(keep_mask(torch.Size([1 << 16]), p).sum())
        assert kept == (1 << 16) - round(p * (1 << 16))
        assert abs(kept / (1 << 16) - (1 - p)) <= 2**-17


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
    fast.train()  # where dropout acts: the same share dropped, the same scale kept as nn.Dropout
    kept = fast(torch.ones(100_000))
    torch.testing.assert_close(kept.unique(), torch.tensor([0.0, 1 / 0.7]))
    assert abs((kept == 0).float().mean().item() - 0.3) < 0.01
    assert kept.mean().item() == pytest.approx(1.0, abs=0.02)


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
    """The encoder with FastDropout and the same weights with nn.Dropout, both in train mode, over
    2,000 masks: the same mean output and the same spread (a missing 1/(1 - p) rescale moves
    the mean's norm by a fifth, no dropout at all takes the spread to 0)."""
    import copy

    torch.manual_seed(0)
    ours = ConvAutoencoder(16, 0.2)
    theirs = copy.deepcopy(ours)
    for module in list(theirs.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FastDropout):
                setattr(module, name, nn.Dropout(child.p))
    assert sum(type(m) is nn.Dropout for m in theirs.modules()) == sum(isinstance(m, FastDropout) for m in ours.modules()) > 0
    x = torch.rand(1, 1, 28, 28).expand(2000, 1, 28, 28)
    with torch.no_grad():
        a, b = ours.encoder.train()(x), theirs.encoder.train()(x)
    assert ((a.mean(0) - b.mean(0)).norm() / b.mean(0).norm()).item() < 0.06
    assert abs((a.mean(0).norm() / b.mean(0).norm()).item() - 1) < 0.03
    assert abs((a.std(0).mean() / b.std(0).mean()).item() - 1) < 0.03
