"""Bad checkpoints given to the evaluate program: one clear paragraph, exit code 2, no traceback.
(Bad train configs: tests/test_validation.py, in-process and through the command line.)"""

from __future__ import annotations

import sys

import pytest
import torch

from dim_lightning.config.builders import load_checkpoint
from dim_lightning.errors import DIMError
from dim_lightning.evaluate import main as evaluate_main
from tests.conftest import run_cli

BAD_CHECKPOINTS = [("missing.ckpt", "is not a file"), ("corrupt.ckpt", "corrupt"), ("foreign.ckpt", "not a dim")]


@pytest.fixture
def bad_checkpoints(tmp_path):
    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    return tmp_path


def test_load_checkpoint_rejects_missing_corrupt_and_foreign_files(bad_checkpoints) -> None:
    for name, message in BAD_CHECKPOINTS:
        with pytest.raises(DIMError, match=message):
            load_checkpoint(str(bad_checkpoints / name))


@pytest.mark.slow
def test_evaluate_rejects_missing_corrupt_and_foreign_checkpoints(bad_checkpoints) -> None:
    evaluate = ("-m", "dim_lightning.evaluate")
    for name, message in BAD_CHECKPOINTS:
        result = run_cli(f"ckpt={bad_checkpoints / name}", cwd=bad_checkpoints, program=evaluate)
        assert result.returncode == 2, name
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_evaluate_refuses_an_old_key_with_the_new_one_named(monkeypatch, capsys) -> None:
    """model.betas is now model.optimizer.betas, a training setting evaluate has no use for: exit 2 with both
    said, not Hydra's "could not override"."""
    monkeypatch.setattr(sys, "argv", ["evaluate", "ckpt=last.ckpt", "model.betas=[0.5,0.999]"])
    with pytest.raises(SystemExit) as exited:
        evaluate_main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Could not override" not in err
    assert "model.betas was renamed model.optimizer.betas" in err and "the model as trained, saved in ckpt" in err
