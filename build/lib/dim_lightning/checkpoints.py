"""Checkpoint files: atomic writes (temporary file in the same folder, then `os.replace`), and `ckpt_path`
checked before a run starts (`last` means the run directory's own checkpoints/last.ckpt; a missing,
truncated or foreign file is a clear error, not a traceback or a silent fresh start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from dim_lightning.atomic import atomic_write
from dim_lightning.errors import DIMError, require

LAST = "last"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with `atomic_write` (Lightning's own save goes through a temporary
    file in the system temp folder, which is a copy, not a rename, when that is another file system)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_write(path, lambda file: torch.save(checkpoint, file))


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint at `path` (tensors memory-mapped, so this is cheap), or a `DIMError` that says why it is
    not a usable dim-lightning checkpoint."""
    require(
        Path(path).is_file(),
        f"{key}={path} is not a file; pass a checkpoint written by a run, e.g. "
        f"{key}=outputs/train/runs/<run>/checkpoints/last.ckpt",
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:
        raise DIMError(
            f"{key}={path} could not be read as a PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the file is truncated or corrupt (a copy cut "
            "short?): use another checkpoint of the run, e.g. one under its checkpoints/ folder, or start afresh"
        ) from error
    run_config = (checkpoint.get("hyper_parameters") or {}).get("run_config") if isinstance(checkpoint, dict) else None
    require(
        run_config is not None and "state_dict" in checkpoint,
        f"{key}={path} is a PyTorch file but not a dim-lightning checkpoint (no saved run config or weights); "
        "pass a checkpoint written by train.py",
    )
    return checkpoint


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path) -> str | None:
    """The checkpoint file a run resumes from: None, `last` (<output_dir>/checkpoints/last.ckpt, i.e. the run
    directory given by hydra.run.dir), or a path; checked to be a readable, resumable checkpoint."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == LAST:
        path = Path(output_dir) / "checkpoints" / "last.ckpt"
        require(
            path.is_file(),
            f"ckpt_path=last resumes the run directory's own checkpoint, but {path} does not exist; point "
            "hydra.run.dir at the run to resume (e.g. hydra.run.dir=outputs/train/runs/<run> ckpt_path=last) "
            "or pass ckpt_path=<file>",
        )
        ckpt_path = str(path)
    checkpoint = read_checkpoint(ckpt_path)
    require(
        "loops" in checkpoint and "optimizer_states" in checkpoint,
        f"ckpt_path={ckpt_path} holds weights only (no training state), so training cannot resume from it; "
        "use it with `python -m dim_lightning.evaluate ckpt=...`, or resume from checkpoints/last.ckpt",
    )
    require(
        len(checkpoint["optimizer_states"]) == 1,
        f"ckpt_path={ckpt_path} holds {len(checkpoint['optimizer_states'])} optimizer states: it was written by "
        "an older version that stepped the adversarial prior's discriminator with its own optimizer, and this "
        "version trains with one optimizer; evaluate it (`python -m dim_lightning.evaluate ckpt=...`) or "
        "start the training afresh",
    )
    return str(ckpt_path)
