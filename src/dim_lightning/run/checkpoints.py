"""Checkpoint files: atomic writes (temporary file in the same folder, then `os.replace`) of tensors and plain
values only; every read, ours and Lightning's resume load, as `dim_lightning.run.checkpoint_file` reads files
from others (bounded, weights only, its structure checked); `ckpt_path` checked before a run starts (`last`
means the run directory's own checkpoints/last.ckpt; a missing, truncated or foreign file is a clear error, not a
traceback or a silent fresh start)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from dim_lightning.errors import require
from dim_lightning.run.checkpoint_file import load_checkpoint_file, run_config_of
from dim_lightning.run.untrusted import TRUST_HINT, Targets, check_restored_config, require_plain_data
from dim_lightning.utils.atomic import atomic_write

LAST = "last"
CHECKPOINT_DIR = "checkpoints"  # in the run dir; the checkpoint callbacks' dirpath (config.builders sets it)
FINISHED_KEY = "finished"  # in a callback's checkpoint state: training ended normally (read by resume_policy)


def last_checkpoint(run_dir: str | Path) -> Path:
    """<run dir>/checkpoints/last.ckpt: what resume and ckpt_path=last read."""
    return Path(run_dir) / CHECKPOINT_DIR / f"{LAST}.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with `atomic_write` (Lightning's own save goes through a temporary
    file in the system temp folder, which is a copy, not a rename, when that is another file system), that
    saves tensors and plain values only and loads (Lightning's resume load) as files from others are read
    unless `trust_checkpoint` (the run's trust_checkpoint, wired in conf/trainer/default.yaml)."""

    def __init__(self, trust_checkpoint: bool = False) -> None:
        super().__init__()
        self.trust_checkpoint = trust_checkpoint
        self._written: set[Path] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        require_plain_data(checkpoint)
        atomic_write(path, lambda file: torch.save(checkpoint, file))
        self._written.add(Path(path).resolve())

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = None,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Lightning's resume load: the file read as every untrusted checkpoint is (`load_checkpoint_file`), onto
        the CPU (Lightning moves the states to the device as it restores them)."""
        trust = self.trust_checkpoint if weights_only is None else not weights_only
        return load_checkpoint_file(path, f"ckpt_path={path}", trust)

    def remove_checkpoint(self, path: str | Path) -> None:
        """Delete a checkpoint file that this process wrote, nothing else: Lightning's own removal deletes folders
        recursively, on any fsspec protocol, and the path comes from a callback's state, which a resumed
        checkpoint restores (a user's own `ModelCheckpoint` would remove its "previous best" named by the file).
        An earlier process's older top-k files stay on disk."""
        path = Path(path)
        if path.resolve() in self._written and path.is_file() and not path.is_symlink():
            path.unlink()
            self._written.discard(path.resolve())


def read_checkpoint(
    path: str | Path, key: str = "ckpt_path", trust: bool = False, allowed_targets: Targets | None = None
) -> dict[str, Any]:
    """The checkpoint at `path` (tensors memory-mapped, so this is cheap), or a `DIMError` that says why it is
    not a usable dim-lightning checkpoint. Read as `load_checkpoint_file` reads untrusted files unless `trust`;
    with `allowed_targets`, its saved run config may only name those `_target_`s (unless `trust`)."""
    where = f"{key}={path}"
    checkpoint = load_checkpoint_file(path, where, trust)
    run_config = run_config_of(checkpoint, where, trust)
    require(
        isinstance(checkpoint.get("state_dict"), dict),
        f"{where} is a PyTorch file but not a dim-lightning checkpoint (no weights); pass a checkpoint written by "
        f"train.py. {TRUST_HINT}",
    )
    if allowed_targets is not None and not trust:
        check_restored_config(run_config, where, allowed_targets)
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
