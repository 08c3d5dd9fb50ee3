"""DIMModule: Deep InfoMax as a LightningModule.

loss = alpha * global MI loss + beta * local MI loss + gamma * prior loss. The module only wires parts
built elsewhere (encoder, `MITerm`s, prior); a term with weight 0 is simply not passed in.
Logged per step/epoch: `{train,val}/loss`, `/loss_<term>` and `/mi_<term>` (nats) for each term, `/prior`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from dim_lightning.errors import require
from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.models.mi_term import MITerm

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class DIMModule(pl.LightningModule):
    def __init__(
        self,
        encoder: nn.Module,
        optimizer: OptimizerFactory,
        local_term: MITerm | None = None,
        global_term: MITerm | None = None,
        prior: nn.Module | None = None,
        alpha: float = 0.0,
        beta: float = 1.0,
        gamma: float = 0.0,
        run_config: dict | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            require(value >= 0, f"model.{name} is a loss weight and must be >= 0, got {value}")
        require(
            local_term is not None or global_term is not None,
            "nothing to train: both MI weights are 0; set model.alpha (global MI) or model.beta (local MI) > 0",
        )
        # run_config (the whole resolved Hydra config) is saved in checkpoints, so a checkpoint alone
        # rebuilds its model, and it is logged as the run's hyperparameters.
        self.save_hyperparameters("alpha", "beta", "gamma", "run_config")
        self.encoder = encoder
        self.terms = nn.ModuleDict({k: v for k, v in (("local", local_term), ("global", global_term)) if v})
        self.term_weights = {"local": beta, "global": alpha}
        self.prior = prior
        self.gamma = gamma
        self.optimizer_factory = optimizer
        # A prior with an adversary (a discriminator with its own optimizer) needs manual optimization.
        self.has_adversary = hasattr(prior, "discriminator_loss")
        self.automatic_optimization = not self.has_adversary

    def forward(self, images: Tensor) -> EncoderOutput:
        return self.encoder(images)

    def _gather(self, features: Tensor) -> tuple[Tensor, int]:
        """Collect features from every device with their gradient (negatives from the global batch)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return features, 0
        gathered = self.all_gather(features, sync_grads=True)
        return gathered.flatten(0, 1), self.global_rank * features.shape[0]

    def objective(self, out: EncoderOutput) -> dict[str, Tensor]:
        """The weighted loss and every term's loss and MI estimate."""
        logs: dict[str, Tensor] = {}
        loss = out.code.new_zeros(())
        for name, term in self.terms.items():
            bound = term(out, self._gather)
            logs[f"loss_{name}"] = bound.loss.detach()
            logs[f"mi_{name}"] = bound.mi
            loss = loss + self.term_weights[name] * bound.loss
        if self.prior is not None:
            prior_loss = self.prior(out)
            logs["prior"] = prior_loss.detach()
            loss = loss + self.gamma * prior_loss
        logs["loss"] = loss
        return logs

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> tuple[dict[str, Any], EncoderOutput]:
        images, labels = batch
        out = self.encoder(images)
        logs = self.objective(out)
        loss = logs.pop("loss")
        self._log(stage, "loss", loss.detach(), len(labels), prog_bar=True, on_step=stage == "train")
        for name, value in logs.items():
            self._log(stage, name, value, len(labels))
        # "terms" (detached) lets the non-finite guard name the terms that diverged
        return {"loss": loss, "terms": logs, "embedding": out.mean.detach(), "labels": labels}, out

    def _log(self, stage: str, name: str, value: Tensor, batch_size: int, **options) -> None:
        options = {"on_step": False, **options}
        self.log(f"{stage}/{name}", value, on_epoch=True, batch_size=batch_size, sync_dist=True, **options)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        outputs, out = self._step(batch, "train")
        if not self.has_adversary:
            return outputs
        # The adversary's loss sees detached codes and the encoder's prior term sees detached adversary
        # weights, so one backward pass gives each optimizer exactly its own side's gradients.
        optimizers = self.optimizers()
        adversary_loss = self.prior.discriminator_loss(out)
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(outputs["loss"] + adversary_loss)
        for optimizer in optimizers:
            optimizer.step()
        self._log("train", "prior_discriminator", adversary_loss.detach(), len(batch[1]))
        return {**outputs, "loss": outputs["loss"].detach()}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        return self._step(batch, "val")[0]

    def configure_optimizers(self):
        """One optimizer for the encoder and critics; the prior's adversary, if any, brings its own."""
        if not self.has_adversary:
            return self.optimizer_factory(self.parameters())
        adversary_parameters = set(self.prior.parameters())
        optimizer = self.optimizer_factory(p for p in self.parameters() if p not in adversary_parameters)
        return [optimizer, self.prior.make_optimizer()]
