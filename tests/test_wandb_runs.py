"""W&B needs no account: offline unless logged in or WANDB_MODE is set."""

from __future__ import annotations

import pytest

from dim_lightning.run.wandb_runs import wandb_logged_in, wandb_logger


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


def test_the_wandb_run_id_saver_comes_with_the_wandb_logger_only(make_config) -> None:
    from dim_lightning.config.builders import build_callbacks
    from dim_lightning.run.wandb_runs import SaveWandbRunId

    def savers(*overrides: str) -> int:
        return sum(isinstance(c, SaveWandbRunId) for c in build_callbacks(make_config(*overrides)))

    assert (savers("logger=csv"), savers("logger=none"), savers("logger=wandb")) == (0, 0, 1)


@pytest.mark.slow
def test_resume_continues_the_same_offline_wandb_run(make_config, tmp_path, offline_wandb, capfd) -> None:
    from dim_lightning.train import train
    from tests.conftest import FAST, SMALL_CRITIC

    short = [*FAST, SMALL_CRITIC["dot"], "logger=wandb", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
    light_eval = ["eval.suite.places=[Y]", "eval.suite.mlp=false", "eval.random_init_baseline=false"]
    first = train(make_config(*short, "trainer.max_epochs=1", *light_eval)).trainer  # also uploads the retrieval images
    run_id = first.logger.version
    assert len(list((tmp_path / "wandb").glob("offline-run-*/files/media/images/retrieval_*.png"))) == 2
    first.logger.experiment.finish()
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    resumed = train(
        make_config(*short, "trainer.max_epochs=2", "callbacks.final_evaluation=null", f"ckpt_path={checkpoint}")
    ).trainer
    assert resumed.logger.version == run_id
    assert resumed.global_step == 4
    resumed.logger.experiment.finish()
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert "anonymous setting" not in "".join(capfd.readouterr())  # Lightning's anonymous=None, dropped
