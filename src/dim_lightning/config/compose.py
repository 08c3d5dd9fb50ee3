"""Composed configs of every option of every config group (the options Hydra lists: conf/ files and plugins such as
hydra/launcher=submitit_local), for the docs generator and the test that every key has a schema entry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from dim_lightning.config.builders import CONF_DIR
from dim_lightning.config.validation import leaf_keys

ROOT = "(root)"
# Hydra's own keys that users set (run dirs, launchers, sweepers); the rest of `hydra.` is Hydra's run state.
HYDRA_USER_KEYS = ("hydra.run.", "hydra.sweep.", "hydra.sweeper.", "hydra.launcher.", "hydra.callbacks.")
HYDRA_USER_LEAVES = ("hydra.job.chdir", "hydra.mode")


@dataclass(frozen=True)
class Option:
    """One composed config: `group=name` on top of the defaults (group ROOT: the root config `name` itself)."""

    group: str
    name: str
    cfg: DictConfig


def every_option() -> list[Option]:
    """The train config with each option of each group (hydra node included), and both root configs as they are."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            groups = [g for g in loader.list_groups("") if g != "hydra"] + ["hydra/launcher", "hydra/sweeper"]
            options = [Option(ROOT, name, compose(name, return_hydra_config=True)) for name in ("train", "evaluate")]
            for group in sorted(groups):
                for name in loader.get_group_options(group):
                    cfg = compose("train", overrides=[f"{group}={name}"], return_hydra_config=True)
                    options.append(Option(group, name, cfg))
            return options
    finally:
        GlobalHydra.instance().clear()


def user_keys(cfg: DictConfig) -> Iterable[str]:
    """Every dotted leaf key of a composed config that a user may set (Hydra's run state left out)."""
    for key, _ in leaf_keys(cfg):
        if not key.startswith("hydra.") or key.startswith(HYDRA_USER_KEYS) or key in HYDRA_USER_LEAVES:
            yield key
