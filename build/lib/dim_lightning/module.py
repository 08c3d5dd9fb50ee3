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

from dim_lightning.distributed import contiguous_grad
from dim_lightning.errors import require
from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.models.mi_term import MITerm
from dim_lightning.speed import Speedups

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
        speedups: Speedups | None = None,
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
        self.speedups = speedups

    def configure_model(self) -> None:
        """Lightning's hook before optimizers are made: channels_last / torch.compile when configured."""
        if self.speedups is not None:
            self.speedups.apply(self.encoder, [term.critic for term in self.terms.values()])

    def forward(self, images: Tensor) -> EncoderOutput:
        return self.encoder(images)

    def _gather(self, features: Tensor) -> tuple[Tensor, int]:
        """Collect features from every device with their gradient (negatives from the global batch)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return features, 0
        gathered = contiguous_grad(self.all_gather(features, sync_grads=True))  # see contiguous_grad: gloo bug
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
        discriminator_loss = getattr(self.prior, "discriminator_loss", None)
        if discriminator_loss is None:
            return outputs
        # The adversary's loss sees detached codes and the encoder's prior term sees detached adversary
        # weights, so the summed loss gives each side exactly its own gradients, and one optimizer step
        # (one parameter group per side) is one training step.
        adversary_loss = discriminator_loss(out)
        self._log("train", "prior_discriminator", adversary_loss.detach(), len(batch[1]))
        return {**outputs, "loss": outputs["loss"] + adversary_loss}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any] | None:
        if len(batch[1]) < 2:  # a last partial batch of one image has no negatives to score
            return None
        return self._step(batch, "val")[0]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One optimizer: the encoder and critics in one parameter group; a prior's adversary, if any, in a
        second group with its own settings (`optimizer_group`)."""
        adversary = getattr(self.prior, "optimizer_group", None)
        if adversary is None:
            return self.optimizer_factory(self.parameters())
        group = adversary()
        own = set(group["params"])
        return self.optimizer_factory([{"params": [p for p in self.parameters() if p not in own]}, group])
