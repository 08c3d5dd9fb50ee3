"""What the same command does in a run dir that already holds a run (a SLURM or submitit requeue, or a person
pressing up-arrow): `decide` continues it, finishes it, or refuses to mix two configs.

- `ckpt_path=PATH` (or `last`): resume exactly that checkpoint, with whatever config is given (e.g. more epochs).
- `resume=false`: start afresh, the earlier run first set aside in `<run dir>/previous/<time>/`.
- otherwise, with `<run dir>/checkpoints/last.ckpt` present: another config's checkpoint is refused (exit 2, the
  differing keys named; paths under the run dir compare relative to it); an unfinished run resumes; a finished
  run (`FINISHED_KEY`, written by `EpochCheckpoint`) whose metrics.json came from that checkpoint (the same
  `run_id` and `global_step`), or that writes none, is complete (exit 0); another finished run redoes only its
  final evaluation.
The run dir must hold no symlink, and what is read from it is checked: anything else is one paragraph, exit 2."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_info

from dim_lightning.errors import DIMError, require
from dim_lightning.eval.run_id import RUN_ID_KEY
from dim_lightning.run.checkpoints import FINISHED_KEY, last_checkpoint, read_checkpoint, resolve_ckpt_path
from dim_lightning.run.run_dir import check_run_dir
from dim_lightning.run.untrusted import Targets

# Keys that say how to start, not what the run is.
START_KEYS = ("ckpt_path", "resume", "trust_checkpoint")
METRICS = "metrics.json"
MAX_METRICS_BYTES = 1 << 20  # a metrics.json holds a few hundred numbers (a few KB)
RUN_DIR = "<run dir>"  # stands for the run dir in compared paths


@dataclass
class ResumeDecision:
    """The checkpoint to fit from (None: from scratch), for a complete run its final metrics, and whether an earlier
    run in the dir is set aside first (resume=false)."""

    ckpt_path: str | None = None
    complete_metrics: dict[str, Any] | None = None
    set_aside: bool = False


def differing_keys(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config trees (dicts and lists compared by key/index)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(set(saved) | set(current), key=str)
        return [
            d
            for k in keys
            for d in differing_keys(saved.get(k, "<absent>"), current.get(k, "<absent>"), f"{prefix}{k}.")
        ]
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [
            d
            for i, (s, c) in enumerate(zip(saved, current, strict=True))
            for d in differing_keys(s, c, f"{prefix}{i}.")
        ]
    return [] if saved == current else [prefix.rstrip(".")]


def relative_to_run_dir(tree: Any, run_dir: Any) -> Any:
    """`tree` with every string that is `run_dir` or a path under it written as '<run dir>[/...]': the config of a
    run dir that was moved or copied compares equal to the same config in its new place."""
    if not isinstance(run_dir, str) or not run_dir or os.path.normpath(run_dir) == os.sep:
        return tree
    root = os.path.normpath(run_dir)
    if isinstance(tree, dict):
        return {key: relative_to_run_dir(value, run_dir) for key, value in tree.items()}
    if isinstance(tree, list):
        return [relative_to_run_dir(value, run_dir) for value in tree]
    if isinstance(tree, str) and tree:
        path = os.path.normpath(tree)
        if path == root or path.startswith(root + os.sep):
            return RUN_DIR + path[len(root) :]
    return tree


def _as_run_config(cfg: DictConfig, start: dict[str, Any]) -> dict[str, Any]:
    """`cfg` resolved as the module saves it, with the start keys set to `start` (they may feed interpolations,
    e.g. the W&B logger's `resume_from: ${ckpt_path}`)."""
    copy = cfg.copy()
    with open_dict(copy):
        for key in START_KEYS:
            copy[key] = start.get(key)
    return OmegaConf.to_container(copy, resolve=True)


def _refuse_another_config(cfg: DictConfig, saved: dict[str, Any], last: Path) -> None:
    paths = saved.get("paths")
    saved_dir = paths.get("output_dir") if isinstance(paths, dict) else None
    differing = differing_keys(
        relative_to_run_dir(saved, saved_dir), relative_to_run_dir(_as_run_config(cfg, saved), cfg.paths.output_dir)
    )
    if differing:
        shown = ", ".join(differing[:12]) + (f" and {len(differing) - 12} more" if len(differing) > 12 else "")
        raise DIMError(
            f"{last.parent.parent} holds a checkpoint of a different config (differing keys: {shown}), so this "
            "command would mix two runs. Use another hydra.run.dir for the new config; or start afresh here with "
            "resume=false (sets the earlier run aside in previous/); or continue that run with these settings with "
            "ckpt_path=last"
        )


def _count(value: Any, what: str, last: Path) -> int:
    """`value` if it is a count (an int >= 0), else the error that the file is not one train.py wrote."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise DIMError(
        f"{last} holds {what}={repr(value)[:80]}, not a count, so it is not a checkpoint train.py wrote; start "
        "afresh here with resume=false (sets it aside in previous/) or use another hydra.run.dir"
    )


def _callback_values(checkpoint: dict[str, Any], key: str) -> list[Any]:
    """`key` of every callback state in the checkpoint that has it."""
    states = checkpoint.get("callbacks")
    return [s[key] for s in (states.values() if isinstance(states, dict) else ()) if isinstance(s, dict) and key in s]


def _position(checkpoint: dict[str, Any], step: int, last: Path) -> str:
    """'step N of epoch E (batch B of it)' of the next batch to train. E is the number of epochs trained (Lightning's
    loop state): the data module's saved epoch is one ahead after a stop at an epoch's end."""
    loops = checkpoint.get("loops")
    try:
        epoch = _count(loops["fit_loop"]["epoch_progress"]["current"]["processed"], "the epochs trained", last)
    except (KeyError, TypeError):
        epoch = _count(checkpoint.get("epoch"), "epoch", last)
    for state in checkpoint.values():
        if isinstance(state, dict) and "train_position" in state:
            position = state["train_position"]
            require(
                isinstance(position, list | tuple) and len(position) == 2,
                f"{last}'s train_position is not "
                "(epoch, batch); it is not a checkpoint train.py wrote: start afresh with resume=false",
            )
            return f"step {step} of epoch {epoch} (batch {_count(position[1], 'the batch position', last)} of it)"
    return f"step {step} of epoch {epoch}"


def read_metrics(path: Path) -> dict[str, Any]:
    """A run dir's metrics.json (numbers, and the run id), or a `DIMError` that says how to redo it."""
    fix = f"move it away (e.g. to {path.name}.bad) and the same command redoes the final evaluation that writes it"
    require(path.is_file(), f"{path} is not a file; {fix}")
    size = path.stat().st_size
    require(size <= MAX_METRICS_BYTES, f"{path} is {size} bytes, far more than a metrics.json holds; {fix}")
    try:
        metrics = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:
        raise DIMError(f"{path} is not JSON ({type(error).__name__}: {str(error)[:200]}); {fix}") from error
    require(
        isinstance(metrics, dict)
        and all(
            (isinstance(v, int | float) and not isinstance(v, bool)) or (k == RUN_ID_KEY and isinstance(v, str))
            for k, v in metrics.items()
        ),
        f"{path} is not a metrics.json (a mapping of names to numbers, as the final evaluation writes); {fix}",
    )
    return metrics


def _complete_metrics(cfg: DictConfig, checkpoint: dict[str, Any], step: int) -> dict[str, Any] | None:
    """For a finished checkpoint: the run's final metrics if metrics.json was written from it (the same run id and
    step; {} when this config writes no metrics.json), else None (the final evaluation is to be redone)."""
    run_dir = Path(cfg.paths.output_dir)
    path = run_dir / METRICS
    if (cfg.get("callbacks") or {}).get("final_evaluation") is None:  # its writer
        rank_zero_info(
            f"The run in {run_dir} is complete (trained to step {step}, callbacks.final_evaluation=null: no "
            f"{METRICS}): nothing to do. Start afresh with resume=false"
        )
        return {}
    metrics = read_metrics(path) if path.exists() or path.is_symlink() else None
    # None: a checkpoint older than run ids, matched by its step alone
    run_id = next((i for i in _callback_values(checkpoint, RUN_ID_KEY) if isinstance(i, str)), None)
    if metrics is None or metrics.get("global_step") != step or run_id not in (None, metrics.get(RUN_ID_KEY)):
        why = ", which had not finished" if metrics is None else f": its {METRICS} is another run's (run id or step)"
        rank_zero_info(f"Training in {run_dir} finished at step {step}; redoing the final evaluation{why}")
        return None
    rank_zero_info(
        f"The run in {run_dir} is complete (trained to step {step}, {METRICS} written from that checkpoint): "
        "nothing to do. Start afresh with resume=false"
    )
    return metrics


def decide(cfg: DictConfig, allowed_targets: Targets) -> ResumeDecision:
    """Where this run starts from (see the module doc); raises DIMError for a run dir of another config. Every
    checkpoint is read as data (`trust_checkpoint` aside), its run config limited to `allowed_targets`."""
    run_dir = Path(cfg.paths.output_dir)
    check_run_dir(run_dir)
    trust = bool(cfg.get("trust_checkpoint", False))
    if cfg.get("ckpt_path") is not None:
        return ResumeDecision(resolve_ckpt_path(cfg.ckpt_path, run_dir, trust, allowed_targets))
    if not cfg.get("resume", True):
        return ResumeDecision(set_aside=True)
    last = last_checkpoint(run_dir)
    if not last.is_file():
        return ResumeDecision()
    checkpoint = read_checkpoint(last, "the run dir's checkpoint", trust, allowed_targets)
    _refuse_another_config(cfg, checkpoint["hyper_parameters"]["run_config"], last)
    step = _count(checkpoint.get("global_step"), "global_step", last)
    if not any(mark is True for mark in _callback_values(checkpoint, FINISHED_KEY)):
        rank_zero_info(f"Found {last}: resuming from {_position(checkpoint, step, last)}")
    elif (complete := _complete_metrics(cfg, checkpoint, step)) is not None:
        return ResumeDecision(complete_metrics=complete)
    return ResumeDecision(resolve_ckpt_path(str(last), run_dir, trust, allowed_targets))
