"""Config validation: every bad value is named with its valid choices, all problems at once, before a run.

The big table runs in-process through `config_problems` (composing a config takes milliseconds); the same
table goes through train.py's main() in the slow lane, and a sample of it through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from dim_lightning.config.builders import build_callbacks, build_trainer
from dim_lightning.config.validation import config_problems, validate_config
from dim_lightning.errors import DIMError
from dim_lightning.run.checkpoints import last_checkpoint, resolve_ckpt_path
from dim_lightning.train import main as train_main
from dim_lightning.train import train
from tests.conftest import run_cli

# (overrides, text the message must contain: the key and what is valid)
BAD_INPUTS = [
    (["model.lr=0"], "model.lr=0 must be a number in (0, inf]"),
    (["model.lr=-1e-3"], "model.lr=-0.001"),
    (["model.lr=fast"], "model.lr=fast must be a number"),
    (["model.alpha=-1"], "model.alpha=-1 must be a number in [0, inf]"),
    (["model.beta=-1"], "model.beta=-1"),
    (["model.beta=0"], "nothing to train"),
    (["model.gamma=-0.5"], "model.gamma=-0.5"),
    (["model.gamma=0.1"], "prior=none"),
    (["model.z_dim=0"], "model.z_dim=0 must be an integer in [1, 4096]"),
    (["model.z_dim=1.5"], "model.z_dim=1.5 must be an integer"),
    (["encoder=blog", "model.z_dim=100"], "divisible by 8"),
    (["encoder=blog", "data.image_size=40"], "divisible by 16"),
    (["data.image_size=20"], "divisible by 8"),
    (["encoder=alex64", "data.image_size=16"], "must be >= 32"),
    (
        ["model.optimizer.betas=[0.9,1.5]"],
        "model.optimizer.betas=[0.9, 1.5] must be a non-empty list, each item a number in [0, 1)",
    ),
    (["model.optimizer.eps=0"], "model.optimizer.eps=0"),
    (["model.optimizer.weight_decay=-1"], "model.optimizer.weight_decay=-1"),
    (["model.skip_nonfinite=maybe"], "model.skip_nonfinite=maybe must be true or false"),
    (["data.batch_size=1"], "data.batch_size=1 must be an integer in [2, 65536]"),
    (["data.val_fraction=1.0"], "data.val_fraction=1.0 must be a number in (0, 1)"),
    (["data.val_fraction=0"], "data.val_fraction=0"),
    (["data.test_fraction=1.5"], "data.test_fraction=1.5 must be a number in (0, 1)"),
    (["optimized_metric=probe/test_acc"], "official held-out split, which must never be optimized"),
    (["eval.suite.max_train_images=1"], "eval.suite.max_train_images=1 must be null or an integer >= 2"),
    (["data.num_workers=-1"], "data.num_workers=-1"),
    (["data.image_size=0"], "data.image_size=0"),
    (["data.crop_padding=-2"], "data.crop_padding=-2"),
    (["critic=concat", "critic.network.layers=0"], "critic.network.layers=0 must be an integer in [1, 16]"),
    (["critic=concat", "critic.network.hidden=0"], "critic.network.hidden=0"),
    (["critic.network.units=0"], "critic.network.units=0"),
    (["critic.network.temperature=0"], "critic.network.temperature=0"),
    (["critic=concat", "critic.negatives.allow_self=sometimes"], "critic.negatives.allow_self=sometimes must be true"),
    (["encoder.stochastic=1"], "encoder.stochastic=1 must be true or false"),
    (["data=tiny_imagenet", "data.skip_bad=maybe"], "data.skip_bad=maybe must be true or false"),
    (["model.optimizer=adam"], "model.optimizer=adam replaces a group of settings with one value; set its keys"),
    (["data=synthetic", "data.num_classes=1"], "data.num_classes=1 must be an integer in [2, 100000]"),
    (["trainer.devices=0"], "trainer.devices=0 must be an integer >= 1 or one of -1, auto"),
    (["trainer.devices=[0,-1]"], "trainer.devices=[0, -1]"),
    (["trainer.accelerator=gpus"], "trainer.accelerator=gpus must be one of auto, gpu, cpu, cuda"),
    (["trainer.strategy=horovod"], "trainer.strategy=horovod must be one of auto, ddp"),
    (["trainer.num_nodes=0"], "trainer.num_nodes=0 must be an integer >= 1"),
    (["logger=wandb", "logger.wandb.tags=[1,2]"], "logger.wandb.tags=[1, 2] must be a list, each item a string"),
    (["callbacks.knn_probe.k=0"], "callbacks.knn_probe.k=0"),
    (["callbacks.online_probe.lr=0"], "callbacks.online_probe.lr=0"),
    (["debug=preempt", "callbacks.preempt.signal=SIGKILL"], "must be one of SIGTERM, SIGUSR1, SIGUSR2, SIGINT"),
    (["estimator=smile", "estimator.tau=0"], "estimator.tau=0 must be a number in (0, inf]"),
    (["estimator=dv", "estimator.ema_rate=0"], "estimator.ema_rate=0"),
    (["prior=adversarial", "model.gamma=0.1", "prior.lr=0"], "prior.lr=0"),
    (["data.on_device=yes"], "data.on_device"),
    (["model.compile_mode=fastest"], "model.compile_mode"),
    (["model.channels_last=1"], "model.channels_last"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0"),
    (["trainer.precision=8"], "trainer.precision=8 must be one of 64, 32, 16, transformer-engine"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1"),
    (["trainer.gradient_clip_algorithm=l3"], "trainer.gradient_clip_algorithm=l3 must be null or one of norm, value"),
    (["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0"),
    (["callbacks.model_checkpoint.every_n_train_steps=0"], "callbacks.model_checkpoint.every_n_train_steps=0"),
    (["resume=maybe"], "resume=maybe must be true or false"),
    (
        ["eval.suite.places=[conv,pool]"],
        "eval.suite.places=[conv, pool] must be a non-empty list, each item one of conv, fc, Y, including Y",
    ),
    (["eval.suite.places=[conv,fc]"], "eval.suite.places=[conv, fc] must be a non-empty list"),
    (["eval.suite.knn_k=0"], "eval.suite.knn_k=0"),
    (["eval.suite.knn_temperature=0"], "eval.suite.knn_temperature=0"),
    (["eval.final=yes"], "eval.final=yes must be true or false"),
    (["seed=-3"], "seed=-3"),
    (["debug=inject_nan", "callbacks.inject_nan.term=middle"], "callbacks.inject_nan.term=middle"),
    (["critic.network._target_=dim_lightning.models.critics.NoSuchCritic"], "critic.network._target_="),
    (["logger.csv._target_=nowhere.Logger"], "logger.csv._target_=nowhere.Logger"),
    (["data=image_folder", "data.test_fraction=0"], "data.test_fraction=0 must be a number in (0, 1)"),
    (
        ["prior=kl", "model.gamma=0.1"],
        "prior=kl needs a Gaussian code (mean and log-variance), but without encoder.stochastic=true",
    ),
    (
        ["model.whole_step=true", "trainer.gradient_clip_val=1.0", "model.skip_nonfinite=true"],
        "model.whole_step=true does not support trainer.gradient_clip_val, model.skip_nonfinite; set model.whole_step",
    ),
    (
        ["model.optimizer.fused=true", "trainer.gradient_clip_val=1.0", "trainer.precision=bf16-mixed"],
        "model.optimizer.fused=true cannot be combined with trainer.gradient_clip_val under mixed precision",
    ),
    (["model.z_dim=524288"], "model.z_dim=524288 must be an integer in [1, 4096]"),
    (["data.num_workers=1000000"], "data.num_workers=1000000 must be null or an integer in [0, 64]"),
    (["data=synthetic", "data.num_train=1000000", "data.image_size=256"], "generated 3x256x256 images take 183.2 GiB"),
]
# What Hydra itself rejects while composing, before our code runs (unknown group options, keys): Hydra prints
# one clear message without a traceback, but exits with code 1 (its own convention), not 2.
HYDRA_REJECTS = [
    (["estimator=foo"], "infonce"),
    (["trainer=tpu"], "ddp_sim"),
    (["model.lrr=1e-3"], "model.lrr"),
    (["callbacks.model_checkpoint.save_top_k=2"], "Could not override 'callbacks.model_checkpoint.save_top_k'"),
]
CLI_ONLY = [
    (["ckpt_path=missing.ckpt"], "ckpt_path=missing.ckpt is not a file"),
]
CLI_FAST_SAMPLE = [BAD_INPUTS[24], HYDRA_REJECTS[0]]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_value_is_named_with_valid_choices(make_config, overrides: list[str], message: str) -> None:
    problems = config_problems(make_config(*overrides))
    assert any(message in p for p in problems), problems


def test_a_negative_weight_is_its_own_problem_not_nothing_to_train(make_config) -> None:
    problems = config_problems(make_config("model.beta=-1", "model.z_dim=0"))
    assert len(problems) == 2 and problems[0].startswith("model.beta=-1 must be"), problems


def test_default_and_preset_configs_are_valid(make_config) -> None:
    for overrides in ([], ["experiment=blog"], ["experiment=dim_l"], ["critic=concat", "estimator=smile"]):
        assert config_problems(make_config(*overrides)) == [], overrides


# (overrides, the problems listed in one error): single values, and the rules that combine keys (prior=kl and
# encoder.stochastic, what model.whole_step=true cannot do, a fused Adam where Lightning clips under mixed precision)
LISTED_AT_ONCE = {
    "single values": (
        ["model.lr=0", "data.batch_size=1", "estimator=smile", "estimator.tau=0", "eval.final=2", "data.image_size=20"],
        ["model.lr=0", "data.batch_size=1", "estimator.tau=0", "eval.final=2", "data.image_size must be divisible by"],
    ),
    "cross-field rules": (
        [
            "model.lr=0",
            "prior=kl",
            "model.gamma=0.1",
            "model.whole_step=true",
            "+trainer.accumulate_grad_batches=2",
            "model.optimizer.fused=true",
            "trainer.gradient_clip_val=1.0",
            "trainer.precision=bf16-mixed",
        ],
        [
            "model.lr=0",
            "set encoder.stochastic=true, or use prior=none",
            "model.whole_step=true does not support trainer.gradient_clip_val, trainer.accumulate_grad_batches > 1;",
            "model.optimizer.fused=true cannot be combined with trainer.gradient_clip_val under mixed precision "
            "(trainer.precision=bf16-mixed",
        ],
    ),
}


@pytest.mark.parametrize(("overrides", "problems"), LISTED_AT_ONCE.values(), ids=LISTED_AT_ONCE.keys())
def test_every_problem_is_listed_at_once(make_config, overrides: list[str], problems: list[str]) -> None:
    with pytest.raises(DIMError) as raised:
        validate_config(make_config(*overrides))
    message = str(raised.value)
    assert message.startswith(f"{len(problems)} problems in the config")
    for problem in problems:
        assert problem in message


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["prior=kl", "model.gamma=0.1", "encoder=blog", "model.z_dim=64"], False),  # a Gaussian code
        (["prior=kl", "model.gamma=0"], False),  # no prior is built
        (["model.optimizer.fused=true", "trainer.gradient_clip_val=1.0"], False),  # 32-true: Lightning clips
        (["model.optimizer.fused=true", "trainer.precision=bf16-mixed"], False),  # no clipping
        (["trainer.gradient_clip_val=1.0", "trainer.precision=16"], False),  # fused=null: the unfused kernel
        (["model.optimizer.fused=true", "trainer.gradient_clip_val=0.5", "trainer.precision=16"], True),
        (["model.whole_step=true", "prior=adversarial", "model.gamma=0"], False),  # the prior is not built
        (["model.whole_step=true", "prior=adversarial", "model.gamma=0.1"], True),
    ],
)
def test_cross_field_rules_refuse_exactly_the_combination(make_config, overrides: list[str], refused: bool) -> None:
    assert bool(config_problems(make_config(*overrides))) is refused


def test_train_validates_before_building_anything(make_config, tmp_path) -> None:
    with pytest.raises(DIMError, match=r"critic.network.layers=0"):
        train(make_config("critic=concat", "critic.network.layers=0"))
    assert not (tmp_path / "checkpoints").exists()


def test_ckpt_path_missing_truncated_foreign_and_weights_only(tmp_path) -> None:
    weights_only = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.0", "state_dict": {}}
    torch.save({**weights_only, "hyper_parameters": {"run_config": {}}}, tmp_path / "weights.ckpt")
    good = (tmp_path / "weights.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 2])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    cases = {
        "missing.ckpt": "is not a file",
        "truncated.ckpt": "truncated or corrupt",
        "foreign.ckpt": "not a dim-lightning checkpoint",
        "weights.ckpt": "training cannot resume",
    }
    for name, message in cases.items():
        with pytest.raises(DIMError, match=message):
            resolve_ckpt_path(str(tmp_path / name), tmp_path)
    with pytest.raises(DIMError, match="ckpt_path=last resumes the run directory's own checkpoint"):
        resolve_ckpt_path("last", tmp_path)
    assert resolve_ckpt_path(None, tmp_path) is None


def _assert_clean_exit(code: int, output: str, message: str, expected: int = 2) -> None:
    assert code == expected, output[-2000:]
    assert message in output, output[-2000:]
    assert "Traceback" not in output


@pytest.mark.parametrize(("overrides", "message"), CLI_FAST_SAMPLE, ids=[" ".join(o) for o, _ in CLI_FAST_SAMPLE])
def test_cli_sample_exits_2_without_traceback(tmp_path, overrides: list[str], message: str) -> None:
    """The real command line, once per path: our validation (exit 2) and Hydra's own refusal (exit 1)."""
    result = run_cli(*overrides, cwd=tmp_path)
    expected = 1 if (overrides, message) in HYDRA_REJECTS else 2
    _assert_clean_exit(result.returncode, result.stderr + result.stdout, message, expected)


ALL_CLI = BAD_INPUTS + HYDRA_REJECTS + CLI_ONLY


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "message"), ALL_CLI, ids=[" ".join(o) for o, _ in ALL_CLI])
def test_cli_table_exits_2_without_traceback(main_in_process, tmp_path, overrides: list[str], message: str) -> None:
    """Every case through train.py's main(), in this process (the sample above is the real command line)."""
    expected = 1 if (overrides, message) in HYDRA_REJECTS else 2
    _assert_clean_exit(*main_in_process(train_main, *overrides), message, expected)
    assert not list(tmp_path.glob("outputs/**/*.ckpt"))


@pytest.mark.slow
def test_cli_truncated_checkpoint_is_a_clear_error(tmp_path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "hyper_parameters": {"run_config": {}}}, tmp_path / "a.ckpt")
    data = (tmp_path / "a.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 3])
    result = run_cli(f"ckpt_path={tmp_path / 'cut.ckpt'}", "logger=none", cwd=tmp_path)
    _assert_clean_exit(result.returncode, result.stderr + result.stdout, "truncated")


def test_evaluate_validates_its_eval_config_first(make_config, tmp_path) -> None:
    from dim_lightning.evaluate import evaluate

    cfg = make_config(f"ckpt={tmp_path / 'missing.ckpt'}", "eval.suite.places=[pool]", config_name="evaluate")
    with pytest.raises(DIMError, match=r"eval.suite.places=\[pool\]"):
        evaluate(cfg)


# dim-lightning's constants (config.builders), not settings: where the run's files go (resume, sweeps and
# dim-report read them there) and the data module's own sharding. Set as a key, each is an unknown key.
CONSTANTS = [
    "callbacks.model_checkpoint.dirpath=/elsewhere",
    "callbacks.model_checkpoint.save_last=false",
    "callbacks.model_checkpoint.save_top_k=2",
    "callbacks.model_checkpoint.enable_version_counter=true",
    "callbacks.epoch_checkpoint.dirpath=/elsewhere",
    "callbacks.preemption_checkpoint.dirpath=/elsewhere",
    "callbacks.final_evaluation.output_dir=/elsewhere",
    "logger.csv.version=3",
    "trainer.use_distributed_sampler=true",
]


@pytest.mark.parametrize("override", CONSTANTS)
def test_a_constant_set_as_a_key_is_an_unknown_key(make_config, override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigCompositionException, match=f"Could not override '{key}'"):
        make_config(override)


def test_a_constant_added_with_plus_is_refused_never_overridden(make_config, tmp_path) -> None:
    with pytest.raises(DIMError, match=r"callbacks.model_checkpoint.save_top_k is not a setting: dim-lightning fixes"):
        train(make_config("+callbacks.model_checkpoint.save_top_k=2"))
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "csv").exists()
    with pytest.raises(DIMError, match=r"callbacks.final_evaluation.output_dir is not a setting"):
        build_callbacks(make_config("+callbacks.final_evaluation.output_dir=/elsewhere"))
    with pytest.raises(DIMError, match=r"trainer.use_distributed_sampler is not a setting: .* shards batches itself"):
        build_trainer(make_config("+trainer.use_distributed_sampler=true"), [])


def test_the_constants_are_what_resume_and_sharding_need(make_config, tmp_path) -> None:
    cfg = make_config()
    built = {type(callback).__name__: callback for callback in build_callbacks(cfg)}
    step = built["StepCheckpoint"]
    assert Path(step.dirpath) == (tmp_path / "checkpoints").resolve() and step.save_last is True
    assert step.save_top_k == 0 and step._enable_version_counter is False
    assert built["EpochCheckpoint"].path == built["PreemptionCheckpoint"].path == last_checkpoint(tmp_path)
    assert built["FinalEvaluation"].output_dir == tmp_path
    assert build_trainer(cfg, [], logger=False)._accelerator_connector.use_distributed_sampler is False
