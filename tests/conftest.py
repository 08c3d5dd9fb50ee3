"""Shared helpers: compose the real Hydra config (as `train.py` does) for in-process runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch._inductor.runtime.cache_dir_utils import default_cache_dir as default_inductor_cache_dir

from dim_lightning.config import CONF_DIR
from dim_lightning.run.distributed import LAUNCH_ENV
from dim_lightning.training import compile_cache

REPO = Path(__file__).resolve().parents[1]
# Compiled code of the tests stays where torch keeps it by default (a per-user folder in the temp dir), not in
# the user's cache folder that training uses (dim_lightning.training.compile_cache); subprocesses inherit it.
os.environ.setdefault(compile_cache.ENV, default_inductor_cache_dir())

# Small, fast settings shared by in-process runs: small batches and critic embeddings.
FAST = ["logger=csv", "data.batch_size=32"]
SMALL_CRITIC = {"dot": "critic.network.units=64", "concat": "critic.network.hidden=32"}
# One short deterministic epoch of 4 batches at 16 px, metrics.json with the training numbers only (eval.final=false).
SHORT_RUN = [
    *FAST,
    SMALL_CRITIC["dot"],
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.deterministic=true",
    "eval.final=false",
    "model.z_dim=32",
    "data.image_size=16",
]
# A Trainer that only trains: no validation, logger, checkpoints, progress bar or summary.
TRAIN_ONLY = {
    "limit_val_batches": 0,
    "num_sanity_val_steps": 0,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def compose_config(
    *overrides: str, output_dir: Path, config_name: str = "train", conf_dir: Path = CONF_DIR
) -> DictConfig:
    """The full train (or evaluate) config of `overrides` as train.py composes it, with outputs in `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


@pytest.fixture
def make_config(tmp_path: Path):
    """compose(overrides) -> the full train (or evaluate) config with outputs under tmp_path (`conf_dir`: another
    config tree, e.g. a copy of conf/ with a new option)."""

    def _compose(
        *overrides: str, config_name: str = "train", output_dir: Path = tmp_path, conf_dir: Path = CONF_DIR
    ) -> DictConfig:
        return compose_config(*overrides, output_dir=output_dir, config_name=config_name, conf_dir=conf_dir)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch) -> Path:
    """W&B as a user without an account sees it: no mode or key set, a fresh HOME (no login), quiet."""
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def run_cli(*args: str, cwd: Path, timeout: int = 300, program: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `python train.py ARGS` (or `python PROGRAM ARGS`) as a user would, from `cwd`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, *(program or (str(REPO / "train.py"),)), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def main_in_process(tmp_path: Path, monkeypatch, capfd):
    """main(ARGS) of an entry point run in this process, from tmp_path, as its command line runs it (Hydra, the
    one-paragraph errors, the exit code) without the start-up of a new Python: returns (exit code, output)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def run(main, *args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["train.py", *args])
        code = 0
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        finally:
            GlobalHydra.instance().clear()
        captured = capfd.readouterr()
        return code, captured.out + captured.err

    return run


@pytest.fixture(autouse=True, scope="session")
def _user_cache_in_a_temporary_folder(tmp_path_factory):
    """The per-user cache (the pixel baseline's numbers) in a folder of the session's, not the user's ~/.cache;
    subprocesses inherit it."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user_cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(autouse=True)
def _launch_environment_is_left_as_found():
    """A test that left LOCAL_RANK & co. in this process would make every later DDP run wait forever for ranks it
    believes someone else starts: fail that test, not a later one."""
    before = {name: os.environ.get(name) for name in LAUNCH_ENV}
    yield
    assert {name: os.environ.get(name) for name in LAUNCH_ENV} == before
