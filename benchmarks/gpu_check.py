"""The GPU speed check of the blog recipe in one call (a few minutes on one H100/H200): fp32 eager, bf16
autocast, and the fast path (whole step compiled with CUDA graphs), all with the uint8 train split resident
on the GPU, through `benchmarks/throughput.py` (the framework as train.py runs it, with its callbacks).

    python benchmarks/gpu_check.py                      # steps=300 warmup=30 on trainer=gpu
    python benchmarks/gpu_check.py steps=100 warmup=20  # shorter

Other `key=value` arguments are Hydra overrides added to every run (e.g. `trainer=cpu data.image_size=16` to
check the script's logic on a CPU). Prints each run's JSON line, then one JSON summary line:
  runs[name]: img_per_s, step_ms_p50, step_ms_p90, graph_breaks, speedup_vs_fp32_eager and
              recipe_minutes (the full recipe, 100 epochs x 100,000 images, at that rate)
  targets:    the issue's targets (>= 55,000 img/s and >= 3x fp32 eager for the fast path), met or not
The numbers go into benchmarks/README.md with the device named.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

RECIPE_IMAGES = 100 * 100_000  # the blog recipe: 100 epochs of Tiny-ImageNet's 100,000 training images
TARGET_IMG_PER_S = 55_000
TARGET_SPEEDUP = 3.0
COMMON = ["experiment=blog", "data=synthetic", "data.on_device=true", "trainer=gpu"]
RUNS = {
    "fp32_eager": "trainer.precision=32-true",
    "bf16": "trainer.precision=bf16-mixed",
    "fast_path": "trainer.precision=bf16-mixed model.whole_step=true model.compile_mode=reduce-overhead",
}
DEFAULTS = {"steps": "300", "warmup": "30"}


def _throughput():
    spec = importlib.util.spec_from_file_location("throughput", Path(__file__).with_name("throughput.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summarize(results: dict[str, dict]) -> dict:
    """Per run: rate, step times, the full recipe's extrapolated minutes and the speed-up over fp32 eager."""
    eager = results["fp32_eager"]["img_per_s"]
    runs = {
        name: {
            "img_per_s": result["img_per_s"],
            "step_ms_p50": result["step_ms_p50"],
            "step_ms_p90": result["step_ms_p90"],
            "graph_breaks": result["graph_breaks"],
            "speedup_vs_fp32_eager": result["img_per_s"] / eager,
            "recipe_minutes": RECIPE_IMAGES / result["img_per_s"] / 60,
        }
        for name, result in results.items()
    }
    fast = runs["fast_path"]
    return {
        "device": results["fast_path"]["device"],
        "batch_size": results["fast_path"]["batch_size"],
        "runs": runs,
        "targets": {
            "img_per_s_at_least_55000": fast["img_per_s"] >= TARGET_IMG_PER_S,
            "at_least_3x_fp32_eager": fast["speedup_vs_fp32_eager"] >= TARGET_SPEEDUP,
        },
    }


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
    throughput = _throughput()
    given = {item.split("=", 1)[0] for item in overrides}
    shared = [*(c for c in COMMON if c.split("=", 1)[0] not in given), *overrides]
    shared += [f"{k}={v}" for k, v in bench.items()]
    names = list(RUNS)
    results = throughput.main([*shared, *(f"--variant={RUNS[name]}" for name in names)])
    summary = summarize(dict(zip(names, results, strict=True)))
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
