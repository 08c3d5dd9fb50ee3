"""Composed configs of every option of every config group (the options Hydra lists: conf/ files and plugins such as
hydra/launcher=submitit_local), for the docs generator and the check that every key has a schema entry. Both take
the config tree as an argument, so a test can run them on a copy of conf/ with a new option added."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from dim_lightning.config import CONF_DIR
from dim_lightning.config.schema import SCHEMA
from dim_lightning.config.validation import leaf_keys

ROOT = "(root)"
# The keys of Hydra's config that are dim-lightning's (the run dirs, its own Hydra callbacks); every other `hydra.`
# key is Hydra's or a plugin's, described and checked by them.
OUR_HYDRA_KEYS = ("hydra.run.dir", "hydra.sweep.dir")
OUR_HYDRA_GROUPS = ("hydra.callbacks.",)


@dataclass(frozen=True)
class Option:
    """One composed config: `group=name` on top of the defaults (group ROOT: the root config `name` itself);
    `yaml`: the option's file in the config tree (None for a Hydra plugin's option)."""

    group: str
    name: str
    cfg: DictConfig
    yaml: Path | None = None


def every_option(conf_dir: Path = CONF_DIR, only: Collection[str] | None = None) -> list[Option]:
    """The train config with each option of each group (hydra node included), and both root configs as they are;
    `only`: just these options (`group=name`) besides the root configs."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            listed = [g for g in loader.list_groups("") if g != "hydra"] + ["hydra/launcher", "hydra/sweeper"]
            options = [Option(ROOT, name, compose(name, return_hydra_config=True)) for name in ("train", "evaluate")]
            for group in sorted(listed):
                for name in loader.get_group_options(group):
                    if only is not None and f"{group}={name}" not in only:
                        continue
                    cfg = compose("train", overrides=[f"{group}={name}"], return_hydra_config=True)
                    yaml = conf_dir / group / f"{name}.yaml"
                    options.append(Option(group, name, cfg, yaml if yaml.is_file() else None))
            return options
    finally:
        GlobalHydra.instance().clear()


def user_keys(cfg: DictConfig) -> Iterable[str]:
    """Every dotted leaf key of a composed config that dim-lightning describes: all but Hydra's and its plugins'."""
    for key, _ in leaf_keys(cfg):
        if not key.startswith("hydra.") or key in OUR_HYDRA_KEYS or key.startswith(OUR_HYDRA_GROUPS):
            yield key


def undescribed_keys(options: Sequence[Option]) -> list[str]:
    """`key (group=option)` for each key of a composed config that no schema module describes (what CI refuses)."""
    return sorted({f"{key} ({o.group}={o.name})" for o in options for key in user_keys(o.cfg) if key not in SCHEMA})


def data_option(target: str | None, conf_dir: Path = CONF_DIR) -> str | None:
    """The `data=` option (conf/data/<name>.yaml) whose data module is `target`, if one is."""
    for file in sorted((conf_dir / "data").glob("*.yaml")):
        if (yaml.safe_load(file.read_text()) or {}).get("_target_") == target:
            return file.stem
    return None


def option_config(group: str, option: str, conf_dir: Path = CONF_DIR) -> DictConfig:
    """Config group `group` as conf/ defines its option `option` in the train config, resolved (inside a Hydra app
    through the app's own config search path)."""
    overrides = [f"{group}={option}"]
    if GlobalHydra.instance().is_initialized():
        cfg = compose("train", overrides=overrides)
    else:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    return OmegaConf.create(OmegaConf.to_container(cfg[group], resolve=True))
