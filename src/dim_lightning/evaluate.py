"""`python -m dim_lightning.evaluate ckpt=PATH [data=...]`: the evaluation suite on a saved checkpoint.

Writes `eval.json` (same `/` names as metrics.json), `eval.md` (a table per feature place), retrieval
pictures and `features.npz` into the Hydra run directory (outputs/evaluate/runs/<time>/ by default).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from dim_lightning.config import CONF_DIR
from dim_lightning.config.builders import SavedModel, build_random_init_baseline, load_checkpoint
from dim_lightning.config.compose import data_option, option_config
from dim_lightning.config.validation import validate_eval_config
from dim_lightning.data.base import ArrayDataModule
from dim_lightning.errors import require, user_errors_exit
from dim_lightning.eval.suite import run_suite
from dim_lightning.run.log_routing import route_lightning_logs

# How evaluate runs, not what it evaluates, and the sizes of generated data (random images: their number is the
# cost of the evaluation, not what the encoder learnt): conf/'s, never the file's.
RESOURCES = ("batch_size", "num_workers", "on_device", "num_train", "num_val", "num_classes")


def _trained_on(saved: SavedModel, trust: bool) -> DictConfig:
    """The checkpoint's own data set, split as it was for training: its saved data config, validated and without
    paths (`dim_lightning.config.saved`), run with conf/'s resources for that option (a file could ask for any
    batch size or worker count); as saved with `trust`."""
    data = saved.config.data.copy()
    if trust:
        return data
    option = data_option(data.get("_target_"))
    require(
        option is not None,
        f"the checkpoint was trained on data of your own ({data.get('_target_')}); name it: data=...",
    )
    require(
        "root" not in data,
        f"the checkpoint was trained on data={option}, read from a folder; a checkpoint's saved paths are never "
        f"used, so name it: data={option} data.root=<its folder>",
    )
    defaults = option_config("data", option)
    unknown = [key for key in data if key not in defaults]
    require(
        not unknown,
        f"the checkpoint's saved data config holds {', '.join(map(str, unknown[:5]))}, which data={option} does not "
        "take; pass a checkpoint written by train.py, or name the data: data=...",
    )
    for key in RESOURCES:
        if key in data:
            data[key] = defaults.get(key)
    return data


def _datamodule(cfg: DictConfig, saved: SavedModel) -> ArrayDataModule:
    """The data to evaluate on: `data=...` of the command line, else the checkpoint's own data set (`_trained_on`)."""
    datamodule = instantiate(cfg.data if cfg.get("data") is not None else _trained_on(saved, cfg.trust_checkpoint))
    require(
        (datamodule.channels, datamodule.image_size) == (saved.channels, saved.image_size),
        lambda: (
            f"the checkpoint's encoder takes {saved.channels}-channel {saved.image_size}px images, "
            f"but this data gives {datamodule.channels}-channel {datamodule.image_size}px ones; "
            f"pass data.image_size={saved.image_size} or data matching the training data"
        ),
    )
    return datamodule


def evaluate(cfg: DictConfig) -> dict[str, float]:
    route_lightning_logs()
    validate_eval_config(cfg)
    saved = load_checkpoint(cfg.ckpt, trust=cfg.trust_checkpoint, trusted=cfg)
    datamodule = _datamodule(cfg, saved)
    datamodule.setup("validate")
    pl.seed_everything(cfg.seed, workers=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    random_encoder = None
    if cfg.random_init or cfg.eval.random_init_baseline:
        random_encoder = build_random_init_baseline(saved.config, datamodule, cfg.seed, device)
    encoder = random_encoder if cfg.random_init else saved.module.encoder.to(device)
    output_dir = Path(cfg.paths.output_dir)
    baseline_encoder = None if cfg.random_init else random_encoder
    metrics = run_suite(encoder, datamodule, output_dir, device, baseline_encoder, cfg.seed, **cfg.eval.suite)
    print((output_dir / "eval.md").read_text())
    print(f"wrote {output_dir / 'eval.json'}")
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with user_errors_exit("python -m dim_lightning.evaluate"):
        evaluate(cfg)


if __name__ == "__main__":
    main()
