"""CONTRIBUTING.md's three recipes, each followed to the letter: a toy bound (one registered function + one
estimator YAML), a toy evaluation metric (one registered function) and a toy data set (one module + one data
YAML). The YAMLs go to a config dir of the test's own, put on Hydra's search path (`hydra.searchpath`) as a
user's own config dir would be; each addition is then shown used by the real code path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from dim_lightning.config.builders import CONF_DIR, build_random_encoder
from dim_lightning.data.base import ArrayDataModule
from dim_lightning.errors import DIMError
from dim_lightning.eval.metrics import METRICS, MetricContext, Split, headline, register_metric
from dim_lightning.eval.suite import run_suite
from dim_lightning.mi import mutual_information
from dim_lightning.mi.bounds import BOUNDS, Bound, Scores, infonce, register_bound
from dim_lightning.report.sweep_summary import write_summary
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC


@pytest.fixture(autouse=True)
def registries():
    """Each test's registrations are undone after it, so the package's own lists stay as shipped."""
    bounds, metrics = dict(BOUNDS), dict(METRICS)
    yield
    BOUNDS.clear()
    BOUNDS.update(bounds)
    METRICS.clear()
    METRICS.update(metrics)


@pytest.fixture
def user_conf(tmp_path):
    """A user's own config dir; `searchpath` is the override that puts it on Hydra's search path."""
    conf = tmp_path / "user_conf"

    def write(relative: str, text: str) -> str:
        path = conf / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return f"hydra.searchpath=[file://{conf}]"

    return write


# Recipe 1: a bound. The function (registered under its name) and conf/estimator/<name>.yaml.
def shifted_infonce(scores: Scores, shift: float = 100.0) -> Bound:
    """InfoNCE whose MI estimate reads `shift` nats high: a number no shipped bound gives, so it shows use."""
    bound = infonce(scores)
    return Bound(loss=bound.loss, mi=bound.mi + shift)


def test_recipe_new_bound_is_one_function_and_one_yaml(make_config, user_conf) -> None:
    register_bound("shifted")(shifted_infonce)
    searchpath = user_conf(
        "estimator/shifted.yaml", "_target_: tests.test_recipes.shifted_infonce\n_partial_: true\nshift: 100.0\n"
    )
    # training: estimator=shifted
    cfg = make_config(
        *FAST, "estimator=shifted", "debug=fast", "callbacks.final_evaluation=null", "model.z_dim=32",
        SMALL_CRITIC["dot"], searchpath,
    )  # fmt: skip
    metrics = train(cfg).trainer.callback_metrics
    assert float(metrics["train/mi_local"]) > 90 and float(metrics["val/mi_local"]) > 90
    # mutual_information / neural MI: the same registry by name, with the bound's own option
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 1))
    y = x + rng.normal(size=(400, 1))
    assert mutual_information(x, y, method="shifted", steps=20, folds=2, shift=50.0) > 40
    # the Optuna search space lists every estimator option on the search path
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        optuna = compose("train", overrides=["hparams_search=optuna", searchpath], return_hydra_config=True)
        assert optuna.hydra.sweeper.params.estimator == "choice(dv,infonce,jsd,nwj,shifted,smile)"


# Recipe 2: an evaluation metric. One registered function.
@pytest.fixture
def nearest_centroid():
    @register_metric("centroid", "nearest centroid", headline=True)
    def centroid_accuracy(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
        """Each held-out feature gets the class of the nearest class mean of the train features."""
        x, y = train
        centroids = torch.stack([x[y == label].mean(0) for label in range(int(y.max()) + 1)])
        return {
            f"{split}_acc": (torch.cdist(held_x, centroids).argmin(1) == held_y).float().mean().item()
            for split, (held_x, held_y) in held_out.items()
        }

    return centroid_accuracy


def test_recipe_new_metric_is_one_registered_function(nearest_centroid, make_config, tmp_path) -> None:
    cfg = make_config("model.z_dim=8")
    datamodule = ToyStripes(num_images=120, image_size=16, batch_size=32)
    datamodule.setup()
    encoder = build_random_encoder(cfg, 1, 16, seed=1)
    metrics = run_suite(encoder, datamodule, tmp_path / "job", "cpu", None, seed=0, places=["fc", "Y"], mlp=False)
    # the suite ran it at every place, and it is a headline number (Y's copy, the summary's columns)
    for key in ("centroid/fc/val_acc", "centroid/Y/test_acc", "centroid/val_acc", "centroid/test_acc"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert json.loads((tmp_path / "job" / "eval.json").read_text())["centroid/val_acc"] == metrics["centroid/val_acc"]
    table = (tmp_path / "job" / "eval.md").read_text()
    assert "| nearest centroid val / test |" in table
    assert f"{metrics['centroid/fc/val_acc']:.4f} / {metrics['centroid/fc/test_acc']:.4f}" in table
    assert {"centroid/val_acc", "centroid/test_acc"} <= set(headline())
    (tmp_path / "job" / ".hydra").mkdir()
    (tmp_path / "job" / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    write_summary(tmp_path)
    assert "centroid/val_acc" in (tmp_path / "summary.csv").read_text().splitlines()[0]


def test_a_registered_metric_can_be_switched_by_its_own_eval_suite_option(make_config, tmp_path) -> None:
    @register_metric("always_zero", "always zero", enabled_by="zeros")
    def always_zero(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
        return {f"{split}_acc": 0.0 for split in held_out}

    datamodule = ToyStripes(num_images=120, image_size=16, batch_size=32)
    datamodule.setup()
    encoder = build_random_encoder(make_config("model.z_dim=8"), 1, 16, seed=1)
    off = run_suite(encoder, datamodule, tmp_path / "off", places=["Y"], mlp=False, zeros=False)
    on = run_suite(encoder, datamodule, tmp_path / "on", places=["Y"], mlp=False, zeros=True)
    with pytest.raises(DIMError, match=r"unknown eval.suite option\(s\) \['no_such_switch'\]"):
        run_suite(encoder, datamodule, tmp_path / "bad", places=["Y"], mlp=False, no_such_switch=True)
    assert "always_zero/Y/val_acc" not in off and on["always_zero/Y/val_acc"] == 0.0


# Recipe 3: a data set. One module (here: this test module) and conf/data/<name>.yaml.
class ToyStripes(ArrayDataModule):
    """Grey images whose class is the row of a bright horizontal stripe: learnable, generated in memory."""

    def __init__(self, num_images: int = 200, num_classes: int = 4, test_fraction: float = 0.25, **kwargs) -> None:
        super().__init__(channels=1, **kwargs)
        self.num_images, self.test_fraction = num_images, test_fraction
        self.class_names = [f"stripe {i}" for i in range(num_classes)]

    def load_arrays(self):
        rng = np.random.default_rng(self.split_seed)
        labels = np.arange(self.num_images) % self.num_classes
        images = rng.integers(0, 60, (self.num_images, 1, self.image_size, self.image_size), dtype=np.uint8)
        band = self.image_size // self.num_classes
        for i, label in enumerate(labels):
            images[i, :, label * band : (label + 1) * band] += 150
        test = round(self.num_images * self.test_fraction)
        return images[test:], labels[test:], images[:test], labels[:test]


def test_recipe_new_data_set_is_one_module_and_one_yaml(make_config, user_conf) -> None:
    searchpath = user_conf(
        "data/stripes.yaml",
        "defaults:\n  - base/images@_here_\n  - _self_\n\n"
        "_target_: tests.test_recipes.ToyStripes\nnum_images: 160\nimage_size: 16\nbatch_size: 16\nnum_workers: 0\n",
    )
    cfg = make_config(
        "data=stripes", "debug=fast", "callbacks.final_evaluation=null",
        "model.z_dim=32", SMALL_CRITIC["dot"], searchpath,
    )  # fmt: skip
    # the shared keys come from the base config, the rest from the user's YAML
    assert cfg.data.shuffle_seed == cfg.seed and cfg.data.on_device is False and cfg.data.num_images == 160
    result = train(cfg)
    datamodule = result.trainer.datamodule
    assert isinstance(datamodule, ToyStripes) and datamodule.image_size == 16
    assert result.trainer.global_step == 1 and len(datamodule.train_set) + len(datamodule.val_set) == 120
    assert isinstance(instantiate(cfg.data), ToyStripes)
