"""OmegaConf resolvers the config tree uses, registered when `dim_lightning` is imported.

`${dim.group_choice:estimator}` reads `choice(dv,infonce,...)`: every option of a config group on Hydra's search
path (`hydra.searchpath` included), so a search space (conf/hparams_search/optuna.yaml) covers a new estimator
YAML without listing it again."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def group_options(group: str, searchpath: list[str] | None = None) -> list[str]:
    """The option names of config group `group`: from the running Hydra's config loader (with `searchpath`),
    or, outside Hydra, from the package's own conf/ directory."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        overrides = ["hydra.searchpath=[" + ",".join(f"'{path}'" for path in searchpath) + "]"] if searchpath else []
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group, overrides=overrides))
    from dim_lightning.config import CONF_DIR

    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def group_choice(group: str, *, _root_: DictConfig) -> str:
    """`choice(a,b,...)` over every option of config group `group` (Hydra's sweep grammar)."""
    searchpath = OmegaConf.select(_root_, "hydra.searchpath", default=None)
    return "choice(" + ",".join(group_options(group, list(searchpath or []))) + ")"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("dim.group_choice"):
        OmegaConf.register_new_resolver("dim.group_choice", group_choice)
