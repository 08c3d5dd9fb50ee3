"""What the same command does in a run directory that already holds a run (SLURM requeue, submitit's requeue,
or a person pressing up-arrow): continue it, finish it, or refuse to mix two configs.

- `ckpt_path=PATH` (or `last`): resume exactly that checkpoint, with whatever config is given (e.g. more epochs).
- `resume=false`: start afresh in the directory (its checkpoints and metrics.json are overwritten).
- otherwise (`resume: true`, the default), with `<run dir>/checkpoints/last.ckpt` present:
  - written by a different config: exit 2 naming the differing keys (never silently mixed);
  - an unfinished run: resume it ("resuming from step N of epoch E");
  - a finished run whose metrics.json exists (or that writes none: `callbacks.final_evaluation=null`): nothing to
    do ("the run is complete"), exit 0;
  - a finished run without metrics.json (stopped in its final evaluation): redo only the final evaluation.

"Finished" is a mark in the end-of-training `last.ckpt` (`FINISHED_KEY`, written by `EpochCheckpoint`); the final
training numbers an evaluation-only redo reports are restored by `ResumableEpochMeans`; metrics.json is written
by `FinalEvaluation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities import rank_zero_info

from dim_lightning.config.renamed import refuse_old_saved_config
from dim_lightning.errors import DIMError
from dim_lightning.run.checkpoints import FINISHED_KEY, last_checkpoint, read_checkpoint, resolve_ckpt_path
from dim_lightning.run.untrusted import Targets

# Keys that say how to start, not what the run is.
START_KEYS = ("ckpt_path", "resume", "trust_checkpoint")


@dataclass
class ResumeDecision:
    """The checkpoint to fit from (None: from scratch) and, for a complete run, its final metrics."""

    ckpt_path: str | None = None
    complete_metrics: dict[str, float] | None = None


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


def _as_run_config(cfg: DictConfig, start: dict[str, Any]) -> dict[str, Any]:
    """`cfg` resolved as the module saves it, with the start keys set to `start` (they may feed interpolations,
    e.g. the W&B logger's `resume_from: ${ckpt_path}`)."""
    copy = cfg.copy()
    with open_dict(copy):
        for key in START_KEYS:
            copy[key] = start.get(key)
    return OmegaConf.to_container(copy, resolve=True)


def _finished(checkpoint: dict[str, Any]) -> bool:
    return any(isinstance(s, dict) and s.get(FINISHED_KEY) for s in (checkpoint.get("callbacks") or {}).values())


def _position(checkpoint: dict[str, Any]) -> str:
    """'step N of epoch E' of the next batch to train (the data module saves the exact position)."""
    for state in checkpoint.values():
        if isinstance(state, dict) and "train_position" in state:
            epoch, batch = state["train_position"]
            return f"step {checkpoint['global_step']} of epoch {epoch} (batch {batch} of it)"
    return f"step {checkpoint['global_step']} of epoch {checkpoint['epoch']}"


def decide(cfg: DictConfig, allowed_targets: Targets) -> ResumeDecision:
    """Where this run starts from (see the module doc); raises DIMError for a run dir of another config. Every
    checkpoint is read as data (`trust_checkpoint` aside), its run config limited to `allowed_targets`."""
    run_dir = Path(cfg.paths.output_dir)
    trust = bool(cfg.get("trust_checkpoint", False))
    if cfg.get("ckpt_path") is not None:
        return ResumeDecision(resolve_ckpt_path(cfg.ckpt_path, run_dir, trust, allowed_targets))
    last = last_checkpoint(run_dir)
    if not last.is_file():
        return ResumeDecision()
    if not cfg.get("resume", True):
        rank_zero_info(f"resume=false: starting afresh in {run_dir}; its checkpoints and metrics are overwritten")
        return ResumeDecision()
    checkpoint = read_checkpoint(last, "the run dir's checkpoint", trust, allowed_targets)
    saved = checkpoint["hyper_parameters"]["run_config"]
    refuse_old_saved_config(saved, str(last))
    differing = differing_keys(saved, _as_run_config(cfg, saved))
    if differing:
        shown = ", ".join(differing[:12]) + (f" and {len(differing) - 12} more" if len(differing) > 12 else "")
        raise DIMError(
            f"{run_dir} holds a checkpoint of a different config (differing keys: {shown}), so this command would "
            f"mix two runs. Use another hydra.run.dir for the new config; or start afresh here with resume=false "
            f"(overwrites the run); or continue that run with these settings with ckpt_path=last"
        )
    metrics = run_dir / "metrics.json"
    evaluates = (cfg.get("callbacks") or {}).get("final_evaluation") is not None  # its writer
    if _finished(checkpoint) and (metrics.is_file() or not evaluates):
        written = f"{metrics.name} written" if evaluates else f"callbacks.final_evaluation=null: no {metrics.name}"
        rank_zero_info(
            f"The run in {run_dir} is complete (trained to step {checkpoint['global_step']}, {written}): nothing "
            "to do. Start afresh with resume=false"
        )
        return ResumeDecision(complete_metrics=json.loads(metrics.read_text()) if evaluates else {})
    if _finished(checkpoint):
        rank_zero_info(
            f"Training in {run_dir} finished at step {checkpoint['global_step']}; redoing the final "
            "evaluation, which had not finished"
        )
    else:
        rank_zero_info(f"Found {last}: resuming from {_position(checkpoint)}")
    return ResumeDecision(resolve_ckpt_path(str(last), run_dir, trust, allowed_targets))
