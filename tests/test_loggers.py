"""W&B needs no account: offline unless logged in or WANDB_MODE is set."""

from __future__ import annotations

from dim_lightning.loggers import wandb_logged_in, wandb_logger


def test_wandb_is_offline_without_login(tmp_path, monkeypatch) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not wandb_logged_in()
    assert wandb_logger(save_dir=str(tmp_path))._offline
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_logged_in()
    assert not wandb_logger(save_dir=str(tmp_path))._offline
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_MODE", "online")  # an explicit mode is the user's choice, even logged out
    assert not wandb_logger(save_dir=str(tmp_path))._offline
