"""Bad checkpoints given to the evaluate program: one clear paragraph, exit code 2, no traceback.
(Bad train configs: tests/test_validation.py, in-process and through the command line.)"""

from __future__ import annotations

import pytest
import torch

from dim_lightning.config.builders import load_checkpoint
from dim_lightning.errors import DIMError
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
