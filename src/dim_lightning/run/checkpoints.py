"""Checkpoint files: atomic writes (temporary file in the same folder, then `os.replace`) of tensors and plain
values only, reads with `weights_only=True` (a file that needs arbitrary unpickling is refused unless
trust_checkpoint=true; see dim_lightning.run.untrusted), and `ckpt_path` checked before a run starts (`last` means
the run directory's own checkpoints/last.ckpt; a missing, truncated or foreign file is a clear error, not a
traceback or a silent fresh start)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from dim_lightning.errors import DIMError, require
from dim_lightning.run.untrusted import TRUST_HINT, Targets, check_restored_config, require_plain_data, unsafe_global
from dim_lightning.utils.atomic import atomic_write

LAST = "last"
CHECKPOINT_DIR = "checkpoints"  # in the run dir; the checkpoint callbacks' dirpath (conf/callbacks/*.yaml)
FINISHED_KEY = "finished"  # in a callback's checkpoint state: training ended normally (read by resume_policy)


def last_checkpoint(run_dir: str | Path) -> Path:
    """<run dir>/checkpoints/last.ckpt: what resume and ckpt_path=last read."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{LAST}.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with `atomic_write` (Lightning's own save goes through a temporary
    file in the system temp folder, which is a copy, not a rename, when that is another file system), that
    saves tensors and plain values only and loads (Lightning's resume load) with `weights_only=True` unless
    `trust_checkpoint` (the run's trust_checkpoint, wired in conf/trainer/default.yaml)."""

    def __init__(self, trust_checkpoint: bool = False) -> None:
        super().__init__()
        self.trust_checkpoint = trust_checkpoint

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        require_plain_data(checkpoint)
        atomic_write(path, lambda file: torch.save(checkpoint, file))

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        safe = not self.trust_checkpoint if weights_only is None else weights_only
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=safe)
        except Exception as error:
            if safe and unsafe_global(error):
                raise _unreadable(path, "ckpt_path", error) from error
            raise


def _unreadable(path: str | Path, key: str, error: Exception) -> DIMError:
    """Why `torch.load(weights_only=True)` could not read the file: it asks to unpickle a Python object (which
    could run code), or it is truncated or corrupt."""
    name = unsafe_global(error)
    if name:
        return DIMError(
            f"{key}={path} holds a pickled Python object ({name}) besides tensors and plain values; unpickling "
            "it could run code, so the file was not loaded (dim-lightning checkpoints hold tensors and plain "
            f"values only). {TRUST_HINT}"
        )
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    marker = next((i for i, line in enumerate(lines) if line.endswith("WeightsUnpickler error:")), None)
    reason = lines[marker + 1] if marker is not None and marker + 1 < len(lines) else (lines or [""])[0]
    return DIMError(
        f"{key}={path} could not be read as a PyTorch checkpoint ({type(error).__name__}: {reason}); the file "
        "is truncated or corrupt (a copy cut short?): use another checkpoint of the run, e.g. one under its "
        "checkpoints/ folder, or start afresh"
    )


def read_checkpoint(
    path: str | Path, key: str = "ckpt_path", trust: bool = False, allowed_targets: Targets | None = None
) -> dict[str, Any]:
    """The checkpoint at `path` (tensors memory-mapped, so this is cheap), or a `DIMError` that says why it is
    not a usable dim-lightning checkpoint. Read with `weights_only=True` unless `trust`; with
    `allowed_targets`, its saved run config may only name those `_target_`s (unless `trust`)."""
    require(
        Path(path).is_file(),
        f"{key}={path} is not a file; pass a checkpoint written by a run, e.g. "
        f"{key}=outputs/train/runs/<run>/checkpoints/last.ckpt",
    )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
    except Exception as error:
        raise _unreadable(path, key, error) from error
    hyper_parameters = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    run_config = hyper_parameters.get("run_config") if isinstance(hyper_parameters, dict) else None
    require(
        isinstance(run_config, dict) and isinstance(checkpoint.get("state_dict"), dict),
        f"{key}={path} is a PyTorch file but not a dim-lightning checkpoint (no saved run config or weights, or "
        f"not as train.py writes them: a config mapping and a state dict); pass a checkpoint written by train.py. "
        f"{TRUST_HINT}",
    )
    if allowed_targets is not None and not trust:
        check_restored_config(run_config, f"{key}={path}", allowed_targets)
    return checkpoint


def resolve_ckpt_path(
    ckpt_path: str | None,
    output_dir: str | Path,
    trust: bool = False,
    allowed_targets: Targets | None = None,
) -> str | None:
    """The checkpoint file a run resumes from: None, `last` (<output_dir>/checkpoints/last.ckpt, i.e. the run
    directory given by hydra.run.dir), or a path; checked to be a readable, resumable checkpoint (read and
    its run config checked as `read_checkpoint` does)."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == LAST:
        path = last_checkpoint(output_dir)
        require(
            path.is_file(),
            f"ckpt_path=last resumes the run directory's own checkpoint, but {path} does not exist; point "
            "hydra.run.dir at the run to resume (e.g. hydra.run.dir=outputs/train/runs/<run> ckpt_path=last) "
            "or pass ckpt_path=<file>",
        )
        ckpt_path = str(path)
    checkpoint = read_checkpoint(ckpt_path, trust=trust, allowed_targets=allowed_targets)
    require(
        "loops" in checkpoint and "optimizer_states" in checkpoint,
        f"ckpt_path={ckpt_path} holds weights only (no training state), so training cannot resume from it; "
        "use it with `python -m dim_lightning.evaluate ckpt=...`, or resume from checkpoints/last.ckpt",
    )
    return str(ckpt_path)
