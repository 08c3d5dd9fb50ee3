"""The training program behind `python train.py ...`: compose config, build parts, fit, evaluate."""

from __future__ import annotations

from dataclasses import dataclass

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_info

from dim_lightning import resume_policy
from dim_lightning.callbacks.preemption import exit_on_preemption
from dim_lightning.config import CONF_DIR
from dim_lightning.config.builders import (
    build_callback,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
    buildable_targets,
)
from dim_lightning.config.validation import validate_config
from dim_lightning.errors import user_errors_exit
from dim_lightning.eval.callbacks import FinalEvaluation, final_metrics
from dim_lightning.eval.metrics import optimized_value
from dim_lightning.run.distributed import global_batch_note, run_scoped_process_group
from dim_lightning.run.log_routing import route_lightning_logs
from dim_lightning.run.run_dir import prepare
from dim_lightning.run.start_note import start_note

FINAL_EVALUATION = "final_evaluation"  # callbacks.final_evaluation: the evaluation that ends a run


@dataclass
class RunResult:
    """What a run ends with: its final numbers (what metrics.json holds on rank 0) and the fitted trainer."""

    metrics: dict[str, float]
    trainer: pl.Trainer | None  # None when the run dir held a complete run (nothing was trained)


def train(cfg: DictConfig) -> RunResult:
    """Fit DIM as configured; the run's `FinalEvaluation` writes metrics.json into the run directory and gives
    `train` the run's numbers. The same command in a run dir that holds a run continues or completes it
    (`resume_policy`)."""
    route_lightning_logs()
    validate_config(cfg)
    decision = resume_policy.decide(cfg, buildable_targets(cfg))
    if decision.complete_metrics is not None:
        return RunResult(metrics=decision.complete_metrics, trainer=None)
    rank_zero_info(start_note(cfg, cfg.paths.output_dir))
    with open_dict(cfg):
        cfg.ckpt_path = decision.ckpt_path
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, channels=datamodule.channels, image_size=datamodule.image_size)
    loggers = build_loggers(cfg)
    evaluation: FinalEvaluation | None = build_callback(cfg, FINAL_EVALUATION)  # train reads its numbers
    callbacks = build_callbacks(cfg, leave_out=[FINAL_EVALUATION]) + ([evaluation] if evaluation else [])
    trainer = build_trainer(cfg, callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        prepare(cfg.paths.output_dir, set_aside_earlier_run=decision.set_aside)
        negatives = str(OmegaConf.select(cfg, "critic.negatives._target_", default=""))
        rank_zero_info(global_batch_note(cfg.data.batch_size, trainer.world_size, negatives))
    with run_scoped_process_group(), exit_on_preemption(trainer):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = evaluation.run_metrics(trainer) if evaluation is not None else final_metrics(trainer)
    return RunResult(metrics=metrics, trainer=trainer)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train; return `optimized_metric` (default probe/val_acc) so Hydra sweepers (Optuna) can optimise it."""
    with user_errors_exit("train.py"):
        return optimized_value(train(cfg).metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
