"""Probe, kNN and retrieval on hand-made data with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dim_lightning.eval.features import code_summary
from dim_lightning.eval.probe import (
    fit_linear_probe,
    knn_accuracy,
    linear_probe_accuracy,
    linear_probe_scores,
    mlp_probe_accuracy,
    mlp_probe_scores,
    precision_at_k,
)
from dim_lightning.eval.retrieval import nearest, retrieval_grid, save_retrieval_grids


def blobs(n: int, dim: int, separation: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    centres = separation * torch.eye(4, dim)
    return centres[labels] + torch.randn(n, dim, generator=g), labels


def test_linear_probe_separates_separable_and_not_noise() -> None:
    train_x, train_y = blobs(400, 16, separation=8.0)
    val_x, val_y = blobs(200, 16, separation=8.0, seed=1)
    assert linear_probe_accuracy(train_x, train_y, val_x, val_y) > 0.98
    noise_train = torch.randn(400, 16)
    noise_val = torch.randn(200, 16)
    assert linear_probe_accuracy(noise_train, train_y, noise_val, val_y) < 0.45  # chance is 0.25


def test_knn_votes_by_weighted_cosine_neighbours() -> None:
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 1.0]])
    train_y = torch.tensor([0, 0, 1, 1, 1])
    val_x = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_accuracy(train_x, train_y, val_x, torch.tensor([0, 1]), k=2) == 1.0
    # with k = 5 the three class-1 points outvote the two class-0 neighbours only if weights were uniform;
    # at T = 0.07 the two very close class-0 points win
    assert knn_accuracy(train_x, train_y, val_x[:1], torch.tensor([0]), k=5) == 1.0


def test_retrieval_grid_rows_start_with_their_query() -> None:
    images = torch.randint(0, 256, (30, 3, 8, 6), dtype=torch.uint8)
    codes = torch.randn(30, 5)
    queries = torch.tensor([3, 17, 0])
    grid = retrieval_grid(images, codes, "l2", queries, top_k=4)
    assert grid.shape == (3 * 8, 4 * 6, 3)
    for row, query in enumerate(queries):
        assert np.array_equal(grid[row * 8 : (row + 1) * 8, :6], images[query].permute(1, 2, 0).numpy())
    assert nearest(codes[queries], codes, "cos", 1).squeeze(1).tolist() == queries.tolist()


def test_saved_grids_are_deterministic_and_grayscale_for_one_channel(tmp_path) -> None:
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    codes = torch.randn(40, 4)
    first = [np.asarray(Image.open(p)) for p in save_retrieval_grids(images, codes, tmp_path, seed=3)]
    second = [np.asarray(Image.open(p)) for p in save_retrieval_grids(images, codes, tmp_path, seed=3)]
    assert first[0].shape == (100, 100)  # 10 x 10 tiles of 8 px, each framed by a 1-px border
    assert (first[0][0, :10] == 0).all() and (first[0][0, 10:] == 255).all()  # the query's frame, then white ones
    assert np.array_equal(first[0][1:9, 1:9], images[first_query(seed=3)][0].numpy())
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    with pytest.raises(ValueError, match="metric"):
        nearest(codes[:1], codes, "manhattan", 2)


def first_query(seed: int) -> int:
    return int(torch.randperm(40, generator=torch.Generator().manual_seed(seed))[0])


def test_precision_at_k_matches_hand_count() -> None:
    gallery = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    gallery_y = torch.tensor([0, 0, 1, 1, 1])
    queries = torch.tensor([[0.4], [10.4]])
    # query 0 (label 0): nearest 3 are 0, 1, 2 -> labels 0, 0, 1 -> 2/3; query 1 (label 1): 10, 11, 2 -> 3/3
    assert precision_at_k(queries, torch.tensor([0, 1]), gallery, gallery_y, k=3) == pytest.approx(5 / 6)
    two_d = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.0]])
    assert precision_at_k(torch.tensor([[2.0, 0.0]]), torch.tensor([7]), two_d, torch.tensor([7, 3, 7]), 1, "cos") == 1


@pytest.mark.slow
def test_mlp_probe_beats_chance_and_is_deterministic() -> None:
    train_x, train_y = blobs(400, 16, separation=4.0)
    val_x, val_y = blobs(200, 16, separation=4.0, seed=1)
    first = mlp_probe_accuracy(train_x, train_y, val_x, val_y, max_epochs=100)
    assert first > 0.8  # chance is 0.25
    assert mlp_probe_accuracy(train_x, train_y, val_x, val_y, max_epochs=100) == first


def test_code_summary_counts_dead_dimensions() -> None:
    codes = torch.randn(100, 4)
    codes[:, 2] = 3.0
    summary = code_summary(codes)
    assert summary["codes/dead_fraction"] == 0.25
    assert summary["codes/mean"] == pytest.approx(codes.mean().item())


@pytest.mark.slow
def test_tsne_map_is_a_picture_coloured_by_class(tmp_path) -> None:
    from dim_lightning.eval.suite import save_tsne

    codes, labels = blobs(120, 8, separation=6.0)
    path = save_tsne(codes, labels, tmp_path / "tsne.png", size=200)
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (200, 200, 3)
    colours = {tuple(c) for c in pixels.reshape(-1, 3).tolist()} - {(255, 255, 255)}
    assert len(colours) >= 4  # one colour per class, at least


def test_mlp_probe_is_the_official_linear_dropout_bn_relu_classifier() -> None:
    from dim_lightning.eval.probe import mlp_probe_network

    layers = [type(layer) for layer in mlp_probe_network(64, 200, 10, dropout=0.1)]
    assert layers == [
        torch.nn.Linear,
        torch.nn.Dropout,
        torch.nn.BatchNorm1d,
        torch.nn.ReLU,
        torch.nn.Linear,
    ]


def test_a_probe_with_more_features_than_images_is_the_full_dimensional_fit(monkeypatch) -> None:
    """Fitted in the train rows' span (far cheaper for 2,000 images of 12,288 pixels), the probe is the same
    classifier as one fitted on every feature."""
    import dim_lightning.eval.probe as probe_module

    monkeypatch.setattr(probe_module, "WEIGHT_DECAYS", (1e-2,))
    train_x, train_y = blobs(80, 300, separation=4.0)
    val_x, val_y = blobs(200, 300, separation=4.0, seed=1)
    probe = probe_module.fit_linear_probe(train_x, train_y, 4)
    x = (train_x - probe.mean) / probe.std
    weight, bias = probe_module.fit_logistic_regression(x, train_y, 4, 1e-2)
    direct = probe_module.LinearProbeFit(probe.mean, probe.std, weight, bias)
    assert probe.weight.shape == weight.shape == (300, 4)
    assert torch.allclose(probe.weight, weight, atol=2e-3 * weight.abs().max().item())
    assert probe.accuracy(val_x, val_y) == direct.accuracy(val_x, val_y) > 0.5


def test_the_pixel_baseline_scores_whole_splits_in_chunks_and_fits_in_place() -> None:
    from dim_lightning.data.synthetic import SyntheticDataModule
    from dim_lightning.eval.pixel_baseline import pixel_probe_scores

    datamodule = SyntheticDataModule(num_train=60, num_val=30, image_size=8, channels=1, batch_size=16)
    datamodule.setup()
    whole = pixel_probe_scores(datamodule, datamodule.train_set, chunk_size=1000, cache=False)
    assert pixel_probe_scores(datamodule, datamodule.train_set, chunk_size=7, cache=False) == whole
    assert set(whole) == {"val", "test"} and all(0.0 <= acc <= 1.0 for acc in whole.values())


def test_a_probe_fitted_in_place_standardises_the_callers_features() -> None:
    pixels = torch.randn(50, 20) + 3.0
    kept = pixels.clone()
    probe = fit_linear_probe(pixels, torch.arange(50) % 2, 2, in_place=True)
    assert torch.allclose(probe.mean, kept.mean(0))
    assert torch.allclose(pixels, (kept - probe.mean) / probe.std)
    assert torch.equal(fit_linear_probe(kept, torch.arange(50) % 2, 2).weight, probe.weight)


def test_probes_fit_a_train_subset_too_small_to_stratify_their_hold_outs() -> None:
    """e.g. eval.suite.max_train_images=500 on Tiny-ImageNet's 200 classes: hold-outs of 100 and 50 images cannot
    hold every class, so they are plain seeded splits instead of a crash after training."""
    train_x, train_y = torch.randn(40, 8), torch.arange(40) % 20
    evals = {"val": (torch.randn(20, 8), torch.arange(20))}
    assert 0.0 <= linear_probe_scores(train_x, train_y, evals)["val"] <= 1.0
    assert 0.0 <= mlp_probe_scores(train_x, train_y, evals, max_epochs=2)["val"] <= 1.0


def test_the_pixel_baseline_is_computed_once_per_data_and_read_back_after(monkeypatch, tmp_path) -> None:
    from dim_lightning.data.synthetic import SyntheticDataModule
    from dim_lightning.eval import pixel_baseline

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    fits = []
    real_fit = pixel_baseline.fit_linear_probe
    monkeypatch.setattr(pixel_baseline, "fit_linear_probe", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    datamodule = SyntheticDataModule(num_train=60, num_val=30, image_size=8, channels=1, batch_size=16)
    datamodule.setup()
    first = pixel_baseline.pixel_probe_scores(datamodule, datamodule.train_set)
    assert len(fits) == 2  # val: fitted on train; test: refitted on train + val
    assert pixel_baseline.pixel_probe_scores(datamodule, datamodule.train_set) == first and len(fits) == 2
    assert pixel_baseline.pixel_probe_scores(datamodule, datamodule.train_set, seed=1) and len(fits) == 4

    entry = pixel_baseline.cache_dir() / f"{pixel_baseline.data_key(datamodule, datamodule.train_set, 0, 20000)}.json"
    assert json.loads(entry.read_text()) == first
    entry.write_text('{"val": 7, "test": "x"}')  # not what the cache writes: computed again
    assert pixel_baseline.pixel_probe_scores(datamodule, datamodule.train_set) == first and len(fits) == 6
    datamodule.test_set.images[0, 0, 0, 0] ^= 1  # one pixel of the data changed: another key
    pixel_baseline.pixel_probe_scores(datamodule, datamodule.train_set)
    assert len(fits) == 8


def test_a_pixel_baseline_cache_that_cannot_be_written_does_not_stop_the_evaluation(monkeypatch, tmp_path) -> None:
    from dim_lightning.data.synthetic import SyntheticDataModule
    from dim_lightning.eval import pixel_baseline

    (tmp_path / "cache").write_text("a file where the cache folder would go")  # like a read-only or full home
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    datamodule = SyntheticDataModule(num_train=60, num_val=30, image_size=8, channels=1, batch_size=16)
    datamodule.setup()
    scores = pixel_baseline.pixel_probe_scores(datamodule, datamodule.train_set)
    assert set(scores) == {"val", "test"}
