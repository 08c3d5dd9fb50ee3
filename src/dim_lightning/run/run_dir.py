"""The run directory as a place to write. A run dir may come from someone else (a copied run to continue), so:
- one that is a symlink or holds one that leads outside it, a hard link, a FIFO, socket or device, or a folder
  where the run writes a file (or the reverse), is refused, exit 2: the run appends to train.log, replaces
  checkpoints and metrics.json and creates csv/, and through a link those writes would land wherever it points.
  Symlinks to files that stay inside are fine (but not at a name the run writes, nor to a folder: a sweep's job
  dir there would be another's, written by Hydra before any check), and so are those below wandb/: W&B makes
  them (logs/debug-core.log leads into its cache) and replaces a link by renaming over it, never writing
  through one. `RunDirCheck`, a Hydra callback, checks before Hydra writes .hydra/ and opens train.log;
  `resume_policy` checks again for Python callers;
- before training (rank 0, `prepare`): the dir must be writable, temporary files of writes that a killed run left
  are removed, and with resume=false the earlier run is set aside in previous/<time>/.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info

from dim_lightning.errors import DIMError, require, user_errors_exit
from dim_lightning.run.checkpoints import CHECKPOINT_DIR
from dim_lightning.utils.atomic import remove_leftovers

WANDB = "wandb"  # W&B's own folder: the links below it are W&B's (see the module docstring)
MAX_ENTRIES = 100_000  # a run dir holds a few hundred files; the check walks no further
PREVIOUS = "previous"  # <run dir>/previous/<time>/: earlier runs set aside by resume=false
LOG = "train.log"
CSV = "csv"  # the CSV logger's folder: version_<n>/ folders only
CSV_VERSION = re.compile(r"version_([0-9]{1,9})")  # the CSV logger's version folders (dim-report reads them)
LOG_KEPT_BYTES = 64 * 2**20  # of an earlier run's train.log, set aside by resume=false: a real one is a few MB
THIS_RUN = (".hydra", LOG, PREVIOUS)  # written by Hydra for this run before training starts; earlier set-asides
PROGRAMS = {"train": "train.py", "evaluate": "python -m dim_lightning.evaluate"}  # by the root config's name
WRITTEN = {  # what a run writes in its dir, by kind
    ".hydra": "folder",
    ".hydra/config.yaml": "file",
    ".hydra/hydra.yaml": "file",
    ".hydra/overrides.yaml": "file",
    "multirun.yaml": "file",  # a sweep dir's
    LOG: "file",
    CHECKPOINT_DIR: "folder",
    f"{CHECKPOINT_DIR}/last.ckpt": "file",
    "metrics.json": "file",
    "eval.json": "file",
    "eval.md": "file",
    "evaluate.log": "file",
    "features.npz": "file",
    "tsne.png": "file",
    "retrieval_l2.png": "file",
    "retrieval_cos.png": "file",
    CSV: "folder",
    "tensorboard": "folder",
    PREVIOUS: "folder",
}


def _link_error(run_dir: Path, link: Path) -> DIMError:
    target = os.readlink(link)[:200]
    return DIMError(
        f"the run dir {run_dir} holds a symlink that leads outside it (or nowhere, to a folder, or stands where the "
        f"run writes), {link} -> {target}: a run writes into its dir (train.log, checkpoints/, metrics.json, csv/), "
        "and through such a link those writes would land elsewhere. Use a copy without links (cp -rL copies what "
        "links point to) or remove the link; or pick another hydra.run.dir"
    )


def _leads_inside(link: Path, root: str) -> bool:
    """Whether `link` resolves (through every link on the way) to an existing path inside `root`, as W&B's own
    wandb/latest-run does."""
    try:
        target = os.path.realpath(link, strict=True)
    except OSError:  # dangling, or a loop
        return False
    return target.startswith(root + os.sep)


def _kind(entry: os.DirEntry) -> str | None:
    """'link', 'folder', 'file', 'hard link' (a file with other names) or 'other' (a FIFO, socket or device), never
    through a link; None if it is gone."""
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "folder"
        if not entry.is_file(follow_symlinks=False):
            return "other"
        return "hard link" if entry.stat(follow_symlinks=False).st_nlink > 1 else "file"
    except FileNotFoundError:
        return None  # removed while we looked (another rank writing)


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """(path, kind) of every entry under `root`, depth first, never through a link."""
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            scan = os.scandir(folder)
        except FileNotFoundError:
            continue
        except PermissionError as error:
            raise DIMError(f"cannot read {folder} to check the run dir ({error}); make it readable") from error
        with scan:
            for entry in scan:
                kind = _kind(entry)
                if kind == "folder":
                    pending.append(Path(entry.path))
                if kind is not None:
                    yield Path(entry.path), kind


def _written_kind(relative: Path) -> str | None:
    """What a run writes at `relative` (a path in its dir, or in a sweep dir: <job>/.hydra/config.yaml is a
    job's), if anything: the kind of the first of its tails that `WRITTEN` names."""
    parts = relative.parts
    return next((WRITTEN[tail] for i in range(len(parts)) if (tail := "/".join(parts[i:])) in WRITTEN), None)


def _entry_problem(root: Path, path: Path, kind: str) -> str | None:
    """Why the run could not safely write at `path` (an entry of the run dir `root`), if it could not."""
    expected = _written_kind(path.relative_to(root))
    if kind == "other":
        return f"holds {path}, neither a file nor a folder (a FIFO, socket or device); remove it"
    if kind == "hard link":
        return (
            f"holds {path}, a hard link (the same file under another name, maybe outside it): writing the run's "
            "files would change that file too; copy the run dir without hard links (cp -r) or remove it"
        )
    if expected is not None and kind in ("file", "folder") and kind != expected:
        return f"holds {path} as a {kind}, where a run writes a {expected}; move it away"
    if path.parent == root / CSV and not (kind == "folder" and CSV_VERSION.fullmatch(path.name)):
        return (
            f"holds {path}, which is not a version_<n> folder (n: at most 9 digits) as the CSV logger writes "
            "there (it numbers its next version from the names it finds); move it away"
        )
    return None


def check_run_dir(run_dir: str | Path) -> None:
    """Raise `DIMError` when `run_dir` is a symlink, is not a folder, or holds, anywhere inside, a symlink that leads
    outside it or nowhere (but W&B's, below wandb/), a hard link, anything but files, folders and links, or a
    folder where the run writes a file (or the reverse) (a walk that never follows a link, of at most
    `MAX_ENTRIES` entries)."""
    root = Path(run_dir)
    if root.is_symlink():
        raise _link_error(root.parent, root)
    if not root.exists():
        return
    require(root.is_dir(), f"the run dir {root} is a file, not a folder; pick another hydra.run.dir")
    real_root = os.path.realpath(root)
    for seen, (path, kind) in enumerate(_walk(root), start=1):
        require(
            seen <= MAX_ENTRIES,
            f"the run dir {root} holds over {MAX_ENTRIES} files and folders, far more than a run writes; pick "
            "another hydra.run.dir",
        )
        wandbs_own = WANDB in path.relative_to(root).parts[:-1]  # below a run's wandb/ (a sweep's: <job>/wandb/)
        written = _written_kind(path.relative_to(root)) is not None
        if kind == "link" and not wandbs_own and (written or path.is_dir() or not _leads_inside(path, real_root)):
            raise _link_error(root, path)  # a link to a folder: a sweep's job dir there would be another's
        problem = _entry_problem(root, path, kind)
        if problem:
            raise DIMError(f"the run dir {root} {problem}, or pick another hydra.run.dir")


class RunDirCheck(Callback):
    """Hydra callback: `check_run_dir` on the run dir (a multirun: its sweep dir) before Hydra writes into it, with
    the program's one-paragraph error and exit code 2."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        with user_errors_exit(PROGRAMS.get(str(OmegaConf.select(config, "hydra.job.config_name")), "train.py")):
            HydraConfig.instance().set_config(config)  # for ${hydra:...} in the dir's name
            check_run_dir(str(OmegaConf.select(config, key)))


def prepare(run_dir: str | Path, set_aside_earlier_run: bool) -> None:
    """Before training, on rank 0 alone: check that the run dir and its checkpoints/ are writable, remove the
    temporary files that writes killed mid-way (SIGKILL) left there, and, for resume=false, set an earlier run aside
    (`set_aside`), saying where in the log."""
    run_dir = Path(run_dir)
    folders = (run_dir, run_dir / CHECKPOINT_DIR)
    for folder in folders:
        require(
            not folder.exists() or os.access(folder, os.W_OK | os.X_OK),
            f"{folder} is not writable, so this run could save nothing there; make it writable (e.g. chmod -R u+w "
            f"{run_dir}) or use another hydra.run.dir (copy a run there with cp -r to continue it)",
        )
    for folder in folders:
        for path in remove_leftovers(folder):
            rank_zero_info(f"Removed {path}, the temporary file of a write that a killed run left")
    if set_aside_earlier_run and (moved := set_aside(run_dir)) is not None:
        rank_zero_info(
            f"resume=false: set the earlier run in {run_dir} aside in {moved} (its checkpoints, metrics.json, logs "
            f"and the lines of {LOG} so far), so nothing of it is taken for this run's; starting afresh"
        )


def set_aside(run_dir: str | Path) -> Path | None:
    """Move what an earlier run left in `run_dir` into previous/<time>/: everything but this run's .hydra/ (Hydra
    has already written it) and earlier set-aside runs; train.log, which Hydra holds open, is copied and emptied.
    None when there was nothing to set aside."""
    run_dir = Path(run_dir)
    earlier = sorted(p for p in run_dir.iterdir() if p.name not in THIS_RUN) if run_dir.is_dir() else []
    if not earlier:
        return None
    previous = run_dir / PREVIOUS
    require(
        not previous.is_symlink() and (not previous.exists() or previous.is_dir()),
        f"{previous} is not a folder (or is a link); move it away to start afresh",
    )
    target = _new_folder(previous / time.strftime("%Y-%m-%d_%H-%M-%S"))
    for path in earlier:
        os.replace(path, target / path.name)
    log = run_dir / LOG
    if log.is_file():
        _copy_tail(log, target / LOG, LOG_KEPT_BYTES)
        os.truncate(log, 0)  # Hydra's handler appends (O_APPEND): its next line starts the emptied file
    return target


def _new_folder(path: Path) -> Path:
    """A new folder at `path`, or at `path`.1, .2, ... if taken (another run set aside in the same second)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in range(1000):
        candidate = path.with_name(f"{path.name}.{suffix}") if suffix else path
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise DIMError(f"{path.parent} holds {path.name} and 999 numbered copies of it; move them away to start afresh")


def _copy_tail(source: Path, target: Path, limit: int) -> None:
    """Copy the last `limit` bytes of `source` (all of a real log: a huge or sparse one in a run dir from someone
    else would fill the disk), saying at its top what was left out."""
    with source.open("rb") as log, target.open("wb") as copy:
        size = log.seek(0, 2)
        if size > limit:
            copy.write(f"[the first {size - limit} bytes of this log were left out]\n".encode())
        log.seek(max(0, size - limit))
        shutil.copyfileobj(log, copy)
