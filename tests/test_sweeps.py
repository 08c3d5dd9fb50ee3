"""Sweep files, presets and searches: every name they use exists in the config; the offline W&B sweep runner,
Optuna and submitit_local multiruns work end to end."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from omegaconf import OmegaConf

from dim_lightning.config import CONF_DIR
from dim_lightning.config.builders import build_module
from dim_lightning.config.renamed import renamed_override_problems
from dim_lightning.config.validation import validate_config
from dim_lightning.errors import DIMError
from dim_lightning.sweep import (
    agent_command,
    check_sweep,
    main,
    override_args,
    parameter_values,
    sweep_engine,
    training_environment,
)
from tests.conftest import REPO, run_cli
from tests.test_multirun import TINY_RUN, read_summary

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def _compose(*overrides: str, hydra: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _every_value(sweep: dict) -> list[list[str]]:
    """The overrides of a run for each value of each parameter (the others at their first value)."""
    params = sweep["parameters"]
    first = {key: parameter_values(spec)[0] for key, spec in params.items()}
    fixed = [c for c in sweep["command"] if not c.startswith("${")]
    return [
        [*fixed, *override_args({**first, key: value})]
        for key, spec in params.items()
        for value in parameter_values(spec)
    ]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_sweep_value_composes(path) -> None:
    sweep = yaml.safe_load(path.read_text())
    assert sweep["method"] in ("grid", "random", "bayes")
    assert (
        sweep["command"][:3] == ["${env}", "${interpreter}", "${program}"] and "${args_no_hyphens}" in sweep["command"]
    )
    runs = _every_value(sweep)
    assert len(runs) >= len(sweep["parameters"])
    for overrides in runs:
        cfg = _compose(*overrides)
        for override in overrides:
            key, value = override.split("=", 1)
            if "." in key:  # a value, not a config group: it arrives where the sweep says
                assert str(cfg[key.split(".")[0]][key.split(".", 1)[1]]) == str(value)


def _inside(value, spec: dict) -> bool:
    if "values" in spec or "value" in spec:
        return value in parameter_values(spec)
    return spec["min"] <= value <= spec["max"]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_the_sweep_engine_proposes_runs_inside_each_files_search_space(path) -> None:
    """What the offline runner and `wandb agent` run: the engine's proposals for the file (grid: every
    combination once, then exhausted; random and bayes: values inside the ranges, also after finished runs)."""
    sweep = yaml.safe_load(path.read_text())
    engine = sweep_engine()
    config = engine.SweepConfig({k: v for k, v in sweep.items() if k != "command"})
    grid = sweep["method"] == "grid"
    combinations = math.prod(len(parameter_values(spec)) for spec in sweep["parameters"].values())
    runs, proposed = [], []
    for index in range(combinations + 1 if grid else 4):
        run = engine.next_run(config, runs)
        if run is None:
            break
        params = {key: spec["value"] for key, spec in run.config.items()}
        assert set(params) == set(sweep["parameters"])
        assert all(_inside(value, sweep["parameters"][key]) for key, value in params.items()), params
        run.state, run.summary_metrics = engine.RunState.finished, {"probe/val_acc": 0.5 + 0.1 * (index % 3)}
        runs.append(run)
        proposed.append(tuple(sorted(params.items())))
    if grid:
        assert len(proposed) == len(set(proposed)) == combinations
    else:
        assert len(set(proposed)) == 4  # continuous ranges: new values every run


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_validates_and_builds_what_it_sets(make_config, experiment: str) -> None:
    cfg = make_config(f"experiment={experiment}")
    validate_config(cfg)
    module = build_module(cfg, channels=3, image_size=cfg.data.image_size)
    model = cfg.model
    assert (module.hparams.alpha, module.hparams.beta, module.gamma) == (model.alpha, model.beta, model.gamma)
    assert set(module.terms) == {name for name, weight in (("local", model.beta), ("global", model.alpha)) if weight}
    assert (module.prior is not None) == (model.gamma > 0)
    assert cfg.encoder._target_.endswith(type(module.encoder).__name__)
    assert all(cfg.critic.network._target_.endswith(type(t.critic).__name__) for t in module.terms.values())
    images = torch.rand(4, 3, cfg.data.image_size, cfg.data.image_size) * 2 - 1
    assert torch.isfinite(module.objective(module.encoder(images))["loss"])


def test_optuna_search_maximises_the_optimized_metric() -> None:
    optuna = _compose("hparams_search=optuna", hydra=True)
    assert optuna.hydra.sweeper.direction == "maximize" and optuna.optimized_metric == "probe/val_acc"
    assert set(optuna.hydra.sweeper.params) == {"model.lr", "model.beta", "model.alpha", "model.z_dim", "estimator"}


def _ends(sweep) -> list:
    """A Hydra sweep's extreme values: every choice, or an interval's two ends."""
    return list(sweep.list) if isinstance(sweep, ChoiceSweep) else [sweep.start, sweep.end]


def test_every_end_of_the_optuna_search_space_is_a_valid_run(make_config) -> None:
    params = _compose("hparams_search=optuna", hydra=True).hydra.sweeper.params
    parser = OverridesParser.create()
    for key, spec in params.items():
        for value in _ends(parser.parse_override(f"{key}={spec}").value()):
            cfg = make_config(f"{key}={value}")
            validate_config(cfg)  # e.g. a learning rate of 0 or a negative weight would be refused here
            if "." in key:  # a value (not a config group option): it arrives where the search sets it
                assert OmegaConf.select(cfg, key) == value


def test_launcher_configs_compose() -> None:
    slurm = _compose("hydra/launcher=submitit_slurm", "trainer.devices=4", hydra=True).hydra.launcher
    assert (slurm.gpus_per_node, slurm.tasks_per_node) == (4, 4)  # one task (DDP rank) per GPU
    assert slurm.max_num_timeout > 0 and slurm.signal_delay_s > 0 and slurm.timeout_min > 0  # requeue on preemption
    assert _compose("hydra/launcher=submitit_local", hydra=True).hydra.launcher._target_.endswith("LocalLauncher")


def test_agent_command_is_what_wandb_agent_runs() -> None:
    sweep = yaml.safe_load((REPO / "sweeps" / "beta_estimator.yaml").read_text())
    command = agent_command(sweep, {"model.beta": 0.5, "estimator": "jsd"}, ["train.py"])
    assert command == ["/usr/bin/env", sys.executable, "train.py", "logger=wandb", "model.beta=0.5", "estimator=jsd"]


BAD_SWEEPS = [
    ({"parameters": {"model.no_such_key": {"values": [1]}}}, "do not compose"),
    ({"parameters": {"no_such_group": {"values": ["x"]}}}, "do not compose"),
    ({"parameters": {"estimator": {"values": ["no_such_bound"]}}}, "do not compose"),
    ({"method": "hyperopt"}, "unknown sweep method"),
    ({"command": ["${env}", "${interpreter}", "${program}", "${args}"]}, "${args_no_hyphens}"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SWEEPS)
def test_bad_sweep_file_exits_2_before_any_run(tmp_path, capsys, change: dict, message: str) -> None:
    sweep = yaml.safe_load((REPO / "sweeps" / "beta_estimator.yaml").read_text())
    sweep.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "1", "--sweep-dir", str(tmp_path / "sweep")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()  # nothing started


def test_every_sweep_file_of_the_repository_passes_the_checks() -> None:
    for path in SWEEP_FILES:
        check_sweep(yaml.safe_load(path.read_text()), path.name)


def test_a_sweep_file_that_names_itself_as_its_program_runs_nothing(tmp_path, capsys) -> None:
    """A file that is valid YAML and valid Python, naming itself as the program: the runner refuses any program
    but this project's training program, so nothing runs (the old runner ran the file with Python)."""
    marker = tmp_path / "MARKER"
    sweep_file = tmp_path / "sweeps" / "innocent.yaml"
    sweep_file.parent.mkdir()
    sweep_file.write_text(
        '{"program": "sweeps/innocent.yaml", "method": "grid", "parameters": {"model.beta": {"values": [1.0]}}, '
        '"command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"], '
        f'"name": __import__("pathlib").Path("{marker}").touch()}}\n'
    )
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep_file), "--count", "1", "--sweep-dir", str(tmp_path / "sweep")])
    assert exit_info.value.code == 2 and not marker.exists() and not (tmp_path / "sweep").exists()
    assert "program: 'sweeps/innocent.yaml' is not this project's training program" in capsys.readouterr().err


COMMAND = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
HOSTILE_SWEEPS = {
    "a shell": ({"command": ["/bin/sh", "-c", "touch MARKER", "${args_no_hyphens}"]}, "command: must start"),
    "an env variable": ({"command": ["${env}", "PYTHONPATH=/tmp", *COMMAND[1:]]}, "command: must start"),
    "a program after env": ({"command": ["${env}", "touch", *COMMAND[1:]]}, "command: must start"),
    "a Hydra flag": ({"command": [*COMMAND, "--experimental-rerun=/tmp/x.pickle"]}, "not a plain Hydra override"),
    "a Hydra flag as a parameter": ({"parameters": {"--config-dir": {"value": "/tmp"}}}, "not a plain Hydra"),
    "an added key": ({"parameters": {"+callbacks.x": {"value": "os.system"}}}, "not a plain Hydra override"),
    "the run dir": ({"command": [*COMMAND, "hydra.run.dir=/tmp/x"]}, "may only choose hyperparameters"),
    "Hydra's search path": ({"parameters": {"hydra.searchpath": {"value": ["file:///tmp"]}}}, "may only choose"),
    "Hydra's callbacks": ({"parameters": {"hydra.callbacks.x._target_": {"value": "os.system"}}}, "may only choose"),
    "a target": ({"parameters": {"encoder._target_": {"value": "os.system"}}}, "may only choose hyperparameters"),
    "a mapping value": ({"parameters": {"callbacks.throughput": {"value": {"_target_": "os.system"}}}}, "a mapping"),
    "a config file path": ({"parameters": {"encoder": {"values": ["../../../../tmp/evil"]}}}, "is a config group"),
    "trusting checkpoints": ({"parameters": {"trust_checkpoint": {"value": True}}}, "may only choose"),
    "a checkpoint": ({"parameters": {"ckpt_path": {"value": "/tmp/evil.ckpt"}}}, "may only choose"),
    "a folder": ({"parameters": {"trainer.default_root_dir": {"value": "/tmp"}}}, "may only choose"),
    "the cache folder": ({"command": [*COMMAND, "data.cache_dir=/tmp"]}, "may only choose hyperparameters"),
    "the environment": ({"parameters": {"model.lr": {"value": "${oc.env:HOME}"}}}, "is an interpolation"),
    "another program": ({"program": "/bin/sh"}, "is not this project's training program"),
    "a metric that is no mapping": ({"metric": 5}, "metric: must be a mapping"),
    "a spec that is no mapping": ({"parameters": {"model.lr": 0.1}}, "parameter model.lr has no value(s)"),
}


@pytest.mark.parametrize(("change", "message"), HOSTILE_SWEEPS.values(), ids=HOSTILE_SWEEPS.keys())
def test_a_sweep_file_may_only_choose_hyperparameters_of_the_training_program(change: dict, message: str) -> None:
    sweep = yaml.safe_load((REPO / "sweeps" / "beta_estimator.yaml").read_text())
    sweep.update(change)
    with pytest.raises(DIMError, match=re.escape(message)):
        check_sweep(sweep, "hostile.yaml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n",
            "aliases",
        ),
        ("method: grid\n" + "#" * 2**20, "more than the 1048576"),
        ("method: [" * 5000, "not valid plain YAML"),
    ],
)
def test_a_sweep_file_is_read_as_bounded_plain_yaml(tmp_path, capsys, text: str, message: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "1", "--sweep-dir", str(tmp_path / "sweep")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_sweep_engine_refusing_a_file_is_an_exit_2(tmp_path, capsys) -> None:
    sweep = yaml.safe_load((REPO / "sweeps" / "bayes_lr_beta.yaml").read_text())
    sweep["parameters"]["model.beta"]["min"] = "low"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "1", "--sweep-dir", str(tmp_path / "sweep")])
    assert exit_info.value.code == 2 and "W&B's sweep engine refuses the file" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()


def test_runs_import_the_training_program_from_this_package_not_the_working_dir(tmp_path) -> None:
    """The runner starts `python -m dim_lightning.train`; a `dim_lightning/` folder where the user stands (a
    handed-over folder) would come first on sys.path. The runs' environment keeps it out."""
    marker = tmp_path / "MARKER"
    (tmp_path / "dim_lightning").mkdir()
    (tmp_path / "dim_lightning" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    code = "import dim_lightning, sys; print(dim_lightning.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=training_environment(), capture_output=True, text=True
    )
    assert found.returncode == 0 and not marker.exists()
    assert found.stdout.strip() == str(REPO / "src" / "dim_lightning" / "__init__.py")


@pytest.mark.parametrize("where", ["sweep file", "command line"])
def test_an_old_key_gets_the_renamed_key_message_as_in_train_py(tmp_path, capsys, where: str) -> None:
    """model.betas (now model.optimizer.betas) in the file's parameters or among the extra overrides: the message
    train.py gives, not Hydra's "could not override", and exit 2 before any run."""
    sweep = yaml.safe_load((REPO / "sweeps" / "beta_estimator.yaml").read_text())
    old = "model.betas=[0.5,0.999]"
    if where == "sweep file":
        sweep["parameters"]["model.betas"] = {"values": [[0.5, 0.999]]}
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                str(path),
                "--count",
                "1",
                "--sweep-dir",
                str(tmp_path / "sweep"),
                *([old] if where != "sweep file" else []),
            ]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and not (tmp_path / "sweep").exists()
    assert renamed_override_problems([old]) == [
        "model.betas was renamed model.optimizer.betas (Adam's settings live under model.optimizer); "
        "write model.optimizer.betas=... instead"
    ]
    assert renamed_override_problems([old])[0] in err and "compose" not in err, err
    assert (str(path) in err) == (where == "sweep file")


def test_check_sweep_accepts_extra_overrides_and_rejects_bad_ones() -> None:
    sweep = yaml.safe_load((REPO / "sweeps" / "bayes_lr_beta.yaml").read_text())
    check_sweep(sweep, "bayes_lr_beta.yaml", ["trainer.max_epochs=1"])
    with pytest.raises(ValueError, match="do not compose"):
        check_sweep(sweep, "bayes_lr_beta.yaml", ["trainer.no_such_flag=1"])


def test_a_wandb_sweep_may_not_optimize_the_official_test_split() -> None:
    sweep = yaml.safe_load((REPO / "sweeps" / "bayes_lr_beta.yaml").read_text())
    check_sweep(sweep, "bayes_lr_beta.yaml")
    sweep["metric"]["name"] = "probe/test_acc"
    with pytest.raises(ValueError, match=r"metric\.name=probe/test_acc reads the official held-out split"):
        check_sweep(sweep, "bayes_lr_beta.yaml")


def test_sweep_engine_imports_from_the_repository_root() -> None:
    """From the repo root the `sweeps/` folder shadows nothing: the engine is the installed package."""
    code = "from dim_lightning.sweep import sweep_engine; e = sweep_engine(); print(e.__file__, e.next_run.__name__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "site-packages" in out and str(REPO / "sweeps") not in out and "next_run" in out


@pytest.mark.slow
def test_offline_runner_runs_two_proposed_runs_of_a_bayes_sweep(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    runner = ("-m", "dim_lightning.sweep")
    args = ["sweeps/bayes_lr_beta.yaml", "--count", "2", "--sweep-dir", str(sweep_dir), *TINY_RUN]
    result = run_cli(*args, cwd=REPO, program=runner, timeout=900)  # from the repository root
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_summary(sweep_dir)
    assert len(rows) == 2 and all(r["status"] == "done" for r in rows)
    for row in rows:
        overrides = dict(o.split("=", 1) for o in row["overrides"].split())
        assert 1e-5 <= float(overrides["model.lr"]) <= 1e-2 and 0.25 <= float(overrides["model.beta"]) <= 2.0
        run_config = yaml.safe_load((sweep_dir / row["job"] / ".hydra" / "config.yaml").read_text())
        assert run_config["model"]["lr"] == pytest.approx(float(overrides["model.lr"]))
        assert 0 < json.loads((sweep_dir / row["job"] / "metrics.json").read_text())["probe/val_acc"] <= 1


@pytest.mark.slow
def test_optuna_search_writes_a_real_best_value(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    search = ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", f"hydra.sweep.dir={sweep_dir}"]
    fixed = [o for o in TINY_RUN if not o.startswith("model.z_dim")]  # a fixed value would leave the search space
    result = run_cli(*search, *fixed, cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    accuracies = [json.loads(p.read_text())["probe/val_acc"] for p in sweep_dir.glob("*/metrics.json")]
    assert len(accuracies) == 3 and best["best_value"] == pytest.approx(max(accuracies))
    assert set(best["best_params"]) == {"model.lr", "model.beta", "model.alpha", "model.z_dim", "estimator"}
    assert len(read_summary(sweep_dir)) == 3


@pytest.mark.slow
def test_submitit_local_runs_the_multirun(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep = ["-m", "hydra/launcher=submitit_local", "model.beta=0.5,1.5", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(*sweep, *TINY_RUN, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json")) == ["0", "1"]
    assert sorted(r["overrides"] for r in read_summary(sweep_dir)) == ["model.beta=0.5", "model.beta=1.5"]
