"""dim-report: report.md and the PNG plots of a sweep or a run dir, from the files runs write (overrides,
metrics.json, the CSV logger's metrics.csv); jobs without results are shown as such; empty dirs are errors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from dim_lightning.report.__main__ import main as report_cli
from dim_lightning.report.__main__ import write_report
from dim_lightning.report.runs import epoch_curves, read_jobs, swept_parameters


def _job(root, name: str, overrides: list[str], metrics: dict | None, epochs: int = 0, version: int = 0) -> None:
    """A job dir as a training run leaves it: .hydra/overrides.yaml, metrics.json if it finished, and the CSV
    logger's rows (step rows with empty epoch means, then one epoch row per epoch)."""
    job = root / name
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "probe/val_acc"}))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if epochs:
        log = job / "csv" / f"version_{version}" / "metrics.csv"
        log.parent.mkdir(parents=True)
        columns = ["epoch", "step", "train/loss_step", "train/loss_epoch", "train/mi_local", "probe/epoch_val_acc"]
        with log.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            for epoch in range(version * 10, version * 10 + epochs):
                writer.writerow({"epoch": epoch, "step": epoch * 5 + 4, "train/loss_step": -epoch})
                writer.writerow(
                    {
                        "epoch": epoch,
                        "step": epoch * 5 + 4,
                        "train/loss_epoch": -epoch - 0.5,
                        "train/mi_local": epoch + 0.25,
                        "probe/epoch_val_acc": 0.1 * epoch,
                    }
                )


def _is_png_with_content(path) -> bool:
    pixels = np.asarray(Image.open(path).convert("L"))
    return pixels.shape[0] > 100 and pixels.std() > 10  # drawn on, not a blank canvas


def test_sweep_report_ranks_jobs_plots_each_parameter_and_keeps_failed_jobs(tmp_path) -> None:
    _job(tmp_path, "0", ["model.beta=0.5", "estimator=jsd", "seed=1"], {"probe/val_acc": 0.6}, epochs=3)
    _job(tmp_path, "1", ["model.beta=1.5", "estimator=infonce", "seed=1"], {"probe/val_acc": 0.9}, epochs=3)
    _job(tmp_path, "2", ["model.beta=1.0", "estimator=infonce", "seed=1"], None, epochs=2)  # preempted
    report = write_report(tmp_path).read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "status" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 0", "| 2"]  # best first, the unfinished job last
    assert "no metrics.json or eval.json" in rows[2] and "1.0" in rows[2]
    assert "model.beta=1.5 estimator=infonce seed=1" in report.split("## Best job")[1]
    assert "![parameters](report_parameters.png)" in report and "![curves](report_curves.png)" in report
    assert _is_png_with_content(tmp_path / "report_parameters.png")
    assert _is_png_with_content(tmp_path / "report_curves.png")
    assert (tmp_path / "summary.md").is_file()
    jobs = read_jobs(tmp_path)
    assert swept_parameters(jobs) == ["model.beta", "estimator"]
    assert [job.done for job in sorted(jobs, key=lambda j: j.name)] == [True, True, False]


def test_curves_are_per_epoch_means_across_resumed_log_versions(tmp_path) -> None:
    _job(tmp_path, "run", ["model.beta=1"], None, epochs=2, version=0)
    _job(tmp_path, "run", ["model.beta=1"], None, epochs=2, version=1)  # epochs 10, 11 after a resume
    curves = epoch_curves(tmp_path / "run")
    assert curves["train/loss"] == [(0.0, -0.5), (1.0, -1.5), (10.0, -10.5), (11.0, -11.5)]
    assert curves["train/mi_local"][0] == (0.0, 0.25) and "train/loss_step" not in curves


def test_single_run_dir_gets_its_curves_and_no_parameter_plot(tmp_path) -> None:
    _job(tmp_path, ".", ["trainer.max_epochs=3"], {"probe/val_acc": 0.7}, epochs=3)
    report = write_report(tmp_path).read_text()
    assert "1 job(s), 1 with probe/val_acc" in report and "report_parameters.png" not in report
    assert _is_png_with_content(tmp_path / "report_curves.png")


def test_dir_without_runs_or_results_is_a_clear_error(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        report_cli([str(tmp_path)])
    assert exit_info.value.code == 2 and "holds no run" in capsys.readouterr().err
    _job(tmp_path, "0", ["model.beta=1"], None)  # started, nothing written yet
    with pytest.raises(SystemExit) as exit_info:
        report_cli([str(tmp_path)])
    assert exit_info.value.code == 2 and "no job under" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report_cli([str(tmp_path / "missing")])
    assert "is not a folder" in capsys.readouterr().err
