"""A new user's first commands, timed end to end as they run them (a new Python process each): `python train.py
debug=fast` twice with an empty per-user cache, so the second run shows what the cached pixel baseline saves.

    python benchmarks/first_run.py                      # debug=fast
    python benchmarks/first_run.py seed=1 data.image_size=16   # any extra train.py overrides

Prints one JSON line per run: wall_s (the whole command, Python start-up included), train_s, eval_s and
pixel_baseline_s (from the run's metrics.json), pixel_baseline_cached (its numbers read from the per-user cache,
as train.log says) and the pixel baseline's val/test accuracies (equal in both runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dim_lightning.eval.pixel_baseline import CACHED_NOTE

REPO = Path(__file__).resolve().parents[1]


def timed_run(overrides: list[str], run_dir: Path, cache: Path) -> dict[str, float]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "debug=fast", *overrides, f"hydra.run.dir={run_dir}"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"first_run.py: error: train.py exited {done.returncode}:\n{done.stderr[-2000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "train_s": round(metrics["time/train_s"], 1),
        "eval_s": round(metrics["time/eval_s"], 1),
        "pixel_baseline_s": round(metrics["time/eval/baseline_pixels_s"], 2),
        "pixel_baseline_cached": CACHED_NOTE in (run_dir / "train.log").read_text(),
        "pixels_probe_val_acc": metrics["baseline/pixels_probe_val_acc"],
        "pixels_probe_test_acc": metrics["baseline/pixels_probe_test_acc"],
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        for run in ("first", "second"):
            result = timed_run(sys.argv[1:], Path(scratch) / run, cache)
            print(json.dumps({"run": run, "command": "python train.py debug=fast", **result}), flush=True)


if __name__ == "__main__":
    main()
