"""Callbacks that measure a run: online probes (per step, and every N epochs under DDP too), training
throughput, and the final evaluation that writes `metrics.json`, `eval.md` and pictures into the run dir."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from dim_lightning.atomic import atomic_write_text
from dim_lightning.eval.probe import knn_accuracy, linear_probe_accuracy
from dim_lightning.eval.suite import run_suite


class OnlineLinearProbe(pl.Callback):
    """A linear classifier trained alongside DIM on detached embeddings, with its own optimizer: a cheap,
    continuous read-out of representation quality. Logs `probe/online_train_acc` and `probe/online_val_acc`."""

    def __init__(self, lr: float = 1e-3) -> None:
        self.lr = lr
        self.classifier: nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.pending_state: dict[str, Any] | None = None
        self.accuracy: dict[str, MulticlassAccuracy] = {}

    def _ensure_classifier(self, trainer: pl.Trainer, embedding: Tensor) -> nn.Linear:
        if self.classifier is None:
            num_classes = trainer.datamodule.num_classes
            self.classifier = nn.Linear(embedding.shape[1], num_classes).to(embedding.device)
            self.optimizer = torch.optim.Adam(self.classifier.parameters(), lr=self.lr)
            self.accuracy = {
                split: MulticlassAccuracy(num_classes, average="micro", validate_args=False).to(embedding.device)
                for split in ("train", "val")
            }
            if self.pending_state is not None:
                self.classifier.load_state_dict(self.pending_state["classifier"])
                self.optimizer.load_state_dict(self.pending_state["optimizer"])
        return self.classifier

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if outputs.get("skipped"):  # a non-finite batch skipped by NonFiniteGuard
            return
        embedding, labels = outputs["embedding"].float(), outputs["labels"]
        classifier = self._ensure_classifier(trainer, embedding)
        with torch.enable_grad():
            logits = classifier(embedding)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.accuracy["train"].update(logits.detach(), labels)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        embedding = outputs["embedding"].float()
        with torch.no_grad():
            logits = self._ensure_classifier(trainer, embedding)(embedding)
        self.accuracy["val"].update(logits, outputs["labels"])

    def _log_and_reset(self, pl_module: pl.LightningModule, split: str) -> None:
        metric = self.accuracy.get(split)
        if metric is not None and metric.update_count > 0:
            pl_module.log(f"probe/online_{split}_acc", metric.compute())
            metric.reset()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._log_and_reset(pl_module, "train")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            self.accuracy["val"].reset()
            return
        self._log_and_reset(pl_module, "val")

    def state_dict(self) -> dict[str, Any]:
        if self.classifier is None:
            return {}
        return {"classifier": self.classifier.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending_state = state_dict or None


class ThroughputMonitor(pl.Callback):
    """Steady-state training throughput `train/img_per_s` (all devices), excluding the first
    `warmup_steps` steps and the gaps between epochs (validation, checkpointing). The clock is read (and
    a GPU synchronised) only where an epoch's timed window opens and closes, never inside it."""

    def __init__(self, warmup_steps: int = 10) -> None:
        self.warmup_steps = warmup_steps
        self.images = 0
        self.seconds = 0.0
        self.window: tuple[float, int] | None = None  # (start time, images so far) of the open window

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.window = None

    def _close(self, pl_module: pl.LightningModule) -> None:
        if self.window is not None and self.window[1] > 0:
            self.seconds += self._now(pl_module) - self.window[0]
            self.images += self.window[1]
        self.window = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step <= self.warmup_steps:
            return
        if self.window is None:
            self.window = (self._now(pl_module), 0)
            return
        self.window = (self.window[0], self.window[1] + len(batch[1]) * trainer.world_size)
        if batch_idx + 1 >= trainer.num_training_batches:
            self._close(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._close(pl_module)  # an epoch whose length was unknown
        if self.seconds > 0:
            pl_module.log("train/img_per_s", self.images / self.seconds, rank_zero_only=True)


def final_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """The run's last logged numbers with `/`-names, plus epoch and global_step."""
    metrics = {}
    for name, value in trainer.callback_metrics.items():
        if name.endswith("_step"):
            continue
        value = float(value)
        if math.isfinite(value):
            metrics[name.removesuffix("_epoch")] = value
    metrics["epoch"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    return metrics


class FinalEvaluation(pl.Callback):
    """At the end of fit (rank 0): `run_suite` on the final weights (`eval.suite`) with its baselines (raw
    pixels, and an untrained encoder of the same shape made by `random_encoder(run_config, channels,
    image_size, seed)` when `random_init_baseline`), retrieval pictures (also sent to W&B), and
    `metrics.json` with the training numbers. `enabled=False` (eval.final=false) keeps only the training numbers."""

    def __init__(
        self,
        output_dir: str,
        enabled: bool = True,
        suite: dict | None = None,
        random_init_baseline: bool = True,
        random_encoder: Callable[..., nn.Module] | None = None,
        seed: int = 0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.enabled = enabled
        self.suite = dict(suite or {})
        self.random_encoder = random_encoder if random_init_baseline else None
        self.seed = seed
        self.metrics: dict[str, float] = {}  # what metrics.json holds, once fit ends (rank 0)

    def _random_encoder(self, pl_module: pl.LightningModule, datamodule) -> nn.Module | None:
        run_config = pl_module.hparams.get("run_config")
        if self.random_encoder is None or run_config is None:
            return None
        shape = (datamodule.channels, datamodule.image_size)
        return self.random_encoder(OmegaConf.create(run_config), *shape, self.seed).to(pl_module.device)

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        datamodule = trainer.datamodule
        device = pl_module.device
        random_encoder = self._random_encoder(pl_module, datamodule)
        metrics = run_suite(
            pl_module.encoder, datamodule, self.output_dir, device, random_encoder, self.seed, **self.suite
        )
        pictures = sorted(self.output_dir.glob("retrieval_*.png"))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and pictures:
                logger.log_image(key="retrieval", images=[str(p) for p in pictures], caption=[p.stem for p in pictures])
        return metrics

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics = final_metrics(trainer)
        if self.enabled:
            metrics.update(self.evaluate(trainer, pl_module))
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if "/" in k}, step=trainer.global_step)
            logger.save()
        path = self.output_dir / "metrics.json"
        atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        self.metrics = metrics
        headline = (
            "probe/val_acc",
            "knn/val_acc",
            "baseline/pixels_probe_val_acc",
            "baseline/random_init_probe_val_acc",
        )
        summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in headline if k in metrics)
        rank_zero_info(f"Final evaluation: {summary or 'skipped (eval.final=false)'}; wrote {path}")


class EpochFeatureProbe(pl.Callback):
    """Collects the epoch's detached embeddings and labels from the training and validation steps; every
    `every_n_epochs` epochs, gathers them from all devices and scores them on rank 0 (`score`)."""

    metric_name = ""

    def __init__(self, every_n_epochs: int = 5) -> None:
        self.every_n_epochs = every_n_epochs
        self.bank: dict[str, list[tuple[Tensor, Tensor]]] = {"train": [], "val": []}

    def score(self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
        raise NotImplementedError

    def _due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.bank = {"train": [], "val": []}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(trainer) and not outputs.get("skipped"):
            self.bank["train"].append((outputs["embedding"].float(), outputs["labels"]))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._due(trainer):
            self.bank["val"].append((outputs["embedding"].float(), outputs["labels"]))

    def _gathered(self, pl_module: pl.LightningModule, split: str) -> tuple[Tensor, Tensor]:
        x = torch.cat([e for e, _ in self.bank[split]])
        y = torch.cat([lab for _, lab in self.bank[split]])
        if pl_module.trainer.world_size > 1:
            x, y = pl_module.all_gather(x).flatten(0, 1), pl_module.all_gather(y).flatten(0, 1)
        return x, y

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not (self._due(trainer) and self.bank["train"] and self.bank["val"]):
            return
        (train_x, train_y), (val_x, val_y) = self._gathered(pl_module, "train"), self._gathered(pl_module, "val")
        self.bank = {"train": [], "val": []}
        if trainer.is_global_zero:
            pl_module.log(self.metric_name, self.score(train_x, train_y, val_x, val_y), rank_zero_only=True)


class LinearProbe(EpochFeatureProbe):
    """Every N epochs, the linear probe fitted on the epoch's train embeddings, scored on val: `probe/epoch_val_acc`."""

    metric_name = "probe/epoch_val_acc"

    def score(self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
        return linear_probe_accuracy(train_x, train_y, val_x, val_y)


class KNNProbe(EpochFeatureProbe):
    """Every N epochs, weighted kNN of val embeddings among the epoch's train embeddings: `knn/epoch_val_acc`."""

    metric_name = "knn/epoch_val_acc"

    def __init__(self, every_n_epochs: int = 5, k: int = 20, temperature: float = 0.07) -> None:
        super().__init__(every_n_epochs)
        self.k = k
        self.temperature = temperature

    def score(self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
        return knn_accuracy(train_x, train_y, val_x, val_y, self.k, self.temperature)
