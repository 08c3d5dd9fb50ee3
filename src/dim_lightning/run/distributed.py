"""Multi-device helpers: a gradient-safe all_gather for DIM's negatives, the DDP strategy `trainer.devices=N`
picks, and a subprocess launcher that relaunches Hydra jobs correctly (also inside a multirun)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, read_write
from torch import Tensor

from dim_lightning.run.lightning_compat import RelaunchingDDPStrategy


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward hands on a contiguous gradient."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


def contiguous_grad(tensor: Tensor) -> Tensor:
    """`tensor`, with the gradient flowing back through it made contiguous.

    Why: the backward of `torch.distributed.nn.functional.all_gather` (what `LightningModule.all_gather(...,
    sync_grads=True)` runs) allocates its receive buffers with `empty_like(grad)`; when the gradient reaching it is
    a non-contiguous view (the einsum of all-pairs scores produces one), gloo fills those buffers as if they were
    contiguous and the features' gradients come back scrambled, silently (measured with torch 2.13: the encoder's
    local-layer gradients under 2-process DDP were uncorrelated with the single-device ones). Apply it to the
    gathered tensor so the gradient entering the collective's backward is contiguous.
    """
    return _ContiguousGrad.apply(tensor)


def _world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_per_rank(state: Any) -> list[Any]:
    """`state` (tensors and plain types) of every rank, in rank order, on every rank: what a checkpoint holds for
    per-rank state (RNG streams, epoch accumulators), since only rank 0 writes the file. A collective: every rank
    calls it at the same point (Lightning builds a checkpoint's state on all ranks). Tensors travel on the CPU
    (a GPU tensor would be unpickled onto its own device on every rank)."""
    world_size = _world()[1]
    if world_size == 1:
        return [state]
    states: list[Any] = [None] * world_size
    on_cpu = torch.utils._pytree.tree_map(lambda x: x.cpu() if isinstance(x, Tensor) else x, state)
    torch.distributed.all_gather_object(states, on_cpu)
    return states


def own_rank_entry(states: list[Any] | None) -> Any:
    """This rank's entry of a `gather_per_rank` list; None when the checkpoint came from another device count."""
    rank, world_size = _world()
    return states[rank] if states is not None and len(states) == world_size else None


def _hydra_job_argv_and_dir() -> tuple[list[str], str] | None:
    """Inside a Hydra multirun job: the command-line overrides of this job and its output dir (None otherwise)."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return list(hydra_cfg.overrides.task), hydra_cfg.runtime.output_dir


@contextmanager
def _relaunch_as_this_job() -> Iterator[None]:
    """While Lightning builds its child commands, make a multirun job look like a single run of that job."""
    job = _hydra_job_argv_and_dir()
    if job is None:
        yield
        return
    overrides, output_dir = job
    argv, run = sys.argv, HydraConfig.get().run
    run_dir = run.dir
    sys.argv = [argv[0], *overrides]
    with read_write(run):
        run.dir = output_dir
    try:
        yield
    finally:
        sys.argv = argv
        with read_write(run):
            run.dir = run_dir


class HydraDDPStrategy(RelaunchingDDPStrategy):
    """DDP with one process per device started by re-running train.py (what real multi-GPU runs use), correct under
    Hydra single runs and multiruns alike: Lightning's relaunch command (`python train.py <sys.argv[1:]>
    hydra.run.dir=...`) would start a multirun's whole sweep again, so the children get this job's overrides and
    output dir. Keyword arguments go to DistributedDataParallel (e.g. `broadcast_buffers=False` where BatchNorm
    statistics are synced anyway). Lightning's per-step stop-signal broadcast is off: `PreemptionCheckpoint` has
    the ranks agree on stop signals every N steps and stops them all at the same step."""

    def relaunch_context(self) -> AbstractContextManager:
        return _relaunch_as_this_job()


def _uses_gpus(trainer_cfg: DictConfig) -> bool:
    """GPUs asked for by name, or `auto` on a machine that has them."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _device_count(trainer_cfg: DictConfig) -> int:
    devices = trainer_cfg.get("devices", 1)
    gpus = _uses_gpus(trainer_cfg) and torch.cuda.is_available()
    if isinstance(devices, ListConfig | list | tuple):
        count = len(devices)
    elif str(devices) in ("-1", "auto"):
        count = torch.cuda.device_count() if gpus else 1
    else:
        count = len(str(devices).split(",")) if "," in str(devices) else int(devices)
    return count * int(trainer_cfg.get("num_nodes", 1))


def distributed_options(trainer_cfg: DictConfig) -> dict[str, Any]:
    """Trainer arguments that make `trainer.devices=N` (N > 1) train DDP without other flags: strategy auto/ddp
    becomes `HydraDDPStrategy` (InfoNCE negatives are then gathered from every device by `DIMModule._gather`), and
    `sync_batchnorm: null` becomes true on GPUs (SyncBatchNorm has no CPU kernel, so CPU processes keep per-process
    statistics). Explicit settings (`strategy=ddp_spawn`, `sync_batchnorm=false`) are kept."""
    count = _device_count(trainer_cfg)
    options: dict[str, Any] = {}
    strategy = trainer_cfg.get("strategy", "auto")
    sync_batchnorm = trainer_cfg.get("sync_batchnorm")
    if sync_batchnorm is None:
        sync_batchnorm = options["sync_batchnorm"] = count > 1 and _uses_gpus(trainer_cfg)
    if strategy == "ddp" or (strategy == "auto" and count > 1):
        # synced BatchNorm keeps the same statistics on every rank: no buffer broadcast before each forward
        options["strategy"] = HydraDDPStrategy(broadcast_buffers=not sync_batchnorm)
    return options


# How gloo reports a peer that died or stopped answering (NCCL's reports are `DistError`s)
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out waiting")


def lost_peer(error: BaseException) -> bool:
    """Whether `error` is a collective's report that another rank is gone (it died or stopped answering)."""
    if isinstance(error, torch.distributed.DistError):
        return True
    return isinstance(error, RuntimeError) and any(marker in str(error) for marker in _LOST_PEER)


def global_batch_note(batch_size: int, world_size: int, negatives: str) -> str:
    """The log line that says what `data.batch_size` (per device) makes of a step on `world_size` devices, and how
    many negatives each image gets from `negatives` (the critic's negatives strategy, a `_target_`)."""
    total = batch_size * world_size
    devices = f"{batch_size} per device (data.batch_size) x {world_size} devices" if world_size > 1 else "1 device"
    if negatives.endswith("all_pairs"):
        against = f"each image's negatives are the {total - 1} other images of the global batch (all their locations)"
    elif negatives.endswith("shuffled_pairs"):
        against = f"each image gets one shuffled partner from its own device's {batch_size} images"
    else:
        against = f"negatives by {negatives}"
    return f"Global batch: {total} images per forward step ({devices}); {against}"


# What the subprocess launcher sets in rank 0's own environment; a later job of the same multirun process must not
# inherit it (LOCAL_RANK would make Lightning believe its processes were started externally).
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def run_scoped_process_group() -> Iterator[None]:
    """One run's DDP state ends with the run: the process group is destroyed and the launcher's environment
    variables restored, so the next job of a multirun (same process) starts its own DDP from scratch."""
    saved = {name: os.environ.get(name) for name in LAUNCH_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
