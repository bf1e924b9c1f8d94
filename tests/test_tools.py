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

from probe_epochs import CodeTerms, decorrelation  # noqa: E402


def test_decorrelation_is_zero_for_uncorrelated_units_and_one_for_copies():
    torch.manual_seed(0)
    independent = torch.randn(20_000, 8)
    assert decorrelation(independent).item() < 1e-3
    copies = independent[:, :1].repeat(1, 8)
    assert decorrelation(copies).item() == pytest.approx(1.0, abs=1e-3)


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
                           "0.01", str(out), "kind=autoencoder", "n=8", "p=0.1", "max_epochs=2", "limit=300"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FMNIST_EDGE_DATA": str(fake_data_dir)})
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "ae.probe.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["probe_val"] <= 1.0 and r["val_mse"] > 0 for r in rows)
    assert (out / "model.pt").is_file()
