"""The training program behind `python train.py ...`: compose config, build parts, fit, evaluate."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from dim_lightning.builders import CONF_DIR, build_callbacks, build_datamodule, build_loggers, build_module
from dim_lightning.errors import require, user_errors_exit


def train(cfg: DictConfig) -> pl.Trainer:
    """Fit DIM as configured; the FinalEvaluation callback writes metrics.json into the run directory."""
    ckpt_path = cfg.get("ckpt_path")
    require(
        ckpt_path is None or Path(ckpt_path).is_file(),
        lambda: (
            f"ckpt_path={ckpt_path} is not a file; pass the path of a checkpoint written by a run, "
            "e.g. ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt"
        ),
    )
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, channels=datamodule.channels, image_size=datamodule.image_size)
    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    with user_errors_exit("train.py"):
        train(cfg)


if __name__ == "__main__":
    main()
