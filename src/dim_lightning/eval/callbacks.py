"""Callbacks that measure a run: online linear probe, training throughput, and the final evaluation that
writes `metrics.json` and the retrieval pictures into the run directory."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from dim_lightning.eval.features import extract_codes, flat_pixels
from dim_lightning.eval.probe import knn_accuracy, linear_probe_accuracy
from dim_lightning.eval.retrieval import save_retrieval_grids


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
                split: MulticlassAccuracy(num_classes, average="micro").to(embedding.device)
                for split in ("train", "val")
            }
            if self.pending_state is not None:
                self.classifier.load_state_dict(self.pending_state["classifier"])
                self.optimizer.load_state_dict(self.pending_state["optimizer"])
        return self.classifier

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
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
    `warmup_steps` steps and the gaps between epochs (validation, checkpointing)."""

    def __init__(self, warmup_steps: int = 10) -> None:
        self.warmup_steps = warmup_steps
        self.images = 0
        self.seconds = 0.0
        self.last_end: float | None = None

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.last_end = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now(pl_module)
        if self.last_end is not None and trainer.global_step > self.warmup_steps:
            self.images += len(batch[1]) * trainer.world_size
            self.seconds += now - self.last_end
        self.last_end = now

    def on_train_epoch_end(self, trainer, pl_module) -> None:
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
    """At the end of fit (rank 0): linear probe and kNN on frozen codes of the train/val splits, the same
    probe on raw pixels (`baseline/pixels_probe_val_acc`), retrieval pictures, and `metrics.json`."""

    def __init__(
        self,
        output_dir: str,
        knn_k: int = 20,
        knn_temperature: float = 0.07,
        retrieval: bool = True,
        seed: int = 0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.knn_k = knn_k
        self.knn_temperature = knn_temperature
        self.retrieval = retrieval
        self.seed = seed

    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        datamodule = trainer.datamodule
        device = pl_module.device
        train_x, train_y = extract_codes(
            pl_module.encoder, datamodule.eval_loader("train"), datamodule.normalize, device
        )
        val_x, val_y = extract_codes(pl_module.encoder, datamodule.eval_loader("val"), datamodule.normalize, device)
        train_images, val_images = datamodule.train_set.tensors[0], datamodule.val_set.tensors[0]
        metrics = {
            "probe/val_acc": linear_probe_accuracy(train_x, train_y, val_x, val_y, seed=self.seed),
            "knn/val_acc": knn_accuracy(train_x, train_y, val_x, val_y, self.knn_k, self.knn_temperature),
            "baseline/pixels_probe_val_acc": linear_probe_accuracy(
                flat_pixels(train_images, datamodule.normalize),
                train_y,
                flat_pixels(val_images, datamodule.normalize),
                val_y,
                seed=self.seed,
            ),
        }
        if self.retrieval:
            save_retrieval_grids(train_images, train_x, self.output_dir, seed=self.seed)
        return metrics

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics = final_metrics(trainer)
        metrics.update(self.evaluate(trainer, pl_module))
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if "/" in k}, step=trainer.global_step)
            logger.save()
        path = self.output_dir / "metrics.json"
        path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        summary = ", ".join(
            f"{k}={metrics[k]:.4f}" for k in ("probe/val_acc", "knn/val_acc", "baseline/pixels_probe_val_acc")
        )
        rank_zero_info(f"Final evaluation: {summary}; wrote {path}")
