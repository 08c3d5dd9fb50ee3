"""A new user's first hour: a run names its dir and the command that resumes it at the start; the Ctrl-C message's
command resumes the run in the default (timestamped) run dir; a refused command leaves no run dir; an error after
the run dir exists is in train.log."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from dim_lightning.evaluate import main as evaluate_main
from dim_lightning.train import main
from tests.conftest import FAST, SHORT_RUN, SMALL_CRITIC

RUN = SHORT_RUN
CTRL_C = ["debug=preempt", "callbacks.preempt.step=1", "callbacks.preempt.signal=SIGINT"]


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "outputs" / "train" / "runs").glob("*") if p.is_dir())


def test_the_first_lines_name_the_run_dir_and_the_command_that_resumes(main_in_process, tmp_path) -> None:
    code, output = main_in_process(main, *RUN, "model.beta=1.5", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0
    before_training = output.split("Seed set to")[0]
    assert f"Run dir: {tmp_path / 'run'}" in before_training
    assert "├── model: dim  (alpha=0.0, beta=1.5" in before_training
    command = before_training.split("To resume after a stop (Ctrl-C, preemption, a crash): ")[1].splitlines()[0]
    assert shlex.split(command)[-2:] == ["model.beta=1.5", f"hydra.run.dir={tmp_path / 'run'}"]
    assert f"Run dir: {tmp_path / 'run'}" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize("name", ["plain", "a,b", "x=1", "it's [1]", "two words"])
def test_the_run_dir_in_a_resume_command_reads_back_as_itself(name) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dim_lightning.run.resume_command import hydra_value

    run_dir = f"/runs/{name}"
    (override,) = OverridesParser.create().parse_overrides([f"hydra.run.dir={hydra_value(run_dir)}"])
    assert override.value() == run_dir and not override.is_sweep_override()


def test_the_resume_command_keeps_the_config_dir_of_the_command_line(main_in_process, tmp_path) -> None:
    (tmp_path / "my_conf").mkdir()
    code, output = main_in_process(
        main, "--config-dir", str(tmp_path / "my_conf"), *RUN, f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert code == 0
    command = output.split("To resume after a stop (Ctrl-C, preemption, a crash): ")[1].splitlines()[0]
    assert shlex.split(command)[:4] == ["python", "train.py", "--config-dir", str(tmp_path / "my_conf")]


@pytest.mark.slow
def test_the_ctrl_c_message_command_resumes_a_run_in_the_default_run_dir(main_in_process, tmp_path) -> None:
    code, output = main_in_process(main, *RUN, *CTRL_C)
    assert code == 128 + 2  # SIGINT
    (stopped,) = _run_dirs(tmp_path)
    said = output.split("to continue this run instead: python train.py ")[1].splitlines()[0]
    args = shlex.split(said)
    assert args[-1] == f"hydra.run.dir={stopped.resolve()}"
    code, output = main_in_process(main, *args)
    assert code == 0 and "resuming from step 2 of epoch 0" in output
    assert _run_dirs(tmp_path) == [stopped]  # continued there, no new run dir

    code, _ = main_in_process(main, *RUN, f"hydra.run.dir={tmp_path / 'whole'}")
    assert code == 0
    resumed, whole = (json.loads((d / "metrics.json").read_text()) for d in (stopped, tmp_path / "whole"))
    assert resumed["train/loss"] == pytest.approx(whole["train/loss"], rel=1e-5)
    assert resumed["val/loss"] == pytest.approx(whole["val/loss"], rel=1e-5)


@pytest.mark.parametrize(
    "args",
    [
        ["model.beta=-1", "model.z_dim=0"],
        ["data=image_folder", "data.root=/nonexistent/images"],
        ["ckpt_path=/nonexistent/last.ckpt"],
        ["task_name=mine", "model.z_dim=0"],
        ["-m", "model.beta=0.5,1.0", "model.z_dim=0"],  # a multirun's base config: no sweep dir either
    ],
    ids=["config", "data_root", "checkpoint", "task_name", "multirun"],
)
def test_a_refused_command_leaves_no_run_dir(main_in_process, tmp_path, args) -> None:
    code, output = main_in_process(main, *RUN, *args)
    assert code == 2 and "train.py: error:" in output
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [(["ckpt=/nonexistent/last.ckpt"], "ckpt=/nonexistent/last.ckpt is not a file"), ([], "ckpt= is missing")],
)
def test_a_refused_evaluate_command_leaves_no_run_dir(main_in_process, tmp_path, args, said) -> None:
    code, output = main_in_process(evaluate_main, *args)
    assert code == 2 and said in output and "Traceback" not in output and "raised" not in output
    assert not (tmp_path / "outputs").exists()


def test_an_error_after_the_run_dir_exists_is_in_train_log(main_in_process, tmp_path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    code, output = main_in_process(main, *RUN, f"hydra.run.dir={run_dir}")
    assert code == 2
    error = output.split("train.py: error: ")[1].splitlines()[0]
    assert f"train.py: error: {error}" in (run_dir / "train.log").read_text()


NOISE = (
    "was configured so 100%",  # Lightning's echo of limit_*_batches=1.0, which the default config no longer sets
    "FLOPs",  # Lightning's summary's column of zeros (no example_input_array)
    "Trainer already configured with model summary callbacks",
    "is smaller than the logging interval",  # train/* epoch means are logged all the same
)


def test_a_default_run_prints_none_of_the_known_noise(main_in_process, tmp_path) -> None:
    small = [*FAST, SMALL_CRITIC["dot"], "model.z_dim=32", "data.image_size=16", "eval.final=false"]
    code, output = main_in_process(
        main, *small, "trainer.max_epochs=1", "trainer.log_every_n_steps=50", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert code == 0
    assert [line for line in NOISE if line in output] == []
    assert "Model: encoder (DCGAN32Encoder" in output and "trainable parameters" in output
    assert "\n\n" not in output.replace("\r", "")  # no blank lines where a progress bar would be


def test_logger_tensorboard_writes_event_files_in_the_run_dir(main_in_process, tmp_path) -> None:
    code, output = main_in_process(main, *RUN, "logger=tensorboard", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, output
    (events,) = (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*")
    assert events.stat().st_size > 0


def test_logger_tensorboard_without_a_writer_installed_is_a_clear_error(main_in_process, monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("tensorboard") else real_find_spec(name)
    )
    code, output = main_in_process(main, *RUN, "logger=tensorboard")
    assert code == 2 and "train.py: error: logger=tensorboard needs a TensorBoard writer: pip install" in output


@pytest.mark.slow
def test_the_quickstart_script_trains_loads_the_encoder_and_plots_its_codes(tmp_path) -> None:
    import importlib.util

    from hydra.core.global_hydra import GlobalHydra
    from PIL import Image

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("quickstart", REPO / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    small = [*(o for o in RUN if o != "eval.final=false"), "eval.random_init_baseline=false"]
    try:
        picture = quickstart.main(small, tmp_path / "quickstart")
    finally:
        GlobalHydra.instance().clear()
    assert picture == tmp_path / "quickstart" / "codes.png"
    assert Image.open(picture).size[0] > 300
