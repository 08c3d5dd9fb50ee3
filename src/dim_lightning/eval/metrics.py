"""The one registry of evaluation metrics: the suite runs them, and eval.md's columns, the headline numbers (the
final log line, the multirun summary's columns) and `optimized_value` come from it.

A metric is a function `(train, held_out, context) -> {suffix: value}` fitted on the train split's features of
one place and scored on the held-out splits (`val`, `test`); the suite writes each value as
`<name>/<place>/<suffix>` (e.g. `probe/fc/val_acc`). `@register_metric` adds one; a new metric: CONTRIBUTING.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

from dim_lightning.data.base import stratified_split
from dim_lightning.errors import require
from dim_lightning.eval.probe import knn_accuracy, linear_probe_scores, mlp_probe_scores, precision_at_k

HELD_OUT = ("val", "test")  # the selection split and the official one: both scored, only val optimized
SELECTION_METRIC = "probe/val_acc"  # what sweeps optimize and summaries sort on unless told otherwise
Split = tuple[Tensor, Tensor]  # (features [N, D], labels [N])


@dataclass(frozen=True)
class MetricContext:
    """What a metric may read besides the features: the place, the seed and the metrics' `eval.suite` options."""

    place: str
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)  # every registered metric's options (`metric_options`)
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
    options: Mapping[str, Any] = field(default_factory=dict)
    refit: bool = True

    def scores(
        self, train: Split, held_out: dict[str, Split], context: MetricContext, all_training: Split | None = None
    ) -> dict[str, float]:
        """`score` on the held-out splits; with `refit`, val from the fit on train (what selection reads) and
        test from the fit on `all_training` (`refit_scores`)."""
        if not self.refit:
            return self.score(train, held_out, context)
        return refit_scores(lambda fit, split: self.score(fit, split, context), train, held_out, all_training)


def all_training_images(train: Split, val: Split, max_images: int | None = None, seed: int = 0) -> Split:
    """Train + val, every training image, or a fixed stratified subset of `max_images` of them (the cap of
    `eval.suite.max_train_images` holds for the test refit too)."""
    x, y = torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]])
    if max_images is None or max_images >= len(y):
        return x, y
    keep = torch.from_numpy(stratified_split(y.cpu().numpy(), int(max_images), seed)[0]).to(y.device)
    return x[keep], y[keep]


def refit_scores(
    score: Callable[[Split, dict[str, Split]], dict[str, float]],
    train: Split,
    held_out: dict[str, Split],
    all_training: Split | None = None,
) -> dict[str, float]:
    """The usual protocol of a selection split: `val` is scored by the fit on `train` (model selection reads it);
    the reported `test` by the same procedure refitted on `all_training` (default: train + val)."""
    scores = score(train, {"val": held_out["val"]}) if "val" in held_out else {}
    if "test" in held_out:
        if all_training is None:
            all_training = all_training_images(train, held_out["val"]) if "val" in held_out else train
        scores.update(score(all_training, {"test": held_out["test"]}))
    return scores


METRICS: dict[str, EvalMetric] = {}


def register_metric(
    name: str,
    title: str,
    columns: Columns | None = None,
    headline: bool = False,
    enabled_by: str | None = None,
    options: Mapping[str, Any] | None = None,
    refit: bool = True,
) -> Callable[[Score], Score]:
    """Decorator: add a metric function to `METRICS` under `name` (its metrics.json prefix).

    - `columns`: eval.md's columns, each a title and the suffixes its cell shows (default: "<title> val / test"
      over `val_acc` and `test_acc`);
    - `headline=True`: the code's (Y) numbers are also written as `<name>/val_acc`, `<name>/test_acc` and are
      headline numbers;
    - `enabled_by`: a boolean `eval.suite` option that turns the metric on (e.g. `mlp`); None: always on;
    - `options`: the metric's own `eval.suite` options and their defaults (e.g. kNN's `knn_k`), given to it in
      `context.options` (the config's values; the defaults when called from Python without them);
    - `refit=False`: one call on both held-out splits, fitted on train only (default: `refit_scores`)."""

    def add(score: Score) -> Score:
        known = METRICS.get(name)
        require(known is None or known.score is score, f"an evaluation metric named {name!r} is already registered")
        METRICS[name] = EvalMetric(
            name, title, score, columns or _val_test(title), headline, enabled_by, dict(options or {}), refit
        )
        return score

    return add


def metric_options(suite: Mapping[str, Any]) -> dict[str, Any]:
    """Every registered metric's options: the registered defaults, overridden by those in `suite` (an
    `eval.suite` mapping; its other keys are ignored)."""
    defaults = {key: value for m in METRICS.values() for key, value in m.options.items()}
    return {key: suite.get(key, value) for key, value in defaults.items()}


def split_suite_options(metric_keys: Mapping[str, Any]) -> tuple[dict[str, bool], dict[str, Any]]:
    """The registered metrics' `eval.suite` keys as (switches, options): the switches that turn metrics on
    (`enabled_by`; absent: off) and every metric's options (`metric_options`). A key that is neither is refused."""
    switches = {m.enabled_by for m in METRICS.values() if m.enabled_by}
    options = metric_options(metric_keys)
    unknown = sorted(set(metric_keys) - switches - set(options))
    require(
        not unknown,
        f"unknown eval.suite option(s) {unknown}: no registered evaluation metric is switched on by them or reads "
        f"them (switches: {sorted(switches)}; options: {sorted(options)}); remove them or register the metric "
        "(CONTRIBUTING.md)",
    )
    return {key: bool(metric_keys.get(key, False)) for key in switches}, options


def enabled_metrics(switches: Mapping[str, bool]) -> list[EvalMetric]:
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


@register_metric("knn", "kNN", headline=True, options={"knn_k": 20, "knn_temperature": 0.07})
def knn(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
    k, temperature = context.options["knn_k"], context.options["knn_temperature"]
    return {
        f"{split}_acc": knn_accuracy(*train, x, y, k, temperature, description=f"{context.description} {split}")
        for split, (x, y) in held_out.items()
    }


def _retrieval_columns(context: MetricContext) -> list[tuple[str, list[str]]]:
    k = context.options["precision_k"]
    return [(f"p@{k} L2", [f"p@{k}_l2"]), (f"p@{k} cos", [f"p@{k}_cos"])]


@register_metric("retrieval", "retrieval", columns=_retrieval_columns, options={"precision_k": 10}, refit=False)
def retrieval(train: Split, held_out: dict[str, Split], context: MetricContext) -> dict[str, float]:
    """Precision@k of the val queries among the train images, L2 and cosine neighbours."""
    k = context.options["precision_k"]
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
