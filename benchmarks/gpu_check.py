"""The GPU speed check of the blog recipe in one call (a few minutes on one H100/H200): the whole recipe end to
end on the fast path, then fp32 eager, bf16 autocast and the fast path (whole step compiled; on CUDA with CUDA
graphs by default), all with the uint8 train split resident on the GPU, through `benchmarks/throughput.py` (the
framework as train.py runs it, with its callbacks) beside a plain PyTorch loop of the same model in the same run.

    python benchmarks/gpu_check.py                      # steps=300 warmup=30 epochs=6 on trainer=gpu
    python benchmarks/gpu_check.py steps=100 warmup=20  # shorter

`epochs=N` / `epoch_images=N` set the end-to-end run (`benchmarks/end_to_end.py`; on CUDA an epoch is the
recipe's 90,000 train + 10,000 val images). Other `key=value` arguments are Hydra overrides added to every run
(e.g. `trainer=cpu data.image_size=16` to check the script's logic on a CPU). Prints each run's JSON line, then
one JSON summary line:
  runs[name]: img_per_s, step_ms_p50, step_ms_p90, graph_breaks, cudagraph_skips, speedup_vs_fp32_eager (the
              framework's fp32 run), speedup_vs_plain_loop (the plain PyTorch loop of the same run: fp32 eager
              Adam, the same float32 matmul precision (TF32 on CUDA), the same batches on the same device) and
              step_recipe_minutes (100 epochs x 100,000 images at that rate: the step alone)
  end_to_end: compile_s, seconds_per_epoch, recipe_minutes, ... of real training epochs (end_to_end.py)
  targets:    the issue's targets, met or not: >= 55,000 img/s and >= 3x the plain loop for the fast path, no
              CUDA-graph skip, the whole recipe in <= 5 minutes
The numbers go into benchmarks/README.md with the device named.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

from dim_lightning.errors import user_errors_exit

RECIPE_IMAGES = 100 * 100_000  # the blog recipe: 100 epochs of Tiny-ImageNet's 100,000 training images
TARGET_IMG_PER_S = 55_000
TARGET_SPEEDUP = 3.0
COMMON = ["experiment=blog", "data=synthetic", "data.on_device=true", "trainer=gpu"]
TARGET_RECIPE_MINUTES = 5.0
RUNS = {
    "fp32_eager": "trainer.precision=32-true",
    "bf16": "trainer.precision=bf16-mixed",
    "fast_path": "trainer.precision=bf16-mixed model.whole_step=true",  # compile_mode null: CUDA graphs on CUDA
}
DEFAULTS = {"steps": "300", "warmup": "30", "epochs": "6", "epoch_images": None}


def _benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(results: dict[str, dict], end_to_end: dict) -> dict:
    """Per run: rate, step times, CUDA-graph skips, the speed-ups; the end-to-end numbers; the targets."""
    eager = results["fp32_eager"]["img_per_s"]
    runs = {
        name: {
            "img_per_s": result["img_per_s"],
            "step_ms_p50": result["step_ms_p50"],
            "step_ms_p90": result["step_ms_p90"],
            "graph_breaks": result["graph_breaks"],
            "cudagraph_skips": result["cudagraph_skips"],
            "speedup_vs_fp32_eager": result["img_per_s"] / eager,
            "plain_loop_img_per_s": result["baseline_img_per_s"],
            "speedup_vs_plain_loop": result["ratio"],
            "step_recipe_minutes": RECIPE_IMAGES / result["img_per_s"] / 60,
        }
        for name, result in results.items()
    }
    fast = runs["fast_path"]
    return {
        "device": results["fast_path"]["device"],
        "batch_size": results["fast_path"]["batch_size"],
        "runs": runs,
        "end_to_end": end_to_end,
        "targets": {
            "img_per_s_at_least_55000": fast["img_per_s"] >= TARGET_IMG_PER_S,
            "at_least_3x_plain_loop": fast["speedup_vs_plain_loop"] >= TARGET_SPEEDUP,
            "no_cudagraph_skips": fast["cudagraph_skips"] == 0 and end_to_end["cudagraph_skips"] == 0,
            "recipe_at_most_5_minutes": end_to_end["recipe_minutes"] <= TARGET_RECIPE_MINUTES,
        },
    }


def whole_recipe(throughput, end_to_end, overrides: list[str], bench: dict) -> dict:
    """end_to_end.py's measurement of the fast path, with the CUDA-graph skips it saw."""
    with user_errors_exit("benchmarks/gpu_check.py"):
        run_dir = end_to_end.run_dir()
        cfg = end_to_end.configure(throughput.compose_train(overrides), bench["epochs"], bench["epoch_images"], run_dir)
        skips = torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]
        result = end_to_end.measure(cfg)
    result["cudagraph_skips"] = int(torch._dynamo.utils.counters["inductor"]["cudagraph_skips"] - skips)
    result["run_dir"] = str(run_dir)
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    bench = dict(DEFAULTS)
    overrides = []
    for item in argv:
        key, _, value = item.partition("=")
        if key in bench:
            bench[key] = value
        else:
            overrides.append(item)
    throughput, end_to_end = _benchmark("throughput"), _benchmark("end_to_end")
    given = {item.split("=", 1)[0] for item in overrides}
    shared = [*(c for c in COMMON if c.split("=", 1)[0] not in given), *overrides]
    whole = whole_recipe(throughput, end_to_end, [*shared, *RUNS["fast_path"].split()], bench)  # first: a cold compile
    names = list(RUNS)
    steps = [f"{key}={bench[key]}" for key in ("steps", "warmup")]
    results = throughput.main([*shared, *steps, *(f"--variant={RUNS[name]}" for name in names)])
    summary = summarize(dict(zip(names, results, strict=True)), whole)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
