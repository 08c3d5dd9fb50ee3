"""One evaluation routine (`eval.suite.run_suite`) behind the end-of-training callback and the evaluate
program; lean by default, the paper's full table with `eval=full`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import dim_lightning.eval
from dim_lightning.config.builders import build_random_encoder
from dim_lightning.data.synthetic import SyntheticDataModule
from dim_lightning.errors import DIMError
from dim_lightning.eval.metrics import (
    METRICS,
    MetricContext,
    enabled_metrics,
    headline,
    metric_options,
    register_metric,
)
from dim_lightning.eval.suite import eval_md, run_suite


def test_eval_package_does_not_import_builders() -> None:
    for path in Path(dim_lightning.eval.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not any("builders" in (m or "") for m in modules), path.name


def test_default_evaluation_is_lean_and_full_is_one_override_away(make_config, tmp_path) -> None:
    """What each eval preset computes: the default scores the code (Y) with the linear probe, kNN and retrieval,
    no MLP; eval=full adds the MLP probe (here at Y only) and the conv and fc places (run in the next test)."""
    cfg = make_config("model.z_dim=8")
    datamodule = SyntheticDataModule(num_train=60, num_val=30, num_classes=4, image_size=16, channels=1, batch_size=16)
    datamodule.setup()
    encoder = build_random_encoder(cfg, 1, 16, seed=1)
    lean = run_suite(encoder, datamodule, tmp_path / "lean", "cpu", None, seed=0, **make_config().eval.suite)
    assert {
        key.split("/")[1] for key in lean if key.startswith(("probe/", "knn/", "retrieval/")) and key.count("/") == 2
    } == {"Y"}
    assert not any(key.startswith("mlp/") for key in lean)
    assert "retrieval/Y/p@10_l2" in lean and (tmp_path / "lean" / "features.npz").is_file()
    full_suite = make_config("eval=full").eval.suite
    assert set(full_suite.places) == {"conv", "fc", "Y"}
    full = run_suite(encoder, datamodule, tmp_path / "full", "cpu", None, seed=0, **{**full_suite, "places": ["Y"]})
    assert "mlp/Y/val_acc" in full and full["probe/val_acc"] == lean["probe/val_acc"]


def test_run_suite_writes_the_tables_and_both_baselines(make_config, tmp_path) -> None:
    cfg = make_config("model.z_dim=8")
    datamodule = SyntheticDataModule(num_train=60, num_val=30, image_size=16, channels=1, batch_size=16)
    datamodule.setup()
    encoder = build_random_encoder(cfg, 1, 16, seed=1)
    twin = build_random_encoder(cfg, 1, 16, seed=2)
    suite = {**make_config("eval=full").eval.suite, "mlp": False}
    metrics = run_suite(encoder, datamodule, tmp_path, "cpu", twin, seed=0, **suite)
    assert json.loads((tmp_path / "eval.json").read_text()) == metrics
    for key in ("probe/val_acc", "knn/val_acc", "baseline/pixels_probe_val_acc", "probe/conv/val_acc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "baseline/random_init_probe_val_acc" in metrics
    table = (tmp_path / "eval.md").read_text()
    assert "| conv |" in table and "| Y |" in table and "baseline/random_init_probe_val_acc" in table
    assert (tmp_path / "features.npz").is_file() and (tmp_path / "retrieval_l2.png").is_file()
    without_twin = run_suite(encoder, datamodule, tmp_path / "lean", "cpu", None, seed=0, places=["Y"], mlp=False)
    assert "baseline/random_init_probe_val_acc" not in without_twin
    assert without_twin["probe/val_acc"] == metrics["probe/val_acc"]


def test_max_train_images_bounds_every_train_side_and_phases_are_timed(make_config, tmp_path, monkeypatch, caplog):
    import logging

    import numpy as np

    import dim_lightning.eval.suite as suite_module
    from dim_lightning.data.digits import DigitsDataModule

    calls = []
    extract = suite_module.extract_features

    def recording(encoder, loader, *args, **kwargs):
        calls.append((args[-1] if len(args) > 2 else kwargs.get("description"), len(loader.dataset)))
        return extract(encoder, loader, *args, **kwargs)

    monkeypatch.setattr(suite_module, "extract_features", recording)
    cfg = make_config("model.z_dim=8")
    datamodule = DigitsDataModule(image_size=8, batch_size=64)
    datamodule.setup()
    encoder, twin = build_random_encoder(cfg, 1, 8, seed=1), build_random_encoder(cfg, 1, 8, seed=2)
    with caplog.at_level(logging.INFO, logger="dim_lightning.utils.timing"):
        metrics = run_suite(
            encoder, datamodule, tmp_path, "cpu", twin, seed=0, places=["Y"], mlp=False, max_train_images=200
        )
    # the trained encoder and its twin both see the same 200 train images; val and test stay whole
    sizes = dict(calls)
    assert sizes == {
        "trained train": 200,
        "trained val": len(datamodule.val_set),
        "trained test": len(datamodule.test_set),
        "random_init train": 200,
        "random_init val": len(datamodule.val_set),
        "random_init test": len(datamodule.test_set),
    }
    saved = np.load(tmp_path / "features.npz")
    train_labels = saved["labels"][saved["split"] == "train"]
    assert metrics["eval/train_images"] == 200 and np.bincount(train_labels).min() >= 19  # stratified: ~20 a class
    for phase in (
        "eval",
        "eval/trained_features",
        "eval/probe",
        "eval/knn",
        "eval/baseline_pixels",
        "eval/random_init_features",
        "data",
    ):
        assert metrics[f"time/{phase}_s"] > 0, phase
        assert phase == "data" or f"{phase}: done in" in caplog.text, phase  # data: set up before the capture
    assert json.loads((tmp_path / "eval.json").read_text())["time/eval_s"] == metrics["time/eval_s"]


def test_eval_md_columns_and_headline_numbers_come_from_the_metric_registry() -> None:
    metrics = {"probe/Y/val_acc": 0.5, "probe/Y/test_acc": 0.25, "retrieval/Y/p@5_l2": 0.125, "time/eval_s": 2.0}
    table = eval_md(metrics, {"precision_k": 5}).splitlines()
    titles = [title for m in METRICS.values() for title, _ in m.columns(MetricContext("", options={"precision_k": 5}))]
    assert table[0] == "| features | " + " | ".join(titles) + " |"
    assert (
        table[0] == "| features | linear probe val / test | MLP probe val / test | kNN val / test | p@5 L2 | p@5 cos |"
    )
    assert table[2] == "| Y | 0.5000 / 0.2500 | - | - | 0.1250 | - |"  # a metric that did not run reads "-"
    assert headline() == (
        "probe/val_acc",
        "probe/test_acc",
        "knn/val_acc",
        "knn/test_acc",
        "baseline/pixels_probe_val_acc",
        "baseline/random_init_probe_val_acc",
        "train/img_per_s",
    )
    assert [m.name for m in enabled_metrics({"mlp": False})] == ["probe", "knn", "retrieval"]
    assert [m.name for m in enabled_metrics({"mlp": True})] == ["probe", "mlp", "knn", "retrieval"]


def test_a_metric_reads_its_own_eval_suite_option_and_a_headline_metric_must_give_val_and_test(
    make_config, tmp_path
) -> None:
    seen: list[int] = []

    @register_metric("toy_top", "toy top-k", options={"toy_k": 3})
    def toy_top(train, held_out, context: MetricContext) -> dict[str, float]:
        seen.append(context.options["toy_k"])
        return {"val_acc": 0.0, "test_acc": 0.0}

    @register_metric("toy_val_only", "toy val only", headline=True, enabled_by="toy_val_only")
    def toy_val_only(train, held_out, context: MetricContext) -> dict[str, float]:
        return {"val_acc": 0.0}

    datamodule = SyntheticDataModule(num_train=40, num_val=20, num_classes=4, image_size=16, channels=1, batch_size=16)
    datamodule.setup()
    encoder = build_random_encoder(make_config("model.z_dim=8"), 1, 16, seed=1)
    try:
        run_suite(encoder, datamodule, tmp_path / "default", places=["Y"], retrieval=False, export_features=False)
        run_suite(encoder, datamodule, tmp_path / "set", places=["Y"], retrieval=False, export_features=False, toy_k=7)
        assert seen == [3, 3, 7, 7]  # the registered default, then the eval.suite value (val fit, test refit)
        with pytest.raises(DIMError, match=r"'toy_val_only' is registered with headline=True, so it must return"):
            run_suite(encoder, datamodule, tmp_path / "bad", places=["Y"], retrieval=False, toy_val_only=True)
    finally:
        del METRICS["toy_top"], METRICS["toy_val_only"]


def test_the_registered_metric_options_default_to_conf_eval_defaults(make_config) -> None:
    # the registry's defaults serve calls from Python; conf/eval/default.yaml's values serve runs: one number each
    suite = make_config().eval.suite
    assert metric_options({}) == {key: suite[key] for key in metric_options({})}


def test_val_scores_fit_on_train_and_test_scores_refit_on_train_plus_val(make_config, tmp_path) -> None:
    fitted_on: dict[str, int] = {}

    @register_metric("toy_sizes", "toy sizes")
    def toy_sizes(train, held_out, context: MetricContext) -> dict[str, float]:
        fitted_on.update({split: len(train[1]) for split in held_out})
        return {f"{split}_acc": 0.0 for split in held_out}

    datamodule = SyntheticDataModule(num_train=40, num_val=20, num_classes=4, image_size=16, channels=1, batch_size=16)
    datamodule.setup()
    encoder = build_random_encoder(make_config("model.z_dim=8"), 1, 16, seed=1)
    options = {"places": ["Y"], "retrieval": False, "export_features": False, "random_encoder": encoder}
    try:
        whole = run_suite(encoder, datamodule, tmp_path / "whole", **options)
        train, val = len(datamodule.train_set), len(datamodule.split("val"))
        assert fitted_on == {"val": train, "test": train + val} == {"val": 36, "test": 40}
        capped = run_suite(encoder, datamodule, tmp_path / "capped", max_train_images=24, **options)
        assert fitted_on == {"val": 24, "test": 24}  # the cap holds for the test refit too
    finally:
        del METRICS["toy_sizes"]
    assert (whole["eval/test_fit_images"], capped["eval/test_fit_images"]) == (40, 24)
