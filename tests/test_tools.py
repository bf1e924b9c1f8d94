"""The research tools in tools/ that the recipe experiments quote: they run and measure what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

TOOLS = Path(__file__).parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

from probe_epochs import CodeTerms, Contrastive, decorrelation, nt_xent, random_views  # noqa: E402


def test_decorrelation_is_zero_for_uncorrelated_units_and_one_for_copies():
    torch.manual_seed(0)
    independent = torch.randn(20_000, 8)
    assert decorrelation(independent).item() < 1e-3
    copies = independent[:, :1].repeat(1, 8)
    assert decorrelation(copies).item() == pytest.approx(1.0, abs=1e-3)


def test_probe_epochs_refuses_a_temperature_of_zero_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(TOOLS / "probe_epochs.py"), "--contrastive", "0.1", "--temperature",
                           "0", str(tmp_path / "ae"), "kind=autoencoder"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "probe_epochs: error: --contrastive must be 0 or more and --temperature more than 0"
    assert not (tmp_path / "ae").exists()


def test_nt_xent_is_low_when_each_view_matches_its_twin_and_chance_when_views_are_unrelated():
    torch.manual_seed(0)
    distinct = torch.eye(16) * 5
    assert nt_xent(distinct, distinct, temperature=0.05).item() < 1e-3  # each twin is the only match
    unrelated = nt_xent(torch.randn(512, 32), torch.randn(512, 32), temperature=10.0).item()
    assert unrelated == pytest.approx(torch.log(torch.tensor(2 * 512 - 1.0)).item(), rel=0.01)


def test_random_views_move_the_picture_but_keep_its_shape_and_range():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 8:20, 10:18] = 1.0
    generator = torch.Generator().manual_seed(0)
    a, b = random_views(x, generator), random_views(x, generator)
    assert a.shape == x.shape and 0.0 <= a.min() and a.max() <= 1.0
    assert not torch.allclose(a, x) and not torch.allclose(a, b)
    assert (a.flatten(1).sum(1) > 0).all()  # no view loses the garment altogether


def test_the_contrastive_term_reaches_the_encoder_only_while_training():
    from fmnist_edge.train.models import Encoder

    encoder = Encoder(n=8, p=0.0)
    terms = CodeTerms(0.0, 0.0, 0.0, Contrastive(weight=0.5, temperature=0.5, n=8, seed=0))
    assert terms.active
    x = torch.rand(32, 1, 28, 28)
    encoder.register_forward_hook(terms)
    encoder.train()
    encoder(x)
    terms.penalty.backward()
    assert terms.penalty.item() > 0 and encoder.net[0].weight.grad.abs().sum() > 0
    assert terms.contrastive.head[0].weight.grad is not None  # the projection head learns too
    encoder.eval()
    terms.penalty = 0.0
    encoder(x)
    assert terms.penalty == 0.0


def test_code_terms_add_noise_and_a_penalty_only_while_training():
    terms = CodeTerms(noise=0.5, l1=0.1, decorrelate=0.0)
    module = torch.nn.Linear(2, 4)
    code = torch.rand(64, 4) + 1.0
    module.train()
    noisy = terms(module, None, code)
    assert not torch.equal(noisy, code) and terms.penalty.item() == pytest.approx(0.1 * code.abs().mean().item())
    module.eval()
    terms.penalty = 0.0
    assert terms(module, None, code) is code and terms.penalty == 0.0


def test_probe_epochs_trains_and_probes_every_epoch(tmp_path, fake_data_dir):
    out = tmp_path / "ae"
    done = subprocess.run([sys.executable, str(TOOLS / "probe_epochs.py"), "--every", "1", "--code-decorrelation",
                           "0.01", "--contrastive", "0.1", str(out), "kind=autoencoder", "n=8", "p=0.1", "max_epochs=2", "limit=300"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FMNIST_EDGE_DATA": str(fake_data_dir)})
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "ae.probe.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["probe_val"] <= 1.0 and r["val_mse"] > 0 for r in rows)
    assert (out / "model.pt").is_file()
