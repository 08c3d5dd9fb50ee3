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
from omegaconf import DictConfig, open_dict, read_write

from dim_lightning.config.validation import validate_config, validate_eval_config
from dim_lightning.errors import user_errors_exit
from dim_lightning.run.checkpoint_file import require_checkpoint_file


def check_train(cfg: DictConfig) -> None:
    validate_config(cfg)
    instantiate(cfg.data)
    if cfg.get("ckpt_path") not in (None, "last"):
        require_checkpoint_file(cfg.ckpt_path, f"ckpt_path={cfg.ckpt_path}")


def check_evaluate(cfg: DictConfig) -> None:
    validate_eval_config(cfg)
    require_checkpoint_file(cfg.ckpt, f"ckpt={cfg.ckpt}")
    if cfg.get("data") is not None:
        instantiate(cfg.data)


CHECKS: dict[str, tuple[Callable[[DictConfig], None], str]] = {
    "train": (check_train, "train.py"),
    "evaluate": (check_evaluate, "python -m dim_lightning.evaluate"),
}


class ValidateFirst(Callback):
    """Runs the task's `CHECKS` on the composed config (less `hydra`) at the start of a single run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check, program = CHECKS.get(str(config.get("task_name")), (None, ""))
        if check is None:
            return
        with user_errors_exit(program):
            HydraConfig.instance().set_config(config)  # for ${hydra:...} interpolations
            task = copy.deepcopy(config)
            with read_write(task), open_dict(task):
                del task["hydra"]
            check(task)
