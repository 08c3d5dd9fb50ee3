"""Sweep files, presets and searches: every name they use exists in the config; the offline W&B sweep runner,
Optuna and submitit_local multiruns work end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from dim_lightning.builders import CONF_DIR
from dim_lightning.sweep import agent_command, check_sweep, main, override_args, parameter_values
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


def test_the_four_searches_exist() -> None:
    methods = {p.stem: yaml.safe_load(p.read_text())["method"] for p in SWEEP_FILES}
    assert methods["beta_estimator"] == "grid" and methods["random_alpha_gamma_zdim"] == "random"
    bayes = yaml.safe_load((REPO / "sweeps" / "bayes_lr_beta.yaml").read_text())
    assert bayes["method"] == "bayes" and bayes["parameters"]["model.lr"]["distribution"] == "log_uniform_values"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    assert _compose(f"experiment={experiment}").model.z_dim > 0


def test_search_and_launcher_configs_compose() -> None:
    optuna = _compose("hparams_search=optuna", hydra=True)
    assert optuna.hydra.sweeper.direction == "maximize" and optuna.optimized_metric == "probe/val_acc"
    assert set(optuna.hydra.sweeper.params) == {"model.lr", "model.beta", "model.alpha", "model.z_dim", "estimator"}
    for key in optuna.hydra.sweeper.params:  # every searched key exists
        assert _compose(f"{key}={'jsd' if key == 'estimator' else 1}") is not None
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
