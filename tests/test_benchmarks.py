"""benchmarks/throughput.py in a tiny configuration: one well-formed JSON line per run with positive numbers,
and a Markdown table (no speed is asserted: speed claims are the benchmark's output, not a test's)."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import REPO


def _throughput_module():
    spec = importlib.util.spec_from_file_location("throughput", REPO / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_benchmark_prints_one_json_line_per_run_and_a_table(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    tiny = ["steps=3", "warmup=1", "data=synthetic", "data.image_size=16", "data.batch_size=8", "model.z_dim=16"]
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
    assert json.loads((tmp_path / "outputs" / "benchmarks" / "throughput.jsonl").read_text()) == runs[0]
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 3 and "img_per_s" in table[0]
