"""The whole recipe's time, not only the step's: a few real training epochs as `train.py` runs them (its
callbacks: validation every epoch, the online probe, the epoch probes at their cadence, checkpoints, the CSV
logger; no final evaluation), each epoch timed from its start to the next one's (so its validation, probes,
checkpoints and logging count), and the full recipe's minutes extrapolated from them:

    compile_s          epoch 0 minus a plain epoch (the step's compilation and other first-epoch costs)
    plain_epoch_s      median of the later epochs without epoch probes
    probe_extra_s      what an epoch with the epoch probes (linear, kNN) costs on top of a plain one
    seconds_per_epoch  plain_epoch_s + probe_extra_s / their cadence (every_n_epochs)
    recipe_minutes     (setup_s + compile_s + recipe_epochs x seconds_per_epoch) / 60

Called by `gpu_check.py` (`end_to_end`); run alone as `python benchmarks/end_to_end.py [epochs=N]
[epoch_images=N] OVERRIDES`. Synthetic data of `epoch_images` training images (on CUDA by default the blog
recipe's epoch on our Tiny-ImageNet splits: 90,000 train, 10,000 val, 200 classes), in a fresh run dir under
outputs/benchmarks/end_to_end/. On random images the epoch probes' L-BFGS fits find no structure, so their
iterations (and `probe_extra_s`) may differ from a real data set's; the data set's setup (generating it here,
memory-mapping the caches for Tiny-ImageNet) is not counted."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from dim_lightning.config.builders import build_callbacks, build_datamodule, build_loggers, build_module, build_trainer
from dim_lightning.config.validation import validate_config
from dim_lightning.errors import require, user_errors_exit
from dim_lightning.run.run_dir import prepare

RECIPE_EPOCHS = 100
# Tiny-ImageNet as the recipe trains on it: our train / val (selection) splits and its 200 classes (the probes')
RECIPE_DATA = {"num_train": 90_000, "num_val": 10_000, "num_classes": 200}
PROBES = ("linear_probe", "knn_probe")


class EpochTimer(pl.Callback):
    """Wall seconds of setup (fit start to the first epoch) and of each epoch (its start to the next one's, the
    last to the end of training)."""

    def __init__(self) -> None:
        self.fit_start = 0.0
        self.starts: list[float] = []
        self.end = 0.0

    def _now(self, pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fit_start = self._now(pl_module)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(self._now(pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = self._now(pl_module)

    def epoch_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, [*self.starts[1:], self.end], strict=True)]


def probe_cadence(cfg: DictConfig) -> int | None:
    """Every how many epochs the epoch probes run (the most frequent of them; None without any)."""
    cadences = [cfg.callbacks[name].every_n_epochs for name in PROBES if (cfg.get("callbacks") or {}).get(name)]
    return min(cadences) if cadences else None


def summarize(seconds: list[float], setup_s: float, cadence: int | None, images_per_epoch: int) -> dict:
    """The module docstring's numbers from the epochs' wall seconds (epoch i runs the probes if
    (i + 1) % cadence == 0, as `eval.callbacks` decides)."""
    probed = [i for i in range(len(seconds)) if cadence and (i + 1) % cadence == 0]
    plain = [s for i, s in enumerate(seconds[1:], 1) if i not in probed]
    require(plain, "end_to_end needs an epoch after the first without the epoch probes: raise epochs")
    plain_epoch_s = statistics.median(plain)
    probe_extra_s = statistics.mean(seconds[i] for i in probed) - plain_epoch_s if probed else 0.0
    per_epoch = plain_epoch_s + (probe_extra_s / cadence if probed else 0.0)
    compile_s = seconds[0] - plain_epoch_s
    return {
        "epochs": len(seconds),
        "images_per_epoch": images_per_epoch,
        "epoch_seconds": seconds,
        "setup_s": setup_s,
        "compile_s": compile_s,
        "plain_epoch_s": plain_epoch_s,
        "probe_extra_s": probe_extra_s,
        "probe_every_n_epochs": cadence,
        "seconds_per_epoch": per_epoch,
        "recipe_epochs": RECIPE_EPOCHS,
        "recipe_minutes": (setup_s + compile_s + RECIPE_EPOCHS * per_epoch) / 60,
    }


def configure(cfg: DictConfig, epochs: str, epoch_images: str | None, run_dir: Path) -> DictConfig:
    """`cfg` as the measurement runs it: `epochs` epochs of synthetic data (`epoch_images`, else the recipe's
    splits on CUDA and 5 batches elsewhere), a fresh run dir, no final evaluation."""
    require(epochs.isdigit() and int(epochs) >= 2, f"epochs must be a whole number >= 2, got {epochs!r}")
    require(epoch_images is None or epoch_images.isdigit(), f"epoch_images must be a whole number: {epoch_images!r}")
    require(cfg.data._target_.endswith("SyntheticDataModule"), "end_to_end measures synthetic data (data=synthetic)")
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.eval.final = False
        cfg.resume = False
        cfg.trainer.max_epochs = int(epochs)
        on_cuda = cfg.trainer.accelerator in ("gpu", "cuda") and torch.cuda.is_available()
        if epoch_images is not None:
            cfg.data.num_train = int(epoch_images)
        elif on_cuda:
            cfg.data.update(RECIPE_DATA)
        else:
            cfg.data.num_train = 5 * cfg.data.batch_size
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    return cfg


def measure(cfg: DictConfig) -> dict:
    """Train `cfg` as train.py does (no final evaluation) and time its epochs."""
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, channels=datamodule.channels, image_size=datamodule.image_size)
    timer = EpochTimer()
    callbacks = [*build_callbacks(cfg, leave_out=["final_evaluation"]), timer]
    trainer = build_trainer(cfg, callbacks, logger=build_loggers(cfg) or False)
    prepare(cfg.paths.output_dir, set_aside_earlier_run=False)
    torch._dynamo.reset()
    trainer.fit(module, datamodule=datamodule)
    images = len(datamodule.train_dataloader()) * cfg.data.batch_size
    return summarize(timer.epoch_seconds(), timer.starts[0] - timer.fit_start, probe_cadence(cfg), images)


def run_dir() -> Path:
    return Path("outputs/benchmarks/end_to_end").resolve() / time.strftime("%Y%m%d-%H%M%S")


def main(argv: list[str] | None = None) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from throughput import compose_train  # the benchmarks' config composition and its one-paragraph errors

    settings, overrides = {"epochs": "6", "epoch_images": None}, []
    for item in sys.argv[1:] if argv is None else argv:
        key, _, value = item.partition("=")
        if key in settings:
            settings[key] = value
        else:
            overrides.append(item)
    with user_errors_exit("benchmarks/end_to_end.py"):
        cfg = configure(compose_train(overrides), settings["epochs"], settings["epoch_images"], run_dir())
        result = measure(cfg)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
