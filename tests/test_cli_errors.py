"""Bad input through the real command line: one clear paragraph, non-zero exit, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

CASES = [
    (["estimator=foo"], "infonce"),  # Hydra lists the available options
    (["encoder=blog", "model.z_dim=100"], "divisible by 8"),
    (["encoder=blog", "data.image_size=40"], "divisible by 16"),
    (["model.beta=-1"], "must be >= 0"),
    (["model.beta=0"], "nothing to train"),
    (["model.gamma=0.1"], "prior=none"),
    (["data.batch_size=1"], "at least 2"),
    (["ckpt_path=missing.ckpt"], "is not a file"),
]


@pytest.mark.parametrize(("overrides", "message"), CASES)
def test_bad_input_gives_one_clear_error(tmp_path, overrides: list[str], message: str) -> None:
    result = run_cli(*overrides, "logger=none", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.glob("outputs/**/metrics.json"))


def test_evaluate_rejects_missing_corrupt_and_foreign_checkpoints(tmp_path) -> None:
    import torch

    (tmp_path / "corrupt.ckpt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    evaluate = ("-m", "dim_lightning.evaluate")
    for name, message in [
        ("missing.ckpt", "is not a file"),
        ("corrupt.ckpt", "corrupt"),
        ("foreign.ckpt", "not a dim"),
    ]:
        result = run_cli(f"ckpt={tmp_path / name}", cwd=tmp_path, program=evaluate)
        assert result.returncode == 2, name
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
