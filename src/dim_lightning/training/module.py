"""DIMModule: Deep InfoMax as a LightningModule, loss = alpha * global MI loss + beta * local MI loss + gamma *
prior loss. It only wires parts built elsewhere (encoder, `MITerm`s, prior; a term with weight 0 is not passed
in), from a config that `dim_lightning.config.validation` has checked (those rules are not re-checked here).
Logged per epoch (and on the train side per step as `train/<name>_step`, from this rank, without a collective):
`{train,val}/loss`, `/loss_<term>` and `/mi_<term>` (nats) for each term, `/prior`. Each checkpoint holds every
rank's RNG states (`dim_lightning.training.rng_state`), so a resumed deterministic run continues exactly. With
`whole_step=True` a training step is one compiled function (`dim_lightning.training.whole_step`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins.precision import MixedPrecision
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from dim_lightning.mi.negatives import Gather
from dim_lightning.models.encoders import EncoderOutput
from dim_lightning.models.mi_term import MITerm
from dim_lightning.run.distributed import contiguous_grad, gather_per_rank, own_rank_entry
from dim_lightning.run.lightning_compat import attached_trainer
from dim_lightning.training.optim import use_own_settings
from dim_lightning.training.restore_checks import require_resumable
from dim_lightning.training.rng_state import rng_states, set_rng_states
from dim_lightning.training.speed import Speedups
from dim_lightning.training.step_metrics import StepMetrics
from dim_lightning.training.whole_step import WholeStep

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
EPOCH_SUMS_KEY = "whole_step_epoch_sums"  # in a checkpoint: each rank's metric sums of the cut epoch
RNG_KEY = "rng_per_rank"  # in a checkpoint: each rank's global RNG states


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
        whole_step: bool = False,
    ) -> None:
        super().__init__()
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
        self.automatic_optimization = not whole_step
        self.metric_names = [f"{kind}_{name}" for name in self.terms for kind in ("loss", "mi")]
        self.metric_names += ["prior"] * (prior is not None) + ["loss"]  # the order `objective` returns them
        self.step_metrics = StepMetrics(len(self.metric_names)) if whole_step else None
        if whole_step:  # each rank's own sums: DDP must not overwrite them with rank 0's (broadcast_buffers)
            self._ddp_params_and_buffers_to_ignore = ["step_metrics.window_sum", "step_metrics.epoch_sum"]
        self._whole_step: WholeStep | None = None
        self._rng_to_restore: list[Any] | None = None  # from the checkpoint being resumed, until training starts
        self._optimizer_state_to_restore: dict[str, Any] | None = None  # Lightning restores it after on_fit_start

    def configure_model(self) -> None:
        """Lightning's hook before optimizers are made: channels_last / torch.compile when configured."""
        if self.speedups is not None:
            self.speedups.set_matmul_precision(self.device)
            self.speedups.apply(
                self.encoder, [term.critic for term in self.terms.values()], not self.automatic_optimization
            )

    def forward(self, images: Tensor) -> EncoderOutput:
        return self.encoder(images)

    def _gather(self, features: Tensor) -> tuple[Tensor, int]:
        """Collect features from every device with their gradient (negatives from the global batch)."""
        if attached_trainer(self) is None or self.trainer.world_size == 1:
            return features, 0
        gathered = contiguous_grad(self.all_gather(features, sync_grads=True))  # see contiguous_grad: gloo bug
        return gathered.flatten(0, 1), self.global_rank * features.shape[0]

    def objective(self, out: EncoderOutput, gather: Gather | None = None) -> dict[str, Tensor]:
        """The weighted loss and every term's loss and MI estimate (in the order of `metric_names`)."""
        logs: dict[str, Tensor] = {}
        loss = out.code.new_zeros(())
        for name, term in self.terms.items():
            bound = term(out, gather or self._gather)
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
        self._log(stage, "loss", loss.detach(), len(labels), prog_bar=True)
        if stage == "train":  # this rank's value: no collective, and no host read (not on the progress bar)
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, batch_size=len(labels))
        for name, value in logs.items():
            self._log(stage, name, value, len(labels))
        return self._outputs(loss, logs, out.Y, labels), out

    @staticmethod
    def _outputs(loss: Tensor, terms: dict[str, Tensor], mean: Tensor, labels: Tensor) -> dict[str, Any]:
        # "terms" (detached) lets the non-finite guard name the terms that diverged. The embedding is a copy: a
        # probe that keeps it for the epoch must not hold an output that a CUDA graph overwrites at its next replay.
        return {"loss": loss, "terms": terms, "embedding": mean.detach().clone(), "labels": labels}

    def _log(self, stage: str, name: str, value: Tensor, batch_size: int, **options) -> None:
        """An epoch mean, reduced across devices at the epoch's end (not every step)."""
        self.log(
            f"{stage}/{name}", value, on_step=False, on_epoch=True, batch_size=batch_size, sync_dist=True, **options
        )

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        if not self.automatic_optimization:
            return self._whole_training_step(*batch)
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

    def _whole_training_step(self, images: Tensor, labels: Tensor) -> dict[str, Any]:
        """One compiled step (through Lightning's optimizer wrapper, so its hooks and step counter run; Adam's
        own `step` then finds no `.grad` and does nothing). Metrics stay on the device until logged."""
        optimizer = self.optimizers().optimizer
        if self._whole_step is None or self._whole_step.optimizer is not optimizer:  # each fit makes its optimizer
            mode = self.speedups.compile_mode if self.speedups is not None else None
            self._whole_step = WholeStep(self.encoder, self.objective, optimizer, compile_mode=mode)
        result: list[Tensor] = []
        self.optimizers().step(closure=lambda: result.extend(self._whole_step(images)))
        metrics, mean = result
        self.step_metrics.add(metrics)
        if self.global_step % self.trainer.log_every_n_steps == 0:
            window = self.step_metrics.take_window()
            self.log_dict({f"train/{n}_step": v for n, v in zip(self.metric_names, window, strict=True)})
        values = dict(zip(self.metric_names, metrics, strict=True))
        return self._outputs(values.pop("loss"), values, mean, labels)

    def on_train_start(self) -> None:
        """Restore the resumed checkpoint's RNG states (after every callback's on_train_start), and under DDP
        with the whole step, switch off DDP's gradient-sync wait."""
        if self._rng_to_restore is not None:
            states = own_rank_entry(self._rng_to_restore)
            if states is None:
                rank_zero_warn("the checkpoint's RNG states are from another device count; they are not restored")
            else:
                set_rng_states(states)
            self._rng_to_restore = None
        if not self.automatic_optimization and self.trainer.world_size > 1:
            # The whole step averages gradients itself (one all-reduce); DDP's backward hooks never fire, so its
            # reducer must not wait for them.
            self.trainer.strategy.model.require_backward_grad_sync = False

    def on_train_epoch_end(self) -> None:
        if self.step_metrics is None or self.step_metrics.epoch_steps == 0:
            return
        means = self.step_metrics.take_epoch()
        for name, value in zip(self.metric_names, means, strict=True):
            self.log(f"train/{name}", value, on_epoch=True, sync_dist=True, prog_bar=name == "loss")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = gather_per_rank(rng_states())  # a collective: every rank builds the checkpoint
        if self.step_metrics is not None:  # every rank's sums of the cut epoch (a collective: all ranks save)
            checkpoint[EPOCH_SUMS_KEY] = gather_per_rank(self.step_metrics.state())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning's first restore hook: the whole checkpoint is checked against this run before any of it is
        restored (`require_resumable`), then the module's own parts are taken."""
        if attached_trainer(self) is not None:
            require_resumable(checkpoint, self.trainer, self, RNG_KEY, EPOCH_SUMS_KEY)
            self._optimizer_state_to_restore = checkpoint["optimizer_states"][0]
        self._rng_to_restore = checkpoint.get(RNG_KEY)
        state = own_rank_entry(checkpoint.get(EPOCH_SUMS_KEY)) if self.step_metrics is not None else None
        if state is not None:
            self.step_metrics.load(state)

    def on_fit_start(self) -> None:
        """Between the strategy's set-up (the optimizer exists, on the device) and Lightning's restore of the
        optimizer state: that state takes this run's settings and device flags (`use_own_settings`)."""
        if self._optimizer_state_to_restore is not None:
            use_own_settings(self._optimizer_state_to_restore, self.trainer.optimizers[0])
            self._optimizer_state_to_restore = None

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any] | None:
        if len(batch[1]) < 2:  # a last partial batch of one image has no negatives to score
            return None
        return self._step(batch, "val")[0]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """One optimizer: the encoder and critics in one parameter group; a prior's adversary, if any, in a
        second group with its own settings (`optimizer_group`)."""
        adversary = getattr(self.prior, "optimizer_group", None)
        options: dict[str, Any] = {"clips_under_mixed_precision": self._clips_under_mixed_precision()}
        if not self.automatic_optimization:  # the whole step's Adam: its step counts on the device (CUDA graphs)
            options.update(fused=False, capturable=self.device.type == "cuda")
        if adversary is None:
            return self.optimizer_factory(self.parameters(), **options)
        group = adversary()
        own = set(group["params"])
        return self.optimizer_factory([{"params": [p for p in self.parameters() if p not in own]}, group], **options)

    def _clips_under_mixed_precision(self) -> bool:
        """Lightning clips gradients (`trainer.gradient_clip_val`) under an automatic-mixed-precision plugin."""
        if attached_trainer(self) is None:
            return False
        clip = self.trainer.gradient_clip_val
        return bool(clip) and isinstance(self.trainer.precision_plugin, MixedPrecision)
