"""benchmarks/throughput.py in a tiny configuration: one well-formed JSON line per run with positive numbers,
and a Markdown table (no speed is asserted: speed claims are the benchmark's output, not a test's)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import REPO, run_cli


def _throughput_module():
    spec = importlib.util.spec_from_file_location("throughput", REPO / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_prints_one_json_line_per_run_and_a_table(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = ["steps=3", "warmup=3", "data=synthetic", "data.image_size=16", "data.batch_size=8", "model.z_dim=16"]
    _throughput_module().main(
        [
            *tiny,
            "critic.network.units=16",
            "--variant=data.on_device=true data.crop_padding=2 data.flip=true",
            "--table",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    runs = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(runs) == 1 and runs[0]["overrides"].endswith("data.on_device=true data.crop_padding=2 data.flip=true")
    for run in runs:
        for key in ("img_per_s", "baseline_img_per_s", "ratio", "step_ms_p50", "step_ms_p90", "loader_img_per_s"):
            assert run[key] > 0, key
        assert run["step_ms_p90"] >= run["step_ms_p50"] and 0 < run["data_wait_fraction"] < 1
        assert run["peak_mem_mb"] > 0 and run["device"].startswith("cpu") and run["precision"] == "32-true"
        assert run["compile"] is False and run["steps"] == 3
        assert run["graph_breaks"] == 0 and run["collectives_per_step"] == 0 and run["world_size"] == 1
    assert json.loads((tmp_path / "outputs" / "benchmarks" / "throughput.jsonl").read_text()) == runs[0]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 3 and "img_per_s" in table[0]


def test_throughput_benchmark_needs_no_data_and_reports_bad_input_in_one_paragraph(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = _throughput_module()
    # experiment=blog names Tiny-ImageNet with no root: the benchmark uses synthetic images of its shape instead
    cfg = module.compose_config(["experiment=blog"], steps=2, warmup=3)
    assert cfg.data._target_.endswith("SyntheticDataModule")
    assert (cfg.data.image_size, cfg.data.channels, cfg.data.batch_size) == (64, 3, 100)
    digits = module.compose_config(["experiment=blog", "data=digits"], steps=2, warmup=3)
    assert digits.data._target_.endswith("DigitsDataModule")  # data= given: kept
    for bad, named in (
        (["experiment=no_such_preset"], "no_such_preset"),
        (["model.lr=-1", "data=synthetic"], "model.lr"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            module.main([*bad, "steps=1"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("benchmarks/throughput.py: error:") and "Traceback" not in error and named in error


def test_collective_events_are_told_from_their_waits() -> None:
    module = _throughput_module()
    assert module.is_collective("gloo:all_reduce") and module.is_collective("nccl:all_gather")
    assert not module.is_collective("aten::mm") and not module.is_collective("c10d::allreduce_")  # same call


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _end_to_end_module():
    spec = importlib.util.spec_from_file_location("end_to_end", REPO / "benchmarks" / "end_to_end.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_extrapolates_the_recipe_and_marks_the_targets() -> None:
    gpu_check = _gpu_check_module()
    run = {"step_ms_p50": 1.0, "step_ms_p90": 1.2, "graph_breaks": 0, "cudagraph_skips": 0, "device": "cuda (H200)"}
    run.update(batch_size=100, baseline_img_per_s=15_000.0)
    results = {
        "fp32_eager": {**run, "img_per_s": 10_000.0, "ratio": 10_000 / 15_000},
        "bf16": {**run, "img_per_s": 20_000.0, "ratio": 20_000 / 15_000},
        "fast_path": {**run, "img_per_s": 60_000.0, "ratio": 4.0},
    }
    whole = {"compile_s": 40.0, "seconds_per_epoch": 2.5, "recipe_minutes": 4.9, "cudagraph_skips": 0}
    summary = gpu_check.summarize(results, whole)
    fast = summary["runs"]["fast_path"]
    assert fast["speedup_vs_fp32_eager"] == 6.0 and summary["runs"]["bf16"]["speedup_vs_fp32_eager"] == 2.0
    assert fast["speedup_vs_plain_loop"] == 4.0 and fast["plain_loop_img_per_s"] == 15_000.0
    assert fast["step_recipe_minutes"] == pytest.approx(1e7 / 60_000 / 60)  # 100 epochs x 100,000 images
    assert summary["end_to_end"] == whole
    assert all(summary["targets"].values()) and len(summary["targets"]) == 4
    results["fast_path"].update(img_per_s=25_000.0, ratio=2.0, cudagraph_skips=1)
    assert not any(gpu_check.summarize(results, {**whole, "recipe_minutes": 7.0})["targets"].values())


def test_end_to_end_separates_compilation_and_the_epoch_probes() -> None:
    """Epoch 0 pays the compilation; epoch 4 (every 5th) the epoch probes, spread over their cadence."""
    seconds = [30.0, 2.0, 2.2, 1.8, 5.0, 2.0]
    result = _end_to_end_module().summarize(seconds, setup_s=1.0, cadence=5, images_per_epoch=90_000)
    assert result["plain_epoch_s"] == pytest.approx(2.0) and result["probe_extra_s"] == pytest.approx(3.0)
    assert result["compile_s"] == pytest.approx(28.0) and result["seconds_per_epoch"] == pytest.approx(2.6)
    assert result["recipe_minutes"] == pytest.approx((1.0 + 28.0 + 100 * 2.6) / 60)
    without_probes = _end_to_end_module().summarize(seconds[:4], setup_s=0.0, cadence=None, images_per_epoch=10)
    assert without_probes["probe_extra_s"] == 0.0 and without_probes["seconds_per_epoch"] == pytest.approx(2.0)


@pytest.mark.slow  # three throughput runs and one end-to-end run, two compiled: minutes of CPU
def test_gpu_check_runs_its_configurations_in_one_call(capsys, tmp_path, monkeypatch) -> None:
    """The GPU check's logic on a CPU, as benchmarks/README.md gives it (smaller still): every key it reports,
    0 CUDA-graph skips, the epoch probes timed in the end-to-end run (every 2 epochs here)."""
    monkeypatch.chdir(tmp_path)
    tiny = ["trainer=cpu", "data.image_size=16", "data.batch_size=8", "model.z_dim=16", "critic.network.hidden=16"]
    probes = ["callbacks.linear_probe.every_n_epochs=2", "callbacks.knn_probe.every_n_epochs=2"]
    summary = _gpu_check_module().main([*tiny, *probes, "steps=2", "warmup=3", "epochs=3"])
    assert set(summary["runs"]) == {"fp32_eager", "bf16", "fast_path"} and summary["device"].startswith("cpu")
    for run in summary["runs"].values():
        assert run["graph_breaks"] == 0 and run["cudagraph_skips"] == 0
        assert run["speedup_vs_plain_loop"] > 0 and run["speedup_vs_fp32_eager"] > 0 and run["img_per_s"] > 0
    whole = summary["end_to_end"]
    assert whole["epochs"] == 3 and len(whole["epoch_seconds"]) == 3 and whole["probe_every_n_epochs"] == 2
    assert whole["compile_s"] > 0 and whole["seconds_per_epoch"] > 0 and whole["recipe_minutes"] > 0
    assert whole["cudagraph_skips"] == 0 and (tmp_path / "outputs" / "benchmarks" / "end_to_end").is_dir()
    assert set(summary["targets"]) == {
        "img_per_s_at_least_55000", "at_least_3x_plain_loop", "no_cudagraph_skips", "recipe_at_most_5_minutes"
    }  # fmt: skip
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 5 and lines[3]["whole_step"] and lines[3]["compiled_graphs"] == 1


@pytest.mark.slow
def test_the_fast_path_under_ddp_runs_at_most_two_collectives_per_step(tmp_path) -> None:
    """Issue 20's count: under 2-rank DDP the whole step needs the gradient all-reduce (and at most the negatives'
    gather), nothing per step besides; counted by the benchmark's own process-group hook."""
    tiny = [
        "experiment=blog",
        "trainer=ddp_sim",
        "data=synthetic",
        "data.image_size=16",
        "data.batch_size=8",
        "model.z_dim=16",
    ]
    result = run_cli(
        *tiny, "critic.network.hidden=16", "model.whole_step=true", "steps=2", "warmup=6",
        cwd=tmp_path, timeout=900, program=(str(REPO / "benchmarks" / "throughput.py"),),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    assert run["world_size"] == 2 and run["whole_step"] and run["graph_breaks"] == 0
    assert 0 < run["collectives_per_step"] <= 2, run["collectives"]


@pytest.mark.slow
def test_first_run_benchmark_shows_the_second_run_reading_the_cached_pixel_baseline() -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "first_run.py"), "data.image_size=16", "model.z_dim=32"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert (first["run"], second["run"]) == ("first", "second")
    assert second["pixels_probe_val_acc"] == first["pixels_probe_val_acc"]
    assert second["pixels_probe_test_acc"] == first["pixels_probe_test_acc"]
    assert (first["pixel_baseline_cached"], second["pixel_baseline_cached"]) == (False, True)
