"""One evaluation routine (`eval.suite.run_suite`) behind the end-of-training callback and the evaluate
program; lean by default, the paper's full table with `eval=full`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import dim_lightning.eval
from dim_lightning.builders import build_random_encoder
from dim_lightning.data.synthetic import SyntheticDataModule
from dim_lightning.eval.suite import run_suite


def test_eval_package_does_not_import_builders() -> None:
    for path in Path(dim_lightning.eval.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not any("builders" in (m or "") for m in modules), path.name


def test_default_evaluation_is_lean_and_full_is_one_override_away(make_config) -> None:
    lean = make_config().eval.suite
    assert list(lean.places) == ["Y"] and lean.mlp is False and lean.retrieval and lean.export_features
    full = make_config("eval=full").eval.suite
    assert list(full.places) == ["conv", "fc", "Y"] and full.mlp is True
    assert make_config("eval=full").eval.random_init_baseline is True


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
