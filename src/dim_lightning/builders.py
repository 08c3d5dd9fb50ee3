"""Build the run's parts from a composed Hydra config (`hydra.utils.instantiate` on `_target_`s)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from dim_lightning.data.base import ArrayDataModule
from dim_lightning.errors import require
from dim_lightning.models import views
from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.models.mi_term import MITerm
from dim_lightning.module import DIMModule

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def build_datamodule(cfg: DictConfig) -> ArrayDataModule:
    return instantiate(cfg.data)


def _term(cfg: DictConfig, view, sample: EncoderOutput) -> MITerm:
    """An MI term: the critic is sized from one sample forward pass; each term gets its own estimator."""
    critic = instantiate(cfg.critic.network, code_dim=sample.code.shape[1], feature_dim=view(sample).shape[-1])
    return MITerm(view, critic, instantiate(cfg.critic.negatives), instantiate(cfg.estimator))


def build_module(cfg: DictConfig, channels: int, image_size: int) -> DIMModule:
    model = cfg.model
    encoder = instantiate(cfg.encoder, in_channels=channels, image_size=image_size, z_dim=model.z_dim)
    encoder.eval()
    with torch.no_grad():
        sample = encoder(torch.zeros(2, channels, image_size, image_size))
    encoder.train()
    require(
        cfg.prior is not None or model.gamma <= 0,
        f"model.gamma={model.gamma} weights a prior loss, but prior=none; choose prior=kl or set model.gamma=0",
    )
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
    )
    _check_objective(module, channels, image_size)
    return module


def _check_objective(module: DIMModule, channels: int, image_size: int) -> None:
    """One forward pass of the whole objective on a tiny batch, so a bad combination fails before training."""
    module.eval()
    with torch.no_grad():
        module.objective(module.encoder(torch.zeros(2, channels, image_size, image_size)))
    module.train()


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    return [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
