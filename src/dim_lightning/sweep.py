"""Run a W&B sweep file without a W&B server: `python -m dim_lightning.sweep sweeps/X.yaml --count N [overrides]`.

W&B's open-source sweep engine (PyPI `sweeps`: grid, random and bayes) proposes the runs and is fed each finished
run's metric; each run is started as `wandb agent` would start it (`agent_command`), the command line's overrides
after the sweep's and `hydra.run.dir=<sweep dir>/<i>`, and the sweep dir ends with summary.csv / summary.md. A
sweep file comes from anyone, so before any run starts it is checked (`load_sweep`, `check_sweep`; what it may
ask for: `config.sweep_files`); bad input exits with code 2."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from dim_lightning.config import CONF_DIR
from dim_lightning.config.checks import is_number
from dim_lightning.config.schema.root import selection_metric
from dim_lightning.config.sweep_files import TRAINING_PROGRAM, command_problems, override_problem, program_problem
from dim_lightning.config.validation import raise_problems, table_problems
from dim_lightning.errors import DIMError, require, user_errors_exit
from dim_lightning.eval.metrics import SELECTION_METRIC
from dim_lightning.report.job_files import read_results
from dim_lightning.report.sweep_summary import write_summary
from dim_lightning.utils.bounded_files import describe, read_capped
from dim_lightning.utils.plain_yaml import load_plain_yaml

METHODS = ("grid", "random", "bayes")
SWEEP_FILE_MAX_BYTES = 2**20
# W&B's distributions that draw real numbers between min and max (q_: rounded to multiples of q, still floats)
REAL_DISTRIBUTIONS = ("uniform", "log_uniform_values", "q_uniform", "q_log_uniform_values")
MAX_VALUES = 1000  # parameter values checked (each composes the config): a real sweep lists tens
MAX_GRID_RUNS = 10_000  # W&B's grid engine lists every combination before its first run


def _holds_sweep_files(path: str) -> bool:
    folder = Path(path or ".") / "sweeps"
    return folder.is_dir() and not (folder / "__init__.py").exists()


def sweep_engine() -> ModuleType:
    """The `sweeps` package, never a `sweeps/` folder of YAML files (the repository's, or a user's): run from the
    folder above it, it is on sys.path and would import as an empty namespace package."""
    cached = sys.modules.get("sweeps")
    if cached is not None and getattr(cached, "__file__", None) is None:
        del sys.modules["sweeps"]  # the namespace package of the folder
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if not _holds_sweep_files(p)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic v1-style config keys in sweeps 0.2
            engine = importlib.import_module("sweeps")
    except ImportError:
        engine = None
    finally:
        sys.path[:] = saved
    require(
        engine is not None and hasattr(engine, "next_run"),
        "W&B's sweep engine is not installed (PyPI package `sweeps`); install it with "
        "`pip install 'sweeps==0.2.0'` (or `pip install -e .[dev]`)",
    )
    return engine


def override_args(params: dict[str, Any]) -> list[str]:
    """`${args_no_hyphens}` as the W&B agent writes it: `key=value` for every parameter of the run."""
    return [f"{key}={value}" for key, value in params.items()]


def parameter_values(spec: Any) -> list[Any]:
    """Values to check a parameter with: every listed value, or a distribution's bounds, and for one that draws
    real numbers a value between them (integer bounds do not make an integer key's draws integers) (none for a
    spec that is not a mapping, or a `values:` that is not a list)."""
    if not isinstance(spec, dict):
        return []
    if "values" in spec:
        return list(spec["values"]) if isinstance(spec["values"], list) else []
    if "value" in spec:
        return [spec["value"]]
    bounds = [spec[bound] for bound in ("min", "max") if bound in spec]
    drawn = spec.get("distribution") in REAL_DISTRIBUTIONS and len(bounds) == 2 and all(map(is_number, bounds))
    return [*bounds, (bounds[0] + bounds[1]) / 2] if drawn else bounds


def _compose(overrides: list[str], path: str) -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            problems = table_problems(compose("train", overrides=overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise DIMError(
            f"{path}: the overrides {' '.join(overrides)} do not compose with conf/train.yaml "
            f"({type(error).__name__}: {error}); fix the parameter name or value in the sweep file"
        ) from error
    finally:
        GlobalHydra.instance().clear()
    raise_problems(
        problems,
        f"the config of {path}'s overrides {' '.join(overrides)}",
        "fix them in the sweep file (an integer key takes distribution: int_uniform)",
    )


def _check_structure(sweep: Any, path: str) -> None:
    """The file's own keys: a mapping with a known method, a metric that is not the official test split's, the
    training program, parameters, and a command that passes them as Hydra overrides (`config.sweep_files`)."""
    require(isinstance(sweep, dict), f"{path} is not a W&B sweep file (a YAML mapping with method/parameters)")
    require(
        sweep.get("method") in METHODS,
        f"{path}: unknown sweep method {sweep.get('method')!r}; use one of {', '.join(METHODS)}",
    )
    metric = sweep.get("metric", {})
    require(
        isinstance(metric, dict) and isinstance(metric.get("name", SELECTION_METRIC), str),
        f"{path}: metric: must be a mapping with a name, e.g. {{name: {SELECTION_METRIC}, goal: maximize}}",
    )
    problem = selection_metric.problem(metric.get("name", SELECTION_METRIC))
    require(problem is None, lambda: f"{path}: metric.name={metric['name']} {problem}")
    problem = program_problem(sweep.get("program"))
    require(problem is None, lambda: f"{path}: {problem}")
    parameters = sweep.get("parameters")
    require(isinstance(parameters, dict) and parameters, f"{path}: the sweep has no parameters")
    command = sweep.get("command") or []
    require(
        isinstance(command, list) and "${args_no_hyphens}" in command,
        f"{path}: the command: list must contain ${{args_no_hyphens}} so every parameter arrives as a Hydra override "
        '(key=value), e.g. command: ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]',
    )
    problems = command_problems(command)
    require(not problems, lambda: f"{path}: {'; '.join(problems)}")


def _check_parameters(parameters: dict[Any, Any], path: str) -> None:
    """Every parameter has values, at most `MAX_VALUES` in all, and each key=value may come from a sweep file."""
    for key, spec in parameters.items():
        require(parameter_values(spec), f"{path}: parameter {key} has no value(s) or min/max")
    count = sum(len(parameter_values(spec)) for spec in parameters.values())
    require(count <= MAX_VALUES, f"{path}: the parameters list {count} values, more than {MAX_VALUES}")
    for key, spec in parameters.items():
        for value in parameter_values(spec):
            problem = override_problem(f"{key}={value}")
            require(problem is None, lambda key=key, value=value, problem=problem: f"{path}: {key}={value}: {problem}")


def check_sweep(sweep: dict[str, Any], path: str, extra: list[str] = ()) -> None:
    """Raise DIMError unless the sweep file can run and asks only what a sweep file may (`config.sweep_files`):
    its structure, its parameters, a grid of at most `MAX_GRID_RUNS` runs (the engine lists them all before its
    first), and a config that composes for every parameter value (no key that does not exist)."""
    _check_structure(sweep, path)
    parameters = sweep["parameters"]
    _check_parameters(parameters, path)
    fixed = [c for c in sweep["command"] if not c.startswith("${")]
    _check_grid(sweep, path)
    baseline = {key: parameter_values(spec)[0] for key, spec in parameters.items()}
    for key, spec in parameters.items():
        for value in parameter_values(spec):
            _compose([*fixed, *override_args({**baseline, key: value}), *extra], path)


def load_sweep(path: str | Path, extra: list[str] = ()) -> dict[str, Any]:
    """The sweep file at `path`, at most `SWEEP_FILE_MAX_BYTES` of plain YAML, checked (`check_sweep`) with the
    command line's `extra` overrides."""
    path = Path(path)
    require(path.is_file(), f"sweep file {path} does not exist; pass one of sweeps/*.yaml")
    try:
        sweep = load_plain_yaml(read_capped(path, SWEEP_FILE_MAX_BYTES))
    except OSError as error:
        raise DIMError(f"{describe(error)}, so it is not a sweep file; pass one of sweeps/*.yaml") from error
    except ValueError as error:
        raise DIMError(f"{path} is {error}; fix the file") from error
    check_sweep(sweep, str(path), list(extra))
    return sweep


def _value_count(engine: ModuleType, name: str, spec: dict[str, Any]) -> float:
    """How many values W&B's grid engine lists for one parameter (as it reads the spec: `fill_parameter`): a list's
    length, an int range's max - min + 1, a q_uniform range's steps; 1 for what a grid refuses (the engine says)."""
    try:
        filled = engine.config.fill_parameter(name, spec)
    except Exception:  # e.g. min > max: the engine refuses the file with its own message later
        filled = None
    spec = filled[1] if filled else {}
    distribution = spec.get("distribution")
    if distribution == "categorical":
        return len(spec["values"])
    if distribution == "int_uniform":
        return max(0, spec["max"] - spec["min"] + 1)
    if distribution == "q_uniform" and spec["q"] > 0:
        steps = (spec["max"] - spec["min"]) / spec["q"]
        return max(0, math.ceil(steps)) if math.isfinite(steps) else math.inf
    return 1


def grid_size(engine: ModuleType, parameters: dict[str, Any]) -> float:
    """The number of runs of a grid sweep: the product of every parameter's value count."""
    return math.prod(_value_count(engine, name, spec) for name, spec in parameters.items())


def _check_grid(sweep: dict[str, Any], path: str) -> None:
    """A grid sweep lists at most `MAX_GRID_RUNS` runs: the engine builds the list of them all before its first."""
    size = grid_size(sweep_engine(), sweep["parameters"]) if sweep["method"] == "grid" else 1
    require(
        size <= MAX_GRID_RUNS,
        lambda: (
            f"{path}: the grid has {size if size < 10**15 else 'more than 10^15'} combinations of its "
            f"parameters' values, more than the {MAX_GRID_RUNS} a grid sweep may list (W&B's engine builds them all "
            "before its first run); list fewer values, or use method: random or bayes"
        ),
    )


def engine_config(engine: ModuleType, sweep: dict[str, Any], path: str) -> Any:
    """The engine's `SweepConfig` of the file, once it proposed a first run without an error (a grid's size is
    checked before: `check_sweep`)."""
    try:
        config = engine.SweepConfig({k: v for k, v in sweep.items() if k != "command"})
        engine.next_run(config, [])
    except Exception as error:  # jsonschema's ValidationError, or what a value of the file makes the engine raise
        raise DIMError(f"{path}: W&B's sweep engine refuses the file ({type(error).__name__}: {error})") from error
    return config


def training_environment() -> dict[str, str]:
    """The environment of a run: this one, except that Python never imports from the working directory
    (`python -m` would put it first on sys.path, and a handed-over folder may hold a dim_lightning/); the folder
    this runner's dim_lightning came from is added when only the working directory had it on the path."""
    package_parent = Path(__file__).resolve().parents[1]
    elsewhere = {Path(p).resolve() for p in sys.path if p} - {Path.cwd().resolve()}
    added = [] if package_parent in elsewhere else [str(package_parent)]
    path = os.pathsep.join([*added, *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONSAFEPATH": "1", **({"PYTHONPATH": path} if path else {})}


def agent_command(sweep: dict[str, Any], params: dict[str, Any], program: list[str]) -> list[str]:
    """The command `wandb agent` would run for these parameters: the file's `command:` list with `${env}` ->
    /usr/bin/env, `${interpreter}` -> this Python, `${program}` -> `program` (this package's training program,
    `-m dim_lightning.train`), `${args_no_hyphens}` -> `key=value` per parameter (Hydra overrides)."""
    macros = {
        "${env}": ["/usr/bin/env"],
        "${interpreter}": [sys.executable],
        "${program}": program,
        "${args_no_hyphens}": override_args(params),
    }
    return [part for chunk in sweep["command"] for part in macros.get(str(chunk), [str(chunk)])]


def run_sweep(
    sweep_file: str | Path, count: int, overrides: list[str], sweep_dir: Path | None = None
) -> tuple[Path, list[dict], list[int]]:
    """Propose and run up to `count` runs; return the sweep dir, its summary rows (best first) and the runs that
    ended without the metric."""
    sweep_file = Path(sweep_file)
    sweep = load_sweep(sweep_file, overrides)
    engine = sweep_engine()
    metric = sweep.get("metric", {}).get("name", SELECTION_METRIC)
    config = engine_config(engine, sweep, str(sweep_file))
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = Path(sweep_dir or Path("outputs") / "sweeps" / sweep_file.stem / stamp)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    runs: list = []
    for index in range(count):
        run = engine.next_run(config, runs)
        if run is None:
            print(f"sweep: the {config['method']} search is exhausted after {index} runs")
            break
        params = {key: spec["value"] for key, spec in run.config.items()}
        run_dir = sweep_dir / str(index)
        command = [*agent_command(sweep, params, TRAINING_PROGRAM), *overrides, f"hydra.run.dir={run_dir}"]
        print(f"sweep: run {index + 1}/{count}: {' '.join(command)}", flush=True)
        finished = subprocess.run(command, env=training_environment()).returncode == 0
        metrics = read_results(run_dir).metrics
        run.state = engine.RunState.finished if finished and metric in metrics else engine.RunState.failed
        run.summary_metrics = {metric: metrics[metric]} if metric in metrics else {}
        runs.append(run)
    failed = [index for index, run in enumerate(runs) if run.state == engine.RunState.failed]
    return sweep_dir, write_summary(sweep_dir, metric), failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dim_lightning.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_file", help="a W&B sweep YAML, e.g. sweeps/bayes_lr_beta.yaml")
    parser.add_argument("--count", type=int, default=4, help="number of runs to propose (grid: at most the grid)")
    parser.add_argument("--sweep-dir", type=Path, default=None, help="default outputs/sweeps/<file>/<time>")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run, e.g. trainer.max_epochs=1")
    args = parser.parse_intermixed_args(argv)
    with user_errors_exit("dim_lightning.sweep"):
        require(args.count >= 1, f"--count must be >= 1, got {args.count}")
        sweep_dir, rows, failed = run_sweep(args.sweep_file, args.count, args.overrides, args.sweep_dir)
        print(f"sweep: {len(rows)} runs, best first: {sweep_dir / 'summary.md'}")
        require(
            not failed,
            lambda: (
                f"{len(failed)} run(s) ended without results (runs {', '.join(map(str, failed[:10]))}): "
                f"{sweep_dir / 'summary.md'} gives each one's status and its train.log says why; the others' "
                "results are kept"
            ),
        )


if __name__ == "__main__":
    main()
