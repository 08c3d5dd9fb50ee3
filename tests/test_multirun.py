"""Multiruns: every job writes its run dir, the sweep dir ends with summary.csv / summary.md (best first), and
`main` returns the optimised metric."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from dim_lightning.report.__main__ import write_report
from dim_lightning.report.sweep_summary import write_summary
from tests.conftest import run_cli

# One short epoch and the leanest evaluation that still measures probe/val_acc: each job takes seconds.
TINY_RUN = [
    "logger=csv",
    "data.batch_size=16",
    "critic.network.units=32",
    "model.z_dim=16",
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "eval.suite.places=[Y]",
    "eval.suite.mlp=false",
    "eval.suite.retrieval=false",
    "eval.suite.export_features=false",
    "eval.random_init_baseline=false",
]


def _job(tmp_path, name: str, overrides: list[str], metrics: dict | None, file: str = "metrics.json") -> None:
    job = tmp_path / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / file).write_text(json.dumps(metrics))


def test_summary_sorts_jobs_by_the_metric_and_keeps_failed_jobs_last(tmp_path) -> None:
    _job(tmp_path, "0", ["model.beta=0.5", "seed=1"], {"probe/val_acc": 0.5, "knn/val_acc": 0.4})
    _job(tmp_path, "1", ["model.beta=1.0", "seed=1"], None)  # crashed before metrics.json
    _job(tmp_path, "2", ["model.beta=1.5", "seed=1"], {"probe/val_acc": 0.9, "train/img_per_s": 1234.5})
    rows = write_summary(tmp_path, "probe/val_acc")
    assert [r["job"] for r in rows] == ["2", "0", "1"]
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["overrides"] for r in table] == ["model.beta=1.5", "model.beta=0.5", "model.beta=1.0"]  # shared dropped
    assert table[0]["probe/val_acc"] == "0.9" and table[2]["status"] == "no metrics.json or eval.json"
    markdown = (tmp_path / "summary.md").read_text()
    assert "| 2 | model.beta=1.5 | done | 0.9000 |" in markdown and "1234.5" in markdown


def test_summary_reads_the_eval_json_of_evaluate_jobs(tmp_path) -> None:
    _job(tmp_path, "0", ["ckpt=a.ckpt"], {"probe/val_acc": 0.7}, file="eval.json")
    _job(tmp_path, "1", ["ckpt=b.ckpt"], {"probe/val_acc": 0.8}, file="eval.json")
    assert [r["probe/val_acc"] for r in write_summary(tmp_path, "probe/val_acc")] == [0.8, 0.7]


def read_summary(sweep_dir) -> list[dict[str, str]]:
    assert (sweep_dir / "summary.md").is_file()
    return list(csv.DictReader((sweep_dir / "summary.csv").open()))


@pytest.mark.slow
def test_basic_multirun_writes_every_job_and_a_summary(tmp_path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep = ["-m", "model.beta=0.5,1.5", "estimator=jsd,infonce", f"hydra.sweep.dir={sweep_dir}"]
    result = run_cli(*sweep, *TINY_RUN, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    rows = read_summary(sweep_dir)
    assert sorted(r["overrides"] for r in rows) == sorted(
        f"model.beta={b} estimator={e}" for b in ("0.5", "1.5") for e in ("jsd", "infonce")
    )
    accuracies = [float(r["probe/val_acc"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and all(0 < a <= 1 for a in accuracies)
    for row in rows:
        metrics = json.loads((sweep_dir / row["job"] / "metrics.json").read_text())
        assert float(row["probe/val_acc"]) == pytest.approx(metrics["probe/val_acc"], abs=1e-9)
        assert float(row["knn/val_acc"]) == pytest.approx(metrics["knn/val_acc"], abs=1e-9)
    report = write_report(sweep_dir).read_text()  # dim-report on a real sweep: table, both plots
    assert report.count("| done |") == 4 and (sweep_dir / "report_parameters.png").stat().st_size > 10_000
