"""Every MI method by name, and `mutual_information`, the one entry point: `auto` (the recommendation,
`dim_lightning.mi.auto`), `gaussian`, the classical estimators of `dim_lightning.mi.arrays` and one neural
method per bound of the registry (`dim_lightning.mi.bounds.BOUNDS`: `infonce`, `nwj`, `dv`, `smile`, `jsd`,
...), cross-fitted by `dim_lightning.mi.neural`. When to use which: docs/mi-toolkit.md."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

from dim_lightning.errors import require
from dim_lightning.mi.arrays import histogram, ksg, plugin
from dim_lightning.mi.auto import auto_mi
from dim_lightning.mi.bounds import BOUNDS
from dim_lightning.mi.gaussian import copula, gaussian
from dim_lightning.mi.inputs import paired
from dim_lightning.mi.neural import neural_mi


def _neural(method: str) -> Callable[..., float]:
    def estimate(x, y, **options) -> float:
        return neural_mi(x, y, bound=method, **options)

    estimate.__name__ = method
    estimate.__doc__ = f"Neural estimate with the `{method}` bound (options: see `neural_mi`)."
    return estimate


def auto(x, y, **options) -> float:
    """The recommended estimate (`dim_lightning.mi.auto.auto_mi`; options: seed, k, progress); `auto_mi`
    also says which estimate it chose and gives a bootstrap interval."""
    return auto_mi(x, y, **options).mi_nats


ARRAY_METHODS: dict[str, Callable[..., float]] = {
    "auto": auto,
    "gaussian": gaussian,
    "plugin": plugin,
    "histogram": histogram,
    "ksg": ksg,
}

# Maps of each column applied before any method: MI is unchanged by an invertible map of x or of y.
TRANSFORMS: dict[str, Callable] = {"copula": copula}


def methods() -> dict[str, Callable[..., float]]:
    """Every method by name: auto, gaussian and the array estimators, then one neural method per registered
    bound (read at call time, so a bound registered after import is offered too)."""
    return {**ARRAY_METHODS, **{name: _neural(name) for name in BOUNDS}}


def mutual_information(x, y, method: str = "auto", transform: str | None = None, **options) -> float:
    """I(X; Y) in nats for arrays of shape (n,) or (n, d) holding paired samples, by `method` (default `auto`,
    the recommendation: docs/mi-toolkit.md). `transform="copula"` first maps each column of x and y through
    its empirical CDF to a standard normal (normal scores): the estimate is then the same for x and for any
    strictly monotone map of its columns, as the MI is, and heavy tails no longer dominate distances or
    covariances. Recommended for every continuous method (auto always does it); not for `plugin`."""
    known = methods()
    require(method in known, f"unknown MI method {method!r}; choose one of {', '.join(known)}")
    if transform is not None:
        require(transform in TRANSFORMS, f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
        x, y = paired(x, y)
        x, y = TRANSFORMS[transform](x, "x"), TRANSFORMS[transform](y, "y")
    return known[method](x, y, **options)


def max_mutual_information(
    X, y, max_order: int = 2, method: str = "plugin", **options
) -> tuple[tuple[int, ...], float]:
    """The feature subset (single features and, up to `max_order`, tuples) with the largest MI with the
    labels, and that MI in nats.

    The default plug-in method needs discrete features (it refuses non-integer columns); for continuous
    features pass method='ksg' or method='histogram'.

    This is the blog's `max_mutual_information` done right. The original passed the 2-D array `X` (and
    `X[:, [i, j]]`) to scikit-learn's `mutual_info_score`, which compares two 1-D label vectors: it is no MI
    of a feature set (current scikit-learn rejects the call). It also never scored single features, returned
    no subset, and its prose said MI equals 1 for independent variables; it is 0. Here a subset's rows are
    joint symbols (or, with method='ksg', vectors), so a pair is scored as one variable.
    """
    X, y = paired(X, y)
    require(1 <= max_order <= X.shape[1], f"max_order must be between 1 and {X.shape[1]}, got {max_order}")
    subsets = [s for order in range(1, max_order + 1) for s in combinations(range(X.shape[1]), order)]
    scores = {s: mutual_information(X[:, list(s)], y, method=method, **options) for s in subsets}
    best = max(scores, key=scores.get)
    return best, scores[best]
