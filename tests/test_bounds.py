"""MI bounds against closed forms: correlated Gaussians with known MI and known log density ratio."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import get_object
from omegaconf import OmegaConf

from dim_lightning.config import CONF_DIR
from dim_lightning.errors import DIMError
from dim_lightning.mi import BOUNDS, make_bound, register_bound
from dim_lightning.mi.bounds import DonskerVaradhan, Scores, infonce, jsd, nwj, smile
from dim_lightning.mi.negatives import all_pairs


class TrueRatioCritic:
    """Scores every (x_i, y_j) with log p(x, y) / (p(x) p(y)) of a unit Gaussian pair with correlation rho,
    plus `shift`. Codes are x [N, 1]; features are y [K, M=1, 1]."""

    def __init__(self, rho: float, shift: float = 0.0) -> None:
        self.rho, self.shift = rho, shift

    def score_all(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x, y = a[:, None, None, 0], b[None, :, :, 0]
        r = self.rho
        log_ratio = -0.5 * math.log(1 - r * r) - (r * r * (x * x + y * y) - 2 * r * x * y) / (2 * (1 - r * r))
        return log_ratio + self.shift


def gaussian_scores(rho: float, n: int = 2000, shift: float = 0.0, seed: int = 0) -> Scores:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho * rho) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return all_pairs(TrueRatioCritic(rho, shift), x, y[:, None, :])


def true_mi(rho: float) -> float:
    return -0.5 * math.log(1 - rho * rho)


@pytest.mark.parametrize("rho", [0.5, 0.75, 0.9])
def test_bounds_near_true_mi_at_optimal_critic(rho: float) -> None:
    truth = true_mi(rho)
    ratio = gaussian_scores(rho)
    # Each bound's optimal critic: DV, SMILE, InfoNCE, JS -> log ratio; NWJ -> 1 + log ratio.
    assert DonskerVaradhan().eval()(ratio).mi.item() == pytest.approx(truth, abs=0.05)
    assert smile(ratio, tau=10.0).mi.item() == pytest.approx(truth, abs=0.05)
    assert jsd(ratio).mi.item() == pytest.approx(truth, abs=0.05)
    assert nwj(gaussian_scores(rho, shift=1.0)).mi.item() == pytest.approx(truth, abs=0.05)
    # InfoNCE is below the truth by a bias that shrinks with the number of negatives (here 1999).
    nce = infonce(ratio).mi.item()
    assert truth - 0.1 < nce <= truth + 0.02


def test_bounds_near_zero_for_independent_pairs() -> None:
    ratio = gaussian_scores(0.0)  # the true log ratio of independent variables is 0 everywhere
    for bound in (infonce, jsd, smile, DonskerVaradhan().eval()):
        assert abs(bound(ratio).mi.item()) < 1e-6
    assert abs(nwj(gaussian_scores(0.0, shift=1.0)).mi.item()) < 1e-6


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_infonce_never_exceeds_log_of_negatives_plus_one(scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    for num_negatives in (1, 7, 63):
        positive = scale * torch.randn(16, 4, generator=g).abs()
        negative = -scale * torch.rand(16, num_negatives, generator=g)
        mi = infonce(Scores(positive, negative)).mi.item()
        assert mi <= math.log(num_negatives + 1) + 1e-6
    # with perfectly separated scores it reaches the cap
    perfect = Scores(torch.full((4, 2), 1e4), torch.full((4, 9), -1e4))
    assert infonce(perfect).mi.item() == pytest.approx(math.log(10))


def test_losses_are_differentiable_and_minimised_by_separating_scores() -> None:
    for bound in (infonce, jsd, nwj, smile, DonskerVaradhan()):
        positive = torch.zeros(8, 3, requires_grad=True)
        negative = torch.zeros(8, 5, requires_grad=True)
        bound(Scores(positive, negative)).loss.backward()
        # descending the loss raises positive scores and lowers negative ones
        assert positive.grad.sum() < 0 and negative.grad.sum() > 0, bound


def test_dv_moving_average_tracks_partition_in_training_only() -> None:
    dv = DonskerVaradhan(ema_rate=0.5)
    scores = Scores(torch.zeros(4, 1), torch.full((4, 3), 2.0))
    dv.eval()(scores)
    assert torch.isnan(dv.log_ema)
    dv.train()(scores)
    assert dv.log_ema.item() == pytest.approx(2.0)
    dv(Scores(torch.zeros(4, 1), torch.zeros(4, 3)))
    assert dv.log_ema.item() == pytest.approx(math.log(0.5 * math.exp(2.0) + 0.5))
    assert "log_ema" in dv.state_dict()


def test_all_pairs_splits_diagonal_and_respects_offset() -> None:
    class Identity:
        def score_all(self, a, b):
            return a[:, None, None, 0] * 100 + b[None, :, :, 0]

    a = torch.arange(3.0)[:, None]  # anchors 0, 1, 2
    b = torch.arange(6.0).reshape(6, 1, 1)  # features from two "devices"
    scores = all_pairs(Identity(), a, b, gather=lambda t: (t, 0))
    assert scores.positive.squeeze(1).tolist() == [0.0, 101.0, 202.0]
    assert scores.negative.shape == (3, 5)
    assert 0.0 not in scores.negative[0].tolist()
    shifted = all_pairs(Identity(), a, b[:3], gather=lambda t: (b, 3))
    assert shifted.positive.squeeze(1).tolist() == [3.0, 104.0, 205.0]


def test_jsd_and_nwj_read_outs_stay_finite_with_the_official_critic() -> None:
    # The paper presets' critic: raw dot products of LayerNorm'd 2048-unit embeddings. Even untrained, its
    # negatives score in the hundreds, where exp(log E_Q[e^T]) overflows float32 (NWJ read -inf).
    from dim_lightning.models.critics import DotCritic

    torch.manual_seed(0)
    critic = DotCritic(code_dim=64, feature_dim=128, units=2048, temperature=1.0).eval()
    code, features = torch.randn(16, 64), torch.randn(16, 49, 128)
    with torch.no_grad():
        scores = all_pairs(critic, critic.embed_code(code), critic.embed_features(features))
    assert torch.logsumexp(scores.negative.flatten(), 0) > 100  # the regime where float32 exp overflows
    for bound in (jsd, nwj):
        assert math.isfinite(bound(scores).mi.item()), bound.__name__


def test_bounds_are_computed_in_float32_under_bf16_autocast() -> None:
    from dim_lightning.mi.negatives import all_pairs as every_pair
    from dim_lightning.models.critics import DotCritic
    from dim_lightning.models.encoders import EncoderOutput
    from dim_lightning.models.mi_term import MITerm
    from dim_lightning.models.views import local_features

    torch.manual_seed(0)
    term = MITerm(local_features, DotCritic(code_dim=8, feature_dim=4, units=16), every_pair, infonce)
    local = torch.randn(6, 4, 3, 3)
    out = EncoderOutput(code=torch.randn(6, 8), Y=None, log_var=None, local=local, conv=local, fc=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bound = term(out)
    assert bound.loss.dtype == torch.float32 and bound.mi.dtype == torch.float32


def test_every_registered_bound_has_its_estimator_yaml_and_back() -> None:
    # The registry (mutual_information's names) and conf/estimator (training's names) describe the same bounds.
    yamls = {path.stem: OmegaConf.load(path) for path in (CONF_DIR / "estimator").glob("*.yaml")}
    assert set(yamls) == set(BOUNDS)
    for name, node in yamls.items():
        assert get_object(node._target_) is BOUNDS[name].build, name


def test_make_bound_builds_by_name_and_refuses_unknown_names_and_options() -> None:
    ratio = gaussian_scores(0.9)
    assert make_bound("smile", tau=10.0)(ratio).mi.item() == smile(ratio, tau=10.0).mi.item()
    assert isinstance(make_bound("dv", ema_rate=0.5), DonskerVaradhan) and make_bound("dv").ema_rate == 0.01
    assert BOUNDS["nwj"].max_grad_norm == 1.0 and BOUNDS["dv"].max_grad_norm is None
    with pytest.raises(DIMError, match=r"unknown bound 'nope'; choose one of .*infonce"):
        make_bound("nope")
    with pytest.raises(DIMError, match=r"bound 'infonce' takes no option\(s\) \['tau'\]"):
        make_bound("infonce", tau=5.0)
    with pytest.raises(DIMError, match="already registered"):
        register_bound("jsd")(nwj)
