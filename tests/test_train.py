"""End-to-end: every estimator x critic trains through the real config, the run contract holds, resume works."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from dim_lightning.evaluate import evaluate
from dim_lightning.mi.bounds import BOUNDS
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC

ESTIMATORS = list(BOUNDS)  # the registry; test_bounds checks each has its conf/estimator YAML


@pytest.mark.parametrize("critic", ["concat", "dot"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fast_dev_run_every_estimator_and_critic(make_config, critic: str, estimator: str) -> None:
    cfg = make_config(
        *FAST,
        f"critic={critic}",
        f"estimator={estimator}",
        "model.alpha=0.5",
        "debug=fast",
        "callbacks.final_evaluation=null",
        "model.z_dim=32",
        SMALL_CRITIC[critic],
    )
    trainer = train(cfg).trainer
    metrics = trainer.callback_metrics
    assert trainer.global_step == 1
    for name in ("train/loss", "train/mi_local", "train/mi_global", "val/mi_local", "val/loss"):
        assert math.isfinite(float(metrics[name])), name


def test_blog_preset_trains_the_blogs_recipe(make_config) -> None:
    """What `experiment=blog` (= `experiment=seed`) builds and runs is the blog's recipe: blog encoder with a
    Gaussian code of 256, concat critics on shuffled pairs for both terms, JSD (BCE), KL prior; the weights
    0.5 / 1.5 / 0.01; Adam 1e-3 with Keras' epsilon; batches of 100 images; 100 epochs."""
    from dim_lightning.mi import negatives
    from dim_lightning.models.critics import ConcatCritic
    from dim_lightning.models.encoders import BlogEncoder
    from dim_lightning.models.prior import KLPrior

    assert make_config("experiment=seed") == make_config("experiment=blog")
    run = ["experiment=blog", "data=digits", "debug=fast", "callbacks.final_evaluation=null"]
    trainer = train(make_config(*run)).trainer
    module = trainer.lightning_module
    assert isinstance(module.encoder, BlogEncoder) and module.encoder.head.log_var is not None
    assert module.encoder.head.mean.out_features == 256
    for term in module.terms.values():
        assert isinstance(term.critic, ConcatCritic) and term.negatives.func is negatives.shuffled_pairs
        assert term.bound.func.__name__ == "jsd"
    assert isinstance(module.prior, KLPrior)
    assert (module.term_weights["global"], module.term_weights["local"], module.gamma) == (0.5, 1.5, 0.01)
    adam = trainer.optimizers[0]
    assert (adam.defaults["lr"], adam.defaults["eps"]) == (1e-3, 1e-7)
    images, _ = next(iter(trainer.datamodule.train_dataloader()))
    assert images.shape[0] == 100 and images.shape[-1] == 64  # the blog's batch, at its 64x64 input
    assert make_config(*run[:2]).trainer.max_epochs == 100  # debug=fast replaces it with one step here
    assert math.isfinite(float(trainer.callback_metrics["train/prior"]))


@pytest.mark.slow
def test_run_writes_contract_and_resumes(make_config, tmp_path) -> None:
    cfg = make_config(*FAST, SMALL_CRITIC["dot"], "trainer.max_epochs=2")
    result = train(cfg)
    first = result.trainer
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert result.metrics == metrics  # train() returns what metrics.json holds
    for key in (
        "probe/val_acc",
        "knn/val_acc",
        "baseline/pixels_probe_val_acc",
        "train/img_per_s",
        "train/loss",
    ):
        assert math.isfinite(metrics[key]), key
    assert metrics["epoch"] == 2 and metrics["global_step"] == first.global_step > 0
    # two epochs already give a representation far above chance (0.1) on the 10 digit classes
    assert metrics["probe/val_acc"] > 0.7 and metrics["knn/val_acc"] > 0.5
    assert metrics["probe/val_acc"] > metrics["baseline/random_init_probe_val_acc"]  # learning beats its twin
    for metric in ("l2", "cos"):
        assert Image.open(tmp_path / f"retrieval_{metric}.png").size == (340, 340)  # 10 tiles of 32 px + 1-px frames

    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["run_config"]["model"]["beta"] == 1.0

    evaluated = evaluate(
        make_config(
            f"ckpt={checkpoint}",
            "eval.suite.places=[Y]",
            "eval.suite.mlp=false",
            config_name="evaluate",
            output_dir=tmp_path / "eval",
        )
    )
    assert abs(evaluated["probe/val_acc"] - metrics["probe/val_acc"]) <= 0.01
    assert json.loads((tmp_path / "eval" / "eval.json").read_text()) == evaluated

    resumed_cfg = make_config(
        *FAST, SMALL_CRITIC["dot"], "trainer.max_epochs=3", f"ckpt_path={checkpoint}", "eval.final=false"
    )
    resumed = train(resumed_cfg).trainer
    steps_per_epoch = first.global_step // 2
    assert resumed.global_step == 3 * steps_per_epoch
    resumed_metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert resumed_metrics["epoch"] == 3 and "probe/val_acc" not in resumed_metrics  # eval.final=false


def test_adversarial_prior_trains_its_discriminator_and_counts_one_step_per_batch(make_config) -> None:
    cfg = make_config(
        *FAST,
        SMALL_CRITIC["dot"],
        "prior=adversarial",
        "model.gamma=0.1",
        "trainer.max_epochs=5",
        "+trainer.max_steps=4",
        "trainer.limit_val_batches=1",
        "callbacks.final_evaluation=null",
    )
    trainer = train(cfg).trainer
    module = trainer.lightning_module
    # One batch is one step: max_steps=4 stops after 4 batches (two optimizer steps per batch stopped after 2).
    assert module.automatic_optimization and trainer.global_step == 4
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 4
    (optimizer,) = trainer.optimizers
    encoder_group, adversary_group = optimizer.param_groups
    adversary_parameters = set(module.prior.discriminator.parameters())
    assert set(adversary_group["params"]) == adversary_parameters and adversary_group["lr"] == 1e-4
    assert not adversary_parameters & set(encoder_group["params"]) and encoder_group["lr"] == cfg.model.lr
    assert all(optimizer.state[p]["step"] == 4 for p in adversary_parameters)  # both sides stepped every batch
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train/prior"])) and math.isfinite(float(metrics["train/prior_discriminator"]))


@pytest.mark.parametrize(
    ("preset", "writer", "estimator"),
    [("paper_cifar10_infonce", "write_cifar10", "infonce"), ("paper_tiny_jsd", "write_tiny_imagenet", "jsd")],
)
def test_paper_presets_compose_and_run(make_config, tmp_path, preset: str, writer: str, estimator: str) -> None:
    from tests import datasets

    root = getattr(datasets, writer)(tmp_path / "data")
    cfg = make_config(
        f"experiment={preset}",
        f"data.root={root}",
        "data.batch_size=8",
        "data.num_workers=0",
        "debug=fast",
        "callbacks.final_evaluation=null",
    )
    assert (cfg.model.alpha, cfg.model.beta, cfg.model.gamma, cfg.model.lr) == (0.0, 1.0, 0.1, 1e-4)
    assert cfg.prior._target_.endswith("AdversarialPrior") and cfg.estimator._target_.endswith(estimator)
    # the official encode-and-dot critic (raw dot product of 2048-unit embeddings), cortex's Adam betas for
    # every network, no augmentation
    assert (cfg.critic.network.units, cfg.critic.network.temperature) == (2048, 1.0)
    assert list(cfg.model.optimizer.betas) == list(cfg.prior.betas) == [0.5, 0.999]
    assert cfg.data.crop_padding == 0 and not cfg.data.flip
    trainer = train(cfg).trainer
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_a_last_validation_batch_of_one_image_is_skipped(make_config) -> None:
    # Validation keeps its last partial batch; one image has no negatives (the derangement needs two).
    from dim_lightning.config.builders import build_module

    cfg = make_config(*FAST, "experiment=blog", "data=digits", "data.image_size=32", "model.z_dim=32")
    module = build_module(cfg, channels=1, image_size=32)
    assert module.validation_step((torch.zeros(1, 1, 32, 32), torch.zeros(1, dtype=torch.long)), 0) is None


def test_progress_bar_callback_is_dropped_when_the_bar_is_disabled(make_config) -> None:
    from pytorch_lightning.callbacks import ProgressBar

    from dim_lightning.config.builders import build_callbacks

    assert any(isinstance(c, ProgressBar) for c in build_callbacks(make_config()))
    quiet = build_callbacks(make_config("+trainer.enable_progress_bar=false"))
    assert quiet and not any(isinstance(c, ProgressBar) for c in quiet)
