"""Sweep files, presets and searches: every name they use exists in the config; the offline W&B sweep runner,
Optuna and submitit_local multiruns work end to end."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from types import SimpleNamespace

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
from dim_lightning.config.sweep_files import HYPERPARAMETER_ROOTS, group_options, key_allowed
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
SEEDS = ("seed", "data.shuffle_seed", "data.split_seed")


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
    ({"parameters": {"model.optimizer": {"values": ["adam"]}}}, "model.optimizer=adam replaces a group of settings"),
    ({"parameters": {"model.lr": {"values": [1e-3, -1.0]}}}, "model.lr=-1.0 must be"),
    (
        {"parameters": {"critic.network.units": {"distribution": "uniform", "min": 64, "max": 65}}},
        "critic.network.units=64.5 must be an integer",
    ),
    (
        {"parameters": {"critic.network.units": {"distribution": "q_uniform", "min": 64, "max": 72, "q": 0.5}}},
        "critic.network.units=68.0 must be an integer",
    ),
    ({"parameters": {"no_such_group": {"values": ["x"]}}}, "may only choose hyperparameters"),
    ({"parameters": {"estimator": {"values": ["no_such_bound"]}}}, "estimator is a config group: a sweep file may"),
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
    "a mapping value": ({"parameters": {"model.optimizer": {"value": {"_target_": "os.system"}}}}, "a mapping"),
    "a callback": ({"parameters": {"callbacks.throughput": {"value": {"_target_": "os.system"}}}}, "may only choose"),
    "the CSV logger's folder": ({"parameters": {"logger.csv.name": {"value": "/tmp/x"}}}, "may only choose"),
    "the CSV logger's version": ({"parameters": {"logger.csv.version": {"value": "version_0"}}}, "may only choose"),
    "a data folder": ({"parameters": {"data.root": {"value": "/tmp/photos"}}}, "may only choose hyperparameters"),
    "a data set read from a folder": ({"parameters": {"data": {"value": "image_folder"}}}, "one of digits, synthetic"),
    "following links": ({"parameters": {"data.follow_links": {"value": True}}}, "may only choose hyperparameters"),
    "an experiment that picks a data set": ({"parameters": {"experiment": {"value": "blog"}}}, "one of dim_l;"),
    "loader workers": ({"command": [*COMMAND, "data.num_workers=64"]}, "may only choose hyperparameters"),
    "a second node": ({"parameters": {"trainer.num_nodes": {"value": 2}}}, "may only choose hyperparameters"),
    "a process per device": ({"parameters": {"trainer.devices": {"value": 64}}}, "may only choose hyperparameters"),
    "a trainer preset": ({"parameters": {"trainer": {"value": "ddp_sim"}}}, "may only choose hyperparameters"),
    "a Hydra function": ({"parameters": {"model.lr": {"value": "choice(0.1,0.2)"}}}, "calls a Hydra function"),
    "a glob of options": ({"parameters": {"estimator": {"value": "glob(*)"}}}, "calls a Hydra function"),
    "no group": ({"parameters": {"prior": {"value": "null"}}}, "prior is a config group"),
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


HOSTILE_FILES = {
    "deletes another project's CSV log": (
        {"logger.csv.name": {"value": "{outside}/lightning_logs"}, "logger.csv.version": {"value": "version_0"}},
        "logger.csv.name={outside}/lightning_logs: a sweep file may only choose hyperparameters",
    ),
    "writes a cache into a photo folder": (
        {"data": {"value": "image_folder"}, "data.root": {"value": "{outside}"}},
        "data=image_folder: data is a config group: a sweep file may choose one of digits, synthetic",
    ),
    "waits for a second node": ({"trainer.num_nodes": {"value": 2}}, "trainer.num_nodes=2: a sweep file may only"),
    "starts a process per device": (
        {"trainer": {"value": "ddp_sim"}, "trainer.devices": {"value": 6}},
        "trainer=ddp_sim: a sweep file may only choose hyperparameters",
    ),
}


@pytest.mark.parametrize(("parameters", "message"), HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_a_sweep_file_that_would_write_outside_or_take_the_machine_runs_nothing(
    tmp_path, capsys, monkeypatch, parameters: dict, message: str
) -> None:
    """The red team's files: "hyperparameters" that are the CSV logger's folder (Lightning deletes metrics.csv and
    rewrites hparams.yaml there), a data set and its folder (the run writes .dim_cache into it), nodes and devices
    (a run waiting for ever, a process per device). Each is refused before any run: exit 2, the message names what
    a sweep file may set and where the rest goes, and nothing outside changed. (A run the runner would start is
    recorded, not started.)"""
    started = []
    monkeypatch.setattr(
        subprocess, "run", lambda command, **kwargs: started.append(command) or SimpleNamespace(returncode=1)
    )
    outside = tmp_path / "other_project"
    log = outside / "lightning_logs" / "version_0"
    log.mkdir(parents=True)
    (log / "metrics.csv").write_text("epoch,loss\n0,1.0\n")
    before = {path: path.read_bytes() for path in outside.rglob("*") if path.is_file()}
    sweep = {"program": "train.py", "method": "grid", "command": COMMAND}
    sweep["parameters"] = {
        key: {"value": spec["value"].format(outside=outside) if isinstance(spec["value"], str) else spec["value"]}
        for key, spec in parameters.items()
    }
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "1", "--sweep-dir", str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.format(outside=outside) in err, err
    assert "on your command line" in err and "Traceback" not in err
    assert not started and not (tmp_path / "sweep").exists()
    assert {path: path.read_bytes() for path in outside.rglob("*") if path.is_file()} == before


def _flat(node, path: str = "") -> dict:
    if not isinstance(node, dict):
        return {path: node}
    return {key: value for name, child in node.items() for key, value in _flat(child, f"{path}{name}.").items()}


def test_the_experiments_a_sweep_file_may_choose_set_only_what_it_may_set() -> None:
    """An experiment preset a sweep file may choose (`GROUPS`) sets only keys a sweep file may set and chooses no
    data set, trainer, evaluation or logger: composed with and without it, nothing else differs."""
    assert group_options("experiment") == ["dim_l"] and group_options("data") == ["digits", "synthetic"]
    plain = _compose(hydra=True)
    for experiment in group_options("experiment"):
        preset = _compose(f"experiment={experiment}", hydra=True)
        for group, choice in preset.hydra.runtime.choices.items():
            if group != "experiment" and choice != plain.hydra.runtime.choices.get(group):
                assert key_allowed(group) and choice in group_options(group), (experiment, group, choice)
        before, after = (_flat(OmegaConf.to_container(c, resolve=False)) for c in (plain, preset))
        changed = {key[:-1] for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
        outside = [k for k in changed if k.split(".")[0] not in ("hydra", *HYPERPARAMETER_ROOTS) and not key_allowed(k)]
        assert not outside, (experiment, outside)


GRID_BOMBS = {
    "three int ranges": {f"{key}": {"distribution": "int_uniform", "min": 0, "max": 99} for key in SEEDS},
    "a q_uniform range": {"model.beta": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 1e-5}},
    "lists": {key: {"values": list(range(30))} for key in SEEDS},
}


@pytest.mark.parametrize("parameters", GRID_BOMBS.values(), ids=GRID_BOMBS.keys())
def test_a_grid_larger_than_the_engine_may_list_is_refused_before_it_is_built(tmp_path, capsys, parameters) -> None:
    """W&B's grid engine builds the list of every combination before its first run (2001^3 of them took 5.6 GB):
    the runner counts them first (a list's length, an int range's max - min + 1, a q_uniform range's steps)."""
    sweep = {"program": "train.py", "method": "grid", "command": COMMAND, "parameters": parameters}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(sweep))
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "1", "--sweep-dir", str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and not (tmp_path / "sweep").exists()
    assert re.search(r"the grid has (1000000|100000|27000) combinations .* more than the 10000 a grid", err), err


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
    sweep["parameters"]["model.beta"]["distribution"] = "no_such_distribution"
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
def test_an_unknown_key_exits_2_before_any_run(tmp_path, capsys, where: str) -> None:
    """A key the config does not have (model.betas: Adam's betas are model.optimizer.betas), in the file's
    parameters or among the extra overrides: Hydra's reason, exit 2 before any run."""
    sweep = yaml.safe_load((REPO / "sweeps" / "beta_estimator.yaml").read_text())
    unknown = "model.betas=[0.5,0.999]"
    if where == "sweep file":
        sweep["parameters"]["model.betas"] = {"values": [[0.5, 0.999]]}
    path = tmp_path / "unknown.yaml"
    path.write_text(yaml.safe_dump(sweep))
    extra = [unknown] if where != "sweep file" else []
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "1", "--sweep-dir", str(tmp_path / "sweep"), *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and not (tmp_path / "sweep").exists()
    assert "do not compose" in err and "Could not override 'model.betas'" in err and "Traceback" not in err, err


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


@pytest.mark.slow  # a new Python from the repository root
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


def test_a_sweep_whose_runs_all_failed_exits_2_naming_them(tmp_path, capsys, monkeypatch) -> None:
    """Every run exiting 2 (a sampled value train.py refused) left the sweep's exit code 0."""
    sweep = yaml.safe_load((REPO / "sweeps" / "beta_estimator.yaml").read_text())
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    monkeypatch.setattr(
        "dim_lightning.sweep.subprocess.run", lambda command, **_: subprocess.CompletedProcess(command, 2)
    )
    with pytest.raises(SystemExit) as exit_info:
        main([str(path), "--count", "2", "--sweep-dir", str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "2 run(s) ended without results (runs 0, 1)" in err, err
    assert (tmp_path / "sweep" / "summary.md").exists()
