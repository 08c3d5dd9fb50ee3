"""The report's pictures (matplotlib, headless): the optimised metric against each swept parameter, and
per-epoch curves of loss, MI terms and probe accuracy. Jobs without results are drawn as such, not dropped."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only, before pyplot loads
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from dim_lightning.report.runs import Job
from dim_lightning.report.sweep_summary import write_new_file

CURVE_PREFIXES = ("train/loss", "val/loss", "train/mi_", "val/mi_", "probe/")
MAX_PANELS = 24  # per figure: a figure of a copied sweep dir's every logged name or override key would be huge
LABEL_CHARS = 40
MAX_TICK_LABELS = 50  # a parameter's category labels drawn
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")  # one per job, so equal curves stay apart
MAX_CURVE_JOBS = 40  # lines per curve panel (and legend entries): more would be unreadable, and slow to draw


def _save(figure: plt.Figure, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> Path | None:
    """Write the figure as a PNG; None when matplotlib cannot lay it out (values a sweep dir's files hold can
    span more than a float: +-1e308 on one axis), so the report goes on without it."""
    try:
        figure.tight_layout(rect=rect)
        write_new_file(path, lambda file: figure.savefig(file, format="png", dpi=110))
    except (ValueError, OverflowError):
        return None
    finally:
        plt.close(figure)
    return path


def _numeric(values: list[str]) -> list[float] | None:
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    return numbers if all(math.isfinite(n) for n in numbers) else None


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _colourings(jobs: list[Job], parameters: list[str]) -> dict[str, list[str]]:
    """The first two swept parameters with more than one value among `jobs`, with each job's value: the first
    colours every other parameter's dots, the second the first's."""
    found: dict[str, list[str]] = {}
    for key in parameters:
        values = [_short(job.overrides.get(key, "(default)")) for job in jobs]
        if len(set(values)) > 1:
            found[key] = values
            if len(found) == 2:
                break
    return found


def _spread(points: list[tuple[float, float]], width: float) -> list[tuple[float, float]]:
    """Points that coincide side by side (`width` apart, centred on their x), so equal scores stay visible."""
    seen: dict[tuple[float, float], int] = {}
    counts: dict[tuple[float, float], int] = {}
    for point in points:
        counts[point] = counts.get(point, 0) + 1
    spread = []
    for x, y in points:
        i = seen[(x, y)] = seen.get((x, y), -1) + 1
        spread.append((x + (i - (counts[(x, y)] - 1) / 2) * width, y))
    return spread


def _parameter_panel(
    axis: plt.Axes, jobs: list[Job], key: str, metric: str, colour_by: str | None, colours: list[str]
) -> None:
    """One swept parameter: each finished job a dot at (its value, its metric), coloured by its value of
    `colour_by` (another swept parameter; `colours`), equal dots side by side; a job without the metric an x on
    the axis' floor. Numeric values on a numeric (log, if they span 100x) axis, others as categories."""
    raw = [_short(job.overrides.get(key, "(default)")) for job in jobs]
    numbers = _numeric(raw)
    categories = sorted(set(raw)) if numbers is None else []
    index = {category: i for i, category in enumerate(categories)}
    positions = numbers if numbers is not None else [index[v] for v in raw]
    log_scale = numbers is not None and min(numbers) > 0 and max(numbers) / min(numbers) >= 100
    span = (max(positions) - min(positions)) if positions else 0.0
    width = 0.0 if log_scale else (0.12 if numbers is None else 0.04 * (span or 1.0))  # categories are 1 apart
    palette = {value: f"C{i % 10}" for i, value in enumerate(sorted(set(colours)))}
    finished = [(x, job.metrics[metric]) for x, job in zip(positions, jobs, strict=True) if metric in job.metrics]
    spread = iter(_spread(finished, width))
    for job, colour in zip(jobs, colours or ["(all)"] * len(jobs), strict=True):
        if metric in job.metrics:
            label = f"{colour_by}={colour}" if colour_by else "finished"
            axis.scatter(*next(spread), color=palette.get(colour, "tab:blue"), label=label, alpha=0.85)
    failed = [x for x, job in zip(positions, jobs, strict=True) if metric not in job.metrics]
    if failed:
        floor = min((y for _, y in finished), default=0.0)
        axis.scatter(failed, [floor] * len(failed), marker="x", color="tab:red", label="no result (failed/unfinished)")
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if len(unique) > 1 or failed:
        axis.legend(unique.values(), unique.keys(), fontsize=7)
    label = key
    if numbers is None and len(categories) <= MAX_TICK_LABELS:
        axis.set_xticks(range(len(categories)), categories, rotation=20, fontsize=8)
    elif numbers is None:  # thousands of labels would be unreadable, and slow to draw
        label = f"{key} ({len(categories)} values, sorted)"
    elif log_scale:
        axis.set_xscale("log")
    axis.set_xlabel(label)
    axis.set_ylabel(metric)
    axis.grid(alpha=0.3)


def plot_parameters(jobs: list[Job], parameters: list[str], metric: str, path: Path) -> Path | None:
    """The optimised metric against each swept parameter, one panel per parameter (the first `MAX_PANELS`); None
    when it cannot be drawn (`_save`)."""
    parameters = parameters[:MAX_PANELS]
    figure, axes = plt.subplots(1, len(parameters), figsize=(4 * len(parameters), 3.4), squeeze=False)
    colourings = _colourings(jobs, parameters)
    for axis, key in zip(axes[0], parameters, strict=True):
        colour_by = next((other for other in colourings if other != key), None)
        _parameter_panel(axis, jobs, key, metric, colour_by, colourings.get(colour_by, []))
    figure.suptitle(f"{metric} per swept parameter ({len(jobs)} jobs)", fontsize=10)
    return _save(figure, path)


def curve_names(jobs: list[Job]) -> list[str]:
    """The logged numbers drawn: loss, MI terms and probes (the first `MAX_PANELS`, sorted)."""
    names = {name for job in jobs for name in job.curves if name.startswith(CURVE_PREFIXES)}
    return sorted(names)[:MAX_PANELS]


def curve_jobs(jobs: list[Job]) -> list[Job]:
    """The jobs whose curves are drawn: the first `MAX_CURVE_JOBS` (of jobs sorted best first) that have some."""
    return [job for job in jobs if job.curves][:MAX_CURVE_JOBS]


def plot_curves(jobs: list[Job], path: Path, label_of: dict[str, str]) -> Path | None:
    """Per-epoch curves: one panel per logged number (loss, MI terms in nats, probes), one line per job of
    `curve_jobs`, each with its own marker (a curve equal to an earlier job's says so in the legend); the curves of
    a job that did not finish are dashed. None when no job logged two epochs or more, or when the
    figure cannot be drawn (`_save`)."""
    jobs = curve_jobs(jobs)
    names = curve_names(jobs)
    if not names:
        return None
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        drawn: dict[tuple, str] = {}  # a curve's points -> the label of the job that drew them first
        for i, job in enumerate(jobs):
            if name in job.curves:
                label = _short(label_of[job.name])
                same_as = drawn.setdefault(tuple(job.curves[name]), label)
                epochs, values = zip(*job.curves[name], strict=True)
                axis.plot(
                    epochs,
                    values,
                    "-" if job.done else "--",
                    marker=MARKERS[i % len(MARKERS)],
                    markersize=7 - 4 * (i % 2),  # a curve equal to another's still shows its markers
                    markerfacecolor="none" if i % 2 else None,
                    label=label
                    + ("" if job.done else " (unfinished)")
                    + ("" if same_as == label else f" (= {same_as})"),
                )
        axis.set_title(name + (" (nats)" if "/mi_" in name else ""), fontsize=9)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, bbox_to_anchor=(0.5, 0))
    legend_rows = -(-len(labels) // 4)
    return _save(figure, path, rect=(0, min(0.4, 0.06 * legend_rows / rows), 1, 1))
