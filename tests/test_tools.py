"""The research tools in tools/ that the recipe experiments quote: they run and measure what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

TOOLS = Path(__file__).parents[1] / "tools"
sys.path.insert(0, str(TOOLS))

from probe_epochs import (Clusters, CodeTerms, Contrastive, Rotation, decorrelation, kmeans, nearest,  # noqa: E402
                          nt_xent, quarter_turns, random_views)


def test_decorrelation_is_zero_for_uncorrelated_units_and_one_for_copies():
    torch.manual_seed(0)
    independent = torch.randn(20_000, 8)
    assert decorrelation(independent).item() < 1e-3
    copies = independent[:, :1].repeat(1, 8)
    assert decorrelation(copies).item() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("options", [["--contrastive", "0.1", "--temperature", "0"], ["--edge-weight", "-1"],
                                     ["--edge-weight", "nan"], ["--rotation", "-0.1"], ["--temperature", "nan"],
                                     ["--clusters", "-1"], ["--clusters", "0.1", "--k", "1"]])
def test_probe_epochs_refuses_a_bad_weight_or_temperature_in_one_line(tmp_path, options):
    done = subprocess.run([sys.executable, str(TOOLS / "probe_epochs.py"), *options, str(tmp_path / "ae"),
                           "kind=autoencoder"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("probe_epochs: error: --contrastive, --rotation, --clusters and --edge-weight "
                                   "must be 0 or more, --temperature more than 0 and --k at least 2")
    assert not (tmp_path / "ae").exists()


def test_probe_epochs_refuses_k_without_the_cluster_term(tmp_path):
    done = subprocess.run([sys.executable, str(TOOLS / "probe_epochs.py"), "--k", "10", str(tmp_path / "ae"),
                           "kind=autoencoder"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip() == ("probe_epochs: error: --k sets the number of clusters "
                                                            "of the --clusters term; add --clusters W")
    assert not (tmp_path / "ae").exists()


def test_the_edge_error_is_zero_for_a_perfect_reconstruction_and_sees_a_moved_edge():
    from probe_epochs import edge_error

    x = torch.zeros(2, 1, 28, 28)
    x[..., 10:18, 10:18] = 1.0
    assert edge_error(x, x).item() == 0.0
    moved = torch.roll(x, 1, dims=3)
    # across: the left and right edges move by a column, so 8 rows differ by 1 at 4 places;
    # down: the top and bottom edges lose one column and gain another (4 places)
    assert edge_error(moved, x).item() == pytest.approx((4 + 4 * 8) / (28 * 27) / 2)


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
    terms = CodeTerms(0.0, 0.0, 0.0, [Contrastive(weight=0.5, temperature=0.5, n=8, seed=0)])
    assert terms.active
    x = torch.rand(32, 1, 28, 28)
    encoder.register_forward_hook(terms)
    encoder.train()
    encoder(x)
    terms.penalty.backward()
    assert terms.penalty.item() > 0 and encoder.net[0].weight.grad.abs().sum() > 0
    assert terms.tasks[0].head[0].weight.grad is not None  # the projection head learns too
    encoder.eval()
    terms.penalty = 0.0
    encoder(x)
    assert terms.penalty == 0.0


def test_quarter_turns_turn_each_image_by_its_own_count():
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 2:6, 20:26] = 1.0  # a bar in the top right corner
    turned = quarter_turns(x, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(turned[0], x[0])
    for k in (1, 2, 3):
        assert torch.equal(turned[k], torch.rot90(x[k], k, dims=(1, 2)))
    assert not torch.equal(turned[1], turned[3]) and torch.equal(turned[2], x[2].flip(1, 2))


def test_the_rotation_term_is_chance_for_a_blind_head_and_teaches_the_encoder_and_its_head():
    from fmnist_edge.train.models import Encoder

    torch.manual_seed(0)
    encoder, rotation = Encoder(n=8, p=0.0), Rotation(weight=1.0, n=8, seed=0)
    torch.nn.init.zeros_(rotation.head.weight)
    torch.nn.init.zeros_(rotation.head.bias)
    x = torch.rand(256, 1, 28, 28)
    blind = rotation.penalty(encoder, x, encoder(x))
    assert blind.item() == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-6)  # all four turns alike
    terms = CodeTerms(0.0, 0.0, 0.0, [Rotation(weight=0.5, n=8, seed=0)])
    encoder.register_forward_hook(terms)
    encoder.train()
    encoder(x)
    terms.penalty.backward()
    assert encoder.net[0].weight.grad.abs().sum() > 0 and terms.tasks[0].head.weight.grad.abs().sum() > 0


def test_kmeans_finds_separated_groups_and_nearest_names_them():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + torch.randn(200, 2, generator=generator) for c in centres])
    found = kmeans(points, points[[0, 200, 400]] + 2.0, generator)  # one start per group, off its centre
    assert torch.cdist(centres, found).diagonal().max() < 0.3  # each centroid moved to its group's mean
    labels = nearest(points, found)
    assert all(len(set(labels[i * 200:(i + 1) * 200].tolist())) == 1 for i in range(3))
    assert len(set(labels.tolist())) == 3


def test_the_cluster_term_names_each_images_group_from_its_code_and_teaches_the_encoder():
    from fmnist_edge.train.models import Encoder

    torch.manual_seed(0)
    images = torch.rand(300, 1, 28, 28)
    images[:150, :, :14] = 0.0  # two kinds of picture: dark above, or not
    encoder, clusters = Encoder(n=8, p=0.0), Clusters(weight=1.0, k=2, n=8, seed=0, images=images)
    groups = clusters.groups(encoder, images)
    assert sorted(torch.bincount(groups).tolist()) == [150, 150]  # the two kinds, as the two clusters
    torch.nn.init.zeros_(clusters.head.weight)
    torch.nn.init.zeros_(clusters.head.bias)
    blind = clusters.penalty(encoder, images, encoder(images))
    assert blind.item() == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-6)
    clusters.head.reset_parameters()  # a head that sees the code passes its gradient on
    terms = CodeTerms(0.0, 0.0, 0.0, [clusters])
    encoder.register_forward_hook(terms)
    encoder.train()
    encoder(images[:64])
    terms.penalty.backward()
    assert encoder.net[0].weight.grad.abs().sum() > 0 and clusters.head.weight.grad.abs().sum() > 0


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
                           "0.01", "--contrastive", "0.1", "--rotation", "0.1", str(out), "kind=autoencoder",
                           "n=8", "p=0.1", "max_epochs=2", "limit=300"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FMNIST_EDGE_DATA": str(fake_data_dir)})
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "ae.probe.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0.0 <= r["probe_val"] <= 1.0 and r["val_mse"] > 0 for r in rows)
    assert (out / "model.pt").is_file()


def run_tool(name: str, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / name), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FMNIST_EDGE_DATA": str(data_dir)})


def test_linear_probe_features_cut_the_encoder_before_its_relu_and_before_its_bottleneck(tiny_autoencoder):
    from linear_probe import FEATURE_DEPTH

    from fmnist_edge.train.checkpoint import load_model

    encoder = load_model(tiny_autoencoder)[0].encoder.eval()
    images = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        features = {name: encoder.net[:depth](images) for name, depth in FEATURE_DEPTH.items()}
        assert torch.equal(features["code"], encoder(images))
        assert features["pooled"].shape == (32, 800) and features["pre-relu"].shape == (32, 16)
        assert torch.equal(features["code"], features["pre-relu"].clamp(min=0))
        assert (features["pre-relu"] < 0).any()


def test_linear_probe_runs_on_each_layer(tiny_autoencoder, fake_data_dir):
    for layer, width in [("pooled", 800), ("pre-relu", 16)]:
        done = run_tool("linear_probe.py", "--features", layer, str(tiny_autoencoder), data_dir=fake_data_dir)
        assert done.returncode == 0, done.stderr
        assert f"linear probe on {layer} ({width} features)" in done.stdout


def test_principal_components_keep_the_largest_variance_and_are_refused_beyond_the_features():
    from linear_probe import principal_components

    from fmnist_edge.errors import FmnistEdgeError

    generator = torch.Generator().manual_seed(0)
    train = torch.randn(2000, 3, generator=generator) * torch.tensor([5.0, 2.0, 0.1])
    top, test_top = principal_components(train, train[:10], 2)
    assert top.shape == (2000, 2) and test_top.shape == (10, 2)
    assert top[:, 0].std() == pytest.approx(5.0, rel=0.05) and top[:, 1].std() == pytest.approx(2.0, rel=0.05)
    assert torch.allclose(test_top, top[:10])
    with pytest.raises(FmnistEdgeError, match="--pca 4: the features have 3 dimensions"):
        principal_components(train, train, 4)


def test_linear_probe_on_principal_components(tiny_autoencoder, fake_data_dir):
    done = run_tool("linear_probe.py", "--features", "pooled", "--pca", "8", str(tiny_autoencoder),
                    data_dir=fake_data_dir)
    assert done.returncode == 0, done.stderr
    assert "linear probe on the first 8 principal components of pooled (8 features)" in done.stdout
    done = run_tool("linear_probe.py", "--pca", "0", str(tiny_autoencoder), data_dir=fake_data_dir)
    assert done.returncode == 1 and done.stderr.strip() == "linear_probe: error: --pca 0: the features have 16 dimensions"


def test_fitted_codes_find_pictures_the_decoder_can_draw_and_stay_nonnegative_when_asked(tiny_autoencoder):
    """Targets drawn by the decoder itself from known codes: started away from those codes,
    the fitted ones must come back close to them."""
    from decoder_capacity import fit_codes, mse

    from fmnist_edge.train.checkpoint import load_model

    decoder = load_model(tiny_autoencoder)[0].eval().decoder
    torch.manual_seed(0)
    true_codes = torch.rand(20, 16) * 3
    with torch.no_grad():
        images = decoder(true_codes)
    start = true_codes + torch.randn(20, 16)
    before = mse(decoder, start, images)
    fitted = fit_codes(decoder, start, images, steps=100, lr=0.05)
    assert mse(decoder, fitted, images) < 0.2 * before
    assert all(p.grad is None for p in decoder.parameters())  # frozen while the codes were fitted
    kept = fit_codes(decoder, start - 3.0, images, steps=5, lr=0.05, nonnegative=True)
    assert (kept >= 0).all() and (kept == 0).any()  # codes started below 0 are held at it
    assert all(p.requires_grad for p in decoder.parameters())  # the decoder is handed back trainable


def test_free_codes_train_the_decoder_and_the_codes_together(tiny_autoencoder):
    from decoder_capacity import train_free_codes

    from fmnist_edge.train.checkpoint import load_model
    from fmnist_edge.train.data import Tensors

    model = load_model(tiny_autoencoder)[0].eval()
    images = torch.rand(200, 1, 28, 28)
    train = Tensors(images, torch.zeros(200, dtype=torch.int64))
    start = torch.rand(200, 16)
    weights_before = [p.clone() for p in model.decoder.parameters()]
    codes = train_free_codes(model.decoder, start, train, epochs=1, lr=1e-3, code_lr=1e-2, seed=0)
    assert codes.shape == start.shape and not torch.equal(codes, start)
    assert any(not torch.equal(a, b) for a, b in zip(weights_before, model.decoder.parameters()))


@pytest.mark.parametrize("regress", [False, True])
def test_the_encoder_trains_alone_and_the_decoder_stays_as_it_was(tiny_autoencoder, regress):
    from decoder_capacity import train_encoder

    from fmnist_edge.train.checkpoint import load_model
    from fmnist_edge.train.data import Tensors

    model = load_model(tiny_autoencoder)[0].eval()
    train = Tensors(torch.rand(200, 1, 28, 28), torch.zeros(200, dtype=torch.int64))
    decoder_before = [p.clone() for p in model.decoder.parameters()]
    encoder_before = [p.clone() for p in model.encoder.parameters()]
    targets = torch.rand(200, 16) if regress else None
    train_encoder(model.encoder, model.decoder, train, epochs=1, lr=1e-3, seed=0, code_targets=targets)
    assert all(p.grad is None for p in model.decoder.parameters())  # no gradient reached it
    assert all(torch.equal(a, b) for a, b in zip(decoder_before, model.decoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, model.encoder.parameters()))
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_decoder_capacity_runs_end_to_end(tiny_autoencoder, fake_data_dir):
    done = run_tool("decoder_capacity.py", str(tiny_autoencoder), "--free-code-epochs", "1", "--encoder-epochs", "1",
                    "--code-targets", "100", "--code-steps", "3", "--limit", "50", data_dir=fake_data_dir)
    assert done.returncode == 0, done.stderr
    steps = [line.strip()[:2] for line in done.stdout.splitlines() if "test MSE" in line]
    assert steps == ["th", "1.", "2.", "3.", "4."], done.stdout
    assert "of a code's length from the encoder's" in done.stdout


def test_decoder_capacity_refuses_a_missing_checkpoint_in_one_line(tmp_path, fake_data_dir):
    done = run_tool("decoder_capacity.py", str(tmp_path / "missing.pt"), data_dir=fake_data_dir)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "decoder_capacity: error:" in done.stderr
    assert "no such checkpoint" in done.stderr


def test_decoder_capacity_refuses_code_targets_without_encoder_epochs(tiny_autoencoder, fake_data_dir):
    done = run_tool("decoder_capacity.py", str(tiny_autoencoder), "--code-targets", "100", data_dir=fake_data_dir)
    assert done.returncode == 2 and "--code-targets needs --encoder-epochs" in done.stderr
