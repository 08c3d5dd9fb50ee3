"""Chaos drill: a deterministic run, killed K times at random steps with a random SIGTERM / SIGUSR1 / SIGKILL
(each time after at least one new periodic checkpoint), restarted with the very same command each time, must end
with exactly the final metrics and weights of the same run left alone.

    python benchmarks/chaos_drill.py --kills 10                        # one process
    python benchmarks/chaos_drill.py --kills 5 trainer=ddp_sim         # DDP, 2 CPU processes
    python benchmarks/chaos_drill.py --kills 1 trainer=gpu             # bf16 on one GPU (CUDA kernels may differ)

Every other `key=value` is a Hydra override added to the drill's small run (digits, 16 px, 4 epochs of 20 steps,
a periodic checkpoint every 2 steps, the final evaluation included). Signals go to the run's process group (as
SLURM signals every task). Prints one JSON object: the kills (signal, exit code, the step the restart resumed
from), `equal` (every metrics.json number but timings, and every weight, bitwise), and any differences; it is
also appended to outputs/benchmarks/chaos_drill.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RUN = [
    "logger=csv",
    "data.batch_size=32",
    "data.image_size=16",
    "model.z_dim=32",
    "critic.network.units=64",
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=20",
    "trainer.limit_val_batches=2",
    "trainer.deterministic=true",
    "++trainer.enable_progress_bar=false",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "eval.random_init_baseline=false",
    "eval.suite.retrieval=false",
    "eval.suite.export_features=false",
]
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGKILL)
TIMING = re.compile(r"^time/|img_per_s|^run_id$")  # timings, and the id each run gets (not a result)


def _command(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *RUN, *overrides, f"hydra.run.dir={run_dir}"]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


def _saved_step(checkpoint: Path) -> int:
    """The global step of the run dir's last.ckpt (-1: none yet, or being replaced right now)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return -1


def _one_attempt(command, run_dir: Path, target: int, rng: random.Random, log: Path, timeout: float) -> dict | None:
    """Start the command; once it saved a checkpoint at step >= `target` (a periodic one: at least one new), wait a
    random moment (a random step or two further) and send a random signal. None when the run ended first."""
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    process = _start(command, log)
    deadline = time.monotonic() + timeout
    while _saved_step(checkpoint) < target and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(rng.uniform(0.0, 0.5))
    if process.poll() is not None:
        return None
    signum = rng.choice(SIGNALS)
    os.killpg(process.pid, signum)
    code = process.wait(timeout=timeout)
    time.sleep(0.5)  # let any other rank of the group finish exiting
    with_group = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
    for pid in with_group:  # a rank left behind (e.g. blocked in a collective) would hold the port
        os.kill(int(pid), signal.SIGKILL)
    return {"signal": signal.Signals(signum).name, "exit_code": code}


def _resumed_from(log: Path) -> str | None:
    found = re.search(r"resuming from (step \d+ of epoch \d+)|(redoing the final evaluation)", log.read_text())
    return (found.group(1) or found.group(2)) if found else None


def _compare(straight: Path, chaos: Path) -> dict:
    expected = json.loads((straight / "metrics.json").read_text())
    got = json.loads((chaos / "metrics.json").read_text())
    differing = {k: [expected.get(k), got.get(k)] for k in set(expected) | set(got) if not TIMING.search(k)}
    differing = {k: v for k, v in differing.items() if v[0] != v[1]}
    weights = [
        torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        for d in (straight, chaos)
    ]
    max_abs = max(
        (float((a.double() - weights[1][k].double()).abs().max()) for k, a in weights[0].items() if a.numel()),
        default=0.0,
    )
    unequal = sorted(k for k, a in weights[0].items() if not torch.equal(a, weights[1][k]))
    return {
        "equal": not differing and not unequal,
        "differing_metrics": differing,
        "differing_weights": len(unequal),
        "max_abs_weight_difference": max_abs,
        "metrics": {k: v for k, v in sorted(got.items()) if not TIMING.search(k)},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (steps and signals)")
    parser.add_argument("--workdir", type=Path, default=REPO / "outputs" / "chaos_drill")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one attempt may take")
    args, overrides = parser.parse_known_args(argv)
    rng = random.Random(args.seed)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    straight, chaos = args.workdir / f"{stamp}-straight", args.workdir / f"{stamp}-chaos"
    chaos.mkdir(parents=True)
    started = time.monotonic()
    result = subprocess.run(_command(straight, overrides), capture_output=True, text=True, timeout=args.timeout)
    if result.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    total = json.loads((straight / "metrics.json").read_text())["global_step"]
    command, kills, attempt = _command(chaos, overrides), [], 0
    while len(kills) < args.kills:
        attempt += 1
        log = chaos / f"attempt_{attempt}.log"
        start = max(_saved_step(chaos / "checkpoints" / "last.ckpt"), 0)
        stride = max(1, (total - start) // (2 * (args.kills - len(kills) + 1)))  # spread the kills over the run
        kill = _one_attempt(command, chaos, start + 2 * rng.randint(1, stride), rng, log, args.timeout)
        if kills:
            kills[-1]["next_run"] = _resumed_from(log)
        if kill is None:
            break  # the run finished before this kill: fewer kills than asked (reported)
        kills.append(kill)
    final_log = chaos / "final.log"
    final = subprocess.run(command, stdout=final_log.open("w"), stderr=subprocess.STDOUT, timeout=args.timeout)
    if kills:
        kills[-1]["next_run"] = _resumed_from(final_log)
    report = {
        "overrides": " ".join(overrides),
        "kills_asked": args.kills,
        "kills": kills,
        "final_exit_code": final.returncode,
        **_compare(straight, chaos),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report, indent=1))
    out = REPO / "outputs" / "benchmarks" / "chaos_drill.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as file:
        file.write(json.dumps(report) + "\n")
    return report


if __name__ == "__main__":
    main()
