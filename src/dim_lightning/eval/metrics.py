"""The one registry of evaluation metrics: the suite runs them, eval.md's columns, the headline numbers (the
final log line, the multirun summary's columns) and `optimized_value` come from it.

A metric is a function `(train, held_out, context) -> {suffix: value}` fitted on the train split's features
of one place and scored on the held-out splits (`val`, `test`); the suite writes each value as
`<name>/<place>/<suffix>` (e.g. `probe/fc/val_acc`). `@register_metric(name, title=...)` adds one:

- `columns`: eval.md's columns, each a title and the suffixes its cell shows (default: "<title> val / test"
  over `val_acc` and `test_acc`);
- `headline=True`: the code's (Y) numbers are also written as `<name>/val_acc`, `<name>/test_acc` and are
  headline numbers;
- `enabled_by`: a boolean `eval.suite` option that turns the metric on (e.g. `mlp`); None: always on.

A new metric: CONTRIBUTING.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from dim_lightning.errors import require
from dim_lightning.eval.probe import knn_accuracy, linear_probe_scores, mlp_probe_scores, precision_at_k

HELD_OUT = ("val", "test")  # the selection split and the official one: both scored, only val optimized
Split = tuple[Tensor, Tensor]  # (features [N, D], labels [N])


@dataclass(frozen=True)
class MetricContext:
    """What a metric may read besides the features: the place, the suite's options and the seed."""

    place: str
    seed: int = 0
    knn_k: int = 20
    knn_temperature: float = 0.07
    precision_k: int = 10
    description: str = ""  # progress-bar title: "<metric title> <place>"


Score = Callable[[Split, dict[str, Split], MetricContext], dict[str, float]]
Columns = Callable[[MetricContext], list[tuple[str, list[str]]]]


def _val_test(title: str) -> Columns:
    return lambda context: [(f"{title} val / test", [f"{split}_acc" for split in HELD_OUT])]


@dataclass(frozen=True)
class EvalMetric:
    """A registered metric (see the module docstring)."""

    name: str
    title: str
    score: Score
    columns: Columns
    headline: bool = False
    enabled_by: str | None = None


METRICS: dict[str, EvalMetric] = {}


def register_metric(
    name: str,
    title: str,
    columns: Columns | None = None,
    headline: bool = False,
    enabled_by: str | None = None,
) -> Callable[[Score], Score]:
    """Decorator: add a metric function to `METRICS` under `name` (its metrics.json prefix)."""

    def add(score: Score) -> Score:
        known = METRICS.get(name)
        require(known is None or known.score is score, f"an evaluation metric named {name!r} is already registered")
        METRICS[name] = EvalMetric(name, title, score, columns or _val_test(title), headline, enabled_by)
        return score

    return add


def enabled_metrics(switches: dict[str, bool]) -> list[EvalMetric]:
    """The registered metrics in order, less those whose `enabled_by` switch is off."""
    return [m for m in METRICS.values() if m.enabled_by is None or switches.get(m.enabled_by, False)]


@register_metric("probe", "linear probe", headline=True)
def linear_probe(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
    scores = linear_probe_scores(*train, held_out, seed=context.seed, description=context.description)
    return {f"{split}_acc": acc for split, acc in scores.items()}


@register_metric("mlp", "MLP probe", enabled_by="mlp")
def mlp_probe(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
    scores = mlp_probe_scores(*train, held_out, seed=context.seed, description=context.description)
    return {f"{split}_acc": acc for split, acc in scores.items()}


@register_metric("knn", "kNN", headline=True)
def knn(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
    return {
        f"{split}_acc": knn_accuracy(
            *train, x, y, context.knn_k, context.knn_temperature, description=f"{context.description} {split}"
        )
        for split, (x, y) in held_out.items()
    }


def _retrieval_columns(context: MetricContext) -> list[tuple[str, list[str]]]:
    k = context.precision_k
    return [(f"p@{k} L2", [f"p@{k}_l2"]), (f"p@{k} cos", [f"p@{k}_cos"])]


@register_metric("retrieval", "retrieval", columns=_retrieval_columns)
def retrieval(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
    """Precision@k of the val queries among the train images, L2 and cosine neighbours."""
    k = context.precision_k
    return {f"p@{k}_{metric}": precision_at_k(*held_out["val"], *train, k, metric) for metric in ("l2", "cos")}


BASELINE_HEADLINE = ("baseline/pixels_probe_val_acc", "baseline/random_init_probe_val_acc")


def headline() -> tuple[str, ...]:
    """The run's headline numbers: each headline metric's val and test numbers of the code, the baselines'
    val numbers and the training throughput (the final log line; the multirun summary's columns)."""
    scores = [f"{m.name}/{split}_acc" for m in METRICS.values() if m.headline for split in HELD_OUT]
    return (*scores, *BASELINE_HEADLINE, "train/img_per_s")


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    """`metrics[name]`, or None (with a warning saying why) when the run did not measure it."""
    if name is None:
        return None
    if name not in metrics:
        rank_zero_warn(f"optimized_metric={name} is not among this run's metrics (eval.final=false?); returning None")
        return None
    return float(metrics[name])
