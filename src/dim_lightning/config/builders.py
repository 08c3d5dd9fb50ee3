"""Build the run's parts from a composed Hydra config (`hydra.utils.instantiate` on `_target_`s), with the
arguments that are constants of dim-lightning, not settings: where the run's files go (`run_dir_settings`) and
that the data module shards batches itself (`TRAINER_SETTINGS`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dim_lightning.config import CONF_DIR
from dim_lightning.config.saved import build_within, input_channels, saved_run_config
from dim_lightning.data.base import ArrayDataModule
from dim_lightning.errors import require
from dim_lightning.models import views
from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.models.mi_term import MITerm
from dim_lightning.run.checkpoints import CHECKPOINT_DIR, read_checkpoint
from dim_lightning.run.distributed import distributed_options
from dim_lightning.run.untrusted import Targets, conf_targets, merge_targets, targets_by_group
from dim_lightning.training.module import DIMModule
from dim_lightning.training.speed import Speedups

TRAINER_SETTINGS = {"use_distributed_sampler": False}  # Lightning wraps no DistributedSampler around the loaders:
SHARDING = "the data module shards batches itself: the same order on any device count, exact resume"
RUN_FILES = "resume, sweeps and dim-report read the run's files there; move a whole run with hydra.run.dir"


def run_dir_settings(run_dir: str) -> dict[str, dict[str, Any]]:
    """The arguments of the callbacks (by name under `callbacks`) that write the run's own files: only
    `<run dir>/checkpoints/last.ckpt` and `<run dir>/metrics.json`."""
    checkpoints = str(Path(run_dir) / CHECKPOINT_DIR)
    last_only = {"save_last": True, "save_top_k": 0, "enable_version_counter": False}  # never last-v1.ckpt
    return {
        "model_checkpoint": {"dirpath": checkpoints, **last_only},
        "epoch_checkpoint": {"dirpath": checkpoints},
        "preemption_checkpoint": {"dirpath": checkpoints},
        "final_evaluation": {"output_dir": run_dir},
    }


def instantiate_fixed(node: DictConfig, where: str, fixed: Mapping[str, Any], why: str, **arguments: Any) -> Any:
    """`instantiate(node, **fixed, **arguments)`; `fixed` are dim-lightning's constants (`why`), so a config that
    adds one of them (`+trainer.use_distributed_sampler=true`) is refused, never silently overridden."""
    added = [name for name in fixed if name in node]
    require(not added, lambda: f"{where}.{added[0]} is not a setting: dim-lightning fixes it ({why}); remove it")
    return instantiate(node, **fixed, **arguments)


def build_datamodule(cfg: DictConfig) -> ArrayDataModule:
    return instantiate(cfg.data)


def _term(cfg: DictConfig, view, sample: EncoderOutput) -> MITerm:
    """An MI term: the critic is sized from one sample forward pass; each term gets its own estimator."""
    critic = instantiate(cfg.critic.network, code_dim=sample.code.shape[1], feature_dim=view(sample).shape[-1])
    return MITerm(view, critic, instantiate(cfg.critic.negatives), instantiate(cfg.estimator))


def build_encoder(cfg: DictConfig, channels: int, image_size: int) -> torch.nn.Module:
    return instantiate(cfg.encoder, in_channels=channels, image_size=image_size, z_dim=cfg.model.z_dim)


def build_random_encoder(cfg: DictConfig, channels: int, image_size: int, seed: int) -> torch.nn.Module:
    """An untrained encoder of the run's shape, the same for a given seed: the baseline a learned
    representation must beat."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(cfg, channels, image_size)


def build_module(cfg: DictConfig, channels: int, image_size: int) -> DIMModule:
    model = cfg.model
    encoder = build_encoder(cfg, channels, image_size)
    encoder.eval()
    with torch.no_grad():
        sample = encoder(torch.zeros(2, channels, image_size, image_size))
    encoder.train()
    whole_step = bool(model.get("whole_step", False))
    module = DIMModule(
        encoder=encoder,
        optimizer=instantiate(model.optimizer),
        local_term=_term(cfg, views.local_features, sample) if model.beta > 0 else None,
        global_term=_term(cfg, instantiate(cfg.critic.global_view), sample) if model.alpha > 0 else None,
        prior=instantiate(cfg.prior) if cfg.prior is not None and model.gamma > 0 else None,
        alpha=model.alpha,
        beta=model.beta,
        gamma=model.gamma,
        run_config=OmegaConf.to_container(cfg, resolve=True),
        speedups=Speedups(
            model.get("channels_last", False),
            model.get("compile", False),
            model.get("compile_mode"),
            model.get("matmul_precision"),
        ),
        whole_step=whole_step,
    )
    _check_objective(module, channels, image_size)
    return module


def _check_objective(module: DIMModule, channels: int, image_size: int) -> None:
    """One forward pass of the whole objective on a tiny batch, so a bad combination fails before training (not
    on the meta device, where a module is built for its shapes alone and autocast does not run)."""
    if next(module.parameters()).is_meta:
        return
    module.eval()
    with torch.no_grad():
        module.objective(module.encoder(torch.zeros(2, channels, image_size, image_size)))
    module.train()


def build_random_init_baseline(
    cfg: DictConfig, datamodule: ArrayDataModule, seed: int, device: torch.device
) -> torch.nn.Module:
    """The random-init baseline of a run of config `cfg` on `datamodule`'s images: `build_random_encoder` of that
    image shape, on `device` (what the final evaluation and `dim_lightning.evaluate` compare against)."""
    return build_random_encoder(cfg, datamodule.channels, datamodule.image_size, seed).to(device)


def build_callback(cfg: DictConfig, name: str) -> pl.Callback | None:
    """`callbacks.<name>` with the run dir's arguments it takes (`run_dir_settings`); None when it is switched off
    (`callbacks.<name>=null`)."""
    node = (cfg.get("callbacks") or {}).get(name)
    if node is None:
        return None
    fixed = run_dir_settings(cfg.paths.output_dir).get(name, {})
    return instantiate_fixed(node, f"callbacks.{name}", fixed, RUN_FILES)


def build_callbacks(cfg: DictConfig, leave_out: Collection[str] = ()) -> list[pl.Callback]:
    """The configured callbacks but those named in `leave_out` (the caller builds those itself); the progress bar
    and the model summary are left out when `trainer.enable_progress_bar=false` (Lightning refuses a progress-bar
    callback with the bar disabled) or `trainer.enable_model_summary=false`."""
    built = [build_callback(cfg, name) for name in (cfg.get("callbacks") or {}) if name not in leave_out]
    callbacks = [callback for callback in built if callback is not None]
    if cfg.trainer.get("enable_progress_bar", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    if cfg.trainer.get("enable_model_summary", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ModelSummary)]
    return callbacks


def build_trainer(cfg: DictConfig, callbacks: list[pl.Callback], **arguments: Any) -> pl.Trainer:
    """The Trainer of `cfg.trainer` with `callbacks`, `TRAINER_SETTINGS`, the DDP options of its devices
    (`distributed_options`) and `arguments` (its loggers; a benchmark's step limits)."""
    options = {**distributed_options(cfg.trainer), **arguments}
    return instantiate_fixed(cfg.trainer, "trainer", TRAINER_SETTINGS, SHARDING, callbacks=callbacks, **options)


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def buildable_targets(trusted: DictConfig | None = None) -> Targets:
    """What a config restored from a checkpoint may build, per config group: every `_target_` that conf/ names
    there, and those of the user's own config `trusted` (the command line is trusted input; a checkpoint is not)."""
    own = OmegaConf.to_container(trusted, resolve=False) if trusted is not None else {}
    return merge_targets(conf_targets(CONF_DIR), targets_by_group(own))


@dataclass
class SavedModel:
    """A trained module rebuilt from a checkpoint, its saved run config (what is rebuilt of it:
    `dim_lightning.config.saved`) and the images its encoder takes."""

    module: DIMModule
    config: DictConfig
    channels: int
    image_size: int


def load_checkpoint(path: str, trust: bool = False, trusted: DictConfig | None = None) -> SavedModel:
    """The trained module of a checkpoint written by `train.py`. The file is read as data (unless `trust`): its
    run config may only build `buildable_targets(trusted)`, is validated as train.py validates a config and
    gives no paths, and the module is built only once its shapes match the weights in the file."""
    require(path is not None, "ckpt= is missing; pass a checkpoint written by train.py")
    where = f"ckpt={path}"
    checkpoint = read_checkpoint(path, key="ckpt", trust=trust, allowed_targets=buildable_targets(trusted))
    cfg = saved_run_config(checkpoint, where, trust)
    weights = checkpoint["state_dict"]
    channels, image_size = input_channels(weights), int(cfg.data.image_size)
    module = build_within(lambda: build_module(cfg, channels, image_size), weights, where)
    return SavedModel(module, cfg, channels, image_size)
