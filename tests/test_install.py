"""The installable library: the wheel ships the config tree and the console scripts, and works from an empty
folder with no clone in sight (slow: builds the wheel, installs it into a fresh venv)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = ("dim-train", "dim-evaluate", "dim-mi", "dim-sweep", "dim-report")


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    block = re.search(r"^packages = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.S | re.M)
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    found = {".".join(p.parent.relative_to(REPO / "src").parts) for p in (REPO / "src").rglob("__init__.py")}
    assert listed == found | {"dim_lightning.conf"}


def _dependencies() -> dict[str, str]:
    """{distribution: version range} of pyproject's runtime dependencies."""
    block = re.search(r"^dependencies = \[(.*?)\]", (REPO / "pyproject.toml").read_text(), re.S | re.M)
    return dict(re.findall(r'"([\w-]+)([^"]*)"', block.group(1)))


def test_the_floor_lane_installs_pyprojects_lower_bounds_and_torch_and_lightning_are_bounded_above() -> None:
    floor = dict(re.findall(r"^([\w-]+)==(\S+)", (REPO / ".ci" / "floor.txt").read_text(), re.M))
    ranges = _dependencies()
    assert {name: ranges[name].split(",")[0] for name in floor} == {name: f">={v}" for name, v in floor.items()}
    assert all(re.fullmatch(r">=[\d.]+,<[\d.]+", ranges[name]) for name in ("torch", "pytorch-lightning"))


def _fresh_venv(tmp_path: Path) -> Path:
    """A new venv that sees this environment's dependencies (torch, Lightning, Hydra, ...) but not the clone."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_wheel_trains_a_sweep_reports_it_and_takes_a_user_config_dir_from_an_empty_folder(tmp_path) -> None:
    wheels = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(wheels), str(REPO)]
    subprocess.run(build, check=True, capture_output=True, timeout=600)
    venv = _fresh_venv(tmp_path)
    _run(
        venv,
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        str(next(wheels.glob("*.whl"))),
        cwd=tmp_path,
    )
    assert all((venv / "bin" / script).is_file() for script in SCRIPTS)
    work = tmp_path / "empty"
    work.mkdir()
    tiny = [
        "trainer.max_epochs=2",
        "++trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "data.batch_size=16",
        "critic.network.units=16",
        "model.z_dim=16",
        "eval.suite.places=[Y]",
        "eval.suite.retrieval=false",
        "eval.suite.export_features=false",
        "eval.random_init_baseline=false",
    ]
    _run(venv, "dim-train", "-m", "model.beta=0.5,1.5", *tiny, cwd=work)
    sweep_dir = next((work / "outputs" / "train" / "multiruns").iterdir())
    assert sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json")) == ["0", "1"]
    location = _run(venv, "python", "-c", "import dim_lightning; print(dim_lightning.__file__)", cwd=work).stdout
    assert str(venv) in location and str(REPO) not in location  # the installed copy, not the clone
    encode = (
        "import numpy as np; from dim_lightning import load_encoder; "
        f"e = load_encoder('{sweep_dir / '0' / 'checkpoints' / 'last.ckpt'}'); "
        "print(tuple(e.encode(np.zeros((3, 32, 32), np.uint8)).shape))"
    )
    assert _run(venv, "python", "-c", encode, cwd=work).stdout.strip() == "(3, 16)"  # model.z_dim=16
    _run(venv, "dim-report", str(sweep_dir), cwd=work)
    assert (sweep_dir / "report.md").is_file() and (sweep_dir / "report_parameters.png").is_file()
    # a user's own experiment in a folder of their own, added with Hydra's --config-dir
    (work / "my_conf" / "experiment").mkdir(parents=True)
    (work / "my_conf" / "experiment" / "mine.yaml").write_text("# @package _global_\nmodel:\n  beta: 0.75\n")
    _run(
        venv,
        "dim-train",
        "--config-dir",
        str(work / "my_conf"),
        "experiment=mine",
        *tiny,
        "hydra.run.dir=mine",
        cwd=work,
    )
    assert json.loads((work / "mine" / "metrics.json").read_text())["global_step"] == 6
    assert "beta: 0.75" in (work / "mine" / ".hydra" / "config.yaml").read_text()
