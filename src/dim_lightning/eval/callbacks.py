"""Callbacks that evaluate a run: online probes (per step, and every N epochs under DDP too), and the final
evaluation that writes `metrics.json`, `eval.md` and pictures into the run dir."""

from __future__ import annotations

import json
import math
import uuid
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

from dim_lightning.errors import require
from dim_lightning.eval.features import extract_features
from dim_lightning.eval.metrics import headline
from dim_lightning.eval.probe import knn_accuracy, linear_probe_accuracy
from dim_lightning.eval.run_id import RUN_ID_KEY, is_run_id
from dim_lightning.eval.suite import data_seconds, run_suite
from dim_lightning.run.distributed import gather_per_rank, own_rank_entry
from dim_lightning.run.state_checks import like_problems, optimizer_state_problems, per_rank_problems
from dim_lightning.run.untrusted import MAPPINGS, TENSORS
from dim_lightning.training.optim import use_own_settings
from dim_lightning.utils.atomic import atomic_write_text
from dim_lightning.utils.timing import PhaseTimer


class OnlineLinearProbe(pl.Callback):
    """A linear classifier trained alongside DIM on detached embeddings, with its own optimizer: a cheap,
    continuous read-out of representation quality.

    Logs `probe/online_train_acc` (fit and scored on the training step's embeddings: train mode, augmented
    batches) and `probe/online_trainmode_val_acc`: that same classifier, fit on train-mode embeddings, scored on
    the eval-mode embeddings of the val split (BatchNorm running statistics, no augmentation), so it mixes two
    kinds of embedding and is a trend to watch, not a score: the held-out score is the final `probe/val_acc`.

    Exact resume: the layer is initialised from its own seed (`seed`) without touching the global RNG (which a
    resumed run has already restored), and its weights, optimizer and the epoch's accuracy counters are in
    every checkpoint. Under DDP each rank trains its own classifier on its own shard (no collective per step);
    the checkpoint holds every rank's, and the accuracies are counted over all ranks."""

    def __init__(self, lr: float = 1e-3, seed: int = 0) -> None:
        self.lr = lr
        self.seed = seed
        self.classifier: nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.pending_state: dict[str, Any] | None = None
        self.accuracy: dict[str, MulticlassAccuracy] = {}

    def _ensure_classifier(self, trainer: pl.Trainer, embedding: Tensor) -> nn.Linear:
        if self.classifier is None:
            self._build(trainer.datamodule.num_classes, embedding.shape[1], embedding.device)
        require(
            self.classifier.in_features == embedding.shape[1],
            lambda: (
                f"the resumed checkpoint's online probe reads {self.classifier.in_features}-dim codes, but this "
                f"model's codes have {embedding.shape[1]}: the checkpoint was edited or written by another model"
            ),
        )
        return self.classifier

    def _fresh(
        self, num_classes: int, in_features: int, device: torch.device
    ) -> tuple[nn.Linear, torch.optim.Optimizer, dict[str, MulticlassAccuracy]]:
        """A new classifier (from its own seed, the global RNG stream untouched), its Adam and accuracy counters."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            classifier = nn.Linear(in_features, num_classes).to(device)
        accuracy = {
            split: MulticlassAccuracy(num_classes, average="micro", validate_args=False).to(device)
            for split in ("train", "val")
        }
        return classifier, torch.optim.Adam(classifier.parameters(), lr=self.lr), accuracy

    def _build(self, num_classes: int, in_features: int, device: torch.device) -> None:
        self.classifier, self.optimizer, self.accuracy = self._fresh(num_classes, in_features, device)
        state = own_rank_entry(self.pending_state and self.pending_state["per_rank"])
        self.pending_state = None
        if state is None:
            return
        self.classifier.load_state_dict(state["classifier"])
        use_own_settings(state["optimizer"], self.optimizer)
        self.optimizer.load_state_dict(state["optimizer"])
        for name, value in state["train_counts"].items():
            setattr(self.accuracy["train"], name, value.to(device))
        self.accuracy["train"]._update_count = state["train_updates"]

    def on_train_start(self, trainer, pl_module) -> None:
        """A resumed probe is rebuilt now (its shape is in the checkpoint), before any epoch-end hook reads it."""
        if self.classifier is None and self.pending_state is not None:
            num_classes, in_features = self.pending_state["per_rank"][0]["classifier"]["weight"].shape
            self._build(num_classes, in_features, pl_module.device)

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
        if outputs is None:  # validation_step skips a last batch of one image
            return
        embedding = outputs["embedding"].float()
        with torch.no_grad():
            logits = self._ensure_classifier(trainer, embedding)(embedding)
        self.accuracy["val"].update(logits, outputs["labels"])

    def _log_and_reset(self, pl_module: pl.LightningModule, split: str, name: str) -> None:
        metric = self.accuracy.get(split)
        if metric is not None and metric.update_count > 0:
            pl_module.log(name, metric.compute())
            metric.reset()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._log_and_reset(pl_module, "train", "probe/online_train_acc")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            if "val" in self.accuracy:
                self.accuracy["val"].reset()
            return
        self._log_and_reset(pl_module, "val", "probe/online_trainmode_val_acc")

    def state_dict(self) -> dict[str, Any]:
        if self.classifier is None:
            return self.pending_state or {}
        train = self.accuracy["train"]
        own = {
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_counts": {name: getattr(train, name).detach().cpu().clone() for name in train._defaults},
            "train_updates": train.update_count,
        }
        return {"per_rank": gather_per_rank(own)}  # each rank's classifier and its share of the epoch's counts

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pending_state = state_dict or None

    def state_problems(self, state: Any, trainer: pl.Trainer) -> list[str]:
        """What is wrong with a saved state (checked before a resume restores it): per rank, a classifier of this
        data's classes, its Adam state and its accuracy counts, all as `state_dict` writes them."""
        if not state:
            return []
        per_rank = state.get("per_rank")
        problems = ([] if set(state) == {"per_rank"} else ["must hold per_rank alone"]) + per_rank_problems(
            per_rank, "per_rank"
        )
        if problems or any(type(e) is not dict or type(e.get("classifier")) not in MAPPINGS for e in per_rank):
            return problems or ["per_rank must hold a classifier, its optimizer and accuracy counts per rank"]
        weight = per_rank[0]["classifier"].get("weight")
        in_features = weight.shape[1] if type(weight) in TENSORS and weight.dim() == 2 else 1
        template, optimizer = self._written(trainer.datamodule.num_classes, in_features)
        for rank, entry in enumerate(per_rank):
            own = {key: value for key, value in entry.items() if key != "optimizer"}
            problems += like_problems(own, template, f"per_rank.{rank}")
            problems += optimizer_state_problems(entry.get("optimizer"), optimizer, f"per_rank.{rank}.optimizer")
        return problems

    def _written(self, num_classes: int, in_features: int) -> tuple[dict[str, Any], torch.optim.Optimizer]:
        """What `state_dict` writes for one rank but its optimizer state, and the optimizer that state must fit,
        built on the meta device: shapes only (a file's in_features could ask for any size)."""
        with torch.device("meta"):
            classifier, optimizer, accuracy = self._fresh(num_classes, in_features, torch.device("meta"))
        counts = {name: getattr(accuracy["train"], name) for name in accuracy["train"]._defaults}
        return {"classifier": classifier.state_dict(), "train_counts": counts, "train_updates": 0}, optimizer


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
    pixels, and an untrained encoder of the same shape made by `random_encoder(run_config, datamodule, seed,
    device)` when `random_init_baseline`), retrieval pictures (also sent to W&B), and `metrics.json` with the
    training numbers. `enabled=False` (eval.final=false) keeps only the training numbers. `run_metrics` gives
    the run's final numbers to the program that trained it.

    metrics.json also holds `run_id` (and `global_step`): the id of the run, new at a fresh start and kept in
    every checkpoint, so a resumed run keeps it. `resume_policy` calls a run complete only when the finished
    checkpoint and metrics.json agree on both, never on a metrics.json that another run left."""

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
        self.metrics: dict[str, float | str] = {}  # what metrics.json holds, once fit ends (rank 0)
        self.timer = PhaseTimer()  # time/train_s; the suite times the evaluation, the data module its setup
        self._run_id: str | None = None

    @property
    def run_id(self) -> str:
        """This run's id: the one restored from the checkpoint a run resumes, else a new one (a fresh start)."""
        if self._run_id is None:
            self._run_id = uuid.uuid4().hex
        return self._run_id

    def state_dict(self) -> dict[str, Any]:
        return {RUN_ID_KEY: self.run_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._run_id = state_dict[RUN_ID_KEY] if not self.state_problems(state_dict) else None

    def state_problems(self, state: Any, trainer: pl.Trainer | None = None) -> list[str]:
        """What is wrong with a saved state (checked before a resume restores it)."""
        run_id = state.get(RUN_ID_KEY) if type(state) is dict else None
        if type(state) is dict and set(state) == {RUN_ID_KEY} and is_run_id(run_id):
            return []
        return [f"must hold {RUN_ID_KEY}, 32 hexadecimal digits"]

    def run_metrics(self, trainer: pl.Trainer) -> dict[str, float | str]:
        """The run's final numbers once fit ended: what metrics.json holds (rank 0), elsewhere the training numbers
        the trainer ends with (`final_metrics`)."""
        return self.metrics or final_metrics(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer.begin("train", f"{trainer.max_epochs} epoch(s)")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer.end("train")

    def _random_encoder(self, pl_module: pl.LightningModule, datamodule) -> nn.Module | None:
        run_config = pl_module.hparams.get("run_config")
        if self.random_encoder is None or run_config is None:
            return None
        return self.random_encoder(OmegaConf.create(run_config), datamodule, self.seed, pl_module.device)

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
        metrics.update({**self.timer.seconds, **data_seconds(trainer.datamodule), RUN_ID_KEY: self.run_id})
        if self.enabled:
            metrics.update(self.evaluate(trainer, pl_module))
        for logger in trainer.loggers:
            logger.log_metrics({k: v for k, v in metrics.items() if "/" in k}, step=trainer.global_step)
            logger.save()
        path = self.output_dir / "metrics.json"
        atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        self.metrics = metrics
        summary = ", ".join(f"{k}={metrics[k]:.4f}" for k in headline() if k in metrics)
        rank_zero_info(f"Final evaluation: {summary if self.enabled else 'skipped (eval.final=false)'}; wrote {path}")


class EpochFeatureProbe(pl.Callback):
    """Every `every_n_epochs` epochs, at the end of validation (rank 0): eval-mode codes of a fixed, seeded,
    class-stratified subset of at most `max_train_images` train images and of the whole val split, both taken
    the same way as the final evaluation takes them (`extract_features`: no augmentation, BatchNorm in eval
    mode, this epoch's final weights), scored by `score`. So the epoch number equals an offline probe of the
    same weights, rather than mixing training-step embeddings (augmented, train-mode BatchNorm, weights
    changing during the epoch) with eval-mode val ones, which read low. The features are fresh copies on the
    CPU, never aliases of step outputs."""

    metric_name = ""

    def __init__(self, every_n_epochs: int = 5, max_train_images: int | None = 10000) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_train_images = max_train_images

    def score(self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
        raise NotImplementedError

    def _due(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not (self._due(trainer) and trainer.is_global_zero):
            return
        datamodule = trainer.datamodule
        train_set = datamodule.train_set.subset(self.max_train_images, seed=datamodule.split_seed)
        features = [
            extract_features(pl_module.encoder, datamodule.eval_loader(split), datamodule.normalize, pl_module.device)
            for split in (train_set, "val")
        ]
        (train_x, train_y), (val_x, val_y) = ((f["Y"], y) for f, y in features)
        pl_module.log(self.metric_name, self.score(train_x, train_y, val_x, val_y), rank_zero_only=True)


class LinearProbe(EpochFeatureProbe):
    """Every N epochs, the linear probe fitted on eval-mode train codes, scored on val: `probe/epoch_val_acc`."""

    metric_name = "probe/epoch_val_acc"

    def score(self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
        return linear_probe_accuracy(train_x, train_y, val_x, val_y)


class KNNProbe(EpochFeatureProbe):
    """Every N epochs, weighted kNN of eval-mode val codes among train codes: `knn/epoch_val_acc`."""

    metric_name = "knn/epoch_val_acc"

    def __init__(
        self, every_n_epochs: int = 5, k: int = 20, temperature: float = 0.07, max_train_images: int | None = 10000
    ) -> None:
        super().__init__(every_n_epochs, max_train_images)
        self.k = k
        self.temperature = temperature

    def score(self, train_x: Tensor, train_y: Tensor, val_x: Tensor, val_y: Tensor) -> float:
        return knn_accuracy(train_x, train_y, val_x, val_y, self.k, self.temperature)
