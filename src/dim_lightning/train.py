"""The training program behind `python train.py ...`: compose config, build parts, fit, evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from dim_lightning.builders import CONF_DIR, build_callbacks, build_datamodule, build_loggers, build_module
from dim_lightning.distributed import distributed_options, run_scoped_process_group
from dim_lightning.errors import require, user_errors_exit
from dim_lightning.eval.callbacks import FinalEvaluation, final_metrics
from dim_lightning.sweep_summary import optimized_value


@dataclass
class RunResult:
    """What a run ends with: its final numbers (what metrics.json holds on rank 0) and the fitted trainer."""

    metrics: dict[str, float]
    trainer: pl.Trainer


def train(cfg: DictConfig) -> RunResult:
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
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=build_callbacks(cfg), logger=loggers or False, **distributed_options(cfg.trainer)
    )
    with run_scoped_process_group():
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    evaluation = next((c for c in trainer.callbacks if isinstance(c, FinalEvaluation)), None)
    return RunResult(metrics=(evaluation and evaluation.metrics) or final_metrics(trainer), trainer=trainer)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return `optimized_metric` (default probe/val_acc) so Hydra sweepers (Optuna) can optimise it."""
    with user_errors_exit("train.py"):
        return optimized_value(train(cfg).metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
