"""Training throughput of `DIMModule` + Lightning `Trainer` as `train.py` runs it (the configured callbacks:
non-finite guard, online probe, checkpointing, progress bar, ...) against a plain eager PyTorch loop of the same
model and loss (fp32, no Lightning) fed by the same data path, in one process.

    python benchmarks/throughput.py experiment=seed steps=20      # no data needed: synthetic images of its shape
    python benchmarks/throughput.py experiment=blog data=synthetic steps=20 \\
        --variant "" --variant "model.whole_step=true" --table
    python benchmarks/throughput.py experiment=blog data=synthetic trainer=ddp_sim model.whole_step=true steps=20

Arguments of the form `steps=N` / `warmup=N` set the benchmark; every other `key=value` is a Hydra override of
the training config (`conf/train.yaml`), shared by all runs; each `--variant "OVERRIDES"` adds a run with those
extra overrides (none: one run). Without `data=`, the experiment's data set is replaced by synthetic images of
its image size and channels, so a benchmark needs no data on disk. Prints one JSON line per run:
  img_per_s            framework training steps after warm-up (data path, step, optimizer, callbacks included)
  baseline_img_per_s   the eager loop: same model, loss and batch size, the same batches (the train loader, moved
                       and scaled as the framework's), fp32 eager Adam with the framework's float32 matmul
                       precision (TF32 on CUDA by default); run before and after the framework
  ratio                img_per_s / baseline_img_per_s
  step_ms_p50/p90      framework wall time per step (end of a step to end of the next)
  loader_img_per_s     the data path alone: batches from the train loader, on the device, scaled and augmented
  data_wait_fraction   share of the framework's step time spent between steps (fetch, transfer, augment, hooks)
  peak_mem_mb          peak RSS of the process (CPU) or max allocated memory of the framework run (CUDA)
  graph_breaks         torch.compile graph breaks during the framework run (dynamo's counters; 0 without compile)
  cudagraph_skips      compiled graphs inductor ran without CUDA graphs (its counter; must be 0 on the fast path
                       on CUDA, where each skip also warns with its reason)
  compiled_graphs      graphs torch.compile produced during the framework run
  collectives_per_step process-group collectives per training step on rank 0 (counted by the profiler over
                       warm-up steps 3..warmup, after compilation; 0 on one device)
and, with `--table`, a Markdown table of all runs. Each line is also appended to
outputs/benchmarks/throughput.jsonl. With `data=synthetic`, the train split is sized to the
number of steps, so no epoch boundary falls inside the timed steps. On CUDA the timed window is synchronised at
both ends only; per-step times are host timestamps (in steady state the launch queue paces them). Under DDP
(`trainer=ddp_sim`) Lightning's launcher re-runs this script for the other ranks; only rank 0 measures the
eager loop and prints (one run per call: no `--variant` under DDP). Bad input ends with a one-paragraph error
and exit code 2, as `train.py` does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.profiler import ProfilerActivity, profile

from dim_lightning.config import CONF_DIR
from dim_lightning.config.builders import build_callbacks, build_datamodule, build_module, build_trainer
from dim_lightning.config.validation import validate_config
from dim_lightning.errors import EXIT_USAGE, DIMError, user_errors_exit

BENCH_KEYS = {"steps": 20, "warmup": 5}
COLLECTIVE_PREFIXES = ("gloo:", "nccl:", "mpi:", "ucc:")


def is_collective(event_name: str) -> bool:
    """A profiler event that is one collective run by a process-group backend (each is also recorded as the
    `c10d::` or `_c10d_functional::` operator that called it: those are not counted again)."""
    return event_name.startswith(COLLECTIVE_PREFIXES)


class StepTimer(pl.Callback):
    """Per-step wall times and the share spent between steps, after `warmup` steps, within an epoch; and the
    process-group collectives of warm-up steps 3..warmup, counted by the profiler."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.step_seconds: list[float] = []
        self.wait_seconds = 0.0
        self.images = 0
        self.last_end: float | None = None
        self.start: float | None = None
        self.profiler: profile | None = None
        self.collectives: dict[str, int] = {}
        self.counted_steps = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.last_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.world_size > 1 and trainer.global_step == min(2, self.warmup - 1):
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()
            self.counted_steps = self.warmup - trainer.global_step
        self.start = time.perf_counter()

    def _stop_counting(self) -> None:
        self.profiler.__exit__(None, None, None)
        for event in self.profiler.events():
            if is_collective(event.name):
                self.collectives[event.name] = self.collectives.get(event.name, 0) + 1
        self.profiler = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.profiler is not None and trainer.global_step == self.warmup:
            self._stop_counting()
        # Synchronise only where the timed window opens and closes: a sync per step would stall the GPU queue.
        if pl_module.device.type == "cuda" and trainer.global_step in (self.warmup, trainer.max_steps):
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        if self.last_end is not None and trainer.global_step > self.warmup:
            self.step_seconds.append(now - self.last_end)
            self.wait_seconds += self.start - self.last_end
            self.images += len(batch[1])
        self.last_end = now

    def collectives_per_step(self) -> float:
        return sum(self.collectives.values()) / self.counted_steps if self.counted_steps else 0.0


def compose_train(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with `overrides` and no logger; a bad override is a one-paragraph DIMError."""
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=["logger=none", *overrides])
    except HydraException as error:
        reason = " ".join(str(error).split())  # Hydra's message (with its list of valid choices) as one paragraph
        raise DIMError(
            f"the overrides {' '.join(overrides) or '(none)'} do not make a training config: {reason}. "
            "Pass Hydra overrides of conf/train.yaml as train.py takes them (e.g. experiment=blog data=synthetic), "
            "and steps=N / warmup=N for the benchmark"
        ) from error


def _data_shape(cfg: DictConfig) -> tuple[int, int]:
    """(image size, channels) of the configured data set, without loading it (3 channels where the data
    module cannot even be constructed, e.g. a photo set whose root is not given: they are all RGB)."""
    try:
        datamodule = build_datamodule(cfg)
        return datamodule.image_size, datamodule.channels
    except Exception:  # a missing root, for example: the shape is all that is needed here
        return int(cfg.data.get("image_size", 32)), int(cfg.data.get("channels", 3))


def compose_config(overrides: list[str], steps: int, warmup: int) -> DictConfig:
    """The training config of these overrides, as the benchmark runs it: synthetic data of the configured shape
    unless `data=` is given, no logger, no final evaluation, outputs under outputs/benchmarks."""
    cfg = compose_train(overrides)
    if not any(item.split("=", 1)[0].lstrip("+") == "data" for item in overrides):
        size, channels = _data_shape(cfg)
        cfg = compose_train([*overrides, "data=synthetic", f"data.image_size={size}", f"data.channels={channels}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path("outputs/benchmarks").resolve())
        cfg.eval.final = False
        if cfg.data._target_.endswith("SyntheticDataModule"):
            cfg.data.num_train = max(cfg.data.num_train, (steps + warmup + 2) * cfg.data.batch_size)
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    return cfg


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_trainer(cfg: DictConfig, steps: int, warmup: int) -> tuple[pl.Trainer, StepTimer]:
    """The trainer `train.py` builds (its callbacks and DDP options), bounded to `warmup + steps` steps."""
    timer = StepTimer(warmup)
    trainer = build_trainer(
        cfg,
        [*build_callbacks(cfg), timer],
        logger=False,
        max_epochs=-1,
        max_steps=steps + warmup,
        limit_train_batches=1.0,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    return trainer, timer


def framework_run(cfg: DictConfig, trainer: pl.Trainer, timer: StepTimer, datamodule) -> dict:
    pl.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg, datamodule.channels, datamodule.image_size)
    device = trainer.strategy.root_device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    trainer.fit(module, datamodule=datamodule)
    seconds = sum(timer.step_seconds)
    step_ms = np.asarray(timer.step_seconds) * 1000
    counters = torch._dynamo.utils.counters
    return {
        "img_per_s": timer.images / seconds,
        "step_ms_p50": float(np.percentile(step_ms, 50)),
        "step_ms_p90": float(np.percentile(step_ms, 90)),
        "data_wait_fraction": timer.wait_seconds / seconds,
        "peak_mem_mb": peak_memory_mb(device),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "cudagraph_skips": int(counters["inductor"]["cudagraph_skips"]),
        "compiled_graphs": int(counters["stats"]["unique_graphs"]),
        "collectives_per_step": timer.collectives_per_step(),
        "collectives": dict(timer.collectives),
    }


def device_batches(datamodule, device: torch.device):
    """The framework's training batches, endlessly: the train loader (DataLoader or on-device batches), moved
    to the device as Lightning moves them, scaled (and augmented if configured)."""
    generator = torch.Generator(device=device).manual_seed(0)
    while True:
        for images, labels in datamodule.train_dataloader():
            images = datamodule.normalize(images.to(device, non_blocking=True))
            if datamodule.augment.active:
                images = datamodule.augment(images, generator)
            yield images, labels


def loader_rate(datamodule, device: torch.device, steps: int) -> float:
    """Images/s of the data path alone: train loader -> device -> scaled and augmented, for `steps` batches."""
    images_seen, start = 0, None
    for index, (images, _labels) in enumerate(device_batches(datamodule, device)):
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
    """Plain PyTorch: the same model and loss in fp32 eager mode, Adam, fed the framework's batches, with the
    framework's float32 matmul precision (`model.matmul_precision`: TF32 on CUDA by default), so that the loop
    before the framework run and the one after it (when the framework has set it for the process) are alike."""
    torch.manual_seed(cfg.seed)
    module = build_module(cfg, datamodule.channels, datamodule.image_size).to(device)
    if module.speedups is not None:
        module.speedups.set_matmul_precision(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.model.lr)
    batches = device_batches(datamodule, device)
    start = None
    for step in range(steps + warmup):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        images, _labels = next(batches)
        loss = module.objective(module.encoder(images))["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def is_launched_rank() -> bool:
    """A process that Lightning's DDP launcher started for a rank > 0 (it re-runs this script)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def run(overrides: list[str], steps: int, warmup: int) -> dict | None:
    cfg = compose_config(overrides, steps, warmup)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    trainer, timer = make_trainer(cfg, steps, warmup)
    device = trainer.strategy.root_device
    datamodule.trainer = trainer  # the loaders serve the framework's device (on-device data included)
    if is_launched_rank():
        framework_run(cfg, trainer, timer, datamodule)
        return None
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
        "graph_breaks": framework["graph_breaks"],
        "cudagraph_skips": framework["cudagraph_skips"],
        "compiled_graphs": framework["compiled_graphs"],
        "collectives_per_step": framework["collectives_per_step"],
        "collectives": framework["collectives"],
        "world_size": trainer.world_size,
        "device": device_name(device),
        "precision": str(cfg.trainer.precision),
        "compile": bool(cfg.model.get("compile", False)),
        "whole_step": bool(cfg.model.get("whole_step", False)),
        "batch_size": cfg.data.batch_size,
        "image_size": cfg.data.image_size,
        "data": cfg.data._target_.rsplit(".", 1)[-1],
        "steps": steps,
    }


def markdown_table(results: list[dict]) -> str:
    columns = ["overrides", "img_per_s", "baseline_img_per_s", "ratio", "step_ms_p50", "step_ms_p90"]
    columns += ["graph_breaks", "cudagraph_skips", "collectives_per_step", "loader_img_per_s", "data_wait_fraction"]
    columns += ["peak_mem_mb"]
    columns += ["device", "precision", "whole_step"]
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
            if not value.isdigit():
                parser.error(f"{key} must be a whole number, got {value!r}")
            bench[key] = int(value)
        else:
            overrides.append(item)
    if bench["steps"] < 1 or bench["warmup"] < 3:
        parser.error("steps must be at least 1 and warmup at least 3 (compilation, then the counted steps)")
    return args, bench, overrides


def main(argv: list[str] | None = None) -> list[dict]:
    args, bench, overrides = parse(sys.argv[1:] if argv is None else argv)
    if len(args.variant) > 1 and any("ddp" in item for item in overrides):
        print(
            "benchmarks/throughput.py: error: under DDP run one configuration per call (no --variant)", file=sys.stderr
        )
        sys.exit(EXIT_USAGE)
    results = []
    log = Path("outputs/benchmarks/throughput.jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    with user_errors_exit("benchmarks/throughput.py"):
        for variant in args.variant or [""]:
            result = run([*overrides, *shlex.split(variant)], bench["steps"], bench["warmup"])
            if result is None:  # a rank > 0 under DDP: rank 0 reports
                continue
            print(json.dumps(result), flush=True)
            with log.open("a") as file:
                file.write(json.dumps(result) + "\n")
            results.append(result)
    if args.table and results:
        print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()
