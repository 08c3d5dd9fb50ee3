"""Training throughput of the real `DIMModule` + Lightning `Trainer` against a plain eager PyTorch loop of the
same model and loss (float32 images held in memory as the blog does, no Lightning), in one process, on one device.

    python benchmarks/throughput.py experiment=seed data=synthetic steps=20
    python benchmarks/throughput.py experiment=seed data=synthetic trainer=gpu data.on_device=true \\
        --variant "trainer.precision=32-true model.channels_last=false" --variant "model.compile=true" --table

Arguments of the form `steps=N` / `warmup=N` set the benchmark; every other `key=value` is a Hydra override of
the training config (`conf/train.yaml`), shared by all runs; each `--variant "OVERRIDES"` adds a run with those
extra overrides (none: one run). Prints one JSON line per run:
  img_per_s            framework training steps after warm-up (data path, step, optimizer, hooks included)
  baseline_img_per_s   the eager loop, same model, loss and batch size, fp32 eager Adam (run before and after)
  ratio                img_per_s / baseline_img_per_s
  step_ms_p50/p90      framework wall time per step (end of a step to end of the next)
  loader_img_per_s     the data path alone: batches from the train loader, on the device, scaled and augmented
  data_wait_fraction   share of the framework's step time spent between steps (fetch, transfer, augment, hooks)
  peak_mem_mb          peak RSS of the process (CPU) or max allocated memory of the framework run (CUDA)
and, with `--table`, a Markdown table of all runs. Each line is also appended to
outputs/benchmarks/throughput.jsonl. With `data=synthetic`, the train split is sized to the
number of steps, so no epoch boundary falls inside the timed steps. On CUDA the timed window is synchronised at
both ends only; per-step times are host timestamps (in steady state the launch queue paces them).
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from dim_lightning.builders import CONF_DIR, build_datamodule, build_module

BENCH_KEYS = {"steps": 20, "warmup": 5}


class StepTimer(pl.Callback):
    """Per-step wall times and the share spent between steps, after `warmup` steps, within an epoch."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.step_seconds: list[float] = []
        self.wait_seconds = 0.0
        self.images = 0
        self.last_end: float | None = None
        self.start: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.last_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Synchronise only where the timed window opens and closes: a sync per step would stall the GPU queue.
        if pl_module.device.type == "cuda" and trainer.global_step in (self.warmup, trainer.max_steps):
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        if self.last_end is not None and trainer.global_step > self.warmup:
            self.step_seconds.append(now - self.last_end)
            self.wait_seconds += self.start - self.last_end
            self.images += len(batch[1])
        self.last_end = now


def compose_config(overrides: list[str], steps: int, warmup: int) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["logger=none", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path("outputs/benchmarks").resolve())
        if cfg.data._target_.endswith("SyntheticDataModule"):
            cfg.data.num_train = max(cfg.data.num_train, (steps + warmup + 2) * cfg.data.batch_size)
    return cfg


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_trainer(cfg: DictConfig, steps: int, warmup: int) -> tuple[pl.Trainer, StepTimer]:
    timer = StepTimer(warmup)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        callbacks=[timer],
        logger=False,
        max_epochs=-1,
        max_steps=steps + warmup,
        limit_train_batches=1.0,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return trainer, timer


def framework_run(cfg: DictConfig, trainer: pl.Trainer, timer: StepTimer, datamodule) -> dict:
    pl.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg, datamodule.channels, datamodule.image_size)
    device = trainer.strategy.root_device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(module, datamodule=datamodule)
    seconds = sum(timer.step_seconds)
    step_ms = np.asarray(timer.step_seconds) * 1000
    return {
        "img_per_s": timer.images / seconds,
        "step_ms_p50": float(np.percentile(step_ms, 50)),
        "step_ms_p90": float(np.percentile(step_ms, 90)),
        "data_wait_fraction": timer.wait_seconds / seconds,
        "peak_mem_mb": peak_memory_mb(device),
    }


def loader_rate(datamodule, device: torch.device, steps: int) -> float:
    """Images/s of the data path alone: train loader -> device -> scaled and augmented, for `steps` batches."""
    generator = torch.Generator(device=device).manual_seed(0)
    images_seen, start = 0, None
    for index, (images, _labels) in enumerate(datamodule.train_dataloader()):
        images = datamodule.normalize(images.to(device, non_blocking=True))
        if datamodule.augment.active:
            images = datamodule.augment(images, generator)
        if index == 0:  # the first batch pays for starting workers
            start = time.perf_counter()
            continue
        images_seen += len(images)
        if index == steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images_seen / (time.perf_counter() - start)


def eager_rate(cfg: DictConfig, datamodule, device: torch.device, steps: int, warmup: int) -> float:
    """The blog's way in plain PyTorch: the float32 train split in memory, shuffled slices, fp32 Adam."""
    torch.manual_seed(cfg.seed)
    module = build_module(cfg, datamodule.channels, datamodule.image_size).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.model.lr)
    images = datamodule.train_set.images
    data = torch.as_tensor(np.asarray(images)).float().div_(127.5).sub_(1.0)
    batch_size = cfg.data.batch_size
    order = torch.randperm(len(data))
    start = None
    for step in range(steps + warmup):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        begin = (step * batch_size) % (len(data) - batch_size + 1)
        x = data[order[begin : begin + batch_size]].to(device)
        loss = module.objective(module.encoder(x))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def run(overrides: list[str], steps: int, warmup: int) -> dict:
    cfg = compose_config(overrides, steps, warmup)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    trainer, timer = make_trainer(cfg, steps, warmup)
    device = trainer.strategy.root_device
    # The eager loop runs before and after the framework, so a load that drifts during the run biases neither.
    before = eager_rate(cfg, datamodule, device, steps, warmup)
    framework = framework_run(cfg, trainer, timer, datamodule)
    after = eager_rate(cfg, datamodule, device, steps, warmup)
    baseline = 2 / (1 / before + 1 / after)  # the rate of the two runs' total time
    return {
        "overrides": " ".join(overrides),
        "img_per_s": framework["img_per_s"],
        "baseline_img_per_s": baseline,
        "ratio": framework["img_per_s"] / baseline,
        "step_ms_p50": framework["step_ms_p50"],
        "step_ms_p90": framework["step_ms_p90"],
        "loader_img_per_s": loader_rate(datamodule, device, steps),
        "data_wait_fraction": framework["data_wait_fraction"],
        "peak_mem_mb": framework["peak_mem_mb"],
        "device": device_name(device),
        "precision": str(cfg.trainer.precision),
        "compile": bool(cfg.model.get("compile", False)),
        "batch_size": cfg.data.batch_size,
        "steps": steps,
    }


def markdown_table(results: list[dict]) -> str:
    columns = ["overrides", "img_per_s", "baseline_img_per_s", "ratio", "step_ms_p50", "step_ms_p90"]
    columns += ["loader_img_per_s", "data_wait_fraction", "peak_mem_mb", "device", "precision", "compile"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for result in results:
        cells = [f"{result[c]:.3g}" if isinstance(result[c], float) else str(result[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, int], list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="steps=N, warmup=N, and Hydra overrides of conf/train.yaml")
    parser.add_argument("--variant", action="append", default=[], help="extra overrides for one more run")
    parser.add_argument("--table", action="store_true", help="also print a Markdown table of the runs")
    args = parser.parse_args(argv)
    bench, overrides = dict(BENCH_KEYS), []
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key in bench:
            bench[key] = int(value)
        else:
            overrides.append(item)
    if bench["steps"] < 1 or bench["warmup"] < 1:
        parser.error("steps and warmup must be at least 1")
    return args, bench, overrides


def main(argv: list[str] | None = None) -> list[dict]:
    args, bench, overrides = parse(sys.argv[1:] if argv is None else argv)
    results = []
    log = Path("outputs/benchmarks/throughput.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    for variant in args.variant or [""]:
        result = run([*overrides, *shlex.split(variant)], bench["steps"], bench["warmup"])
        print(json.dumps(result), flush=True)
        with log.open("a") as file:
            file.write(json.dumps(result) + "\n")
        results.append(result)
    if args.table:
        print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
