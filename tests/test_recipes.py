"""CONTRIBUTING.md's four recipes, each followed to the letter on a copy of the repository (`clone`: conf/,
README.md, docs/config.md): a toy bound (one registered function + conf/estimator/<name>.yaml), a toy evaluation
metric (one registered function), a toy data set (one module + conf/data/<name>.yaml) and a toy callback (a class
exported from dim_lightning.callbacks, conf/callbacks/<name>.yaml, a line in conf/callbacks/default.yaml). A toy's
new option gets its `Key` in its group's schema module (`schema_line`, undone after the test). Then the checks CI
runs (tests/test_config_schema.py: `undescribed_keys`, the docs generator) run on the copy, on the toy's config
group: the new key is caught until its `Key` is there, and the generated docs list the toy option and key. Each
addition is also shown used by the real code path. The slow test follows all four recipes in one copy and runs
the full checks: every option composed, docs stale until `--write`, current after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from pytorch_lightning import Callback

import dim_lightning.callbacks
from dim_lightning.config import docs
from dim_lightning.config.builders import build_callbacks, build_random_encoder
from dim_lightning.config.checks import boolean, integer, number, positive
from dim_lightning.config.compose import undescribed_keys
from dim_lightning.config.schema import GROUPS, SCHEMA
from dim_lightning.config.schema.callbacks import _classes
from dim_lightning.config.schema.key import Key
from dim_lightning.config.validation import config_problems
from dim_lightning.data.base import ArrayDataModule
from dim_lightning.errors import DIMError
from dim_lightning.eval.metrics import METRICS, MetricContext, Split, headline, register_metric
from dim_lightning.eval.suite import run_suite
from dim_lightning.mi import mutual_information
from dim_lightning.mi.bounds import BOUNDS, Bound, Scores, infonce, register_bound
from dim_lightning.report.sweep_summary import write_summary
from dim_lightning.train import train
from tests.conftest import FAST, REPO, SMALL_CRITIC


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
def clone(tmp_path) -> Path:
    """A copy of the repository's files the recipes touch or the checks read: conf/, README.md, docs/config.md."""
    root = tmp_path / "clone"
    shutil.copytree(REPO / "conf", root / "conf")
    (root / "docs").mkdir()
    for relative in ("README.md", "docs/config.md"):
        shutil.copyfile(REPO / relative, root / relative)
    return root


@pytest.fixture
def schema_line(monkeypatch):
    """`add(*keys)`: each `Key` put into its group's schema module (src/dim_lightning/config/schema/<group>.py),
    as the recipe's line there would be, and into the merged SCHEMA; undone after the test."""

    def add(*keys: Key) -> None:
        for key in keys:
            module = next(g for g in GROUPS if key.name.split(".")[0] == g.GROUP)
            monkeypatch.setattr(module, "KEYS", (*module.KEYS, key))
            monkeypatch.setitem(SCHEMA, key.name, key)

    return add


def add_files(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).write_text(text)


def add_line(path: Path, line: str, before: str) -> None:
    """`line` written into the file `path` just before its line `before` (which must be there)."""
    text = path.read_text()
    assert f"{before}\n" in text, (path, before)
    path.write_text(text.replace(f"{before}\n", f"{line}\n{before}\n", 1))


def checked_like_ci(root: Path, option: str, keys: tuple[Key, ...], schema_line) -> tuple[str, str]:
    """The repository's schema check on the copy's new `option` (`group=name`) and root configs: the toy's keys
    are caught while no schema module describes them, nothing is after its `Key` lines. Returns docs/config.md
    and the README's section as `python -m dim_lightning.config.docs --write` writes them for these options."""
    options = docs.composed_options(root / "conf", only=[option])
    assert {key.name for key in keys} <= {missing.split(" ")[0] for missing in undescribed_keys(options)}
    schema_line(*keys)
    assert undescribed_keys(options) == []
    return docs.config_md(options), docs.readme_section(options)


def row(text: str, start: str) -> str:
    """The table row of `text` that starts with `start`."""
    return next(line for line in text.splitlines() if line.startswith(start))


# Recipe 1: a bound. The function (registered under its name), conf/estimator/<name>.yaml and the Key of its option.
def shifted_infonce(scores: Scores, shift: float = 100.0) -> Bound:
    """InfoNCE whose MI estimate reads `shift` nats high: a number no shipped bound gives, so it shows use."""
    bound = infonce(scores)
    return Bound(loss=bound.loss, mi=bound.mi + shift)


BOUND_FILES = {
    "conf/estimator/shifted.yaml": "# InfoNCE read shift nats high.\n"
    "_target_: tests.test_recipes.shifted_infonce\n_partial_: true\nshift: 100.0\n"
}
BOUND_KEYS = (Key("estimator.shift", positive, "shifted: nats added to the InfoNCE estimate"),)


def test_recipe_new_bound_is_one_function_and_one_yaml(make_config, clone, schema_line) -> None:
    register_bound("shifted")(shifted_infonce)
    add_files(clone, BOUND_FILES)
    config_md, readme = checked_like_ci(clone, "estimator=shifted", BOUND_KEYS, schema_line)
    assert row(config_md, "| `estimator` | `shifted` |").endswith("| InfoNCE read shift nats high. |")
    assert "shifted: `100.0`" in row(config_md, "| `estimator.shift` |") and "`shifted`" in row(readme, "| `estimator`")
    conf = clone / "conf"
    problems = config_problems(make_config("estimator=shifted", "estimator.shift=-1", conf_dir=conf))
    assert any(p.startswith("estimator.shift=-1 ") for p in problems), problems  # its Key validates it
    # training: estimator=shifted
    cfg = make_config(
        *FAST, "estimator=shifted", "debug=fast", "callbacks.final_evaluation=null", "model.z_dim=32",
        SMALL_CRITIC["dot"], conf_dir=conf,
    )  # fmt: skip
    metrics = train(cfg).trainer.callback_metrics
    assert float(metrics["train/mi_local"]) > 90 and float(metrics["val/mi_local"]) > 90
    # mutual_information / neural MI: the same registry by name, with the bound's own option
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 1))
    y = x + rng.normal(size=(400, 1))
    assert mutual_information(x, y, method="shifted", steps=20, folds=2, shift=50.0) > 40
    # the Optuna search space lists every conf/estimator option
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        optuna = compose("train", overrides=["hparams_search=optuna"], return_hydra_config=True)
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


SWITCH_KEYS = (
    Key("eval.suite.constant", boolean, "the constant metric"),
    Key("eval.suite.constant_value", number(0, 1), "what the constant metric reports"),
)


def add_switch(root: Path) -> None:
    """`constant: false` and `constant_value: 0.25` in conf/eval/default.yaml's suite: the switch of a metric
    registered `enabled_by="constant"`, and the option it registered (`options={"constant_value": 0.0}`)."""
    add_line(root / "conf" / "eval" / "default.yaml", "  constant: false", before="  tsne: false")
    add_line(root / "conf" / "eval" / "default.yaml", "  constant_value: 0.25", before="  tsne: false")


def test_a_registered_metric_can_be_switched_and_set_by_its_own_eval_suite_keys(
    make_config, clone, schema_line, tmp_path
) -> None:
    """`enabled_by="constant"` and `options={"constant_value": 0.0}`, their lines in conf/eval/default.yaml and
    their `Key`s in the eval schema module: the suite runs the metric when the composed `eval.suite` (as train and
    evaluate pass it) says so, with the option's value from the config (the registered default from Python)."""

    @register_metric("constant", "constant", enabled_by="constant", options={"constant_value": 0.0})
    def constant(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
        return {f"{split}_acc": context.options["constant_value"] for split in held_out}

    add_switch(clone)
    config_md, _ = checked_like_ci(clone, "eval=default", SWITCH_KEYS, schema_line)
    assert "| `false` |" in row(config_md, "| `eval.suite.constant` |")
    assert "| `0.25` |" in row(config_md, "| `eval.suite.constant_value` |")
    fast = ["eval.suite.retrieval=false", "eval.suite.export_features=false"]
    suite = {
        value: make_config(f"eval.suite.constant={value}", *fast, conf_dir=clone / "conf").eval.suite
        for value in (False, True)
    }
    datamodule = ToyStripes(num_images=120, image_size=16, batch_size=32)
    datamodule.setup()
    encoder = build_random_encoder(make_config("model.z_dim=8"), 1, 16, seed=1)
    off = run_suite(encoder, datamodule, tmp_path / "off", **suite[False])
    on = run_suite(encoder, datamodule, tmp_path / "on", **suite[True])
    from_python = run_suite(encoder, datamodule, tmp_path / "python", places=["Y"], retrieval=False, constant=True)
    with pytest.raises(DIMError, match=r"unknown eval.suite option\(s\) \['no_such_switch'\]"):
        run_suite(encoder, datamodule, tmp_path / "bad", places=["Y"], mlp=False, no_such_switch=True)
    assert "constant/Y/val_acc" not in off and on["constant/Y/val_acc"] == 0.25
    assert from_python["constant/Y/val_acc"] == 0.0


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


DATA_FILES = {
    "conf/data/stripes.yaml": "# Generated grey stripes, one class per row.\n"
    "defaults:\n  - base/images@_here_\n  - _self_\n\n"
    "_target_: tests.test_recipes.ToyStripes\nnum_images: 160\nimage_size: 16\nbatch_size: 16\nnum_workers: 0\n"
}
DATA_KEYS = (Key("data.num_images", integer(8), "stripes: images generated"),)


def test_recipe_new_data_set_is_one_module_and_one_yaml(make_config, clone, schema_line) -> None:
    add_files(clone, DATA_FILES)
    config_md, readme = checked_like_ci(clone, "data=stripes", DATA_KEYS, schema_line)
    assert row(config_md, "| `data` | `stripes` |").endswith("| Generated grey stripes, one class per row. |")
    assert "stripes: `160`" in row(config_md, "| `data.num_images` |") and "`stripes`" in row(readme, "| `data` |")
    assert "stripes: `16`" in row(config_md, "| `data.image_size` |")  # a shared key, set otherwise here
    cfg = make_config(
        "data=stripes", "debug=fast", "callbacks.final_evaluation=null",
        "model.z_dim=32", SMALL_CRITIC["dot"], conf_dir=clone / "conf",
    )  # fmt: skip
    # the shared keys come from the base config, the rest from the new YAML
    assert cfg.data.shuffle_seed == cfg.seed and cfg.data.on_device is False and cfg.data.num_images == 160
    result = train(cfg)
    datamodule = result.trainer.datamodule
    assert isinstance(datamodule, ToyStripes) and datamodule.image_size == 16
    assert result.trainer.global_step == 1 and len(datamodule.train_set) + len(datamodule.val_set) == 120
    assert isinstance(instantiate(cfg.data), ToyStripes)


# Recipe 4: a callback. The class (exported from dim_lightning.callbacks), conf/callbacks/<name>.yaml, its line in
# conf/callbacks/default.yaml and its schema lines.
class StepRecorder(Callback):
    """Records the optimizer steps that end on a multiple of `every_n_steps`: shows it ran inside the fit."""

    def __init__(self, every_n_steps: int = 1) -> None:
        self.every_n_steps, self.steps = every_n_steps, []

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.steps.append(trainer.global_step)


CALLBACK_FILES = {
    "conf/callbacks/step_recorder.yaml": "# Records every N-th optimizer step.\n"
    "step_recorder:\n  _target_: dim_lightning.callbacks.StepRecorder\n  every_n_steps: 2\n"
}
CALLBACK_KEYS = (
    *_classes("step_recorder"),
    Key("callbacks.step_recorder.every_n_steps", integer(1), "record every N optimizer steps"),
)


def follow_callback_recipe(root: Path, monkeypatch) -> None:
    """The class exported from dim_lightning/callbacks/__init__.py, its YAML, and `- step_recorder` in the
    defaults list of conf/callbacks/default.yaml."""
    monkeypatch.setattr(dim_lightning.callbacks, "StepRecorder", StepRecorder, raising=False)
    add_files(root, CALLBACK_FILES)
    add_line(root / "conf" / "callbacks" / "default.yaml", "  - step_recorder", before="  - _self_")


def test_recipe_new_callback_is_one_class_one_yaml_and_one_defaults_line(
    make_config, clone, schema_line, monkeypatch
) -> None:
    follow_callback_recipe(clone, monkeypatch)
    conf = clone / "conf"
    unchecked = config_problems(make_config("callbacks.step_recorder.every_n_steps=0", conf_dir=conf))
    config_md, _ = checked_like_ci(clone, "callbacks=step_recorder", CALLBACK_KEYS, schema_line)
    assert row(config_md, "| `callbacks` | `step_recorder` |").endswith("| Records every N-th optimizer step. |")
    assert "| `2` |" in row(config_md, "| `callbacks.step_recorder.every_n_steps` |")
    # its Key validates the option (without it the value went unchecked)
    problems = config_problems(make_config("callbacks.step_recorder.every_n_steps=0", conf_dir=conf))
    assert not any("step_recorder" in p for p in unchecked)
    assert any(p.startswith("callbacks.step_recorder.every_n_steps=0 ") for p in problems), problems
    # a real (two-step) training runs it; callbacks.step_recorder=null drops it
    cfg = make_config(
        "logger=csv", "data.batch_size=8", "debug=fast", "trainer.fast_dev_run=2", "callbacks.final_evaluation=null",
        "model.z_dim=16", SMALL_CRITIC["dot"], conf_dir=conf,
    )  # fmt: skip
    trainer = train(cfg).trainer
    recorders = [c for c in trainer.callbacks if isinstance(c, StepRecorder)]
    assert trainer.global_step == 2 and len(recorders) == 1 and recorders[0].steps == [2]
    dropped = make_config("callbacks.step_recorder=null", conf_dir=conf)
    assert not any(isinstance(c, StepRecorder) for c in build_callbacks(dropped))


@pytest.mark.slow
def test_following_every_recipe_keeps_the_repositorys_checks_green(clone, schema_line, monkeypatch) -> None:
    """All four recipes in one copy, then what CI checks: every key of every composed option has a schema entry
    (not so while the `Key` lines are missing), and docs/config.md and the README's table are stale until
    `python -m dim_lightning.config.docs --write` (`write_docs`), current after."""
    register_bound("shifted")(shifted_infonce)
    add_files(clone, {**BOUND_FILES, **DATA_FILES})
    add_switch(clone)
    follow_callback_recipe(clone, monkeypatch)
    options = docs.composed_options(clone / "conf")
    keys = (*BOUND_KEYS, *SWITCH_KEYS, *DATA_KEYS, *CALLBACK_KEYS)
    assert {m.split(" ")[0] for m in undescribed_keys(options)} == {key.name for key in keys}
    schema_line(*keys)
    assert undescribed_keys(options) == []
    assert docs.stale_files(clone, options) == ["docs/config.md", "README.md"]
    docs.write_docs(clone, options)
    assert docs.stale_files(clone, options) == []
    readme = (clone / "README.md").read_text()
    for group, name in (("estimator", "shifted"), ("data", "stripes"), ("callbacks", "step_recorder")):
        assert f"`{name}`" in row(readme, f"| `{group}` |")
