"""The config schema: every key of every composed config (each option of each group, each experiment preset) has
exactly one entry; the defaults pass it; docs/config.md and the README's table are what the schema generates."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import ModuleType

import pytest
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from dim_lightning.config import CONF_DIR, docs
from dim_lightning.config.compose import Option, undescribed_keys, user_keys
from dim_lightning.config.schema import GROUPS, SCHEMA, _merged
from dim_lightning.config.schema.key import Key
from dim_lightning.config.validation import config_problems, validate_eval_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def options():
    return docs.composed_options()


def test_every_key_of_every_option_has_a_schema_entry(options) -> None:
    groups = {o.group for o in options}
    assert {"experiment", "data", "debug", "hparams_search", "hydra/launcher"} <= groups
    missing = undescribed_keys(options)
    assert not missing, f"keys without a schema entry (add them to src/dim_lightning/config/schema/): {missing}"


def test_a_key_added_to_conf_without_an_entry_is_caught(options) -> None:
    cfg = options[0].cfg.copy()
    with open_dict(cfg):
        cfg.model.momentum = 0.9
    assert undescribed_keys([Option("model", "momentum", cfg)]) == ["model.momentum (model=momentum)"]


def test_entries_no_config_composes_are_real_trainer_arguments(options) -> None:
    composed = {key for o in options for key in user_keys(o.cfg)}
    unused = set(SCHEMA) - composed
    trainer_args = set(inspect.signature(pl.Trainer.__init__).parameters)
    assert unused and all(k.startswith("trainer.") and k.split(".")[1] in trainer_args for k in unused), unused


# Keys of Hydra's config that dim-lightning does not describe (docs/config.md links Hydra's and the plugins' docs)
HYDRAS_OWN = {
    "hydra.job.chdir": ["hydra.job.chdir=true"],
    "hydra.launcher.timeout_min": ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=60"],
    "hydra.sweeper.n_trials": ["hparams_search=optuna", "hydra.sweeper.n_trials=3"],
}


@pytest.mark.parametrize("overrides", HYDRAS_OWN.values(), ids=HYDRAS_OWN.keys())
def test_hydras_and_its_plugins_keys_pass_through_untouched(overrides: list[str]) -> None:
    """They compose with the value set, have no schema entry to miss, and validation passes the config with its
    hydra node (Hydra and the plugins check their own keys)."""
    key, value = overrides[-1].split("=")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert str(OmegaConf.select(cfg, key)).lower() == value and key not in SCHEMA
    assert undescribed_keys([Option("hydra", overrides[0], cfg)]) == []
    with open_dict(cfg):
        cfg.paths.output_dir = "outputs/run"
    assert config_problems(cfg) == []


def test_a_key_is_described_once() -> None:
    twice = (Key("model.alpha", GROUPS[0].KEYS[0].check, "again"),)
    fake_group = ModuleType("fake")
    fake_group.KEYS = twice
    with pytest.raises(ValueError, match=r"model\.alpha is described twice"):
        _merged((*GROUPS, fake_group))


def test_every_default_and_preset_passes_validation(options, tmp_path) -> None:
    for option in options:
        cfg = option.cfg.copy()
        with open_dict(cfg):
            del cfg.hydra
            cfg.paths.output_dir = str(tmp_path)
        if option.name == "evaluate":
            validate_eval_config(cfg)
        else:
            assert config_problems(cfg) == [], (option.group, option.name)


def test_docs_config_md_and_the_readme_table_are_current(options) -> None:
    stale = docs.stale_files(REPO, options)
    assert not stale, f"{stale} are stale: run `python -m dim_lightning.config.docs --write`"
    expected = docs.config_md(options)
    for key in SCHEMA:
        assert f"| `{key}` |" in expected
    section = docs.readme_section(options)
    for key in ("model.alpha", "model.beta", "model.gamma", "model.z_dim", "trainer.devices", "`estimator`"):
        assert key in section
    assert "docs/config.md" in section


def test_a_changed_description_makes_the_docs_stale(options, monkeypatch) -> None:
    before = docs.config_md(options)
    model = next(g for g in GROUPS if g.GROUP == "model")
    changed = tuple(Key(k.name, k.check, k.meaning + " (changed)") if k.name == "model.beta" else k for k in model.KEYS)
    monkeypatch.setattr(model, "KEYS", changed)
    after = docs.config_md(options)
    assert after != before and "(changed)" in after


def test_defaults_are_read_per_option(options) -> None:
    values = docs._values(options)
    assert docs.default_text("data.image_size", "data", values) == "`32`; tiny_imagenet: `64`"
    assert docs.default_text("data.root", "data", values) == "cifar10, image_folder, tiny_imagenet: `null`"
    assert docs.default_text("estimator.tau", "estimator", values) == "smile: `5.0`"


def test_feature_places_come_from_the_evaluation_registry(make_config, monkeypatch) -> None:
    from dim_lightning.eval.features import PLACES

    assert list(PLACES) == ["conv", "fc", "Y"]
    problems = config_problems(make_config("eval.suite.places=[pool,Y]"))
    assert any("each item one of conv, fc, Y" in p for p in problems), problems


def test_adam_keys_live_only_under_model_optimizer(make_config) -> None:
    cfg = make_config("model.optimizer.betas=[0.5,0.999]", "prior=adversarial", "model.gamma=0.1")
    assert list(cfg.prior.betas) == [0.5, 0.999]  # the discriminator follows the encoder's Adam betas
    optimizer = OmegaConf.to_container(cfg.model.optimizer, resolve=True)
    assert optimizer["betas"] == [0.5, 0.999] and optimizer["lr"] == cfg.model.lr
