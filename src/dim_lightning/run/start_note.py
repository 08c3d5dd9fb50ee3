"""The lines a run starts with: what is trained (the chosen config groups and the settings that matter most, as a
short tree), where the run goes, and the command that continues it after a stop, so nobody has to read to the end
of a log to find the run."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from dim_lightning.run.resume_command import continue_command

# group -> the keys shown beside its choice (the rest: <run dir>/.hydra/config.yaml)
SHOWN = {
    "data": ("data.image_size", "data.batch_size"),
    "encoder": (),
    "critic": (),
    "estimator": (),
    "prior": (),
    "model": ("model.alpha", "model.beta", "model.gamma", "model.z_dim", "model.lr"),
    "trainer": ("trainer.max_epochs", "trainer.devices", "trainer.precision"),
    "logger": (),
    "experiment": (),
    "debug": (),
}


def config_tree(cfg: DictConfig) -> list[str]:
    """One line per config group (its choice and the `SHOWN` values), then the command-line overrides."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = dict(hydra.runtime.choices) if hydra is not None else {}
    rows = []
    for group, keys in SHOWN.items():
        choice = choices.get(group)
        if choice is None and not keys:
            continue
        values = ", ".join(f"{key.split('.', 1)[1]}={OmegaConf.select(cfg, key)}" for key in keys)
        rows.append(f"{group}: {choice or '-'}" + (f"  ({values})" if values else ""))
    overrides = list(hydra.overrides.task) if hydra is not None else []
    rows.append("overrides: " + (" ".join(overrides) if overrides else "none"))
    return [("└── " if i == len(rows) - 1 else "├── ") + row for i, row in enumerate(rows)]


def start_note(cfg: DictConfig, run_dir: str | Path) -> str:
    """The run's opening log lines: the config tree, the run dir and the command that resumes the run."""
    run_dir = Path(run_dir).resolve()
    return "\n".join(
        [
            f"Config (every key: {run_dir / '.hydra' / 'config.yaml'})",
            *config_tree(cfg),
            f"Run dir: {run_dir} (train.log, checkpoints/last.ckpt, metrics.json)",
            "To resume after a stop (Ctrl-C, preemption, a crash): "
            + (continue_command(run_dir) or f"run the same config again in {run_dir} (resume=true)"),
        ]
    )
