"""A Hydra callback that checks a command before Hydra creates its run dir, so a refused command leaves nothing
behind (no run dir with an empty train.log for `dim-report` to list as broken): the config's validation, the
data set's layout (its data module's constructor; nothing is decoded) and the checkpoint file a command names.
The programs check again for Python callers (`train`, `evaluate`); a multirun's jobs are checked one by one
when they start (the sweep's overrides make each job's config)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from dim_lightning.config.validation import validate_config, validate_eval_config
from dim_lightning.errors import require, user_errors_exit
from dim_lightning.run.checkpoint_file import require_checkpoint_file


def check_train(cfg: DictConfig) -> None:
    validate_config(cfg)
    instantiate(cfg.data)
    if cfg.get("ckpt_path") not in (None, "last"):
        require_checkpoint_file(cfg.ckpt_path, f"ckpt_path={cfg.ckpt_path}")


def check_evaluate(cfg: DictConfig) -> None:
    validate_eval_config(cfg)
    require(cfg.get("ckpt") is not None, "ckpt= is missing: pass the checkpoint to evaluate, e.g. ckpt=<run>/last.ckpt")
    require_checkpoint_file(cfg.ckpt, f"ckpt={cfg.ckpt}")
    if cfg.get("data") is not None:
        instantiate(cfg.data)


CHECKS: dict[str, tuple[Callable[[DictConfig], None], str]] = {  # by the root config's name
    "train": (check_train, "train.py"),
    "evaluate": (check_evaluate, "python -m dim_lightning.evaluate"),
}


class ValidateFirst(Callback):
    """Runs the program's `CHECKS` on the composed config (less `hydra`) at the start of a single run, and of a
    multirun on its base config (the swept keys are checked per job)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    @staticmethod
    def _check(config: DictConfig) -> None:
        check, program = CHECKS.get(str(OmegaConf.select(config, "hydra.job.config_name")), (None, ""))
        if check is None:
            return
        HydraConfig.instance().set_config(config)  # for ${hydra:...} interpolations
        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        try:
            with user_errors_exit(program):
                check(task)
        except Exception:  # not a user error: the program meets it again and reports it (Hydra would only warn)
            return
