"""Checkpoints are data, not code: hostile checkpoints of both kinds (a pickled object that runs a command when
unpickled; a valid-looking checkpoint whose saved run config names a foreign `_target_`) are refused by
`python -m dim_lightning.evaluate ckpt=...` and by the resume `python train.py ckpt_path=...` with exit 2, no
traceback, nothing executed, and a message that names trust_checkpoint; checkpoints written by today's code
still load, and the save side refuses anything but tensors and plain values."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dim_lightning import load_encoder
from dim_lightning.config.builders import buildable_targets, load_checkpoint
from dim_lightning.config.validation import validate_config, validate_eval_config
from dim_lightning.errors import DIMError
from dim_lightning.run.checkpoints import AtomicCheckpointIO, read_checkpoint, resolve_ckpt_path
from dim_lightning.run.untrusted import check_restored_config, require_plain_data
from dim_lightning.train import train
from tests.conftest import FAST, SMALL_CRITIC, compose_config, run_cli

SHORT = [
    *FAST,
    SMALL_CRITIC["dot"],
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "eval.final=false",
    "model.z_dim=32",
    "data.image_size=16",
]
EVALUATE = ("-m", "dim_lightning.evaluate")


class RunsCommand:
    """Unpickling this calls os.system(command): what a hostile checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """The run dir of a real (short) training run by today's code, trained once for this file."""
    run = tmp_path_factory.mktemp("security") / "run"
    train(compose_config(*SHORT, output_dir=run))
    return run


@pytest.fixture
def real_checkpoint(trained_run, tmp_path) -> Path:
    """checkpoints/last.ckpt in this test's own copy of that run dir."""
    shutil.copytree(trained_run, tmp_path / "run", symlinks=True)
    return tmp_path / "run" / "checkpoints" / "last.ckpt"


def _pickled_object_checkpoint(real: Path, marker: Path) -> Path:
    checkpoint = torch.load(real, map_location="cpu", weights_only=True)
    checkpoint["callbacks"]["Innocent"] = {"state": RunsCommand(f"touch {marker}")}
    path = real.parent / "pickled_object.ckpt"
    torch.save(checkpoint, path)
    return path


def _foreign_target_checkpoint(real: Path, marker: Path, target: str = "subprocess.run") -> Path:
    checkpoint = torch.load(real, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["run_config"]["data"] = {"_target_": target, "_args_": [["touch", str(marker)]]}
    path = real.parent / "foreign_target.ckpt"
    torch.save(checkpoint, path)
    return path


def _yaml_string_config_checkpoint(real: Path, marker: Path) -> Path:
    """Plain data only (a weights_only load accepts it), but the run config is a YAML string naming a foreign
    target: OmegaConf would parse it into a config that builds `subprocess.run`."""
    checkpoint = torch.load(real, map_location="cpu", weights_only=True)
    config = {"data": {"_target_": "subprocess.run", "_args_": [["touch", str(marker)]]}}  # short: strings are bounded
    checkpoint["hyper_parameters"]["run_config"] = OmegaConf.to_yaml(OmegaConf.create(config))
    path = real.parent / "yaml_string_config.ckpt"
    torch.save(checkpoint, path)
    return path


def _assert_refused(result, marker: Path, message: str) -> None:
    output = result.stderr + result.stdout
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert message in result.stderr and "trust_checkpoint=true" in result.stderr, result.stderr
    assert not marker.exists()


HOSTILE = {
    "pickled_object": (_pickled_object_checkpoint, "holds a pickled Python object (posix.system)"),
    "foreign_target": (_foreign_target_checkpoint, "names data._target_=subprocess.run"),
    "yaml_string_config": (_yaml_string_config_checkpoint, "not a dim-lightning checkpoint"),
}


def test_a_run_config_saved_as_a_string_is_refused_by_every_reader(real_checkpoint, tmp_path) -> None:
    marker = tmp_path / "MARKER"
    hostile = _yaml_string_config_checkpoint(real_checkpoint, marker)
    for read in (load_checkpoint, load_encoder, lambda path: read_checkpoint(path, allowed_targets={})):
        with pytest.raises(DIMError, match="not a dim-lightning checkpoint"):
            read(str(hostile))
    with pytest.raises(DIMError, match="is a str, not a mapping"):
        check_restored_config("data: {_target_: os.system}", "a file", buildable_targets())
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_checkpoint_is_refused_by_evaluate_and_resume(real_checkpoint, tmp_path, kind: str) -> None:
    write_hostile, message = HOSTILE[kind]
    marker = tmp_path / "MARKER"
    hostile = write_hostile(real_checkpoint, marker)
    evaluated = run_cli(f"ckpt={hostile}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, program=EVALUATE)
    _assert_refused(evaluated, marker, message)
    resumed = run_cli(*SHORT, f"ckpt_path={hostile}", f"hydra.run.dir={tmp_path / 'resume'}", cwd=tmp_path)
    _assert_refused(resumed, marker, message)


def test_targets_are_matched_by_exact_name_not_prefix(real_checkpoint, tmp_path) -> None:
    marker = tmp_path / "MARKER"
    # reaches os.system through a module attribute of one of our modules: a prefix rule would let it pass
    through_ours = _foreign_target_checkpoint(real_checkpoint, marker, "dim_lightning.run.checkpoints.torch.load")
    with pytest.raises(DIMError, match=re.escape("names data._target_=dim_lightning.run.checkpoints.torch.load")):
        load_checkpoint(str(through_ours))
    checkpoint = torch.load(real_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["run_config"]["data"]["root"] = "${oc.env:HOME}"
    torch.save(checkpoint, tmp_path / "interpolation.ckpt")
    with pytest.raises(DIMError, match=re.escape("interpolation at data.root")):
        load_checkpoint(str(tmp_path / "interpolation.ckpt"))


def test_a_saved_run_config_is_validated_like_a_train_config(real_checkpoint, tmp_path) -> None:
    """Values train.py would have refused, edited into a checkpoint, are listed at once (the components built from
    a config do not re-check what validation checks)."""
    checkpoint = torch.load(real_checkpoint, map_location="cpu", weights_only=True)
    config = checkpoint["hyper_parameters"]["run_config"]
    config["model"]["z_dim"], config["data"]["val_fraction"] = 0, 2.0
    # what is not rebuilt is not judged: a run's checkpoint layout (valid when it ran, refused for new runs today)
    config["callbacks"]["model_checkpoint"]["save_top_k"] = 2
    config["callbacks"]["epoch_checkpoint"]["dirpath"] = "/elsewhere"
    torch.save(checkpoint, tmp_path / "edited.ckpt")
    for load in (load_checkpoint, load_encoder):
        with pytest.raises(DIMError) as raised:
            load(str(tmp_path / "edited.ckpt"))
        message = str(raised.value)
        assert message.startswith("2 problems in the run config saved in ") and str(tmp_path / "edited.ckpt") in message
        for problem in ("model.z_dim=0 must be an integer in [1, 4096]", "data.val_fraction=2.0 must be", "trust"):
            assert problem in message
        load(str(real_checkpoint))  # as train.py saved it


def test_the_users_own_targets_are_trusted_and_trust_checkpoint_loads_as_saved(real_checkpoint, tmp_path) -> None:
    marker = tmp_path / "MARKER"
    foreign = _foreign_target_checkpoint(real_checkpoint, marker, "my_lab.data.Photos")
    with pytest.raises(DIMError, match="trust_checkpoint=true"):
        read_checkpoint(foreign, allowed_targets=buildable_targets())
    assert "my_lab.data.Photos" in buildable_targets(_config_naming("my_lab.data.Photos"))["data"]
    read_checkpoint(foreign, allowed_targets=buildable_targets(_config_naming("my_lab.data.Photos")))
    read_checkpoint(foreign, trust=True, allowed_targets=buildable_targets())
    pickled = _pickled_object_checkpoint(real_checkpoint, marker)
    with pytest.raises(DIMError, match="trust_checkpoint=true"):
        read_checkpoint(pickled)
    assert not marker.exists()
    read_checkpoint(pickled, trust=True)  # the switch does what it says: full unpickling
    assert marker.exists()


def test_a_target_is_allowed_only_in_its_own_config_group(real_checkpoint, tmp_path) -> None:
    """The W&B logger factory is ours and can be told to trust a checkpoint: named as the data set of a restored
    config (to fully unpickle a second file), it is refused like any foreign target."""
    checkpoint = torch.load(real_checkpoint, map_location="cpu", weights_only=True)
    marker = tmp_path / "MARKER"
    second = _pickled_object_checkpoint(real_checkpoint, marker)
    checkpoint["hyper_parameters"]["run_config"]["data"] = {
        "_target_": "dim_lightning.run.wandb_runs.wandb_logger",
        "resume_from": str(second),
        "trust_checkpoint": True,
    }
    torch.save(checkpoint, tmp_path / "group.ckpt")
    with pytest.raises(DIMError, match=re.escape("names data._target_=dim_lightning.run.wandb_runs.wandb_logger")):
        load_checkpoint(str(tmp_path / "group.ckpt"))
    with pytest.raises(DIMError, match="in that config group"):
        load_encoder(tmp_path / "group.ckpt")
    assert not marker.exists()
    assert "dim_lightning.run.wandb_runs.wandb_logger" in buildable_targets()["logger"]


def _config_naming(target: str):
    return OmegaConf.create({"data": {"_target_": target}})


def test_lightnings_resume_load_reads_weights_only(real_checkpoint, tmp_path) -> None:
    marker = tmp_path / "MARKER"
    hostile = _pickled_object_checkpoint(real_checkpoint, marker)
    with pytest.raises(DIMError, match="trust_checkpoint=true"):
        AtomicCheckpointIO().load_checkpoint(hostile)  # what trainer.fit(ckpt_path=...) calls (weights_only=None)
    assert not marker.exists()
    assert AtomicCheckpointIO().load_checkpoint(real_checkpoint)["global_step"] == 2
    AtomicCheckpointIO(trust_checkpoint=True).load_checkpoint(hostile)  # the switch reaches Lightning's load
    assert marker.exists()


def test_trust_checkpoint_reaches_the_trainers_checkpoint_io(make_config) -> None:
    for trust in (False, True):
        trainer = instantiate(make_config(f"trust_checkpoint={str(trust).lower()}").trainer, logger=False)
        assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
        assert trainer.strategy.checkpoint_io.trust_checkpoint is trust


def test_todays_checkpoint_loads_for_evaluate_and_resume(real_checkpoint, make_config, tmp_path) -> None:
    rebuilt = load_checkpoint(str(real_checkpoint))
    assert rebuilt.config.data.image_size == rebuilt.image_size == 16 and rebuilt.channels == 1
    saved = torch.load(real_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[name], value) for name, value in rebuilt.module.state_dict().items())
    allowed = buildable_targets(make_config(*SHORT))
    assert resolve_ckpt_path(str(real_checkpoint), tmp_path, allowed_targets=allowed) == str(real_checkpoint)
    resumed = make_config(*SHORT, "trainer.max_epochs=2", f"ckpt_path={real_checkpoint}", output_dir=tmp_path / "r")
    assert train(resumed).trainer.global_step == 4  # continued from step 2


@pytest.mark.slow
def test_todays_checkpoint_evaluates_and_resumes_through_the_command_line(real_checkpoint, tmp_path) -> None:
    evaluated = run_cli(f"ckpt={real_checkpoint}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path, program=EVALUATE)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "eval.json").is_file()
    resumed = run_cli(
        *SHORT,
        "trainer.max_epochs=2",
        f"ckpt_path={real_checkpoint}",
        f"hydra.run.dir={tmp_path / 'resume'}",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    last = torch.load(tmp_path / "resume" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 4


def test_saving_refuses_anything_but_tensors_and_plain_values(tmp_path) -> None:
    require_plain_data({"a": [torch.ones(2), (1, 2.0, "x", None, b"y")], "size": torch.Size([2])})
    cases = {
        "checkpoint['rng']['numpy'][1] is a numpy.ndarray": {"rng": {"numpy": ("MT19937", np.zeros(3))}},
        "checkpoint['step'] is a numpy.int64": {"step": np.int64(3)},
        "checkpoint['where'] is a pathlib.PosixPath": {"where": Path("/tmp")},
    }
    for message, checkpoint in cases.items():
        with pytest.raises(TypeError, match=re.escape(message)):
            AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "bad.ckpt")
        assert not (tmp_path / "bad.ckpt").exists()


def test_trust_checkpoint_must_be_true_or_false(make_config) -> None:
    for program in ("train", "evaluate"):
        cfg = make_config("trust_checkpoint=maybe", config_name=program)
        validate = validate_config if program == "train" else validate_eval_config
        with pytest.raises(DIMError, match="trust_checkpoint=maybe must be true or false"):
            validate(cfg)
