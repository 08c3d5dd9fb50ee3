"""The Gaussian (CCA) MI estimate and the copula transform that makes it, and every other estimator, blind to
monotone maps of each coordinate.

MI is unchanged by an invertible map of X or of Y. `copula` replaces each column by the standard-normal
quantile of its empirical CDF (its normal scores), a map that undoes any strictly monotone per-coordinate
transform exactly: the estimate of copula-transformed data is the same for x and for f(x). `gaussian`
assumes (X, Y) jointly Gaussian and reads the MI from the canonical correlations (the sample covariance's log
determinants); on copula-transformed data it is exact for Gaussians seen through monotone maps of each
coordinate and a lower estimate where the dependence is not Gaussian (heavy tails, a spiral)."""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, ndtri
from scipy.stats import rankdata

from dim_lightning.errors import require
from dim_lightning.mi.inputs import as_samples, paired, standardized


def copula(values, name: str = "values") -> np.ndarray:
    """Each column through its empirical CDF (ranks / (n + 1), ties given their mean rank) and the standard
    normal quantile: normal scores, a monotone map of every coordinate. Computed from the nearer end, so that
    reversing a column's order negates its scores exactly (a decreasing map changes no estimate)."""
    array = as_samples(values, name)
    ranks = rankdata(array, axis=0)
    upper = ranks > (len(array) + 1) / 2
    scores = ndtri(np.where(upper, len(array) + 1 - ranks, ranks) / (len(array) + 1))
    return np.where(upper, -scores, scores)


def _logdet_bias(n: int, dim: int) -> float:
    """E[log det S] - log det Sigma for the sample covariance S (divisor n - 1) of n Gaussian rows in `dim`
    dimensions: sum_i psi((n - i) / 2) + dim log(2 / (n - 1)) (the Wishart log determinant's mean)."""
    return float(digamma((n - np.arange(1, dim + 1)) / 2).sum() + dim * np.log(2 / (n - 1)))


def gaussian(x, y, bias_correction: bool = True) -> float:
    """I(X; Y) if (X, Y) is jointly Gaussian: 0.5 (log det S_xx + log det S_yy - log det S), S the sample
    covariance, i.e. -0.5 sum log(1 - r_i^2) over the canonical correlations r_i (CCA). Assumption: the
    dependence is linear-Gaussian; anything else is missed (pass transform='copula' to undo monotone maps of
    each coordinate first). The plain estimate is biased up by about dx dy / (2 n) nats (0.25 at 50+50 d and
    n = 5,000); `bias_correction` removes the bias of each log determinant exactly under the assumption."""
    x, y = paired(x, y)
    n, dx, dy = len(x), x.shape[1], y.shape[1]
    require(
        n > dx + dy + 1,
        f"the Gaussian MI estimate needs more rows than dimensions: n={n}, dx + dy = {dx + dy}; pass more samples",
    )
    joint = np.concatenate([standardized(x, "x"), standardized(y, "y")], axis=1)
    correlation = np.corrcoef(joint, rowvar=False)
    logdets = [np.linalg.slogdet(m) for m in (correlation[:dx, :dx], correlation[dx:, dx:], correlation)]
    require(
        all(sign > 0 for sign, _ in logdets),
        "the columns of x and y are linearly dependent (a singular covariance: a column is a linear combination "
        "of others, e.g. a duplicate); drop the redundant columns",
    )
    mi = 0.5 * (logdets[0][1] + logdets[1][1] - logdets[2][1])
    if bias_correction:
        mi -= 0.5 * (_logdet_bias(n, dx) + _logdet_bias(n, dy) - _logdet_bias(n, dx + dy))
    return float(mi)
