"""Variational MI bounds as functions of critic scores: each takes `Scores` and returns a `Bound`, the loss to
minimise and the MI estimate in nats (detached), after Poole et al. (2019), "On Variational Bounds of Mutual
Information", and Song & Ermon (2020) for SMILE: `jsd`, `infonce`, `nwj`, `dv` (MINE) and `smile`.

`BOUNDS` is the one registry: a bound added with `@register_bound("name")` is offered by name to training
(conf/estimator/<name>.yaml, whose `_target_` is the registered object), to `mutual_information` and to
`python -m dim_lightning.mi` (`make_bound`). A new bound: CONTRIBUTING.md."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dim_lightning.errors import require


class Scores(NamedTuple):
    """Critic scores. `positive[i, m]`: anchor i with its own m-th feature; `negative[i, k]`: anchor i with
    its k-th negative feature (shared by all positives of anchor i)."""

    positive: Tensor
    negative: Tensor


class Bound(NamedTuple):
    """What an estimator returns: the loss to minimise and the MI estimate in nats (no gradient)."""

    loss: Tensor
    mi: Tensor


Estimator = Callable[[Scores], Bound]


@dataclass(frozen=True)
class RegisteredBound:
    """A bound in the registry: `build` is the function of `Scores` (or the nn.Module class whose instances
    are), `max_grad_norm` the gradient clip that neural MI's critic training uses with it (None: no clip)."""

    name: str
    build: Callable[..., Bound] | type[nn.Module]
    max_grad_norm: float | None = None


BOUNDS: dict[str, RegisteredBound] = {}


def register_bound(name: str, max_grad_norm: float | None = None) -> Callable:
    """Decorator: add a bound (a function `(scores, **options) -> Bound`, or an nn.Module class whose
    forward is one) to `BOUNDS` under `name`, the name that `mutual_information(method=name)` and
    conf/estimator/<name>.yaml use."""

    def add(build):
        known = BOUNDS.get(name)
        require(
            known is None or known.build is build,
            f"a bound named {name!r} is already registered ({known and known.build.__qualname__}); pick another name",
        )
        BOUNDS[name] = RegisteredBound(name, build, max_grad_norm)
        return build

    return add


def make_bound(name: str, **options) -> Estimator:
    """The registered bound `name` with its `options` (e.g. smile's tau): an instance of a module class, or
    the function with the options bound. Unknown names and options are clear errors."""
    require(name in BOUNDS, f"unknown bound {name!r}; choose one of {', '.join(BOUNDS)}")
    build = BOUNDS[name].build
    accepted = set(inspect.signature(build).parameters) - {"self", "scores"}
    unknown = sorted(set(options) - accepted)
    require(
        not unknown,
        f"bound {name!r} takes no option(s) {unknown}; its options: {', '.join(sorted(accepted)) or 'none'}",
    )
    if isinstance(build, type):
        return build(**options)
    return functools.partial(build, **options) if options else build


def _log_mean_exp(x: Tensor) -> Tensor:
    return torch.logsumexp(x.flatten(), dim=0) - math.log(x.numel())


def _jsd_loss(scores: Scores) -> Tensor:
    return F.softplus(-scores.positive).mean() + F.softplus(scores.negative).mean()


def _nwj_value(scores: Scores, shift: float) -> Tensor:
    """E_P[T + shift] - E_Q[exp(T + shift - 1)]: the NWJ bound for the critic T + shift, in float64 (finite
    while log E_Q[exp T] < ~700; float32 gives -inf past 88). The official critic's raw dot products of 2048-unit
    embeddings score negatives in the hundreds."""
    log_partition = _log_mean_exp(scores.negative).double() + shift - 1.0
    return scores.positive.mean().double() + shift - torch.exp(log_partition)


@register_bound("jsd")
def jsd(scores: Scores) -> Bound:
    """Jensen-Shannon (f-GAN) objective; MI read off as NWJ of the JS critic plus one, which is exact at the JS
    optimum (critic = log density ratio). The blog recipe's Keras loss, binary cross-entropy of sigmoid critic
    outputs on true and shuffled pairs, is this (softplus form) with the concat critic and shuffled negatives."""
    return Bound(loss=_jsd_loss(scores), mi=_nwj_value(scores, shift=1.0).detach())


@register_bound("infonce")
def infonce(scores: Scores) -> Bound:
    """InfoNCE: each positive against all negatives of its anchor; at most log(1 + K) for K negatives."""
    num_negatives = scores.negative.shape[1]
    negatives_lse = torch.logsumexp(scores.negative, dim=1, keepdim=True)  # [N, 1]
    log_prob_positive = scores.positive - torch.logaddexp(scores.positive, negatives_lse)
    mi = log_prob_positive.mean() + math.log(num_negatives + 1)
    return Bound(loss=-mi, mi=mi.detach())


# NWJ's rare negatives with a huge density ratio give gradient spikes that throw a neural-MI critic off;
# clipping at 1 keeps them in check (benchmarks/README.md).
@register_bound("nwj", max_grad_norm=1.0)
def nwj(scores: Scores) -> Bound:
    """NWJ bound E_P[T] - E_Q[exp(T - 1)]; unbiased, high variance at large MI."""
    mi = _nwj_value(scores, shift=0.0)
    return Bound(loss=-mi, mi=mi.detach())


@register_bound("smile")
def smile(scores: Scores, tau: float = 5.0) -> Bound:
    """SMILE: DV with negatives clipped to [-tau, tau] for the estimate, JS gradient for training."""
    if tau <= 0:
        raise ValueError(f"smile needs tau > 0, got {tau}")
    clipped = scores.negative.clamp(-tau, tau)
    mi = scores.positive.mean() - _log_mean_exp(clipped)
    return Bound(loss=_jsd_loss(scores), mi=mi.detach())


# MINE's DV must not be clipped: its moving-average correction relies on large gradients to pull the partition
# term back, and with clipping the critic diverged.
@register_bound("dv")
class DonskerVaradhan(nn.Module):
    """MINE: the DV bound E_P[T] - log E_Q[exp T], with the gradient of the log partition term divided by
    an exponential moving average of E_Q[exp T] instead of the batch value (Belghazi et al., 2018, sec. 3.2).

    The average is kept in log space for stability and lives in a buffer, so it is checkpointed.
    """

    def __init__(self, ema_rate: float = 0.01) -> None:
        super().__init__()
        if not 0.0 < ema_rate <= 1.0:
            raise ValueError(f"ema_rate must be in (0, 1], got {ema_rate}")
        self.ema_rate = ema_rate
        self.register_buffer("log_ema", torch.tensor(float("nan")))

    def forward(self, scores: Scores) -> Bound:
        log_partition = _log_mean_exp(scores.negative)
        mi = scores.positive.mean() - log_partition
        if not self.training:
            return Bound(loss=-mi, mi=mi.detach())
        batch_value = log_partition.detach().float()
        rate = self.ema_rate
        averaged = (
            torch.logaddexp(self.log_ema + math.log1p(-rate), batch_value + math.log(rate))
            if rate < 1.0
            else batch_value
        )
        # The first batch starts the average; torch.where keeps the step free of a host-device sync.
        self.log_ema.copy_(torch.where(torch.isnan(self.log_ema), batch_value, averaged))
        # Gradient: grad E_Q[exp T] / ema, i.e. the MINE bias-corrected gradient of log E_Q[exp T].
        corrected_partition = torch.exp(log_partition - self.log_ema)
        loss = -(scores.positive.mean() - corrected_partition)
        return Bound(loss=loss, mi=mi.detach())
