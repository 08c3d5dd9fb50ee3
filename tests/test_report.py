"""dim-report: report.md and the PNG plots of a sweep or a run dir, from the files runs write (overrides,
metrics.json, the CSV logger's metrics.csv); jobs without results are shown as such; empty dirs are errors."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from dim_lightning.errors import DIMError
from dim_lightning.report.__main__ import main as report_cli
from dim_lightning.report.__main__ import optimized_metric, write_report
from dim_lightning.report.runs import epoch_curves, read_jobs, swept_parameters
from dim_lightning.report.sweep_summary import write_summary


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


def test_equal_curves_and_equal_scores_stay_visible_and_the_other_parameter_colours_the_dots(
    tmp_path, monkeypatch
) -> None:
    import dim_lightning.report.plots as plots

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda figure, path, rect=None: figures.setdefault(path.name, figure) and path)
    for name, beta, estimator in (("0", "0.5", "jsd"), ("1", "0.5", "infonce"), ("2", "1.5", "infonce")):
        _job(tmp_path, name, [f"model.beta={beta}", f"estimator={estimator}"], {"probe/val_acc": 0.8}, epochs=3)
    write_report(tmp_path)  # three jobs, the same curves and the same score

    curves = figures["report_curves.png"]
    (mi_axis,) = [axis for axis in curves.axes if axis.get_title().startswith("train/mi_local")]
    assert mi_axis.get_title() == "train/mi_local (nats)"
    lines = mi_axis.get_lines()
    assert len({line.get_marker() for line in lines}) == 3  # equal curves, each with its own marker
    assert sum("(= " in line.get_label() for line in lines) == 2  # the legend says which equal which

    beta_axis = figures["report_parameters.png"].axes[0]
    assert beta_axis.get_xlabel() == "model.beta"
    points = [tuple(p) for collection in beta_axis.collections for p in collection.get_offsets()]
    assert len(points) == 3 and len(set(points)) == 3  # the two jobs at beta=0.5 with 0.8 side by side
    colours = {tuple(collection.get_facecolor()[0]) for collection in beta_axis.collections}
    assert len(colours) == 2  # coloured by estimator
    assert {text.get_text() for text in beta_axis.get_legend().get_texts()} == {"estimator=infonce", "estimator=jsd"}


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


def _three_jobs(root) -> None:
    for index, beta in enumerate((0.5, 1.5, 1.0)):
        _job(root, str(index), [f"model.beta={beta}", "seed=1"], {"probe/val_acc": 0.5 + index / 10}, epochs=2)


def test_the_report_replaces_links_in_the_sweep_dir_and_writes_through_none(tmp_path) -> None:
    """A copied sweep dir whose summary.csv, summary.md, report.md and PNGs link to files of the user's: each is
    replaced by a new file, the linked files keep their content."""
    sweep, victims = tmp_path / "sweep", tmp_path / "victims"
    _three_jobs(sweep)
    victims.mkdir()
    names = ["summary.csv", "summary.md", "report.md", "report_parameters.png", "report_curves.png"]
    for name in names:
        (victims / name).write_text("the user's own file\n")
        (sweep / name).symlink_to(victims / name)
    write_report(sweep)
    for name in names:
        assert (victims / name).read_text() == "the user's own file\n"
        assert (sweep / name).is_file() and not (sweep / name).is_symlink()


def _write(relative: str, content: bytes | str):
    def write(job) -> None:
        path = job / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return write


def _huge(relative: str):
    def write(job) -> None:
        with (job / relative).open("ab") as file:
            file.truncate(300 * 2**20)

    return write


def _link(relative: str, target: str):
    def write(job) -> None:
        outside = job.parent.parent / "outside" / relative
        outside.parent.mkdir(parents=True, exist_ok=True)
        outside.write_text(target)
        (job / relative).unlink(missing_ok=True)
        (job / relative).symlink_to(outside)

    return write


LAUGHS = "- &a [x, x, x, x, x, x, x, x, x]\n- &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n- [*b, *b, *b, *b, *b, *b]\n"
CSV_LOG = "csv/version_0/metrics.csv"
BAD_JOB_FILES = {
    "overrides with aliases": (_write(".hydra/overrides.yaml", LAUGHS), "anchors and aliases"),
    "overrides not a list": (_write(".hydra/overrides.yaml", "a: b\n"), "is not a list of key=value strings"),
    "overrides not strings": (_write(".hydra/overrides.yaml", "[1, {a: b}]\n"), "is not a list of key=value"),
    "overrides not YAML": (_write(".hydra/overrides.yaml", "[unclosed\n"), "not valid plain YAML"),
    "overrides huge": (_huge(".hydra/overrides.yaml"), "more than the 16384 such a file needs"),
    "overrides a link": (_link(".hydra/overrides.yaml", "- model.beta=9\n"), "symbolic link (not followed)"),
    "metrics not JSON": (_write("metrics.json", "{nope"), "metrics.json: Expecting property name"),
    "metrics a list": (_write("metrics.json", "[1, 2]"), "metrics.json holds a list, not a mapping"),
    "metrics not numbers": (_write("metrics.json", '{"a": "0.9", "b": {}, "job": 1}'), "not a number: a, b, job"),
    "metrics huge": (_huge("metrics.json"), "more than the 65536 such a file needs"),
    "metrics of too many keys": (
        _write("metrics.json", json.dumps({f"m{i}": i for i in range(1001)})),
        "metrics.json holds 1001 keys, more than the 1000 a run writes",
    ),
    "a run id that is not one": (_write("metrics.json", '{"probe/val_acc": 0.5, "run_id": "0a"}'), "number: run_id"),
    "a run id not a string": (_write("metrics.json", '{"run_id": 12345678901234567890123456789012e0}'), "run_id"),
    "metrics a link": (_link("metrics.json", '{"probe/val_acc": 1.0}'), "metrics.json is a symbolic link"),
    "metrics a folder": (
        lambda job: ((job / "metrics.json").unlink(), (job / "metrics.json").mkdir()),
        "not a regular",
    ),
    "csv epoch not a number": (_write(CSV_LOG, "epoch,train/loss_epoch\nx,1\n"), "line 2: could not convert"),
    "csv not UTF-8": (_write(CSV_LOG, b"epoch,train/loss\n0,\xff\n"), "can't decode byte 0xff"),
    "csv with NUL": (_write(CSV_LOG, "epoch,train/loss\n0,1\x00\n"), "could not convert string to float"),
    "csv huge": (_huge(CSV_LOG), "more than the 33554432 such a file needs"),
    "csv a link": (_link(CSV_LOG, "epoch,train/loss\n0,1\n1,2\n"), "metrics.csv is a symbolic link"),
}


@pytest.mark.parametrize(("damage", "status"), BAD_JOB_FILES.values(), ids=BAD_JOB_FILES.keys())
def test_a_job_with_a_bad_file_gets_a_status_that_says_what_is_wrong(tmp_path, damage, status: str) -> None:
    _three_jobs(tmp_path / "sweep")
    damage(tmp_path / "sweep" / "1")
    report = write_report(tmp_path / "sweep").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| 1 |"))
    assert status in row and "model.beta=9" not in report, row


def test_a_csv_log_folder_not_named_by_the_logger_is_passed_over(tmp_path) -> None:
    _three_jobs(tmp_path)
    (tmp_path / "0" / "csv" / "version_x").mkdir()
    (tmp_path / "0" / "csv" / "version_x" / "metrics.csv").write_text("epoch,a\nnot,numbers\n")
    assert epoch_curves(tmp_path / "0")["train/loss"] == [(0.0, -0.5), (1.0, -1.5)]


def test_saved_configs_that_are_not_usable_leave_the_default_metric(tmp_path) -> None:
    _three_jobs(tmp_path)
    (tmp_path / "0" / ".hydra" / "config.yaml").write_text("- a list\n- not a mapping\n")
    (tmp_path / "1" / ".hydra" / "config.yaml").write_text("optimized_metric: &m knn/val_acc\nx: *m\n")
    _huge(".hydra/config.yaml")(tmp_path / "2")
    assert "3 job(s), 3 with probe/val_acc" in write_report(tmp_path).read_text()


def test_the_walk_follows_no_link_and_stops_at_its_bounds(tmp_path, monkeypatch) -> None:
    sweep, outside = tmp_path / "sweep", tmp_path / "outside"
    _three_jobs(sweep)
    _job(outside, "job", ["model.beta=9"], {"probe/val_acc": 1.0})
    (sweep / "3").symlink_to(outside / "job")  # a job folder elsewhere
    (sweep / "4").mkdir()
    (sweep / "4" / ".hydra").symlink_to(outside / "job" / ".hydra")  # a job's .hydra elsewhere
    deep = sweep / "/".join(["d"] * 9)
    _job(deep, "job", ["model.beta=7"], {"probe/val_acc": 1.0})  # below the walk's 8 levels
    assert sorted(job.name for job in read_jobs(sweep)) == ["0", "1", "2"]
    monkeypatch.setattr("dim_lightning.report.job_files.MAX_ENTRIES", 20)
    with pytest.raises(DIMError, match=r"sweep holds more than 20 files and folders; pass the dir of one run"):
        read_jobs(sweep)


def test_curves_past_the_reports_point_budget_are_left_out_with_a_status(tmp_path, monkeypatch) -> None:
    _three_jobs(tmp_path)
    monkeypatch.setattr("dim_lightning.report.runs.MAX_CURVE_POINTS", 7)
    jobs = {job.name: job for job in read_jobs(tmp_path)}
    assert jobs["0"].curves and not jobs["1"].curves  # 6 points each: the first job's fit, the next's do not
    assert "curves left out: csv/version_0/metrics.csv: more than 7 points" in jobs["1"].status


def test_a_sweep_of_more_swept_keys_than_panels_draws_a_bounded_figure(tmp_path) -> None:
    for index in range(30):  # each job sets its own key: 30 swept parameters, more than the 24 panels drawn
        _job(tmp_path, str(index), [f"model.key_{index}={index}"], {"probe/val_acc": index / 30})
    write_report(tmp_path)
    assert Image.open(tmp_path / "report_parameters.png").width <= 24 * 4 * 110


def test_a_finished_runs_run_id_is_known_and_its_job_is_done(tmp_path) -> None:
    """metrics.json holds the run's id (32 hexadecimal digits, FinalEvaluation): the job is done, not "left out"."""
    _three_jobs(tmp_path)
    for index in range(3):
        metrics = json.loads((tmp_path / str(index) / "metrics.json").read_text())
        (tmp_path / str(index) / "metrics.json").write_text(json.dumps({**metrics, "run_id": f"{index:032x}"}))
    jobs = read_jobs(tmp_path)
    assert [job.status for job in jobs] == ["done"] * 3 and all("run_id" not in job.metrics for job in jobs)
    assert [row["status"] for row in write_summary(tmp_path)] == ["done"] * 3


def _hard_linked_jobs(root, count: int, relative: str, content: str) -> None:
    """`count` jobs whose file `relative` is one file, hard-linked: on disk (and in a tar) it is stored once."""
    source = root / ".source"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(content)
    for index in range(count):
        _job(root, str(index), [f"model.beta={index}"], None)
        (root / str(index) / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / str(index) / relative).unlink(missing_ok=True)  # _job's own
        os.link(source, root / str(index) / relative)


def test_hard_linked_result_files_cost_one_budget_for_the_whole_report(tmp_path, monkeypatch) -> None:
    """Every job's metrics.json a hard link to one file of numbers (300 links to 1 MB took 5.3 GB): the report's
    result files have one budget of bytes read and numbers kept; the jobs past it are left out with a status."""
    numbers = {"probe/val_acc": 0.5, **{f"m{i}": float(i) for i in range(9)}}  # 10 numbers, about 120 bytes
    _hard_linked_jobs(tmp_path / "numbers", 5, "metrics.json", json.dumps(numbers))
    _hard_linked_jobs(tmp_path / "bytes", 5, "metrics.json", json.dumps(numbers))
    monkeypatch.setattr("dim_lightning.report.job_files.REPORT_MAX_NUMBERS", 25)
    rows = {row["job"]: row["status"] for row in write_summary(tmp_path / "numbers")}
    assert [rows[str(i)] for i in range(3)] == ["done"] * 3  # 30 numbers kept: the third passes 25
    assert all("result files pass" in rows[str(i)] and "a sub-dir" in rows[str(i)] for i in (3, 4)), rows
    monkeypatch.setattr("dim_lightning.report.job_files.REPORT_RESULTS_MAX_BYTES", 2 * len(json.dumps(numbers)))
    jobs = read_jobs(tmp_path / "bytes")
    assert [job.done for job in jobs] == [True, True, False, False, False]
    assert "metrics.json: left out: the sweep dir's result files pass" in jobs[2].status


def test_hard_linked_overrides_cost_one_budget_and_one_saved_config_is_parsed(tmp_path, monkeypatch) -> None:
    """Every job's overrides.yaml and config.yaml a hard link to one file (a 1 MiB config took 7 s to parse, for
    each of up to a million jobs): the overrides share one budget, and only the first job's config is read."""
    overrides = yaml.safe_dump([f"model.beta={i}" for i in range(20)])
    _hard_linked_jobs(tmp_path, 4, ".hydra/overrides.yaml", overrides)
    for index in range(4):
        (tmp_path / str(index) / "metrics.json").write_text(json.dumps({"probe/val_acc": 0.5}))
        (tmp_path / str(index) / ".hydra" / "config.yaml").write_text("optimized_metric: knn/val_acc\n")
    monkeypatch.setattr("dim_lightning.report.job_files.REPORT_OVERRIDES_MAX_BYTES", 2 * len(overrides))
    statuses = [job.status for job in read_jobs(tmp_path)]
    assert statuses[:2] == ["done"] * 2, statuses
    assert all("overrides pass" in status and "a sub-dir" in status for status in statuses[2:]), statuses
    parsed = []
    monkeypatch.setattr(
        "dim_lightning.report.__main__.read_optimized_metric", lambda path: parsed.append(path) or "knn/val_acc"
    )
    assert optimized_metric(read_jobs(tmp_path)) == "knn/val_acc" and parsed == [tmp_path / "0"]


def test_hard_linked_csv_logs_cost_one_budget_and_rows_without_an_epoch_count(tmp_path, monkeypatch) -> None:
    """Every job's metrics.csv a hard link to one log of rows without an epoch (20 links to 128 MB took 9 min:
    no row added a point, so the point budget never stopped the read): every row counts, and the bytes too."""
    log = "epoch,step,train/loss\n" + ",1,0.5\n" * 50
    _hard_linked_jobs(tmp_path / "rows", 3, CSV_LOG, log)
    _hard_linked_jobs(tmp_path / "bytes", 3, CSV_LOG, log)
    monkeypatch.setattr("dim_lightning.report.runs.MAX_LOG_ROWS", 120)
    jobs = read_jobs(tmp_path / "rows")
    assert [job.status for job in jobs[:2]] == ["no metrics.json or eval.json"] * 2
    assert "curves left out: csv/version_0/metrics.csv: more than 120 rows in the report's logs" in jobs[2].status
    monkeypatch.setattr("dim_lightning.report.runs.LOGS_MAX_BYTES", 2 * len(log))
    jobs = read_jobs(tmp_path / "bytes")
    assert "curves left out: csv/version_0/metrics.csv: the report's logs pass" in jobs[2].status
    assert "curves left out" not in jobs[1].status


class _CountingDict(dict):
    """A job's overrides that count their look-ups (the report's work per job)."""

    calls = 0

    def get(self, *args):
        _CountingDict.calls += 1
        return super().get(*args)

    def __contains__(self, key) -> bool:
        _CountingDict.calls += 1
        return super().__contains__(key)

    def __getitem__(self, key):
        _CountingDict.calls += 1
        return super().__getitem__(key)


def test_the_reports_work_grows_with_the_jobs_not_their_square(tmp_path, monkeypatch) -> None:
    """20,000 small jobs took 290 s: each job's own swept value was looked up by sorting all values again, and each
    swept key by a look-up in every job. Counted, not timed: look-ups into the jobs' overrides and sorts, for 120
    jobs that each set their own key and value (old: about 120^2 of each)."""
    import dim_lightning.report.plots as plots
    import dim_lightning.report.runs as runs

    for index in range(120):
        _job(tmp_path, str(index), [f"model.key_{index}=v{index}", f"encoder=e{index}"], {"probe/val_acc": index / 120})
    pairs = runs._override_pairs
    monkeypatch.setattr(runs, "_override_pairs", lambda lines: _CountingDict(pairs(lines)))
    sorts = []
    monkeypatch.setattr(
        plots, "sorted", lambda *args, **kwargs: sorts.append(1) or sorted(*args, **kwargs), raising=False
    )
    report = write_report(tmp_path).read_text()
    assert _CountingDict.calls < 60 * 120 and len(sorts) < 100, (_CountingDict.calls, len(sorts))
    assert "The first 24 of 121 swept keys" in report
    header = next(line for line in report.splitlines() if line.startswith("| job | status"))
    assert header.count("|") < 2 + 24 + 12


def test_text_cells_of_the_tables_are_text_not_links_html_or_formulas(tmp_path) -> None:
    """Job names, overrides and statuses come from the sweep dir's files: in summary.md / report.md a link, an
    image, HTML or a pipe is escaped; in summary.csv a cell a spreadsheet would run as a formula starts with '."""
    _job(
        tmp_path,
        "=HYPERLINK(1)",
        ["[click](http://evil.example) <img src=x>|x", "model.beta=1"],
        {"probe/val_acc": -0.5},
    )
    _job(tmp_path, "@job", ["-cmd", "model.beta=2"], {"probe/val_acc": 0.5})
    _job(tmp_path, "plain", ["+trainer.x=1", "model.beta=3"], {"probe/val_acc": 0.25})
    report = write_report(tmp_path).read_text()
    for text in (report, (tmp_path / "summary.md").read_text()):
        assert "\\[click\\](http://evil.example) \\<img src" in text and "| -0.5000 |" in text
        assert "[click]" not in text.replace("\\[click\\]", "") and "<img" not in text.replace("\\<img", "")
    with (tmp_path / "summary.csv").open(newline="") as file:
        rows = {row["job"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"'=HYPERLINK(1)", "'@job", "plain"}
    assert rows["'@job"]["overrides"] == "'-cmd model.beta=2" and rows["plain"]["overrides"].startswith("'+trainer")
    assert rows["'=HYPERLINK(1)"]["probe/val_acc"] == "-0.5" and rows["'@job"]["probe/val_acc"] == "0.5"


def test_numbers_too_far_apart_to_draw_leave_the_figure_out_not_the_report(tmp_path) -> None:
    """probe/val_acc of +-1e308 (and such per-epoch values) made matplotlib raise mid-report (exit 1, no
    report.md): the figure is left out and the report written."""
    for index, value in enumerate((1e308, -1e308)):
        _job(tmp_path, str(index), [f"model.beta={index}"], {"probe/val_acc": value}, epochs=2)
        log = tmp_path / str(index) / "csv" / "version_0" / "metrics.csv"
        log.write_text(log.read_text().replace("-0.5", str(value)))
    report = write_report(tmp_path).read_text()
    assert "2 job(s), 2 with probe/val_acc" in report and "Not drawn: the numbers span more than a float" in report
