"""The training program behind `python train.py ...`: compose config, build parts, fit, evaluate."""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from dim_lightning.builders import CONF_DIR, build_callbacks, build_datamodule, build_loggers, build_module
from dim_lightning.callbacks.preemption import exit_on_preemption
from dim_lightning.checkpoints import resolve_ckpt_path
from dim_lightning.errors import user_errors_exit
from dim_lightning.logs import route_lightning_logs
from dim_lightning.validation import validate_config


def train(cfg: DictConfig) -> pl.Trainer:
    """Fit DIM as configured; the FinalEvaluation callback writes metrics.json into the run directory."""
    route_lightning_logs()
    validate_config(cfg)
    cfg.ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, channels=datamodule.channels, image_size=datamodule.image_size)
    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    with exit_on_preemption(trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    return trainer


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors_exit("train.py"):
        train(cfg)


if __name__ == "__main__":
    main()
